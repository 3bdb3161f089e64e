"""Write the release files: Hub-layout Parquet shards and the published-style JSON array."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from medset_dagster.common.files import atomic_write
from medset_dagster.dataset.records import RECORD_COLUMNS
from medset_dagster.release.files import ReleaseFile, list_release_files

JSON_NAME = "medical_training_dataset.json"
DATA_DIR = "data"


def shard_names(shard_count: int, split: str = "train") -> list[str]:
    """The Hub-layout shard names `data/{split}-{i:05d}-of-{shard_count:05d}.parquet` for i in
    0..shard_count-1: what the card's `data/train-*` config reads."""
    return [f"{DATA_DIR}/{split}-{i:05d}-of-{shard_count:05d}.parquet" for i in range(shard_count)]


# Rows per Parquet row group: fixed, so the bytes do not depend on how the engine batches rows.
ROW_GROUP_ROWS = 100_000


def _string_schema(schema):
    """`schema` with large/view string columns as Arrow `string`: the Hub's `datasets` then gives
    the Parquet shards and the JSON array the same features (`Value("string")`)."""
    import pyarrow as pa

    def plain(field):
        text = pa.types.is_large_string(field.type) or pa.types.is_string_view(field.type)
        return pa.field(field.name, pa.string() if text else field.type, nullable=field.nullable)

    return pa.schema([plain(field) for field in schema])


def _fixed_size_batches(frame: pl.LazyFrame, rows: int):
    """The rows of `frame` (streamed) regrouped into DataFrames of exactly `rows` rows (the last
    one shorter), whatever batch sizes the engine yields."""
    pending: list[pl.DataFrame] = []
    count = 0
    for batch in frame.collect_batches():
        pending.append(batch)
        count += batch.height
        while count >= rows:
            joined = pl.concat(pending)
            yield joined.slice(0, rows)
            rest = joined.slice(rows)
            pending, count = ([rest] if rest.height else []), rest.height
    if count:
        yield pl.concat(pending)


def write_parquet_strings(frame: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
    """`frame` streamed to zstd Parquet, row groups of `ROW_GROUP_ROWS`, text columns as Arrow `string`."""
    import pyarrow.parquet as pq

    lazy = frame.lazy()
    schema = _string_schema(lazy.head(0).collect().to_arrow().schema)
    with pq.ParquetWriter(path, schema, compression="zstd", write_statistics=True) as writer:
        for group in _fixed_size_batches(lazy, ROW_GROUP_ROWS):
            writer.write_table(group.to_arrow().cast(schema))


def write_json_array(frame: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
    """`frame` streamed as one JSON array of objects, keys in column order, no whitespace: the
    bytes of polars' `write_json`, written batch by batch (each row encoded in Rust)."""
    first = True
    with open(path, "wb") as out:
        out.write(b"[")
        for batch in frame.lazy().collect_batches():
            encoded = batch.select(pl.struct(pl.all()).struct.json_encode().str.join(",")).item()
            if not encoded:
                continue
            if not first:
                out.write(b",")
            out.write(encoded.encode("utf-8"))
            first = False
        out.write(b"]")


def write_release_data(dataset: pl.DataFrame | pl.LazyFrame, release_dir: Path, max_rows_per_shard: int = 50_000) -> list[ReleaseFile]:
    """Shards `data/train-0000K-of-0000N.parquet` and the JSON array, keys in the published order,
    written into `release_dir` (a new, empty release folder); returns the files written.

    `dataset`: the four String columns of `records.RECORD_COLUMNS`, in memory or lazy (a
    `LazyFrame` is streamed: rows are never all in memory). Each file is written through
    `atomic_write`; a full disk raises `NoSpaceLeftError` naming the file.
    """
    release_dir = Path(release_dir)
    lazy = dataset.lazy().select(RECORD_COLUMNS)
    total = lazy.select(pl.len()).collect().item()
    shard_count = max(1, math.ceil(total / max_rows_per_shard))
    names = shard_names(shard_count)
    (release_dir / DATA_DIR).mkdir(parents=True, exist_ok=True)

    def write_shards() -> None:
        for index, name in enumerate(names):
            shard = lazy.slice(index * max_rows_per_shard, max_rows_per_shard)
            atomic_write(release_dir / name, lambda tmp, shard=shard: write_parquet_strings(shard, tmp))

    # The JSON array and the shards are written side by side: both spend their time in polars and
    # Arrow (Rust and C++, outside the GIL), so on two cores the export takes about the longer one.
    with ThreadPoolExecutor(max_workers=2) as pool:
        json_written = pool.submit(atomic_write, release_dir / JSON_NAME, lambda tmp: write_json_array(lazy, tmp))
        write_shards()
        json_written.result()
    wanted = {*names, JSON_NAME}
    return [f for _, f in list_release_files(release_dir) if f.path in wanted]
