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
    AssetOut,
    AssetsDefinition,
    Config,
    ConfigurableResource,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    Nothing,
    asset,
    asset_check,
    multi_asset,
)

from medset_dagster.common import markdown
from medset_dagster.common.files import NoSpaceLeftError, is_no_space
from medset_dagster.dataset import (
    curation,
    decontamination,
    near_duplicates,
    ngrams,
    phi,
    quality,
)
from medset_dagster.dataset.curation import (
    RELEASE_FUNNEL_STAGES,
    SOURCE_STAGES,
    CurationPolicy,
    curate_to_parquet,
    funnel_markdown,
    funnel_table,
)
from medset_dagster.dataset.decontamination import DecontaminationConfig, build_index
from medset_dagster.dataset.near_duplicates import (
    NearDuplicateConfig,
    remove_near_duplicates,
)
from medset_dagster.dataset.phi import PhiConfig, scan_and_apply
from medset_dagster.dataset.quality_funnel import FUNNEL_COLUMNS, quality_funnel
from medset_dagster.dataset.records import markdown_preview
from medset_dagster.defs.automation import REBUILD_WHEN_STALE
from medset_dagster.defs.io_manager import LAZY
from medset_dagster.defs.metadata import (
    latest_metadata,
    latest_observation,
    table_metadata,
)
from medset_dagster.defs.resources import PipelineStorage
from medset_dagster.defs.sources import (
    BENCHMARK_ITEM_ASSETS,
    frame_version,
    observation_key,
)
from medset_dagster.defs.versions import code_version
from medset_dagster.sources.registry import SourceSpec, dataset_sources

CURATED_DATASET = "curated_dataset"
# Facts about each source the card and build.json state, read from its asset's metadata.
SOURCE_FACTS = (
    "revision_loaded",
    "revision_pinned",
    "backend",
    "model",
    "model_digest",
    "max_tokens_cap",
    "retrieval_top_k",
    "retrieval_min_similarity",
    "task",
    "repairs",
)


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
    """Settings of the quality stages and thresholds of the blocking checks that guard a release.

    - `max_source_drop_share`, `acknowledge_shrink`: a source may not fall more than this share
      below the last release that passed its checks, unless listed (the check then says so);
    - near-duplicates: word `near_dup_ngram`-grams, Jaccard `near_dup_threshold`; a source may lose
      at most `max_near_dup_source_loss` of its rows unless in `acknowledge_near_dup_loss`;
    - decontamination: `decontamination_ngram` tokens (13, as GPT-3); with
      `decontamination_min_match_ratio` above 0, the share of an item's n-grams a field must hold
      (the 8-gram variant: ngram 8, ratio 0.5);
    - PHI: `phi_policy` `redact` (typed placeholders) or `drop`.
    """

    max_source_drop_share: float = 0.5
    acknowledge_shrink: list[str] = []
    near_dup_ngram: int = 5
    near_dup_threshold: float = 0.8
    max_near_dup_source_loss: float = 0.2
    acknowledge_near_dup_loss: list[str] = []
    decontamination_ngram: int = 13
    decontamination_min_match_ratio: float = 0.0
    phi_policy: Literal["redact", "drop"] = "redact"

    def near_duplicates(self) -> NearDuplicateConfig:
        return NearDuplicateConfig(
            ngram=self.near_dup_ngram,
            threshold=self.near_dup_threshold,
            max_source_loss=self.max_near_dup_source_loss,
            acknowledged_sources=tuple(self.acknowledge_near_dup_loss),
        )

    def decontamination(self) -> DecontaminationConfig:
        return DecontaminationConfig(ngram=self.decontamination_ngram, min_match_ratio=self.decontamination_min_match_ratio)

    def phi(self) -> PhiConfig:
        return PhiConfig(policy=self.phi_policy)


