"""Jobs, the nightly schedule and the sensor that rebuilds only what a source change made stale."""

from typing import Sequence

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunStatusSensorContext,
    ScheduleDefinition,
    SkipReason,
    define_asset_job,
    in_process_executor,
    run_status_sensor,
)

from medset_dagster.defs.freshness import stale_or_missing_with_downstream

# One run covers every shard of the partitioned generation assets (UI backfills instead run a
# shard per run under the `llm` pool).
ALL_SHARDS = {"dagster/asset_partition_range_start": "shard-0", "dagster/asset_partition_range_end": "shard-3"}
NIGHTLY_TAG = "medset/nightly"
PUBLISH_ASSETS = ("hub_release",)


def build_jobs(observation_keys: Sequence[AssetKey]):
    observe_sources = define_asset_job(
        name="observe_sources",
        selection=AssetSelection.assets(*observation_keys),
        description="Observe every Hub source's current revision (sample: a content hash of its mirror).",
        executor_def=in_process_executor,
    )
    build_dataset = define_asset_job(
        name="build_dataset",
        selection=AssetSelection.all() - AssetSelection.assets(*observation_keys) - AssetSelection.assets(*PUBLISH_ASSETS),
        description="Materialize every source, retrieval, generation, the curated dataset (with its blocking checks) and the release files.",
        # One process for the whole run: importing dagster, datasets and faiss costs more per step
        # than most steps take, and the steps that could overlap share one LLM server anyway.
        executor_def=in_process_executor,
        tags=ALL_SHARDS,
    )
    publish_dataset = define_asset_job(
        name="publish_dataset",
        # The curated dataset, its blocking checks and the publish in one run: a failing check stops it.
        selection=AssetSelection.assets("curated_dataset", "release_files", "dataset_card", *PUBLISH_ASSETS),
        description="Re-curate, check, write the release (card and build.json) and publish it to the Hub.",
        executor_def=in_process_executor,
    )
    nightly_observation = ScheduleDefinition(
        name="nightly_build",
        job=observe_sources,
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        tags={NIGHTLY_TAG: "true"},
        default_status=DefaultScheduleStatus.STOPPED,
        description="02:00 UTC: observe every source; `rebuild_stale_assets` then rebuilds only what changed.",
    )

    @run_status_sensor(
        name="rebuild_stale_assets",
        run_status=DagsterRunStatus.SUCCESS,
        monitored_jobs=[observe_sources],
        request_job=build_dataset,
        default_status=DefaultSensorStatus.STOPPED,
        description="After the nightly observation: materialize only the stale or missing assets and their downstream.",
    )
    def rebuild_stale_assets(context: RunStatusSensorContext):
        if context.dagster_run.tags.get(NIGHTLY_TAG) != "true":
            return SkipReason("not a nightly observation")
        selection = stale_or_missing_with_downstream(
            context.instance, context.repository_def.asset_graph, context.repository_def.get_job("build_dataset")
        )
        verdict = (
            f"{len(selection)} stale or missing assets to rebuild"
            if selection
            else "no source changed: nothing rebuilt (0 downloads, 0 embedding calls, 0 LLM calls)"
        )
        # The night's observation run says what the night did, in its own tags.
        context.instance.add_run_tags(context.dagster_run.run_id, {"medset/verdict": verdict, "medset/stale_assets": str(len(selection))})
        if not selection:
            return SkipReason(verdict)
        return RunRequest(
            run_key=f"rebuild-after-{context.dagster_run.run_id}",
            asset_selection=sorted(selection, key=lambda key: key.to_user_string()),
            tags={**ALL_SHARDS, NIGHTLY_TAG: "true", "medset/stale_assets": str(len(selection))},
        )

    return [observe_sources, build_dataset, publish_dataset], [nightly_observation], [rebuild_stale_assets]
