"""Near-duplicate removal across all sources: MinHash over word n-grams, with LSH (rensa).

Input rows: a polars DataFrame with at least `row_id` (String, unique), `source` (String), `input`
(String) and `output` (String); other columns pass through untouched. Nulls read as empty text.

Method (Broder, "On the resemblance and containment of documents", 1997, for MinHash; Leskovec,
Rajaraman & Ullman, "Mining of Massive Datasets", ch. 3.4, for the banding technique):
1. Each row's text is its normalised `input` and `output` joined by a space; its shingles are the
   hashes of its word n-grams (`ngrams.py`; default n = 5). A row with 1 to n - 1 tokens is one
   shingle; a row with no token is never a near-duplicate.
2. rensa computes a MinHash signature of `num_perm` (128) seeded permutations per row, in one batch
   call over all shingles, and its LSH flags every row that shares at least one of `num_bands` (16)
   bands of `num_perm / num_bands` (8) values with another row: P(flag | Jaccard J) = 1 - (1 - J^8)^16,
   0.95 at J = 0.8 and 0.06 at J = 0.5.
3. The flagged rows' signatures are banded again here to list candidate pairs (each member of a band
   bucket paired with the bucket's first row); a pair is kept when its MinHash estimate of Jaccard
   similarity (the share of equal signature values) is at least `threshold` (0.8).
4. Clusters are the connected components of kept pairs. Within a cluster one row is kept: the best
   source by priority (registry order unless configured), then the first in input order. Every other
   member is removed and listed in the near-duplicates table; nothing is lost.

Everything is deterministic for a given input order and `seed`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import polars as pl

from medset_dagster.common import markdown
from medset_dagster.dataset.ngrams import map_batches, ngram_hashes, segment_tokens

NEAR_DUPLICATE_SCHEMA: dict[str, pl.DataType] = {
    "row_id": pl.String,
    "source": pl.String,
    "cluster_id": pl.Int64,
    "cluster_size": pl.Int64,
    "kept_row_id": pl.String,
    "kept_source": pl.String,
    "similarity": pl.Float64,
}
PREVIEW_CHARS = 100
LARGEST_CLUSTERS = 10
CLUSTERS_PER_SOURCE = 3


@dataclass(frozen=True)
class NearDuplicateConfig:
    """Settings of near-duplicate removal and of its source-loss guard.

    - `ngram`: words per shingle (5);
    - `threshold`: minimum estimated Jaccard similarity of two rows' shingle sets (0.8);
    - `num_perm`, `num_bands`: MinHash permutations (128) and LSH bands (16); `num_perm` must be a
      multiple of `num_bands`;
    - `seed`: seed of the MinHash permutations (42);
    - `source_priority`: source ids, best first, for the keep rule; None = registry order; sources
      not listed rank after the listed ones, by name;
    - `max_source_loss`: share of a source's rows that near-duplicate removal may take before the
      blocking check fails (0.2);
    - `acknowledged_sources`: sources allowed to lose more (a reviewed, deliberate exception).
    """

    ngram: int = 5
    threshold: float = 0.8
    num_perm: int = 128
    num_bands: int = 16
    seed: int = 42
    source_priority: tuple[str, ...] | None = None
    max_source_loss: float = 0.2
    acknowledged_sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise ValueError(f"ngram must be at least 1, got {self.ngram}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.num_bands < 1 or self.num_perm % self.num_bands:
            raise ValueError(f"num_perm ({self.num_perm}) must be a positive multiple of num_bands ({self.num_bands})")

    @property
    def rows_per_band(self) -> int:
        return self.num_perm // self.num_bands

    def priority(self) -> tuple[str, ...]:
        """The source priority in force: the configured one, or the registry's order."""
        if self.source_priority is not None:
            return tuple(self.source_priority)
        from medset_dagster.sources.registry import dataset_source_priority

        return dataset_source_priority()


class NearDuplicateResult(NamedTuple):
    """`kept`: the input rows minus removed ones, input order and columns unchanged.
    `near_duplicates`: one row per removed row, columns `NEAR_DUPLICATE_SCHEMA`, ordered by cluster
    then input order. `stats`: see `remove_near_duplicates`."""

    kept: pl.DataFrame
    near_duplicates: pl.DataFrame
    stats: dict


def _text_fields(rows: pl.DataFrame) -> pl.DataFrame:
    # A plain select shares the frame's buffers; nulls are filled batch by batch, never for the
    # whole frame (a copy of every string would cost as much memory as the text itself).
    return rows.select(pl.col("input").cast(pl.String), pl.col("output").cast(pl.String))