def curated_dataset_asset(record_assets: Sequence[tuple[SourceSpec, AssetsDefinition]]) -> AssetsDefinition:
    """`curated_dataset` over the records of every source, in registry order."""
    ins = {spec.source_id: AssetIn(key=asset_def.key, metadata=LAZY) for spec, asset_def in record_assets}
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
    def curated_dataset(context: AssetExecutionContext, config: CurationConfig, storage: PipelineStorage, **records: pl.LazyFrame) -> MaterializeResult:
        started = time.perf_counter()
        policy = config.to_policy()
        upstream = {source: latest_metadata(context.instance, key) for source, key in keys.items()}
        # Streamed: the rows are written in slices of the decided order, never all in memory; the
        # IO manager moves the finished file into place.
        written = storage.scratch_file(f"{CURATED_DATASET}-{context.run_id}.parquet")
        try:
            stage_counts = curate_to_parquet([records[source] for source in keys], policy, written)
        except Exception as error:
            written.unlink(missing_ok=True)
            if is_no_space(error):
                raise Failure(str(NoSpaceLeftError(written, storage.root, error)), allow_retries=False) from error
            raise
        stages = {source: {stage: m[stage] for stage in SOURCE_STAGES if stage in m} for source, m in upstream.items()}
        funnel = funnel_table(stages, stage_counts)
        per_source = dict(funnel.filter(pl.col("source") != "TOTAL").select("source", "final").iter_rows())
        facts = {}
        for source, m in upstream.items():
            spec = specs[source]
            facts[source] = {fact: m[fact] for fact in SOURCE_FACTS if fact in m}
            if spec.hub_repo:
                _, observed = latest_observation(context.instance, observation_key(spec))
                facts[source]["hub_head"] = observed.get("hub_head", "")
        return MaterializeResult(
            value=written,
            metadata={
                "dagster/row_count": int(sum(per_source.values())),
                "policy": policy.name,
                "seed": MetadataValue.text(str(policy.seed)),
                "policy_settings": MetadataValue.json(policy.__dict__),
                "funnel": MetadataValue.md(funnel_markdown(funnel)),
                "funnel_json": MetadataValue.json(funnel.to_dicts()),
                "per_source_counts": MetadataValue.json(per_source),
                "source_facts": MetadataValue.json(facts),
                **{f"rows/{source}": count for source, count in sorted(per_source.items())},
                "seconds_planning": round(time.perf_counter() - started, 3),
            },
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


# --- the quality stages: near-duplicates, benchmark decontamination, PHI ---------------------------

NEAR_DEDUPLICATED, DECONTAMINATED, PHI_SCRUBBED = "near_deduplicated_dataset", "decontaminated_dataset", "phi_scrubbed_dataset"
BENCHMARK_INDEX = "benchmark_index"
# The dataset the release is made from.
RELEASE_DATASET = PHI_SCRUBBED


def with_row_ids(dataset: pl.DataFrame) -> pl.DataFrame:
    """`row_id` (String): "<hash of the row's four fields>-<its position among equal rows>", unique
    per row and stable across runs of the same polars version."""
    digest = pl.concat_str(RECORD_FIELDS, separator="\x1f").hash(seed=7).cast(pl.String)
    ids = pl.format("{}-{}", digest, pl.int_range(pl.len()).over(digest))
    return dataset.with_columns(ids.alias("row_id"))


RECORD_FIELDS = [pl.col(c) for c in ("input", "context", "output", "source")]


def stage_outs(dataset: str, dataset_description: str, table: str, table_description: str, *modules) -> dict[str, AssetOut]:
    """The two outputs of a quality stage: the dataset it passes on and the table of what it removed
    or found, both in the `dataset` group, versioned by the stage's plain modules."""
    version = code_version(*modules)
    return {
        name: AssetOut(
            group_name="dataset",
            kinds={"polars", "parquet"},
            description=description,
            code_version=version,
            automation_condition=REBUILD_WHEN_STALE,
        )
        for name, description in ((dataset, dataset_description), (table, table_description))
    }


def table_result(key: str, frame: pl.DataFrame) -> MaterializeResult:
    """A quality stage's table (removed rows, findings) with its count and a preview."""
    return MaterializeResult(
        asset_key=key,
        value=frame,
        metadata={"dagster/row_count": frame.height, "preview": MetadataValue.md(markdown_preview(frame))},
        data_version=DataVersion(frame_version(frame)),
    )


@multi_asset(
    outs=stage_outs(
        NEAR_DEDUPLICATED,
        "The curated dataset without near-duplicates; one row kept per cluster (source priority, then first occurrence).",
        "near_duplicates",
        "Rows removed as near-duplicates (MinHash LSH over word n-grams of input and output): cluster id, "
        "the kept row's id and source, the estimated Jaccard similarity.",
        near_duplicates,
        ngrams,
    ),
    ins={"curated_dataset": AssetIn(key=CURATED_DATASET)},
    can_subset=False,
)
def near_deduplication(context: AssetExecutionContext, quality_gates: QualityGates, curated_dataset: pl.DataFrame):
    """Reads `curated_dataset`, gives each row a `row_id` and removes near-duplicates (QualityGates' n-gram
    size and Jaccard threshold); writes `near_deduplicated_dataset` (`row_id` kept) and `near_duplicates`."""
    started = time.perf_counter()
    result = remove_near_duplicates(with_row_ids(curated_dataset), quality_gates.near_duplicates())
    stats = result.stats
    yield MaterializeResult(
        asset_key=NEAR_DEDUPLICATED,
        value=result.kept,
        metadata={
            **table_metadata(result.kept.drop("row_id")),
            "removed": stats["removed"],
            "clusters": stats["clusters"],
            **{f"removed/{source}": int(n) for source, n in sorted(stats["removed_by_source"].items())},
            "removals_by_source": MetadataValue.md(near_duplicates.removals_markdown(stats)),
            # Previews come before the PHI stage: redact them before they reach the UI.
            "largest_clusters": MetadataValue.md(near_duplicates.clusters_markdown(redacted_previews(stats["largest_clusters"]))),
            "stats": MetadataValue.json(_json_safe({**stats, "largest_clusters": redacted_previews(stats["largest_clusters"])})),
            "seconds": round(time.perf_counter() - started, 3),
        },
        data_version=DataVersion(frame_version(result.kept)),
    )
    yield table_result("near_duplicates", result.near_duplicates)


def redacted_previews(clusters: list[dict]) -> list[dict]:
    """Cluster summaries whose `preview` text has every PHI finding replaced by its placeholder."""
    return [{**cluster, "preview": phi.redact_text(cluster.get("preview") or "")} for cluster in clusters]


def _json_safe(value):
    """Stats as JSON-able values (numpy numbers become Python numbers)."""
    import json

    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


@asset_check(asset=NEAR_DEDUPLICATED, blocking=True, description="No source lost more than the configured share of its rows to near-duplicates.")
def near_duplicate_source_loss(context, quality_gates: QualityGates) -> AssetCheckResult:
    """Reads the `stats` metadata of the latest `near_deduplicated_dataset`; fails when a source not
    acknowledged lost more than `max_near_dup_source_loss` of its rows."""
    stats = latest_metadata(context.instance, NEAR_DEDUPLICATED).get("stats", {})
    return _gate(quality.near_duplicate_source_loss(stats, quality_gates.max_near_dup_source_loss, quality_gates.acknowledge_near_dup_loss))


@multi_asset(
    outs=stage_outs(
        DECONTAMINATED,
        "The dataset without rows that share an n-gram (13 tokens by default) with a benchmark's test item.",
        "contaminated_rows",
        "Rows removed as benchmark contamination: the benchmark, the item id, the field and the matched span.",
        decontamination,
        ngrams,
    ),
    ins={NEAR_DEDUPLICATED: AssetIn(key=NEAR_DEDUPLICATED), BENCHMARK_INDEX: AssetIn(key=BENCHMARK_INDEX)},
    can_subset=False,
)
def decontamination_stage(context: AssetExecutionContext, quality_gates: QualityGates, **inputs: pl.DataFrame):
    """Reads `near_deduplicated_dataset` and `benchmark_index`, indexes the benchmark items' n-grams
    (`decontamination_ngram` tokens); writes `decontaminated_dataset` and `contaminated_rows`."""
    started = time.perf_counter()
    rows = inputs[NEAR_DEDUPLICATED]
    config = quality_gates.decontamination()
    index = build_index(inputs[BENCHMARK_INDEX], n=config.ngram)
    result = decontamination.decontaminate(rows, index, config)
    benchmarks = sorted(BENCHMARK_ITEM_ASSETS)
    yield MaterializeResult(
        asset_key=DECONTAMINATED,
        value=result.kept,
        metadata={
            **table_metadata(result.kept.drop("row_id")),
            "removed": result.stats["removed"],
            **{f"removed/{source}": int(n) for source, n in sorted(result.stats["removed_by_source"].items())},
            "source_x_benchmark": MetadataValue.md(decontamination.source_benchmark_markdown(result.contaminated_rows, benchmarks)),
            "benchmarks": MetadataValue.md(decontamination.stats_markdown(result.stats)),
            "stats": MetadataValue.json(_json_safe(result.stats)),
            "seconds": round(time.perf_counter() - started, 3),
        },
        data_version=DataVersion(frame_version(result.kept)),
    )
    yield table_result("contaminated_rows", result.contaminated_rows)


BENCHMARK_COLUMNS = ["benchmark", "item_id", "question", "options", "answer"]


@asset(
    name=BENCHMARK_INDEX,
    ins={source: AssetIn(key=asset_def.key) for source, asset_def in BENCHMARK_ITEM_ASSETS.items()},
    group_name="dataset",
    kinds={"polars", "parquet"},
    description=(
        "Every benchmark test item (benchmark, item_id, question, options, answer) the dataset is decontaminated "
        "against: MedQA, MedMCQA, PubMedQA and the medical subsets of MMLU."
    ),
    code_version=code_version(decontamination),
    automation_condition=REBUILD_WHEN_STALE,
)
def benchmark_index(context: AssetExecutionContext, quality_gates: QualityGates, **items: pl.DataFrame) -> MaterializeResult:
    """Reads every `benchmark_items/<id>` and writes them as one frame (BENCHMARK_COLUMNS, benchmarks in
    sorted order); readers rebuild the n-gram index from it, only its summary goes to the metadata."""
    frame = pl.concat([items[source].select(BENCHMARK_COLUMNS) for source in sorted(items)], how="vertical_relaxed")
    summary = build_index(frame, n=quality_gates.decontamination_ngram).summary()
    rows = [(name, s["items"], s["items_indexed"], s["ngrams"]) for name, s in summary.items()]
    return MaterializeResult(
        value=frame,
        metadata={
            "dagster/row_count": frame.height,
            "benchmarks": MetadataValue.md(markdown.table(["benchmark", "items", "items with an n-gram", "n-grams"], rows)),
            **{f"items/{name}": s["items"] for name, s in summary.items()},
        },
        data_version=DataVersion(frame_version(frame.select("benchmark", "item_id", "question"))),
    )


@multi_asset(
    outs=stage_outs(
        PHI_SCRUBBED,
        "The dataset after the PHI/PII scan: findings redacted with typed placeholders ([PHONE]...) or rows dropped, by policy.",
        "phi_findings",
        "Every PHI/PII finding: row id, field, kind, span offsets and recognizer; never the matched text.",
        phi,
    ),
    ins={DECONTAMINATED: AssetIn(key=DECONTAMINATED), "curated_dataset": AssetIn(key=CURATED_DATASET, dagster_type=Nothing)},
    can_subset=False,
)
def phi_scan(context: AssetExecutionContext, quality_gates: QualityGates, **inputs: pl.DataFrame):
    """Reads `decontaminated_dataset` and scans it for PHI/PII under `phi_policy`; writes
    `phi_scrubbed_dataset` (the release dataset, with the whole funnel in its metadata) and `phi_findings`."""
    started = time.perf_counter()
    config = quality_gates.phi()
    result = scan_and_apply(inputs[DECONTAMINATED], config)
    near = latest_metadata(context.instance, NEAR_DEDUPLICATED).get("stats", {})
    decon = latest_metadata(context.instance, DECONTAMINATED).get("stats", {})
    curated = latest_metadata(context.instance, CURATED_DATASET)
    funnel = full_funnel(curated.get("funnel_json", []), quality_funnel(near, decon, result.stats), result.kept)
    per_source = {row["source"]: row["final"] for row in funnel if row["source"] != "TOTAL"}
    yield MaterializeResult(
        asset_key=PHI_SCRUBBED,
        value=result.kept,
        metadata={
            **table_metadata(result.kept.drop("row_id")),
            "policy": config.policy,
            "findings": result.stats["findings"],
            "rows_with_findings": result.stats["rows_with_findings"],
            "findings_by_source_and_kind": MetadataValue.md(phi.findings_markdown(result.stats)),
            "stats": MetadataValue.json(_json_safe(result.stats)),
            "funnel": MetadataValue.md(funnel_markdown(pl.DataFrame(funnel).select("source", *RELEASE_FUNNEL_STAGES))),
            "funnel_json": MetadataValue.json(funnel),
            "per_source_counts": MetadataValue.json(per_source),
            **{f"rows/{source}": count for source, count in sorted(per_source.items())},
            "seconds": round(time.perf_counter() - started, 3),
        },
        data_version=DataVersion(frame_version(result.kept)),
    )
    yield table_result("phi_findings", result.phi_findings)


def full_funnel(curated_funnel: list[dict], quality: pl.DataFrame, final: pl.DataFrame) -> list[dict]:
    """The curated dataset's funnel with the quality stages' columns, and `final` recounted on the
    dataset that is released; one dict per source, then TOTAL."""
    stages = {row["source"]: row for row in quality.to_dicts()}
    counts = dict(final.group_by("source").len().iter_rows()) if final.height else {}
    rows = []
    for row in curated_funnel:
        if row["source"] == "TOTAL":
            continue
        merged = {k: v for k, v in row.items() if k != "final"}
        before = merged.get("after_length_filter", 0)
        for column in FUNNEL_COLUMNS:
            merged[column] = int(stages.get(row["source"], {}).get(column, before))
        merged["final"] = int(counts.get(row["source"], 0))
        rows.append(merged)
    if rows:
        rows.append({"source": "TOTAL", **{k: sum(r[k] for r in rows) for k in rows[0] if k != "source"}})
    return rows


@asset_check(
    asset=PHI_SCRUBBED,
    blocking=True,
    description="No release row shares an n-gram with a benchmark test item.",
    additional_ins={"benchmark_index": AssetIn(key=BENCHMARK_INDEX)},
)
def no_benchmark_overlap(quality_gates: QualityGates, phi_scrubbed_dataset: pl.DataFrame, benchmark_index: pl.DataFrame) -> AssetCheckResult:
    """Reads `phi_scrubbed_dataset` and `benchmark_index`; fails when a row shares an n-gram with an item."""
    config = quality_gates.decontamination()
    return _gate(quality.no_benchmark_overlap(phi_scrubbed_dataset, build_index(benchmark_index, n=config.ngram), config))


@asset_check(asset=PHI_SCRUBBED, blocking=True, description="No PHI/PII finding remains in the release under the active policy.")
def no_phi_remaining(quality_gates: QualityGates, phi_scrubbed_dataset: pl.DataFrame) -> AssetCheckResult:
    """Reads `phi_scrubbed_dataset` and scans it again; fails when a PHI/PII finding remains."""
    return _gate(quality.no_phi_remaining(phi_scrubbed_dataset, quality_gates.phi()))


QUALITY_ASSETS = [near_deduplication, benchmark_index, decontamination_stage, phi_scan]
QUALITY_CHECKS = [near_duplicate_source_loss, no_benchmark_overlap, no_phi_remaining]
