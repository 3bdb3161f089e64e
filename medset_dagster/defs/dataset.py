"""Curation: merge every record-producing asset into the dataset, check it, write the release files."""


import inspect
import json
import time
from typing import Literal, Sequence

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Config,
    ConfigurableResource,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from medset_dagster.common.hashing import sha256_file, sha256_text
from medset_dagster.dataset import curation, quality
from medset_dagster.release import export
from medset_dagster.dataset.curation import (
    CurationPolicy,
    curate,
    funnel_markdown,
    funnel_table,
)
from medset_dagster.defs.metadata import files_table, table_metadata
from medset_dagster.defs.storage import PipelineStorage
from medset_dagster.sources.loading import SourceStats
from medset_dagster.sources.registry import DATASET_SOURCE_IDS, SOURCES_BY_ID

CURATED_DATASET = AssetKey("curated_dataset")


class CurationConfig(Config):
    """`card` (default) adds the card's global dedup and length bounds to the per-source rules."""

    policy: Literal["card", "published"] = "card"
    seed: int = 42
    min_chars: int = 10
    max_chars: int = 1500

    def to_policy(self) -> CurationPolicy:
        return CurationPolicy(name=self.policy, seed=self.seed, min_chars=self.min_chars, max_chars=self.max_chars)


class ReleaseConfig(Config):
    max_rows_per_shard: int = 50_000


class QualityGates(ConfigurableResource):
    """Thresholds of the blocking checks that guard a publish."""

    max_source_drop_share: float = 0.5


def _read_report(storage: PipelineStorage) -> dict:
    path = storage.curation_report_path
    return json.loads(path.read_text()) if path.exists() else {}


def curated_dataset_asset(upstream: Sequence[tuple[AssetKey, str]]) -> AssetsDefinition:
    """`upstream`: (asset key, source id) of every asset that writes records for a source."""

    @asset(
        key=CURATED_DATASET,
        deps=[key for key, _ in upstream],
        group_name="dataset",
        kinds={"polars", "parquet"},
        description=(
            "Every source's records merged, deduplicated and length-filtered under the chosen policy, "
            "then shuffled under a recorded seed."
        ),
        code_version=sha256_text(inspect.getsource(curation))[:16],
    )
    def curated_dataset(context: AssetExecutionContext, config: CurationConfig, storage: PipelineStorage) -> MaterializeResult:
        started = time.perf_counter()
        policy = config.to_policy()
        source_ids = [source_id for _, source_id in upstream]
        frames = [pl.read_parquet(storage.records_path(s)) for s in source_ids]
        stats = [SourceStats.from_json(storage.records_stats_path(s).read_text()).__dict__ for s in source_ids]
        result = curate(frames, policy)
        funnel = funnel_table(stats, result.stage_counts, result.dataset)
        per_source = dict(funnel.filter(pl.col("source") != "TOTAL").select("source", "final").iter_rows())
        previous = _read_report(storage).get("per_source_counts")
        result.dataset.write_parquet(storage.curated_path, compression="zstd", statistics=True)
        report = {
            "policy": policy.__dict__,
            "per_source_counts": per_source,
            "previous_per_source_counts": previous,
            "funnel": funnel.to_dicts(),
        }
        storage.curation_report_path.write_text(json.dumps(report, indent=2))
        return MaterializeResult(
            metadata={
                **table_metadata(result.dataset, storage.curated_path),
                "policy": policy.name,
                "seed": policy.seed,
                "funnel": MetadataValue.md(funnel_markdown(funnel)),
                "funnel_json": MetadataValue.json(funnel.to_dicts()),
                "per_source_counts": MetadataValue.json(per_source),
                **{f"rows/{source}": count for source, count in sorted(per_source.items())},
                "seconds": round(time.perf_counter() - started, 3),
            },
            data_version=DataVersion(sha256_file(storage.curated_path)),
        )

    return curated_dataset


def _gate(result: quality.GateResult) -> AssetCheckResult:
    return AssetCheckResult(
        passed=result.passed,
        severity=AssetCheckSeverity.ERROR,
        description=result.description,
        metadata={k: MetadataValue.json(v) for k, v in result.details.items()},
    )


def _load_curated(storage: PipelineStorage) -> tuple[pl.DataFrame, CurationPolicy, dict]:
    report = _read_report(storage)
    return pl.read_parquet(storage.curated_path), CurationPolicy(**report["policy"]), report


@asset_check(asset=CURATED_DATASET, blocking=True, description="Exactly four non-null string columns in order.")
def exact_schema(storage: PipelineStorage) -> AssetCheckResult:
    return _gate(quality.exact_schema(_load_curated(storage)[0]))


@asset_check(asset=CURATED_DATASET, blocking=True, description="Every `source` id is in the registry.")
def registered_sources(storage: PipelineStorage) -> AssetCheckResult:
    return _gate(quality.registered_sources(_load_curated(storage)[0], DATASET_SOURCE_IDS))


@asset_check(asset=CURATED_DATASET, blocking=True, description="No duplicate under the active curation policy.")
def no_duplicates(storage: PipelineStorage) -> AssetCheckResult:
    dataset, policy, _ = _load_curated(storage)
    dedup_on = {source_id: spec.dedup_on for source_id, spec in SOURCES_BY_ID.items()}
    return _gate(quality.no_duplicates(dataset, policy, dedup_on))


@asset_check(asset=CURATED_DATASET, blocking=True, description="Input and output within the card's bounds (card policy).")
def length_bounds(storage: PipelineStorage) -> AssetCheckResult:
    dataset, policy, _ = _load_curated(storage)
    return _gate(quality.length_bounds(dataset, policy))


@asset_check(asset=CURATED_DATASET, blocking=True, description="No empty input or output.")
def no_empty_fields(storage: PipelineStorage) -> AssetCheckResult:
    return _gate(quality.no_empty_fields(_load_curated(storage)[0]))


@asset_check(
    asset=CURATED_DATASET,
    blocking=True,
    description="No source fell more than the configured share below its last materialization.",
)
def source_counts_steady(storage: PipelineStorage, quality_gates: QualityGates) -> AssetCheckResult:
    _, _, report = _load_curated(storage)
    return _gate(
        quality.source_counts_steady(
            report["per_source_counts"], report.get("previous_per_source_counts"), quality_gates.max_source_drop_share
        )
    )


CURATED_DATASET_CHECKS = [exact_schema, registered_sources, no_duplicates, length_bounds, no_empty_fields, source_counts_steady]


@asset(
    deps=[CURATED_DATASET],
    group_name="release",
    kinds={"parquet", "json"},
    description="The release folder: `data/train-*.parquet` shards in the Hub layout and the JSON array.",
    code_version=sha256_text(inspect.getsource(export))[:16],
)
def release_files(context: AssetExecutionContext, config: ReleaseConfig, storage: PipelineStorage) -> MaterializeResult:
    dataset = pl.read_parquet(storage.curated_path)
    files = export.write_release_data(dataset, storage.release_dir, config.max_rows_per_shard)
    return MaterializeResult(
        metadata={
            "dagster/row_count": dataset.height,
            "files": files_table((f.path, f.bytes, f.sha256) for f in files),
            "release_dir": MetadataValue.path(str(storage.release_dir)),
            "shards": len(files) - 1,
        },
        data_version=DataVersion(sha256_text("".join(f.sha256 for f in files))),
    )
