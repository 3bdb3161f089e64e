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
from typing import Iterable, Literal

import polars as pl

from medset_dagster.common import markdown
from medset_dagster.common.text import normalised_text
from medset_dagster.dataset.records import as_records

Policy = Literal["card", "published"]
FUNNEL_STAGES = ("loaded", "mapped", "after_source_dedup", "after_global_dedup", "after_length_filter", "final")


@dataclass(frozen=True)
class CurationPolicy:
    name: Policy = "card"
    seed: int = 42
    min_chars: int = 10
    max_chars: int = 1500

    @property
    def global_dedup(self) -> bool:
        return self.name == "card"

    @property
    def length_filter(self) -> bool:
        return self.name == "card"


@dataclass
class CurationResult:
    dataset: pl.DataFrame
    # Per source: rows entering curation, after global dedup, after the length filter.
    stage_counts: pl.DataFrame


def normalised(column: str) -> pl.Expr:
    """Text compared for the global dedup and the no_duplicates gate (String column in, String out):
    NFKC, format characters (zero-width space, soft hyphen, BOM) removed, lower case, every run of
    Unicode whitespace (a single no-break space included) one space, trimmed. See
    `common.text.normalised_text`."""
    return normalised_text(pl.col(column))


def first_of_each_normalised_pair() -> pl.Expr:
    """True for the first row of each normalised (input, output) pair.

    Compares two independent 64-bit hashes rather than the strings: a false match needs both to
    collide (about n^2 / 2^129), and hashing is far cheaper than grouping long strings.
    """
    return pl.struct(normalised("input").hash(1), normalised("output").hash(2)).is_first_distinct()


def shuffled(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Rows ordered by a seeded hash of their content; ties (identical rows) broken by content."""
    return frame.sort([pl.struct(pl.all()).hash(seed), "input", "output"])


def within_length_bounds(policy: CurationPolicy) -> pl.Expr:
    return pl.all_horizontal(
        pl.col(column).str.len_chars().is_between(policy.min_chars, policy.max_chars) for column in ("input", "output")
    )


def _count_by_source(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    return frame.group_by("source").agg(pl.len().cast(pl.Int64).alias(name))


def curate(records: pl.DataFrame | Iterable[pl.DataFrame], policy: CurationPolicy) -> CurationResult:
    """`records` in registry order (dedup keeps the first occurrence), with the four columns."""
    frame = as_records(records if isinstance(records, pl.DataFrame) else pl.concat(list(records), how="vertical"))
    counts = [_count_by_source(frame, "entered")]
    if policy.global_dedup:
        frame = frame.filter(first_of_each_normalised_pair())
    counts.append(_count_by_source(frame, "after_global_dedup"))
    if policy.length_filter:
        frame = frame.filter(within_length_bounds(policy))
    counts.append(_count_by_source(frame, "after_length_filter"))
    dataset = shuffled(frame, policy.seed)
    stage_counts = counts[0]
    for extra in counts[1:]:
        stage_counts = stage_counts.join(extra, on="source", how="left")
    stage_counts = stage_counts.fill_null(0).sort("source")
    return CurationResult(dataset=dataset, stage_counts=stage_counts)


def funnel_table(source_stats: Iterable[dict], stage_counts: pl.DataFrame, dataset: pl.DataFrame) -> pl.DataFrame:
    """Per source: loaded, mapped, after per-source dedup, after global dedup, after length filter, final.

    `source_stats` are the sources' own counts (rows read, mapped, kept); generated sources report
    items requested, outputs that passed validation and rows kept.
    """
    stats = pl.DataFrame(
        [
            {"source": s["source_id"], "loaded": s["rows_read"], "mapped": s["rows_mapped"], "after_source_dedup": s["rows_kept"]}
            for s in source_stats
        ],
        schema={"source": pl.String, "loaded": pl.Int64, "mapped": pl.Int64, "after_source_dedup": pl.Int64},
    )
    final = _count_by_source(dataset, "final")
    table = (
        stats.join(stage_counts.drop("entered"), on="source", how="full", coalesce=True)
        .join(final, on="source", how="left")
        .fill_null(0)
        .sort("source")
        .select("source", *FUNNEL_STAGES)
    )
    total = table.select(pl.lit("TOTAL").alias("source"), *[pl.col(stage).sum() for stage in FUNNEL_STAGES])
    return pl.concat([table, total])


def funnel_markdown(funnel: pl.DataFrame) -> str:
    return markdown.table(funnel.columns, funnel.rows())
