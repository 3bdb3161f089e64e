"""Write the release files: Hub-layout Parquet shards and the published-style JSON array."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from medset_dagster.common.hashing import sha256_file
from medset_dagster.dataset.records import RECORD_COLUMNS

JSON_NAME = "medical_training_dataset.json"
DATA_DIR = "data"


@dataclass(frozen=True)
class ReleaseFile:
    path: str  # relative to the release folder, as it will sit in the Hub repo
    bytes: int
    sha256: str


def shard_names(shard_count: int, split: str = "train") -> list[str]:
    return [f"{DATA_DIR}/{split}-{i:05d}-of-{shard_count:05d}.parquet" for i in range(shard_count)]


def _replace_atomically(path: Path, write) -> None:
    """Write to a temporary name then rename, so a crash never leaves a half-written release file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_release_data(dataset: pl.DataFrame, release_dir: Path, max_rows_per_shard: int = 50_000) -> list[ReleaseFile]:
    """Shards `data/train-0000K-of-0000N.parquet` and the JSON array, keys in the published order.

    Shards from an earlier release that this one no longer has are removed.
    """
    release_dir = Path(release_dir)
    dataset = dataset.select(RECORD_COLUMNS)
    shard_count = max(1, math.ceil(dataset.height / max_rows_per_shard))
    names = shard_names(shard_count)
    data_dir = release_dir / DATA_DIR
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in set(p.name for p in data_dir.glob("*.parquet")) - {Path(n).name for n in names}:
        (data_dir / stale).unlink()

    def write_shard(index: int, name: str) -> None:
        shard = dataset.slice(index * max_rows_per_shard, max_rows_per_shard)
        _replace_atomically(release_dir / name, lambda tmp: shard.write_parquet(tmp, compression="zstd", statistics=True))

    # polars releases the GIL while writing: the JSON array and the shards are written side by side.
    with ThreadPoolExecutor(max_workers=2) as pool:
        json_written = pool.submit(_replace_atomically, release_dir / JSON_NAME, lambda tmp: dataset.write_json(tmp))
        for index, name in enumerate(names):
            write_shard(index, name)
        json_written.result()
    return [ReleaseFile(n, (release_dir / n).stat().st_size, sha256_file(release_dir / n)) for n in [*names, JSON_NAME]]
