"""Jobs and schedules."""

from __future__ import annotations

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job, in_process_executor

build_dataset = define_asset_job(
    name="build_dataset",
    selection=AssetSelection.all(),
    description="Materialize every source, the curated dataset (with its blocking checks) and the release files.",
    # One process for the whole run: importing dagster, datasets and faiss costs more per step than
    # most steps take, and the steps that could overlap share one LLM server anyway.
    executor_def=in_process_executor,
    # One run covers every shard of the partitioned generation assets (UI backfills instead run a
    # shard per run under the `llm` pool).
    tags={"dagster/asset_partition_range_start": "shard-0", "dagster/asset_partition_range_end": "shard-3"},
)

nightly_build = ScheduleDefinition(
    name="nightly_build",
    job=build_dataset,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Rebuild the dataset every night at 02:00 UTC.",
)
