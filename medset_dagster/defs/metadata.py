"""Metadata the UI shows for every table an asset writes: counts, schema, preview, path."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import polars as pl
from dagster import MetadataValue, TableColumn, TableSchema

from medset_dagster.common import markdown
from medset_dagster.dataset.records import markdown_preview


def table_metadata(frame: pl.DataFrame, path: Path, preview_rows: int = 5) -> dict:
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": TableSchema(
            columns=[TableColumn(name=name, type=str(dtype)) for name, dtype in frame.schema.items()]
        ),
        "preview": MetadataValue.md(markdown_preview(frame, preview_rows)),
        "path": MetadataValue.path(str(path)),
    }


def drop_metadata(dropped: dict[str, int]) -> dict:
    """Total dropped, a table of reasons, and one plottable number per reason."""
    reasons = markdown.table(["reason", "rows"], sorted(dropped.items()))
    return {
        "rows_dropped": sum(dropped.values()),
        "drop_reasons": MetadataValue.md(reasons if dropped else "_none_"),
        **{f"dropped/{reason}": count for reason, count in sorted(dropped.items())},
    }


def files_table(files: Iterable[tuple[str, int, str]]) -> MetadataValue:
    """Release files as (path, bytes, sha256) rows."""
    rows = [(path, size, markdown.Raw(f"`{sha256[:16]}`")) for path, size, sha256 in files]
    return MetadataValue.md(markdown.table(["file", "bytes", "sha256"], rows))
