"""The two profiles: the same assets, different resources.

- `sample` (default): local mirrors, local embedder and LLM, no network, no keys.
- `full`: the Hub, Cohere, an Ollama server, publishing to a Hub repo; configured through
  environment variables read with `EnvVar`, so values are resolved at run time and never logged.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import EnvVar

from medset_dagster.defs.dataset import QualityGates
from medset_dagster.defs.sources import HubDatasets
from medset_dagster.defs.storage import DEFAULT_DATA_DIR, PipelineStorage

PROFILES = ("sample", "full")
SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"


class ProfileError(ValueError):
    pass


def active_profile() -> str:
    profile = os.environ.get("MEDSET_PROFILE", "sample").strip() or "sample"
    if profile not in PROFILES:
        raise ProfileError(f"MEDSET_PROFILE={profile!r} is not a profile: set it to one of {PROFILES}")
    return profile


def resources_for(profile: str) -> dict:
    storage = PipelineStorage(data_dir=os.environ.get("MEDSET_DATA_DIR", str(DEFAULT_DATA_DIR)))
    common = {"storage": storage, "quality_gates": QualityGates()}
    if profile == "sample":
        return {**common, "hub_datasets": HubDatasets(mirror_root=str(SAMPLE_DATA / "hub"))}
    if profile == "full":
        return {**common, "hub_datasets": HubDatasets(mirror_root=None)}
    raise ProfileError(f"unknown profile {profile!r}: one of {PROFILES}")
