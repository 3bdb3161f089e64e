"""The code location: the pipeline's map, from sources to release."""

from typing import Mapping

from dagster import Definitions, in_process_executor

from medset_dagster.defs.dataset import (
    CURATED_DATASET_CHECKS,
    curated_dataset_asset,
    release_files,
)
from medset_dagster.defs.jobs import build_jobs
from medset_dagster.defs.profiles import active_profile, resources_for
from medset_dagster.defs.release import RELEASE_ASSETS
from medset_dagster.defs.retrieval import RETRIEVAL_ASSETS, RETRIEVAL_CHECKS
from medset_dagster.defs.sources import (
    EXCLUDED_SOURCE_SPECS,
    GENERATION_INPUT_ASSETS,
    HUB_OBSERVATIONS,
    SOURCE_RECORD_ASSETS,
)
from medset_dagster.defs.synthetic import TASKS, synthetic_assets
from medset_dagster.sources.registry import record_sources


def make_definitions(profile: str, resource_overrides: Mapping[str, object] | None = None) -> Definitions:
    """The same assets for every profile; only resources differ (tests override some)."""
    generation_assets, generated_record_assets = synthetic_assets("llamacpp" if profile == "sample" else "ollama")
    # Every asset that writes the records of one `source` of the dataset, with that source's id.
    record_producers = [
        *[(asset.key, spec.source_id) for asset, spec in zip(SOURCE_RECORD_ASSETS, record_sources())],
        *[(asset.key, task.source_id) for asset, task in zip(generated_record_assets, TASKS)],
    ]
    jobs, schedules, sensors = build_jobs([observation.key for observation in HUB_OBSERVATIONS])
    return Definitions(
        assets=[
            *HUB_OBSERVATIONS,
            *SOURCE_RECORD_ASSETS,
            *GENERATION_INPUT_ASSETS,
            *EXCLUDED_SOURCE_SPECS,
            *RETRIEVAL_ASSETS,
            *generation_assets,
            *generated_record_assets,
            curated_dataset_asset(record_producers),
            release_files,
            *RELEASE_ASSETS,
        ],
        asset_checks=[*CURATED_DATASET_CHECKS, *RETRIEVAL_CHECKS],
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources={**resources_for(profile), **(resource_overrides or {})},
        # UI materializations too run their steps in one process: on 2 cores a process per step
        # spends 7-10 s importing dagster, datasets and faiss, more than most steps take.
        executor=in_process_executor,
    )


defs = make_definitions(active_profile())
