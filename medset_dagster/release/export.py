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
    return [f"{DATA_DIR}/{split}-{i:05d}-of-{shard_count:05d}.parquet" for i in range(shard_count)]


def write_parquet_strings(frame: pl.DataFrame, path: Path) -> None:
    """`frame` as zstd Parquet whose text columns are Arrow `string`, not polars' default
    `large_string`: the Hub's `datasets` then gives the Parquet shards and the JSON array the same
    features (`Value("string")`), so the two load and concatenate alike."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = frame.to_arrow()
    schema = pa.schema([pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type) else f.type, nullable=f.nullable) for f in table.schema])
    pq.write_table(table.cast(schema), path, compression="zstd", write_statistics=True)


def write_release_data(dataset: pl.DataFrame, release_dir: Path, max_rows_per_shard: int = 50_000) -> list[ReleaseFile]:
    """Shards `data/train-0000K-of-0000N.parquet` and the JSON array, keys in the published order,
    written into `release_dir` (a new, empty release folder); returns the files written.

    `dataset`: the four String columns of `records.RECORD_COLUMNS`. Each file is written through
    `atomic_write`; a full disk raises `NoSpaceLeftError` naming the file.
    """
    release_dir = Path(release_dir)
    dataset = dataset.select(RECORD_COLUMNS)
    shard_count = max(1, math.ceil(dataset.height / max_rows_per_shard))
    names = shard_names(shard_count)
    (release_dir / DATA_DIR).mkdir(parents=True, exist_ok=True)

    def write_shard(index: int, name: str) -> None:
        shard = dataset.slice(index * max_rows_per_shard, max_rows_per_shard)
        atomic_write(release_dir / name, lambda tmp: write_parquet_strings(shard, tmp))

    # polars releases the GIL while writing: the JSON array and the shards are written side by side.
    with ThreadPoolExecutor(max_workers=2) as pool:
        json_written = pool.submit(atomic_write, release_dir / JSON_NAME, lambda tmp: dataset.write_json(tmp))
        for index, name in enumerate(names):
            write_shard(index, name)
        json_written.result()
    wanted = {*names, JSON_NAME}
    return [f for _, f in list_release_files(release_dir) if f.path in wanted]
