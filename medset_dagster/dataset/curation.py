"""Merge the sources' records into the dataset: dedup, length filter, seeded shuffle.

Two policies:
- `published`: per-source rules only (already applied by each source), reproducing how the
  published counts arose.
- `card` (default): also what the card claims: a global exact dedup on normalised
  `(input, output)` and 10-1500 character bounds on input and output.
Both end with a shuffle under a recorded seed: rows are ordered by a seeded hash of their content,
so the same records give byte-identical output whatever order the sources arrive in. The hash is
polars' own (stable for a given polars version, which the lock file pins).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

import polars as pl

from medset_dagster.common import markdown
from medset_dagster.common.text import normalised_text
from medset_dagster.dataset.records import RECORD_COLUMNS, as_records

Policy = Literal["card", "published"]
# One stage per cause, in pipeline order; the same names in asset metadata, the card and build.json.
# Sources whose rows map straight to records keep their count through the generation stages.
SOURCE_STAGES = ("rows_read", "after_mapping", "after_source_dedup", "after_sample_cap", "after_generation")
CURATION_STAGES = ("after_field_bounds", "after_global_dedup", "after_length_filter", "final")
FUNNEL_STAGES = SOURCE_STAGES + CURATION_STAGES
# The quality stages after curation (dataset/quality_funnel.py), and the whole funnel in order.
QUALITY_STAGES = ("after_near_dedup", "after_decontamination", "after_phi")
RELEASE_FUNNEL_STAGES = FUNNEL_STAGES[:-1] + QUALITY_STAGES + ("final",)
# What each stage counts, one sentence each, for the card and the UI.
STAGE_MEANINGS = {
    "rows_read": "rows of the source's train split as loaded (for the RAG source: scenario draws)",
    "after_mapping": "rows that passed the source's mapping rules (no missing field, answer among the options...)",
    "after_source_dedup": "after the source's own exact dedup (the published per-source rule)",
    "after_sample_cap": "items sent to the language model (the sample profile caps them per task)",
    "after_generation": "rows whose generated output passed validation, repeated questions dropped",
    "after_field_bounds": "after the hard bound on each field's size (every policy)",
    "after_global_dedup": "after the card policy's dedup on normalised (input, output) across sources",
    "after_length_filter": "after the card policy's length bounds on input and output",
    "after_near_dedup": "after near-duplicate removal (MinHash over word n-grams, across sources)",
    "after_decontamination": "after removing rows that overlap a benchmark's test items",
    "after_phi": "after the personal-information policy (redaction keeps the row; drop removes it)",
    "final": "rows of this source in the release",
}


@dataclass(frozen=True)
class CurationPolicy:
    """How the sources' records become the dataset.

    `min_chars`/`max_chars`: the card policy's bounds on `input` and `output` (characters).
    `max_input_chars`, `max_context_chars`, `max_output_chars`: a hard bound per field (characters)
    under every policy, so a 50 MB cell never ships; generous by default.
    """

    name: Policy = "card"
    seed: int = 42
    min_chars: int = 10
    max_chars: int = 1500
    max_input_chars: int = 20_000
    max_context_chars: int = 100_000
    max_output_chars: int = 20_000

    @property
    def field_bounds(self) -> dict[str, int]:
        """Column -> the most characters it may hold."""
        return {"input": self.max_input_chars, "context": self.max_context_chars, "output": self.max_output_chars}

    @property
    def global_dedup(self) -> bool:
        return self.name == "card"

    @property
    def length_filter(self) -> bool:
        return self.name == "card"


@dataclass
class CurationResult:
    """What `curate` returns: `dataset` (the four String record columns, shuffled) and `stage_counts`."""

    dataset: pl.DataFrame
    # Per source (`source` String, counts Int64): rows entering curation (`after_generation`),
    # then `after_field_bounds`, `after_global_dedup`, `after_length_filter`.
    stage_counts: pl.DataFrame


def normalised(column: str) -> pl.Expr:
    """Text compared for the global dedup and the no_duplicates gate (String column in, String out):
    NFKC, format characters (zero-width space, soft hyphen, BOM) removed, lower case, every run of
    Unicode whitespace (a single no-break space included) one space, trimmed. See
    `common.text.normalised_text`."""
    return normalised_text(pl.col(column))


def normalised_pair_keys() -> list[pl.Expr]:
    """The global dedup key: two independent 64-bit hashes of the normalised `input` and `output`
    (UInt64 columns `_input_key`, `_output_key`).

    Hashes rather than the strings: a false match needs both to collide (about n^2 / 2^129), and
    hashing is far cheaper than grouping long strings.
    """
    return [normalised("input").hash(1).alias("_input_key"), normalised("output").hash(2).alias("_output_key")]


def within_field_bounds(policy: CurationPolicy) -> pl.Expr:
    """True where every field is within its hard bound (`policy.field_bounds`, characters)."""
    return pl.all_horizontal(pl.col(column).str.len_chars() <= bound for column, bound in policy.field_bounds.items())


def within_length_bounds(policy: CurationPolicy) -> pl.Expr:
    """True where `input` and `output` both have `min_chars`..`max_chars` characters (card policy)."""
    return pl.all_horizontal(
        pl.col(column).str.len_chars().is_between(policy.min_chars, policy.max_chars) for column in ("input", "output")
    )


def _count_by_source(frame: pl.DataFrame | pl.LazyFrame, name: str):
    return frame.group_by("source").agg(pl.len().cast(pl.Int64).alias(name))


def _merged(records: Sequence[pl.LazyFrame]) -> pl.LazyFrame:
    """The sources' records as one lazy frame of the four String columns, in registry order."""
    return pl.concat([lf.select([pl.col(name).cast(pl.String) for name in RECORD_COLUMNS]) for lf in records], how="vertical")


