"""Curation benchmark: our streaming curation vs the published build's Python loops.

Builds N synthetic rows over the real source ids (with duplicates and over-long rows), then in
one run times, each in its own process so peak RSS is its own:
- ours: what `curated_dataset` and `release_files` do: `curate_to_parquet` under the card policy
  (field bounds, global dedup, length filter, seeded shuffle) streamed to Parquet, then
  the export streamed from it (Parquet shards and the JSON array);
- published (at most 1 M rows): Python lists, a set per source for dedup, `random.shuffle`,
  `json.dump(indent=2)`.
Prints rows/s, their ratio, and peak RSS. Targets: >= 5x faster at 1 M rows; at 10 M rows (streaming)
peak RSS <= 3 GB.

    .venv/bin/python benchmarks/curation.py [--rows 1000000] [--streaming-rows 10000000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medset_dagster.dataset.curation import CurationPolicy, curate_to_parquet  # noqa: E402
from medset_dagster.release.export import write_release_data  # noqa: E402
from medset_dagster.sources.registry import SOURCES_BY_ID, dataset_sources  # noqa: E402

WORDS = np.array(
    "patient fever cough pain chest acute chronic dose mg treatment diagnosis blood pressure burn wound "
    "fracture bleeding infection antibiotic heart lung kidney liver symptom therapy emergency".split()
)


def synthetic_rows(n: int, seed: int = 0) -> pl.DataFrame:
    """N rows: ~10% exact duplicates of an earlier input, ~2% outputs over 1,500 characters."""
    rng = np.random.default_rng(seed)
    sources = np.array(sorted(s.source_id for s in dataset_sources()))
    unique = int(n * 0.9)
    question_ids = np.concatenate([np.arange(unique), rng.integers(0, unique, n - unique)])
    words = WORDS[rng.integers(0, len(WORDS), (n, 6))]
    stems = pl.Series([" ".join(w) for w in words])
    frame = pl.DataFrame(
        {
            "qid": question_ids,
            "source": sources[rng.integers(0, len(sources), n)],
            "stem": stems,
            "long": rng.random(n) < 0.02,
        }
    )
    return frame.select(
        pl.format("Question {}: what about {}?", pl.col("qid"), pl.col("stem")).alias("input"),
        pl.lit("").alias("context"),
        pl.when(pl.col("long"))
        .then(pl.concat_str([pl.col("stem")] * 40, separator=" "))  # well over 1,500 characters
        .otherwise(pl.format("Answer for {}: {}.", pl.col("qid"), pl.col("stem")))
        .alias("output"),
        pl.col("source"),
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(rows_path: str, out_dir: str, queue) -> None:
    baseline = peak_rss_mb()
    started = time.perf_counter()
    curated = Path(out_dir) / "curated.parquet"
    curate_to_parquet([pl.scan_parquet(rows_path)], CurationPolicy(name="card"), curated)
    write_release_data(pl.scan_parquet(curated), Path(out_dir) / "ours")
    rows_out = pl.scan_parquet(curated).select(pl.len()).collect().item()
    queue.put({"seconds": time.perf_counter() - started, "rows_out": rows_out, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": baseline})


def run_published(rows_path: str, out_dir: str, queue) -> None:
    by_source: dict[str, list[dict]] = {}
    for row in pl.read_parquet(rows_path).iter_rows(named=True):
        by_source.setdefault(row["source"], []).append(row)
    baseline = peak_rss_mb()
    started = time.perf_counter()
    merged: list[dict] = []
    for source, rows in by_source.items():
        seen: set[str] = set()
        dedup = SOURCES_BY_ID[source].dedup_on == "input"
        for row in rows:
            if dedup:
                if row["input"] in seen:
                    continue
                seen.add(row["input"])
            merged.append({"input": row["input"], "context": row["context"], "output": row["output"], "source": source})
    random.shuffle(merged)
    with open(Path(out_dir) / "published.json", "w", encoding="utf-8") as handle:
        json.dump(merged, handle, indent=2, ensure_ascii=False)
    queue.put({"seconds": time.perf_counter() - started, "rows_out": len(merged), "peak_rss_mb": peak_rss_mb(), "rss_before_mb": baseline})


def measure(target, rows_path: str, out_dir: str) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(rows_path, out_dir, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--streaming-rows", type=int, default=10_000_000, help="0 to skip the streaming run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        rows_path = str(Path(tmp) / "rows.parquet")
        synthetic_rows(args.rows).write_parquet(rows_path)
        print(f"rows: {args.rows:,} synthetic rows over {len(dataset_sources())} source ids (made in {time.perf_counter() - started:.1f} s)")
        ours = measure(run_ours, rows_path, tmp)
        published = measure(run_published, rows_path, tmp)
    for name, result in (("ours (polars, card policy, shards + JSON)", ours), ("published (lists, sets, shuffle, json indent 2)", published)):
        print(
            f"{name}: {result['seconds']:.2f} s, {args.rows / result['seconds']:,.0f} rows/s, "
            f"{result['rows_out']:,} rows out, peak RSS {result['peak_rss_mb']:,.0f} MB "
            f"(of which {result['rss_before_mb']:,.0f} MB held before timing: imports, and for the published approach the input rows)"
        )
    print(f"speed-up: {published['seconds'] / ours['seconds']:.1f}x (target >= 5x)")
    print(f"peak RSS ours: {ours['peak_rss_mb'] / 1024:.2f} GB")
    if args.streaming_rows:
        with tempfile.TemporaryDirectory() as tmp:
            rows_path = str(Path(tmp) / "rows.parquet")
            for part in range(0, args.streaming_rows, 1_000_000):
                synthetic_rows(min(1_000_000, args.streaming_rows - part), seed=part).write_parquet(Path(tmp) / f"rows-{part:09d}.parquet")
            rows_path = str(Path(tmp) / "rows-*.parquet")
            streamed = measure(run_ours, rows_path, tmp)
        print(
            f"streaming, {args.streaming_rows:,} rows: {streamed['seconds']:.1f} s, {args.streaming_rows / streamed['seconds']:,.0f} rows/s, "
            f"{streamed['rows_out']:,} rows out, peak RSS {streamed['peak_rss_mb'] / 1024:.2f} GB (target <= 3 GB)"
        )


if __name__ == "__main__":
    main()
