"""Shared fixtures for the Dagster-level tests: a sample-profile code location in a temporary data
folder and instance, generating through the real `ollama` client against the loopback stand-in."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, Definitions, instance_for_test

from medset_dagster.definitions import make_definitions
from medset_dagster.defs.generation import GenerationSettings, GeneratorResource
from medset_dagster.defs.launcher import build
from medset_dagster.defs.profiles import SAMPLE_DATA
from medset_dagster.defs.resources import PipelineStorage
from medset_dagster.defs.sources import HubDatasets
from medset_dagster_tests.servers.ollama_server import FakeOllamaServer


@pytest.fixture(scope="session")
def ollama():
    with FakeOllamaServer() as server:
        yield server


@dataclass
class Pipeline:
    """A code location over copied mirrors and its own data folder, with helpers."""

    defs: Definitions
    storage: PipelineStorage
    mirrors: Path
    tmp_path: Path
    ollama_url: str

    def with_resources(self, **overrides) -> "Pipeline":
        resources = {**self.resources, **overrides}
        return Pipeline(make_definitions("sample", resources), self.storage, self.mirrors, self.tmp_path, self.ollama_url)

    @property
    def resources(self) -> dict:
        return {k: v for k, v in self.defs.resources.items() if k != "io_manager"}

    def observe(self, instance: DagsterInstance, **tags):
        result = self.defs.resolve_job_def("observe_sources").execute_in_process(instance=instance, tags=tags)
        assert result.success
        return result

    def build(self, instance: DagsterInstance, policy: str | None = None, selection=None, **options) -> list:
        config = {"ops": {"curated_dataset": {"config": {"policy": policy}}}} if policy else None
        return build(self.defs, instance, run_config=config, selection=selection, log=lambda _line: None, **options)

    def observe_and_build(self, instance: DagsterInstance, policy: str | None = None) -> list:
        self.observe(instance)
        results = self.build(instance, policy)
        assert all(r.success for r in results), [r.run_id for r in results if not r.success]
        return results

    @property
    def release(self) -> Path:
        return self.storage.release_dir


def make_pipeline(tmp_path: Path, ollama_url: str, **overrides) -> Pipeline:
    mirrors = tmp_path / "mirrors"
    if not mirrors.exists():
        shutil.copytree(SAMPLE_DATA / "hub", mirrors)
    storage = PipelineStorage(data_dir=str(tmp_path / "data"))
    resources = {
        "storage": storage,
        "hub_datasets": HubDatasets(mirror_root=str(mirrors)),
        "generator_backend": GeneratorResource(backend="ollama", ollama_host=ollama_url, timeout_s=10, max_attempts=2),
        "generation_settings": GenerationSettings(scenario_count=8, scenario_seed=7),
        **overrides,
    }
    return Pipeline(make_definitions("sample", resources), storage, mirrors, tmp_path, ollama_url)


@pytest.fixture
def pipeline(tmp_path, ollama) -> Pipeline:
    return make_pipeline(tmp_path, ollama.url)


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    with instance_for_test(temp_dir=str(home)) as instance:
        yield instance


def materialized(results) -> set[str]:
    """Asset keys (user strings) materialized by a list of run results."""
    return {e.asset_key.to_user_string() for result in results for e in result.get_asset_materialization_events()}


def metadata_of(instance: DagsterInstance, key: str, partition: str | None = None) -> dict:
    from medset_dagster.defs.metadata import latest_metadata

    return latest_metadata(instance, AssetKey.from_user_string(key), partition)
