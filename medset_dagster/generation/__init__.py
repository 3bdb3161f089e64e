"""LLM generation without Dagster: backends (Ollama, OpenAI-compatible, a fleet of them, llama.cpp), a per-item SQLite cache, a concurrent runner."""

from medset_dagster.generation.backends import (
    Endpoint,
    FleetGenerator,
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    Generator,
    GeneratorUnavailable,
    LlamaCppGenerator,
    OllamaGenerator,
    OpenAICompatGenerator,
    default_smollm2_path,
    diagnose_json_output,
    load_endpoints,
    parse_json_output,
)
from medset_dagster.generation.cache import GenerationCache, cache_key
from medset_dagster.generation.runner import (
    GenerationAborted,
    GenerationItem,
    GenerationReport,
    run_generation,
)

__all__ = [
    "Endpoint",
    "FleetGenerator",
    "GenerationAborted",
    "GenerationCache",
    "GenerationItem",
    "GenerationParams",
    "GenerationReport",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "GeneratorUnavailable",
    "LlamaCppGenerator",
    "OllamaGenerator",
    "OpenAICompatGenerator",
    "cache_key",
    "default_smollm2_path",
    "diagnose_json_output",
    "load_endpoints",
    "parse_json_output",
    "run_generation",
]
