"""What the UI shows for every asset: counts, schema, previews, drop reasons, and facts read back.

Facts an asset needs from upstream (the stages of the funnel, the settings a generation used) are
read from the upstream asset's latest materialization metadata, not from side files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    MetadataValue,
    TableColumn,
    TableSchema,
)

from medset_dagster.common import markdown
from medset_dagster.dataset.records import COLUMN_DESCRIPTIONS, markdown_preview


def table_schema(schema: Mapping[str, Any]) -> TableSchema:
    """A frame's schema for the UI, with descriptions of the dataset's columns."""
    return TableSchema(
        columns=[TableColumn(name=name, type=str(dtype), description=COLUMN_DESCRIPTIONS.get(name)) for name, dtype in schema.items()]
    )


def table_metadata(frame: pl.DataFrame, preview_rows: int = 5) -> dict[str, Any]:
    """Row count, column schema (with descriptions of the dataset's columns) and a Markdown preview."""
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": table_schema(frame.schema),
        "preview": MetadataValue.md(markdown_preview(frame, preview_rows)),
    }


def drop_metadata(dropped: Mapping[str, int]) -> dict[str, Any]:
    """Total dropped, a table of reasons, and one plottable number per reason (`dropped/<reason>`)."""
    reasons = markdown.table(["reason", "rows"], sorted(dropped.items()))
    return {
        "rows_dropped": int(sum(dropped.values())),
        "drop_reasons": MetadataValue.md(reasons if dropped else "_none_"),
        **{f"dropped/{reason}": int(count) for reason, count in sorted(dropped.items())},
    }


def files_table(files: Iterable[tuple[str, int, str]]) -> MetadataValue:
    """Release files as (path, bytes, sha256) rows."""
    rows = [(path, size, markdown.Raw(f"`{sha256[:16]}`")) for path, size, sha256 in files]
    return MetadataValue.md(markdown.table(["file", "bytes", "sha256"], rows))


def _plain(value: Any) -> Any:
    """A metadata value as plain Python (what was recorded, not its UI wrapper)."""
    return getattr(value, "value", value)


def latest_metadata(instance: DagsterInstance, key: AssetKey | str, partition: str | None = None) -> dict[str, Any]:
    """Metadata of the latest materialization of `key` (or of one partition), values unwrapped;
    `{}` when it was never materialized."""
    key = AssetKey.from_user_string(key) if isinstance(key, str) else key
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return {}
    return {name: _plain(value) for name, value in records[0].asset_materialization.metadata.items()}


def latest_observation(instance: DagsterInstance, key: AssetKey) -> tuple[str | None, dict[str, Any]]:
    """(data version, metadata) of the latest observation of an observable source, or (None, {})."""
    records = instance.fetch_observations(key, limit=1).records
    if not records or records[0].asset_observation is None:
        return None, {}
    observation = records[0].asset_observation
    return observation.tags.get("dagster/data_version"), {name: _plain(v) for name, v in observation.metadata.items()}
