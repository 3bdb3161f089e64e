"""Tables move between assets as Parquet files through one IO manager.

An asset returns a `pl.DataFrame` (or a `pl.LazyFrame`, streamed to disk with `sink_parquet`, or
the `Path` of a Parquet file it streamed itself, moved into place);
a downstream asset takes it as a typed input: `pl.DataFrame` reads it, `pl.LazyFrame` scans it
lazily, and an input over several partitions of a partitioned asset arrives as
`dict[partition_key, frame]`. Files sit under `<data_dir>/assets/<asset key path>.parquet`, or
`.../<asset key path>/<partition>.parquet`, written to a temporary name and renamed, so a crash or
a full disk leaves the last good copy.

Why our own and not `dagster-polars`: one file layout under the one storage setting, the atomic
write and out-of-space message the rest of the pipeline uses, and nothing pickled.
"""


import os
import time
import typing
from pathlib import Path

import polars as pl
from dagster import (
    ConfigurableIOManager,
    Failure,
    InputContext,
    MetadataValue,
    OutputContext,
    ResourceDependency,
)

from medset_dagster.common.files import NoSpaceLeftError, atomic_write
from medset_dagster.dataset.records import markdown_preview
from medset_dagster.defs.metadata import table_schema
from medset_dagster.defs.resources import PipelineStorage

# `AssetIn(metadata=LAZY)`: load this input as a `pl.LazyFrame` (scan), whatever its annotation.
LAZY = {"polars": "lazy"}


class ParquetIOManager(ConfigurableIOManager):
    """Polars frames as zstd Parquet under `storage.tables_dir`, one file per asset or partition."""

    storage: ResourceDependency[PipelineStorage]

    def table_path(self, asset_path: typing.Sequence[str], partition_key: str | None = None) -> Path:
        """Where the table of an asset (and partition) lives."""
        base = self.storage.tables_dir.joinpath(*asset_path)
        return base / f"{partition_key}.parquet" if partition_key else base.with_name(base.name + ".parquet")

    # -------------------------------------------------------------------------------------- write

    def handle_output(self, context: OutputContext, obj: object) -> None:
        if obj is None:
            return
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        if len(keys) == 1:
            frames = {keys[0]: obj}
        elif isinstance(obj, dict) and set(obj) == set(keys):
            frames = obj
        else:
            raise Failure(
                f"{context.asset_key.to_user_string()}: a run over partitions {keys} must return "
                "{partition_key: frame}, one table per partition"
            )
        for partition, frame in frames.items():
            path = self.table_path(context.asset_key.path, partition)
            started = time.perf_counter()
            self._write(frame, path)
            metadata = {"path": MetadataValue.path(str(path)), "bytes": path.stat().st_size}
            if isinstance(frame, (pl.LazyFrame, Path)):
                # What the asset could not count before its rows were streamed out: read them back.
                written = pl.scan_parquet(path)
                metadata["dagster/row_count"] = written.select(pl.len()).collect().item()
                metadata["dagster/column_schema"] = table_schema(written.collect_schema())
                metadata["preview"] = MetadataValue.md(markdown_preview(written.head(5).collect()))
                metadata["seconds_writing"] = round(time.perf_counter() - started, 3)
            context.add_output_metadata(metadata)

    def _write(self, frame: object, path: Path) -> None:
        if isinstance(frame, Path):
            # A Parquet file the asset wrote itself (streamed): moved into place with one rename.
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(frame, path)
            return
        if isinstance(frame, pl.LazyFrame):
            write = lambda temporary: frame.sink_parquet(temporary, compression="zstd")  # noqa: E731
        elif isinstance(frame, pl.DataFrame):
            write = lambda temporary: frame.write_parquet(temporary, compression="zstd", statistics=True)  # noqa: E731
        else:
            raise Failure(f"the Parquet IO manager stores polars frames, not {type(frame).__name__} ({path})")
        try:
            atomic_write(path, write, folder=self.storage.root)
        except NoSpaceLeftError as error:
            raise Failure(str(error), allow_retries=False) from error

    # --------------------------------------------------------------------------------------- read

    def load_input(self, context: InputContext) -> object:
        wanted = context.dagster_type.typing_type
        # Inputs of a `**kwargs` asset have no annotation: `AssetIn(metadata=LAZY)` asks for a scan.
        lazy = (
            wanted is pl.LazyFrame
            or (typing.get_origin(wanted) is dict and pl.LazyFrame in typing.get_args(wanted))
            or (context.definition_metadata or {}).get("polars") == "lazy"
        )
        key = context.asset_key
        partitions = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        frames = {partition: self._read(key.path, partition, lazy, key.to_user_string()) for partition in partitions}
        if typing.get_origin(wanted) is dict or len(frames) > 1:
            return frames
        return frames[partitions[0]]

    def _read(self, asset_path: typing.Sequence[str], partition: str | None, lazy: bool, name: str) -> object:
        path = self.table_path(asset_path, partition)
        if not path.is_file():
            what = f"{name} partition {partition}" if partition else name
            raise Failure(f"{what} has no table at {path}: materialize it first.", allow_retries=False)
        return pl.scan_parquet(path) if lazy else pl.read_parquet(path)
