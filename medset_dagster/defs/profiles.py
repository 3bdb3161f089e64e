"""The two profiles: the same assets, different resources.

- `sample` (default): local mirrors, local embedder and LLM, no network, no keys.
- `full`: the Hub, Cohere, an Ollama server, publishing to a Hub repo; configured through
  environment variables read with `EnvVar`, so values are resolved at run time and never logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dagster import EnvVar

from medset_dagster.defs.dataset import QualityGates
from medset_dagster.defs.generation import GenerationSettings, GeneratorResource
from medset_dagster.defs.io_manager import ParquetIOManager
from medset_dagster.defs.release import ReleaseSettings
from medset_dagster.defs.resources import DEFAULT_DATA_DIR, PipelineStorage
from medset_dagster.defs.retrieval import DocumentCorpus, EmbedderResource
from medset_dagster.defs.sources import HubDatasets

PROFILES = ("sample", "full")
SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"


class ProfileError(ValueError):
    """MEDSET_PROFILE names no profile."""


def active_profile() -> str:
    """`MEDSET_PROFILE` (default `sample`); raises `ProfileError` naming the choices."""
    profile = os.environ.get("MEDSET_PROFILE", "sample").strip() or "sample"
    if profile not in PROFILES:
        raise ProfileError(f"MEDSET_PROFILE={profile!r} is not a profile: set it to one of {PROFILES}")
    return profile


def _env(name: str, default: str | None = None):
    """An `EnvVar` (resolved at run time, never logged) when set; else the default."""
    return EnvVar(name) if os.environ.get(name) else default


def _list_env(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _generator(default: str) -> GeneratorResource:
    backend = os.environ.get("MEDSET_GENERATOR", "fleet" if os.environ.get("MEDSET_LLM_FLEET") else default)
    if backend not in ("llama_cpp", "ollama", "fleet"):
        raise ProfileError(f"MEDSET_GENERATOR={backend!r} is not a generator backend: set it to llama_cpp, ollama or fleet")
    if backend == "llama_cpp":
        return GeneratorResource(backend="llama_cpp")
    if backend == "fleet":
        return GeneratorResource(backend="fleet", fleet_json=_env("MEDSET_LLM_FLEET"), fleet_model=_env("MEDSET_FLEET_MODEL"))
    return GeneratorResource(
        backend="ollama",
        ollama_host=_env("OLLAMA_HOST", "http://127.0.0.1:11434"),
        ollama_model=_env("MEDSET_OLLAMA_MODEL", "gemma3n:e4b"),
        # Match the server's OLLAMA_NUM_PARALLEL: fewer requests in flight leave its slots idle.
        max_in_flight=int(os.environ.get("MEDSET_OLLAMA_PARALLEL", "4")),
    )


def resources_for(profile: str, overrides: Mapping[str, object] | None = None) -> dict:
    """The resources of `profile`, with `overrides` (tests) applied; the IO manager follows `storage`."""
    storage = PipelineStorage(data_dir=os.environ.get("MEDSET_DATA_DIR", str(DEFAULT_DATA_DIR)))
    common = {
        "storage": storage,
        "quality_gates": QualityGates(
            acknowledge_shrink=_list_env("MEDSET_ACKNOWLEDGE_SHRINK"),
            acknowledge_near_dup_loss=_list_env("MEDSET_ACKNOWLEDGE_NEAR_DUP_LOSS"),
            phi_policy=os.environ.get("MEDSET_PHI_POLICY", "redact"),
        ),
    }
    if profile == "sample":
        resources = {
            **common,
            "hub_datasets": HubDatasets(mirror_root=str(SAMPLE_DATA / "hub")),
            "document_corpus": DocumentCorpus(documents="sample"),
            "embedder": EmbedderResource(backend="local"),
            # MEDSET_GENERATOR=ollama tries the sample data against a real Ollama server (OLLAMA_HOST).
            "generator_backend": _generator(default="llama_cpp"),
            # SmolLM2 at ~50 tokens/s on 2 cores: a few items per task keeps the build to minutes.
            "generation_settings": GenerationSettings(
                scenario_count=5, max_items_per_task=6, max_tokens_cap=128, step_deadline_s=float(os.environ.get("MEDSET_STEP_DEADLINE_S", 1800))
            ),
            # No repo: the publish job is a dry run that leaves the release folder as it would upload it.
            "release_settings": ReleaseSettings(profile="sample"),
        }
    elif profile == "full":
        resources = {
            **common,
            "hub_datasets": HubDatasets(
                mirror_root=None,
                token=_env("HF_TOKEN"),
                track=_list_env("MEDSET_TRACK_SOURCES"),
                pins_file=str(storage.root / "pins" / "hub_revisions.json"),
            ),
            "document_corpus": DocumentCorpus(documents="full"),
            "embedder": EmbedderResource(backend="cohere", api_key=_env("COHERE_API_KEY"), base_url=_env("COHERE_BASE_URL")),
            "generator_backend": _generator(default="ollama"),
            "generation_settings": GenerationSettings(
                scenario_count=int(os.environ.get("MEDSET_SCENARIOS", "1000")),
                step_deadline_s=float(os.environ.get("MEDSET_STEP_DEADLINE_S", 6 * 3600)),
            ),
            "release_settings": ReleaseSettings(
                profile="full",
                repo_id=_env("MEDSET_HUB_REPO"),
                token=_env("HF_TOKEN"),
                licence=_env("MEDSET_RELEASE_LICENCE"),
                acknowledge_licence_conflict=os.environ.get("MEDSET_ACKNOWLEDGE_LICENCE_CONFLICT", "") == "1",
                private=os.environ.get("MEDSET_HUB_PUBLIC", "") != "1",
            ),
        }
    else:
        raise ProfileError(f"unknown profile {profile!r}: one of {PROFILES}")
    resources.update(overrides or {})
    resources["io_manager"] = ParquetIOManager(storage=resources["storage"])
    return resources
