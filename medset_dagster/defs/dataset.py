"""Dataset (group `dataset`): every source's records merged into the curated dataset, with the
blocking checks that guard a release."""


import time
from typing import Literal, Sequence

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetIn,
    AssetsDefinition,
    Config,
    ConfigurableResource,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from medset_dagster.dataset import curation, quality
from medset_dagster.dataset.curation import (
    SOURCE_STAGES,
    CurationPolicy,
    curate,
    funnel_markdown,
    funnel_table,
)
from medset_dagster.defs.automation import REBUILD_WHEN_STALE
from medset_dagster.defs.metadata import (
    latest_metadata,
    latest_observation,
    table_metadata,
)
from medset_dagster.defs.sources import frame_version, observation_key
from medset_dagster.defs.versions import code_version
from medset_dagster.sources.registry import SourceSpec, dataset_sources

CURATED_DATASET = "curated_dataset"
# Facts about each source the card and build.json state, read from its asset's metadata.
SOURCE_FACTS = ("revision_loaded", "revision_pinned", "backend", "model", "model_digest", "max_tokens_cap", "retrieval_top_k", "task")


class CurationConfig(Config):
    """`card` (default) adds the card's global dedup and length bounds to the per-source rules;
    every policy bounds each field's size (characters)."""

    policy: Literal["card", "published"] = "card"
    seed: int = 42
    min_chars: int = 10
    max_chars: int = 1500
    max_input_chars: int = 20_000
    max_context_chars: int = 100_000
    max_output_chars: int = 20_000

    def to_policy(self) -> CurationPolicy:
        settings = self.model_dump()
        return CurationPolicy(name=settings.pop("policy"), **settings)


class QualityGates(ConfigurableResource):
    """Thresholds of the blocking checks that guard a release.

    `acknowledge_shrink`: source ids whose fall below the last release is expected (the check
    then passes for them and says so).
    """

    max_source_drop_share: float = 0.5
    acknowledge_shrink: list[str] = []


def curated_dataset_asset(record_assets: Sequence[tuple[SourceSpec, AssetsDefinition]]) -> AssetsDefinition:
    """`curated_dataset` over the records of every source, in registry order."""
    ins = {spec.source_id: AssetIn(key=asset_def.key) for spec, asset_def in record_assets}
    keys = {spec.source_id: asset_def.key for spec, asset_def in record_assets}
    specs = {spec.source_id: spec for spec, _ in record_assets}

    @asset(
        name=CURATED_DATASET,
        ins=ins,
        group_name="dataset",
        kinds={"polars", "parquet"},
        description=(
            "Every source's records merged, bounded in size, deduplicated and length-filtered under the "
            "chosen policy, then shuffled under a recorded seed."
        ),
        code_version=code_version(curation),
        automation_condition=REBUILD_WHEN_STALE,
    )
    def curated_dataset(context: AssetExecutionContext, config: CurationConfig, **records: pl.DataFrame) -> MaterializeResult:
        started = time.perf_counter()
        policy = config.to_policy()
        upstream = {source: latest_metadata(context.instance, key) for source, key in keys.items()}
        result = curate([records[source] for source in keys], policy)
        stages = {source: {stage: m[stage] for stage in SOURCE_STAGES if stage in m} for source, m in upstream.items()}
        funnel = funnel_table(stages, result.stage_counts, result.dataset)
        per_source = dict(funnel.filter(pl.col("source") != "TOTAL").select("source", "final").iter_rows())
        facts = {}
        for source, m in upstream.items():
            spec = specs[source]
            facts[source] = {fact: m[fact] for fact in SOURCE_FACTS if fact in m}
            if spec.hub_repo:
                _, observed = latest_observation(context.instance, observation_key(spec))
                facts[source]["hub_head"] = observed.get("hub_head", "")
        return MaterializeResult(
            value=result.dataset,
            metadata={
                **table_metadata(result.dataset),
                "policy": policy.name,
                "seed": MetadataValue.text(str(policy.seed)),
                "policy_settings": MetadataValue.json(policy.__dict__),
                "funnel": MetadataValue.md(funnel_markdown(funnel)),
                "funnel_json": MetadataValue.json(funnel.to_dicts()),
                "per_source_counts": MetadataValue.json(per_source),
                "source_facts": MetadataValue.json(facts),
                **{f"rows/{source}": count for source, count in sorted(per_source.items())},
                "seconds": round(time.perf_counter() - started, 3),
            },
            data_version=DataVersion(frame_version(result.dataset)),
        )

    return curated_dataset


def _gate(result: quality.GateResult) -> AssetCheckResult:
    metadata = {k: (v if isinstance(v, (int, float)) and not isinstance(v, bool) else MetadataValue.json(v)) for k, v in result.details.items()}
    return AssetCheckResult(passed=result.passed, severity=AssetCheckSeverity.ERROR, description=result.description, metadata=metadata)


def _policy(context) -> CurationPolicy:
    """The policy the latest curated dataset was made under (recorded in its metadata)."""
    return CurationPolicy(**latest_metadata(context.instance, CURATED_DATASET)["policy_settings"])


def curated_dataset_checks(curated: AssetsDefinition) -> list:
    """The blocking checks on `curated`; a failing one stops the release in the same run."""

    @asset_check(asset=curated, blocking=True, description="Exactly four non-null string columns in order.")
    def exact_schema(curated_dataset: pl.DataFrame) -> AssetCheckResult:
        return _gate(quality.exact_schema(curated_dataset))

    @asset_check(asset=curated, blocking=True, description="Every `source` id is in the registry.")
    def registered_sources(curated_dataset: pl.DataFrame) -> AssetCheckResult:
        return _gate(quality.registered_sources(curated_dataset, [s.source_id for s in dataset_sources()]))

    @asset_check(asset=curated, blocking=True, description="No duplicate under the active curation policy.")
    def no_duplicates(context, curated_dataset: pl.DataFrame) -> AssetCheckResult:
        dedup_on = {spec.source_id: spec.dedup_on for spec in dataset_sources()}
        return _gate(quality.no_duplicates(curated_dataset, _policy(context), dedup_on))

    @asset_check(asset=curated, blocking=True, description="Input and output within the card's bounds (card policy).")
    def length_bounds(context, curated_dataset: pl.DataFrame) -> AssetCheckResult:
        return _gate(quality.length_bounds(curated_dataset, _policy(context)))

    @asset_check(asset=curated, blocking=True, description="No field longer than its hard bound (every policy).")
    def field_bounds(context, curated_dataset: pl.DataFrame) -> AssetCheckResult:
        return _gate(quality.field_bounds(curated_dataset, _policy(context)))

    @asset_check(asset=curated, blocking=True, description="No empty input or output.")
    def no_empty_fields(curated_dataset: pl.DataFrame) -> AssetCheckResult:
        return _gate(quality.no_empty_fields(curated_dataset))

    @asset_check(
        asset=curated,
        blocking=True,
        description="No source fell more than the configured share below the last release that passed its checks.",
    )
    def source_counts_steady(context, quality_gates: QualityGates) -> AssetCheckResult:
        current = latest_metadata(context.instance, CURATED_DATASET).get("per_source_counts", {})
        previous = latest_metadata(context.instance, "release_files").get("per_source_counts")
        return _gate(quality.source_counts_steady(current, previous, quality_gates.max_source_drop_share, quality_gates.acknowledge_shrink))

    return [exact_schema, registered_sources, no_duplicates, length_bounds, field_bounds, no_empty_fields, source_counts_steady]
