"""Jobs: observe the sources, build the dataset, publish the release."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AssetKey, AssetSelection, define_asset_job, in_process_executor

from medset_dagster.defs.release import publish_hub_release


def build_jobs(observation_keys: Sequence[AssetKey]) -> list:
    """`observe_sources`, `build_dataset` (everything but observations and the publish) and
    `publish_hub_release`."""
    observations = AssetSelection.assets(*observation_keys)
    observe_sources = define_asset_job(
        name="observe_sources",
        selection=observations,
        description="Observe every Hub source's current revision (sample: a content hash of its mirror).",
        executor_def=in_process_executor,
    )
    build_dataset = define_asset_job(
        name="build_dataset",
        selection=AssetSelection.all() - observations,
        description=(
            "Materialize every source, retrieval, generation, the curated dataset (with its blocking checks), "
            "the release files and the card. `make build` runs it shard by shard (python -m medset_dagster build)."
        ),
    )
    return [observe_sources, build_dataset, publish_hub_release]