def curation_keys(records: pl.LazyFrame, policy: CurationPolicy) -> pl.LazyFrame:
    """One narrow row per record, everything curation decides on, computed in one streaming pass:
    `_row` (UInt32 position in `records`), `source`, `_fits` (field bounds), the dedup keys
    `_input_key`/`_output_key` (UInt64), `_length_ok`, and the shuffle keys `_h1`/`_h2` (UInt64:
    two seeded hashes of the row's content)."""
    content = pl.struct(list(RECORD_COLUMNS))
    return records.with_row_index("_row").select(
        "_row",
        # Categorical: a few distinct ids over millions of rows.
        pl.col("source").cast(pl.Categorical),
        within_field_bounds(policy).alias("_fits"),
        *normalised_pair_keys(),
        within_length_bounds(policy).alias("_length_ok"),
        content.hash(policy.seed).alias("_h1"),
        content.hash(policy.seed + 1).alias("_h2"),
    )


def curation_order(keys: pl.DataFrame, policy: CurationPolicy) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(`order`: the kept rows as `_row` and `_rank` (UInt32, their place in the dataset), and the
    per-source stage counts) from `curation_keys`: field bounds; then, under the card policy, the
    first row of each normalised (input, output) pair in registry order, and the length bounds;
    then the seeded shuffle (rank by `_h1`, `_h2`, ties by position)."""
    stages = [_count_by_source(keys, "after_generation")]
    kept = keys.filter(pl.col("_fits"))
    stages.append(_count_by_source(kept, "after_field_bounds"))
    if policy.global_dedup:
        kept = kept.filter(pl.struct("_input_key", "_output_key").is_first_distinct())
    stages.append(_count_by_source(kept, "after_global_dedup"))
    if policy.length_filter:
        kept = kept.filter(pl.col("_length_ok"))
    stages.append(_count_by_source(kept, "after_length_filter"))
    stage_counts = stages[0]
    for extra in stages[1:]:
        stage_counts = stage_counts.join(extra, on="source", how="left")
    order = kept.sort("_h1", "_h2", "_row").select("_row").with_row_index("_rank")
    return order, stage_counts.fill_null(0).with_columns(pl.col("source").cast(pl.String)).sort("source")


def _rows_in_order(records: pl.LazyFrame, order: pl.DataFrame) -> pl.LazyFrame:
    """The records `order` keeps, in its rank order (the four columns)."""
    return (
        records.with_row_index("_row")
        .join(order.lazy(), on="_row", how="inner")
        .sort("_rank")
        .select(list(RECORD_COLUMNS))
    )


def curate_to_parquet(
    records: Sequence[pl.LazyFrame], policy: CurationPolicy, path: Path, *, bucket_rows: int = 500_000
) -> pl.DataFrame:
    """Curate `records` (each a source's records, lazy, in registry order) into the Parquet file
    `path`; returns the per-source stage counts (`source`, `after_generation`, `after_field_bounds`,
    `after_global_dedup`, `after_length_filter`).

    Streams: one pass computes the narrow keys (`curation_keys`), the order is decided on them in
    memory (tens of bytes a row), then the rows are written in `bucket_rows`-row slices of the
    order, each read by one streaming pass over `records`: memory is one slice, not the dataset.
    """
    import pyarrow.parquet as pq

    merged = _merged(records)
    order, stage_counts = curation_order(curation_keys(merged, policy).collect(engine="streaming"), policy)
    schema = None
    writer = None
    try:
        for start in range(0, max(order.height, 1), bucket_rows):
            part = _rows_in_order(merged, order.slice(start, bucket_rows)).collect(engine="streaming").to_arrow()
            if writer is None:
                schema = part.schema
                writer = pq.ParquetWriter(path, schema, compression="zstd", write_statistics=True)
            writer.write_table(part.cast(schema))
    finally:
        if writer is not None:
            writer.close()
    return stage_counts


def curate(records: pl.DataFrame | Iterable[pl.DataFrame], policy: CurationPolicy) -> CurationResult:
    """Curate in-memory frames (the four columns, in registry order): the dataset and the
    per-source stage counts; the same decisions as `curate_to_parquet`."""
    frames = [records] if isinstance(records, pl.DataFrame) else list(records)
    merged = _merged([as_records(frame).lazy() for frame in frames])
    order, stage_counts = curation_order(curation_keys(merged, policy).collect(), policy)
    return CurationResult(dataset=_rows_in_order(merged, order).collect(), stage_counts=stage_counts)


def funnel_table(
    source_stages: dict[str, dict[str, int]], stage_counts: pl.DataFrame, dataset: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Per source (one row each, then TOTAL): the count at every stage of `FUNNEL_STAGES` (Int64).

    `source_stages`: source id -> counts of `SOURCE_STAGES` reported by the source's asset; a stage a
    source does not have (a record source is not generated) keeps the count of the stage before.
    `stage_counts`: `curate(...).stage_counts`; `dataset`: the curated rows, whose per-source counts
    are `final` (without it, `final` is `after_length_filter`: the shuffle drops no row).
    """
    rows = []
    for source, stages in source_stages.items():
        row, previous = {"source": source}, 0
        for stage in SOURCE_STAGES:
            previous = int(stages.get(stage, previous) or 0) if stage in stages else previous
            row[stage] = previous
        rows.append(row)
    stats = pl.DataFrame(rows, schema={"source": pl.String, **{stage: pl.Int64 for stage in SOURCE_STAGES}})
    if dataset is None:
        final = stage_counts.select("source", pl.col("after_length_filter").alias("final"))
    else:
        final = _count_by_source(dataset.lazy(), "final").collect()
    table = (
        stats.join(stage_counts.drop("after_generation"), on="source", how="full", coalesce=True)
        .join(final, on="source", how="left")
        .fill_null(0)
        .sort("source")
        .select("source", *FUNNEL_STAGES)
    )
    total = table.select(pl.lit("TOTAL").alias("source"), *[pl.col(stage).sum() for stage in FUNNEL_STAGES])
    return pl.concat([table, total])


def funnel_markdown(funnel: pl.DataFrame) -> str:
    """A funnel frame (`funnel_table`: `source`, then one count column per stage) as a Markdown table for
    the UI, one line per source (TOTAL last)."""
    return markdown.table(funnel.columns, funnel.rows())
