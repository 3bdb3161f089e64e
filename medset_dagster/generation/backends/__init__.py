"""LLM generator backends behind one interface (`Generator`): Ollama and llama.cpp."""

from medset_dagster.generation.backends.common import (
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    Generator,
    GeneratorUnavailable,
    diagnose_json_output,
    parse_json_output,
)
from medset_dagster.generation.backends.llama_cpp import (
    LlamaCppGenerator,
    default_smollm2_path,
)
from medset_dagster.generation.backends.ollama import OllamaGenerator

__all__ = [
    "GenerationParams",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "GeneratorUnavailable",
    "LlamaCppGenerator",
    "OllamaGenerator",
    "default_smollm2_path",
    "diagnose_json_output",
    "parse_json_output",
]
