"""Benchmark decontamination: remove every row that shares a word n-gram with a benchmark item.

The rule is GPT-3's (Brown et al., "Language Models are Few-Shot Learners", 2020, section 4 and
appendix C: training documents sharing a 13-gram with a test set were removed), also the default of
NeMo Curator's task decontamination (`max_ngram_size=13`). `DecontaminationConfig.eight_gram()` is the
variant of recent open medical-reasoning datasets: 8-grams, as open-r1's `scripts/decontaminate.py`
(which II-Medical cites for its decontamination), with a minimum share of the item's 8-grams that the
row must contain, so that one stock clinical phrase does not remove a row.

Benchmark items (`items`): `benchmark` (String, registry id), `item_id` (String), `question`
(String), `options` (List[String]), `answer` (String, nullable); each of question, option and answer
is a separate segment, so no n-gram spans two of them, and segments shorter than n contribute none.
Training rows (`rows`): `row_id` (String, unique), `source` (String) and the text fields scanned
(`input`, `context`, `output`); each field is scanned on its own. Tokens and n-gram hashes are those
of `ngrams.py` (normalised words); every reported match is verified on the normalised text, so a
hash collision cannot remove a row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, NamedTuple

import numpy as np
import polars as pl

from medset_dagster.common import markdown
from medset_dagster.dataset.ngrams import (
    iter_batches,
    map_batches,
    ngram_hashes,
    segment_tokens,
    tokens_expr,
)

ITEM_COLUMNS = ("benchmark", "item_id", "question", "options", "answer")
CONTAMINATED_SCHEMA: dict[str, pl.DataType] = {
    "row_id": pl.String,
    "source": pl.String,
    "benchmark": pl.String,
    "item_id": pl.String,
    "field": pl.String,
    "matched_span": pl.String,
    "span_tokens": pl.Int64,
    "match_ratio": pl.Float64,
}
_BITMAP_BITS = 27  # 2^27-bit prefilter (16 MB): a hash absent from the index passes it with p = n / 2^27


@dataclass(frozen=True)
class DecontaminationConfig:
    """- `ngram`: tokens per n-gram (13, GPT-3 and NeMo Curator);
    - `min_match_ratio`: 0 flags a row sharing any n-gram with an item; above 0, the share (0-1) of
      the item's distinct n-grams the row's field must contain;
    - `fields`: the row fields scanned."""

    ngram: int = 13
    min_match_ratio: float = 0.0
    fields: tuple[str, ...] = ("input", "context", "output")

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise ValueError(f"ngram must be at least 1, got {self.ngram}")
        if not 0.0 <= self.min_match_ratio <= 1.0:
            raise ValueError(f"min_match_ratio must be within 0-1, got {self.min_match_ratio}")

    @classmethod
    def eight_gram(cls, min_match_ratio: float = 0.5) -> "DecontaminationConfig":
        """8-grams with a minimum match ratio (see the module docstring)."""
        return cls(ngram=8, min_match_ratio=min_match_ratio)


@dataclass(frozen=True)
class ContaminationIndex:
    """The n-grams of every benchmark item.

    - `ngrams`: `ngram` (UInt64 hash), `benchmark`, `item_id` (String): one row per distinct
      (n-gram, item);
    - `items`: `benchmark`, `item_id` (String), `ngrams` (Int64: distinct n-grams of the item),
      `text` (String: the item's normalised segments, tokens joined by spaces, segments by " | ");
    - `n`: the n-gram length; `hashes`: sorted unique uint64 (H,); `bitmap`: uint64 (2^21,).
    """

    ngrams: pl.DataFrame
    items: pl.DataFrame
    n: int
    hashes: np.ndarray
    bitmap: np.ndarray

    def summary(self) -> dict[str, dict[str, int]]:
        """{benchmark: {items, items_indexed (with at least one n-gram), ngrams}}."""
        per = self.items.group_by("benchmark").agg(
            pl.len().alias("items"), (pl.col("ngrams") > 0).sum().alias("items_indexed"), pl.col("ngrams").sum().alias("ngrams")
        ).sort("benchmark")
        return {r["benchmark"]: {k: int(r[k]) for k in ("items", "items_indexed", "ngrams")} for r in per.to_dicts()}


class DecontaminationResult(NamedTuple):
    """`kept`: rows without a match (order and columns unchanged); `contaminated_rows`: one row per
    (removed row, benchmark item) with columns `CONTAMINATED_SCHEMA`; `stats`: see `decontaminate`."""

    kept: pl.DataFrame
    contaminated_rows: pl.DataFrame
    stats: dict


def _item_segments(items: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise ValueError(f"benchmark items need columns {missing}; found {items.columns}")
    return (
        items.select(
            "benchmark",
            "item_id",
            pl.concat_list(
                pl.col("question").cast(pl.String),
                pl.col("options").cast(pl.List(pl.String)).fill_null([]),
                pl.col("answer").cast(pl.String),
            ).alias("segment"),
        )
        .explode("segment")
        .filter(pl.col("segment").is_not_null() & (pl.col("segment").str.strip_chars() != ""))
    )


def build_index(items: pl.DataFrame, n: int = 13) -> ContaminationIndex:
    """Index every n-gram of every item (see the module docstring for `items`).

    Raises ValueError when a column is missing or an (benchmark, item_id) pair repeats.
    """
    if items.select("benchmark", "item_id").n_unique() != items.height:
        raise ValueError("(benchmark, item_id) must be unique")
    segments = _item_segments(items)
    parts = []
    for start, batch in iter_batches(segments.select("segment")):
        grams = ngram_hashes(segment_tokens(batch["segment"]), n, short_segments=False)
        parts.append(pl.DataFrame({"segment": grams.segment + start, "ngram": grams.hashes}, schema={"segment": pl.Int64, "ngram": pl.UInt64}))
    keyed = segments.select("benchmark", "item_id").with_row_index("segment").with_columns(pl.col("segment").cast(pl.Int64))
    grams = (
        pl.concat(parts) if parts else pl.DataFrame(schema={"segment": pl.Int64, "ngram": pl.UInt64})
    ).join(keyed, on="segment", how="left").select("ngram", "benchmark", "item_id").unique(maintain_order=True)
    counts = grams.group_by("benchmark", "item_id").agg(pl.len().cast(pl.Int64).alias("ngrams"))
    texts = (
        segments.with_columns(tokens_expr(pl.col("segment")).list.join(" ").alias("normalised"))
        .group_by("benchmark", "item_id", maintain_order=True)
        .agg(pl.col("normalised").str.join(" | ").alias("text"))
    )
    item_table = (
        items.select("benchmark", "item_id")
        .join(counts, on=["benchmark", "item_id"], how="left")
        .join(texts, on=["benchmark", "item_id"], how="left")
        .with_columns(pl.col("ngrams").fill_null(0), pl.col("text").fill_null(""))
    )
    hashes = np.unique(grams["ngram"].to_numpy())
    return ContaminationIndex(grams, item_table, n, hashes, _bitmap(hashes))


def _bitmap(hashes: np.ndarray) -> np.ndarray:
    bitmap = np.zeros(1 << (_BITMAP_BITS - 6), dtype=np.uint64)
    top = hashes >> np.uint64(64 - _BITMAP_BITS)
    np.bitwise_or.at(bitmap, (top >> np.uint64(6)).astype(np.int64), np.uint64(1) << (top & np.uint64(63)))
    return bitmap


def _in_index(values: np.ndarray, index: ContaminationIndex) -> np.ndarray:
    """Boolean mask: which uint64 `values` are n-gram hashes of the index."""
    top = values >> np.uint64(64 - _BITMAP_BITS)
    maybe = (index.bitmap[(top >> np.uint64(6)).astype(np.int64)] >> (top & np.uint64(63))) & np.uint64(1)
    mask = maybe.astype(bool)
    candidates = np.flatnonzero(mask)
    if candidates.size and index.hashes.size:
        found = np.searchsorted(index.hashes, values[candidates])
        found = np.minimum(found, index.hashes.size - 1)
        mask[candidates] = index.hashes[found] == values[candidates]
    elif candidates.size:
        mask[:] = False
    return mask


def _hits(rows: pl.DataFrame, index: ContaminationIndex, fields: tuple[str, ...]) -> pl.DataFrame:
    """Every (row, field, token position, n-gram) whose n-gram is in the index."""
    schema = {"row": pl.Int64, "field": pl.Int64, "position": pl.Int64, "ngram": pl.UInt64}

    def scan(batch: pl.DataFrame) -> pl.DataFrame | None:
        stacked = pl.concat([batch[f].cast(pl.String).rename("text") for f in fields])
        grams = ngram_hashes(segment_tokens(stacked), index.n, short_segments=False)
        if grams.hashes.size == 0:
            return None
        mask = _in_index(grams.hashes, index)
        if not mask.any():
            return None
        segment = grams.segment[mask]
        return pl.DataFrame({"row": segment % batch.height, "field": segment // batch.height,
                             "position": grams.position[mask], "ngram": grams.hashes[mask]}, schema=schema)

    found = [hits.with_columns(pl.col("row") + start) for start, _, hits in map_batches(rows.select(*fields), scan) if hits is not None]
    return pl.concat(found) if found else pl.DataFrame(schema=schema)


def find_contamination(
    rows: pl.DataFrame, index: ContaminationIndex, config: DecontaminationConfig = DecontaminationConfig()
) -> pl.DataFrame:
    """The matches of `rows` against `index`: columns `CONTAMINATED_SCHEMA`, one row per (row,
    benchmark item) that passes the rule, with the field holding the longest matched run, that run
    as normalised text (`matched_span`, `span_tokens` tokens) and the share of the item's n-grams
    found in that field (`match_ratio`). Sorted by input order, then benchmark and item.

    Raises ValueError when `index.n` differs from `config.ngram` or a column is missing.
    """
    if index.n != config.ngram:
        raise ValueError(f"the index holds {index.n}-grams, the configuration asks for {config.ngram}-grams")
    missing = [c for c in ("row_id", "source", *config.fields) if c not in rows.columns]
    if missing:
        raise ValueError(f"decontamination needs columns {missing}; found {rows.columns}")
    hits = _hits(rows, index, config.fields)
    if hits.is_empty():
        return pl.DataFrame(schema=CONTAMINATED_SCHEMA)
    matched = hits.join(index.ngrams, on="ngram", how="inner")
    # Longest run of consecutive matching positions per (row, field, item).
    runs = (
        matched.select("row", "field", "benchmark", "item_id", "position", "ngram")
        .unique()
        .sort("row", "field", "benchmark", "item_id", "position")
        .with_columns(
            (pl.col("position") - pl.col("position").shift(1).over("row", "field", "benchmark", "item_id") != 1)
            .fill_null(True)
            .cum_sum()
            .alias("run")
        )
    )
    per_run = runs.group_by("row", "field", "benchmark", "item_id", "run").agg(
        pl.col("position").min().alias("start"), pl.len().alias("length")
    )
    per_field = (
        runs.group_by("row", "field", "benchmark", "item_id").agg(pl.col("ngram").n_unique().alias("distinct"))
        .join(per_run.sort("length", "start", descending=[True, False]).group_by("row", "field", "benchmark", "item_id").first(),
              on=["row", "field", "benchmark", "item_id"])
        .join(index.items.select("benchmark", "item_id", "ngrams", "text"), on=["benchmark", "item_id"], how="left")
        .with_columns((pl.col("distinct") / pl.col("ngrams")).alias("match_ratio"))
    )
    with_text = per_field.with_columns(
        pl.col("field").map_elements(lambda i: config.fields[i], return_dtype=pl.String).alias("field_name")
    )
    texts = rows.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("row"), "row_id", "source", *config.fields).join(
        with_text.select("row").unique(), on="row", how="semi"
    )
    long_texts = texts.unpivot(index=["row", "row_id", "source"], on=list(config.fields), variable_name="field_name", value_name="value")
    spans = (
        with_text.join(long_texts, on=["row", "field_name"], how="left")
        .with_columns(tokens_expr(pl.col("value")).alias("tokens"))
        .with_columns(
            pl.col("tokens").list.slice(pl.col("start"), pl.col("length") + config.ngram - 1).list.join(" ").alias("matched_span"),
            (pl.col("length") + config.ngram - 1).cast(pl.Int64).alias("span_tokens"),
        )
        # Exactness: the span's first n-gram must occur in the item's normalised text.
        .filter(
            pl.col("text").str.contains(
                pl.col("tokens").list.slice(pl.col("start"), config.ngram).list.join(" "), literal=True
            )
        )
        .filter(pl.col("match_ratio") >= config.min_match_ratio)
    )
    best = (
        spans.sort(["row", "benchmark", "item_id", "span_tokens", "field"], descending=[False, False, False, True, False])
        .group_by("row", "benchmark", "item_id", maintain_order=True)
        .first()
    )
    return best.select(
        "row_id", "source", "benchmark", "item_id", pl.col("field_name").alias("field"), "matched_span", "span_tokens",
        pl.col("match_ratio").cast(pl.Float64),
    ).cast(CONTAMINATED_SCHEMA)


def decontaminate(
    rows: pl.DataFrame, index: ContaminationIndex, config: DecontaminationConfig = DecontaminationConfig()
) -> DecontaminationResult:
    """Remove the rows `find_contamination` reports; keep them in `contaminated_rows`.

    `stats`: `rows_in`, `rows_out`, `removed` (int); `removed_by_source` {source: rows};
    `removed_by_source_benchmark` {source: {benchmark: rows}} (a row matching two benchmarks counts
    under each); `index` (`ContaminationIndex.summary()`); `params` (the configuration).
    """
    contaminated = find_contamination(rows, index, config)
    removed_ids = contaminated["row_id"].unique()
    kept = rows.filter(~pl.col("row_id").is_in(removed_ids.implode()))
    removed_rows = contaminated.select("row_id", "source").unique()
    table = contaminated.select("row_id", "source", "benchmark").unique().group_by("source", "benchmark").len().sort("source", "benchmark")
    by_pair: dict[str, dict[str, int]] = {}
    for source, benchmark, count in table.iter_rows():
        by_pair.setdefault(source, {})[benchmark] = count
    stats = {
        "rows_in": rows.height,
        "rows_out": kept.height,
        "removed": rows.height - kept.height,
        "removed_by_source": dict(removed_rows.group_by("source").len().sort("source").iter_rows()),
        "removed_by_source_benchmark": by_pair,
        "index": index.summary(),
        "params": asdict(config),
    }
    return DecontaminationResult(kept, contaminated, stats)


def source_benchmark_table(contaminated_rows: pl.DataFrame, benchmarks: list[str] | None = None) -> pl.DataFrame:
    """Removed rows per source (rows) and benchmark (columns, Int64), plus a `total` column of
    distinct rows; `benchmarks` fixes the columns (default: those with a match, sorted)."""
    pairs = contaminated_rows.select("row_id", "source", "benchmark").unique()
    columns = benchmarks if benchmarks is not None else sorted(pairs["benchmark"].unique().to_list())
    counts = pairs.group_by("source", "benchmark").len()
    sources = sorted(pairs["source"].unique().to_list())
    out = pl.DataFrame({"source": sources}, schema={"source": pl.String})
    for benchmark in columns:
        column = counts.filter(pl.col("benchmark") == benchmark).select("source", pl.col("len").cast(pl.Int64).alias(benchmark))
        out = out.join(column, on="source", how="left")
    totals = pairs.select("row_id", "source").unique().group_by("source").len().select("source", pl.col("len").cast(pl.Int64).alias("total"))
    return out.join(totals, on="source", how="left").fill_null(0).sort("source")


def source_benchmark_markdown(contaminated_rows: pl.DataFrame, benchmarks: list[str] | None = None) -> str:
    """`source_benchmark_table` as Markdown, for asset metadata and the dataset card."""
    table = source_benchmark_table(contaminated_rows, benchmarks)
    if table.is_empty():
        return "_no row shares an n-gram with a benchmark item_"
    return markdown.table(table.columns, table.rows())


def stats_markdown(stats: Mapping) -> str:
    """Markdown: per benchmark, items indexed and n-grams."""
    return markdown.table(
        ["benchmark", "items", "items with an n-gram", "n-grams"],
        [(b, v["items"], v["items_indexed"], v["ngrams"]) for b, v in stats["index"].items()],
    )
