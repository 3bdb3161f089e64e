"""LLM generator backends behind one interface (`Generator`): Ollama, OpenAI-compatible servers, a fleet of either, llama.cpp."""

from medset_dagster.generation.backends.common import (
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    Generator,
    GeneratorUnavailable,
    diagnose_json_output,
    parse_json_output,
)
from medset_dagster.generation.backends.fleet import (
    Endpoint,
    FleetGenerator,
    load_endpoints,
)
from medset_dagster.generation.backends.llama_cpp import (
    LlamaCppGenerator,
    default_smollm2_path,
)
from medset_dagster.generation.backends.ollama import OllamaGenerator
from medset_dagster.generation.backends.openai_compat import OpenAICompatGenerator

__all__ = [
    "Endpoint",
    "FleetGenerator",
    "GenerationParams",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "GeneratorUnavailable",
    "LlamaCppGenerator",
    "OllamaGenerator",
    "OpenAICompatGenerator",
    "default_smollm2_path",
    "diagnose_json_output",
    "load_endpoints",
    "parse_json_output",
]
