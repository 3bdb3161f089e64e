"""The code location: the pipeline's map, from sources to release, one stage per line.

| stage      | Dagster layer          | plain logic               |
|------------|------------------------|---------------------------|
| sources    | defs/sources.py        | sources/                  |
| retrieval  | defs/retrieval.py      | retrieval/                |
| generation | defs/generation.py     | generation/               |
| dataset    | defs/dataset.py        | dataset/                  |
| release    | defs/release.py        | release/                  |
Automation (the nightly rebuild) is defs/automation.py; jobs defs/jobs.py; resources per profile
defs/profiles.py.
"""

from __future__ import annotations

from typing import Mapping

from dagster import Definitions

from medset_dagster.defs.automation import nightly_rebuild
from medset_dagster.defs.dataset import (
    QUALITY_ASSETS,
    QUALITY_CHECKS,
    curated_dataset_asset,
    curated_dataset_checks,
)
from medset_dagster.defs.executors import executor_from_env
from medset_dagster.defs.generation import (
    GENERATED_RECORD_ASSETS,
    GENERATION_TASK_ASSETS,
)
from medset_dagster.defs.jobs import build_jobs
from medset_dagster.defs.profiles import active_profile, resources_for
from medset_dagster.defs.release import HUB_RELEASE_SPEC, RELEASE_ASSETS
from medset_dagster.defs.retrieval import RETRIEVAL_ASSETS, RETRIEVAL_CHECKS
from medset_dagster.defs.sources import (
    BENCHMARK_ITEM_ASSETS,
    EXCLUDED_SOURCE_SPECS,
    GENERATION_INPUT_ASSETS,
    HUB_OBSERVATIONS,
    SOURCE_RECORD_ASSETS,
)
from medset_dagster.sources.registry import dataset_sources

RECORD_ASSETS = {**SOURCE_RECORD_ASSETS, **GENERATED_RECORD_ASSETS}
CURATED_DATASET = curated_dataset_asset([(spec, RECORD_ASSETS[spec.source_id]) for spec in dataset_sources()])


def make_definitions(profile: str, resource_overrides: Mapping[str, object] | None = None) -> Definitions:
    """The same assets for every profile; only resources differ (tests override some)."""
    made: list[Definitions] = []  # the publish job checks staleness on this code location's graph
    definitions = Definitions(
        assets=[
            *HUB_OBSERVATIONS,
            *SOURCE_RECORD_ASSETS.values(),
            *GENERATION_INPUT_ASSETS.values(),
            *BENCHMARK_ITEM_ASSETS.values(),
            *EXCLUDED_SOURCE_SPECS,
            *RETRIEVAL_ASSETS,
            *GENERATION_TASK_ASSETS,
            *GENERATED_RECORD_ASSETS.values(),
            CURATED_DATASET,
            *QUALITY_ASSETS,
            *RELEASE_ASSETS,
            HUB_RELEASE_SPEC,
        ],
        asset_checks=[*curated_dataset_checks(CURATED_DATASET), *QUALITY_CHECKS, *RETRIEVAL_CHECKS],
        jobs=build_jobs([observation.key for observation in HUB_OBSERVATIONS], lambda: made[0].resolve_asset_graph()),
        sensors=[nightly_rebuild],
        resources=resources_for(profile, resource_overrides),
        # MEDSET_EXECUTOR (defs/executors.py): in-process by default (on 2 cores a process per step
        # spends 7-10 s importing, more than most steps take), `celery` or `k8s` past one machine.
        executor=executor_from_env(),
    )
    made.append(definitions)
    return definitions


defs = make_definitions(active_profile())