def _batch_shingles(batch: pl.DataFrame, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """uint64 shingle hashes of a batch's rows (text: input, a space, output), concatenated, and
    their uint64 offsets (batch rows + 1,)."""
    text = batch.select(pl.concat_str([pl.col("input").fill_null(""), pl.col("output").fill_null("")], separator=" "))["input"]
    shingles = ngram_hashes(segment_tokens(text), ngram, short_segments=True)
    offsets = np.zeros(batch.height + 1, dtype=np.uint64)
    np.cumsum(np.bincount(shingles.segment, minlength=batch.height), out=offsets[1:])
    return shingles.hashes, offsets


def _shingles(rows: pl.DataFrame, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """uint64 shingle hashes of all rows, concatenated, and uint64 offsets (N + 1,).

    The text is built one batch at a time, never for the whole frame."""
    fields = _text_fields(rows)
    total_bytes = fields.select(pl.col("input").str.len_bytes().sum() + pl.col("output").str.len_bytes().sum()).item() or 0
    flat = np.empty(int(total_bytes) // 2 + rows.height, dtype=np.uint64)  # virtual until written: RSS grows with the fill
    counts = np.zeros(rows.height, dtype=np.int64)
    filled = 0
    for start, batch, (hashes, batch_offsets) in map_batches(fields, lambda batch: _batch_shingles(batch, ngram)):
        flat[filled : filled + hashes.size] = hashes
        filled += hashes.size
        counts[start : start + batch.height] = np.diff(batch_offsets)
    offsets = np.zeros(rows.height + 1, dtype=np.uint64)
    np.cumsum(counts, out=offsets[1:])
    return flat[:filled], offsets


def _signatures(rows: pl.DataFrame, config: NearDuplicateConfig) -> np.ndarray:
    """uint32 (rows, num_perm) MinHash signatures of a few rows (the LSH candidates) through rensa's
    batch API; its only export is Python lists, too slow for every row."""
    import rensa

    flat, offsets = _batch_shingles(_text_fields(rows), config.ngram)
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets, config.num_perm, config.seed)
    values = matrix.to_rows()
    return np.array(values, dtype=np.uint32).reshape(len(values), config.num_perm)


@contextmanager
def _rensa_single_threaded() -> Iterator[None]:
    """Have rensa's thread pool start with one thread, unless the user set RAYON_NUM_THREADS.

    rensa (0.5) copies the whole shingle buffer (8 bytes a shingle, 1.1 GB for 1 M rows) to work on
    several threads, and reads it in place on one; on two cores one thread is about as fast
    (benchmarks/quality.py: 82,000 against 90,000 rows/s) and peaks 0.6 GB lower. rensa links its
    own rayon, whose pool reads the variable once, at its first parallel call: other libraries'
    pools are not affected, and the variable is restored at once."""
    previous = os.environ.get("RAYON_NUM_THREADS")
    if previous is None:
        os.environ["RAYON_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("RAYON_NUM_THREADS", None)


def _candidate_rows(rows: pl.DataFrame, config: NearDuplicateConfig) -> np.ndarray:
    """Indices of rows (with at least one shingle) that share an LSH band with another row (rensa,
    one pass over all rows).

    The shingles of all rows (8 bytes each, about 0.85 bytes a character) are freed once digested,
    before the LSH pass, which needs about as much again; the few candidates are shingled anew."""
    import rensa

    flat, offsets = _shingles(rows, config.ngram)
    has_shingles = np.diff(offsets) > 0
    with _rensa_single_threaded():
        matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets, config.num_perm, config.seed)
    del flat, offsets
    lsh = rensa.RMinHashLSH(config.threshold, config.num_perm, config.num_bands)
    flags = np.fromiter(lsh.query_duplicate_flags_matrix_one_shot(matrix), dtype=bool, count=rows.height)
    return np.flatnonzero(flags & has_shingles)


def _band_pairs(signatures: np.ndarray, config: NearDuplicateConfig) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (a, b), a < b, indices into `signatures`: rows in one band bucket, each
    paired with the bucket's first row."""
    count = signatures.shape[0]
    bands = signatures.reshape(count, config.num_bands, config.rows_per_band).astype(np.uint64)
    with np.errstate(over="ignore"):
        keys = np.zeros((count, config.num_bands), dtype=np.uint64)
        for column in range(config.rows_per_band):
            keys *= np.uint64(0x100000001B3)
            keys += bands[:, :, column] + np.uint64(column + 1)
    band = np.broadcast_to(np.arange(config.num_bands, dtype=np.int64), keys.shape).ravel()
    row = np.broadcast_to(np.arange(count, dtype=np.int64)[:, None], keys.shape).ravel()
    key = keys.ravel()
    order = np.lexsort((row, key, band))
    band, key, row = band[order], key[order], row[order]
    new_bucket = np.ones(row.size, dtype=bool)
    new_bucket[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1])
    head = row[np.maximum.accumulate(np.where(new_bucket, np.arange(row.size), 0))]
    pairs = np.unique(np.stack([head[~new_bucket], row[~new_bucket]], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _estimated_jaccard(signatures: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.size == 0:
        return np.zeros(0, dtype=np.float64)
    return (signatures[a] == signatures[b]).mean(axis=1)


def _priority_rank(sources: pl.Series, priority: Sequence[str]) -> np.ndarray:
    ranks = {source: rank for rank, source in enumerate(priority)}
    others = sorted(set(sources.unique().drop_nulls().to_list()) - set(ranks))
    ranks.update({source: len(priority) + i for i, source in enumerate(others)})
    return sources.replace_strict(ranks, default=len(ranks), return_dtype=pl.Int64).to_numpy()


def _preview(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def remove_near_duplicates(rows: pl.DataFrame, config: NearDuplicateConfig = NearDuplicateConfig()) -> NearDuplicateResult:
    """Remove near-duplicate rows, keeping one per cluster (see the module docstring).

    `rows`: `row_id` (String, unique), `source` (String), `input`, `output` (String), any others.
    Returns `NearDuplicateResult(kept, near_duplicates, stats)`; `stats` holds:
    - `rows_in`, `rows_out`, `removed`, `clusters` (clusters of two or more rows), `candidates` (rows
      flagged by LSH), all int;
    - `rows_in_by_source`, `removed_by_source`: {source: rows}; `removed_share_by_source`: {source:
      share of its rows removed, 0-1};
    - `largest_clusters`: up to 10 of {cluster_id, size, kept_row_id, kept_source, sources {source:
      rows}, preview (first 100 characters of the kept row's input)}, largest first;
    - `largest_clusters_by_source`: {source: up to 3 clusters (same fields) holding its removed rows};
    - `params`: the configuration, with the source priority in force.
    Raises ValueError when a required column is missing or `row_id` repeats.
    """
    missing = [c for c in ("row_id", "source", "input", "output") if c not in rows.columns]
    if missing:
        raise ValueError(f"near-duplicate removal needs columns {missing}; found {rows.columns}")
    if rows["row_id"].n_unique() != rows.height:
        raise ValueError("row_id must be unique")
    priority = config.priority()
    count = rows.height
    labels = np.full(count, -1, dtype=np.int64)
    similarity_to_kept = np.zeros(count, dtype=np.float64)
    candidates = np.zeros(0, dtype=np.int64)
    if count > 1:
        candidates = _candidate_rows(rows, config)
        if candidates.size:
            # The few candidates are shingled again rather than every row's shingles being kept.
            signatures = _signatures(rows[candidates], config)
            a, b = _band_pairs(signatures, config)
            similar = _estimated_jaccard(signatures, a, b) >= config.threshold
            a, b = a[similar], b[similar]
            if a.size:
                from scipy.sparse import coo_matrix
                from scipy.sparse.csgraph import connected_components

                graph = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(candidates.size,) * 2)
                _, component = connected_components(graph, directed=False)
                sizes = np.bincount(component)
                in_cluster = sizes[component] > 1
                members = candidates[in_cluster]
                member_component = component[in_cluster]
                member_signature = signatures[in_cluster]
                rank = _priority_rank(rows["source"], priority)[members]
                order = np.lexsort((members, rank, member_component))
                members, member_component, member_signature = members[order], member_component[order], member_signature[order]
                first = np.ones(members.size, dtype=bool)
                first[1:] = member_component[1:] != member_component[:-1]
                kept_position = np.maximum.accumulate(np.where(first, np.arange(members.size), 0))
                kept_row = members[kept_position]
                labels[members] = kept_row
                similarity_to_kept[members] = (member_signature == member_signature[kept_position]).mean(axis=1)
    return _result(rows, labels, similarity_to_kept, candidates.size, config, priority)


def _result(
    rows: pl.DataFrame,
    kept_of: np.ndarray,
    similarity: np.ndarray,
    candidates: int,
    config: NearDuplicateConfig,
    priority: Sequence[str],
) -> NearDuplicateResult:
    index = np.arange(rows.height)
    removed_mask = (kept_of >= 0) & (kept_of != index)
    annotated = rows.select("row_id", "source", "input").with_columns(
        pl.Series("kept_index", kept_of, dtype=pl.Int64),
        pl.Series("similarity", similarity, dtype=pl.Float64),
        pl.Series("index", index, dtype=pl.Int64),
    )
    clustered = annotated.filter(pl.col("kept_index") >= 0)
    cluster_ids = (
        clustered.select(pl.col("kept_index").unique().sort())
        .with_row_index("cluster_id")
        .with_columns(pl.col("cluster_id").cast(pl.Int64))
    )
    clustered = clustered.join(cluster_ids, on="kept_index", how="left").with_columns(
        pl.len().over("cluster_id").cast(pl.Int64).alias("cluster_size")
    )
    kept_rows = annotated.select(
        pl.col("index").alias("kept_index"), pl.col("row_id").alias("kept_row_id"), pl.col("source").alias("kept_source"), pl.col("input").alias("kept_input")
    )
    clustered = clustered.join(kept_rows, on="kept_index", how="left").sort("cluster_id", "index")
    near_duplicates = clustered.filter(pl.col("index") != pl.col("kept_index")).select(
        [pl.col(name).cast(dtype) for name, dtype in NEAR_DUPLICATE_SCHEMA.items()]
    )
    kept = rows.filter(pl.Series(~removed_mask))
    stats = _stats(rows, clustered, near_duplicates, candidates, config, priority)
    return NearDuplicateResult(kept, near_duplicates, stats)


def _cluster_summaries(clustered: pl.DataFrame) -> pl.DataFrame:
    if clustered.is_empty():
        return pl.DataFrame(schema={"cluster_id": pl.Int64, "size": pl.Int64, "kept_row_id": pl.String, "kept_source": pl.String,
                                    "sources": pl.List(pl.Struct({"source": pl.String, "rows": pl.Int64})), "preview": pl.String})
    per_source = clustered.group_by("cluster_id", "source").agg(pl.len().cast(pl.Int64).alias("rows")).sort("cluster_id", "source")
    sources = per_source.group_by("cluster_id").agg(pl.struct("source", "rows").alias("sources"))
    heads = clustered.group_by("cluster_id").agg(
        pl.len().cast(pl.Int64).alias("size"), pl.col("kept_row_id").first(), pl.col("kept_source").first(), pl.col("kept_input").first()
    )
    return (
        heads.join(sources, on="cluster_id")
        .with_columns(pl.col("kept_input").map_elements(_preview, return_dtype=pl.String).alias("preview"))
        .drop("kept_input")
        .sort(["size", "cluster_id"], descending=[True, False])
    )


def _summary_dicts(frame: pl.DataFrame) -> list[dict]:
    return [
        {**{k: v for k, v in row.items() if k != "sources"}, "sources": {s["source"]: s["rows"] for s in row["sources"]}}
        for row in frame.to_dicts()
    ]


def _stats(
    rows: pl.DataFrame,
    clustered: pl.DataFrame,
    near_duplicates: pl.DataFrame,
    candidates: int,
    config: NearDuplicateConfig,
    priority: Sequence[str],
) -> dict:
    rows_in = dict(rows.group_by("source").len().sort("source").iter_rows())
    removed = dict(near_duplicates.group_by("source").len().sort("source").iter_rows())
    summaries = _cluster_summaries(clustered)
    by_source: dict[str, list[dict]] = {}
    for source in removed:
        ids = near_duplicates.filter(pl.col("source") == source)["cluster_id"].unique()
        top = summaries.filter(pl.col("cluster_id").is_in(ids.implode())).head(CLUSTERS_PER_SOURCE)
        by_source[source] = _summary_dicts(top)
    return {
        "rows_in": rows.height,
        "rows_out": rows.height - near_duplicates.height,
        "removed": near_duplicates.height,
        "clusters": summaries.height,
        "candidates": int(candidates),
        "rows_in_by_source": rows_in,
        "removed_by_source": removed,
        "removed_share_by_source": {s: round(removed.get(s, 0) / n, 6) for s, n in rows_in.items()},
        "largest_clusters": _summary_dicts(summaries.head(LARGEST_CLUSTERS)),
        "largest_clusters_by_source": by_source,
        "params": {**asdict(config), "source_priority": list(priority), "rows_per_band": config.rows_per_band},
    }


def removals_markdown(stats: Mapping) -> str:
    """Markdown table: per source, rows in, removed as near-duplicates, share removed."""
    rows = [
        (source, count, stats["removed_by_source"].get(source, 0), f"{stats['removed_share_by_source'].get(source, 0.0):.1%}")
        for source, count in stats["rows_in_by_source"].items()
    ]
    return markdown.table(["source", "rows in", "near-duplicates removed", "share"], rows)


def clusters_markdown(clusters: Iterable[Mapping]) -> str:
    """Markdown table of cluster summaries (`largest_clusters` entries)."""
    rows = [
        (c["cluster_id"], c["size"], c["kept_source"], ", ".join(f"{s} {n}" for s, n in c["sources"].items()), c["preview"])
        for c in clusters
    ]
    return markdown.table(["cluster", "rows", "kept from", "rows per source", "kept row (preview)"], rows)
