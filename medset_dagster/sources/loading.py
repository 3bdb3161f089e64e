"""Load a source's native rows with `datasets` and apply its mapper: drop, count, dedup.

One code path for both profiles: `hub_root` is None for the Hub (the path is the repo id and the
revision is honoured) or a local folder that mirrors the Hub repos file for file (sample profile).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from medset_dagster.common.hashing import sha256_text
from medset_dagster.sources.registry import SourceSpec


class SourceError(RuntimeError):
    """A source cannot be turned into records; the message names the source and what to fix."""


@dataclass
class SourceStats:
    source_id: str
    rows_read: int
    rows_mapped: int  # after the per-row rules
    rows_kept: int  # after per-source dedup
    dropped: dict[str, int] = field(default_factory=dict)
    revision: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SourceStats":
        return cls(**json.loads(text))


def dataset_path(spec: SourceSpec, hub_root: Path | None) -> str:
    if spec.hub_repo is None:
        raise SourceError(f"{spec.source_id}: not a Hub source")
    return str(hub_root / spec.hub_repo) if hub_root is not None else spec.hub_repo


def load_native_rows(
    spec: SourceSpec,
    *,
    hub_root: Path | None,
    revision: str | None,
    cache_dir: Path | None = None,
    token: str | None = None,
) -> pl.DataFrame:
    """The source's split as a polars frame, with its native column names."""
    import datasets  # imported here: it is slow to import and only the source assets need it

    path = dataset_path(spec, hub_root)
    if hub_root is not None and not Path(path).is_dir():
        raise SourceError(f"{spec.source_id}: local mirror folder {path} does not exist")
    try:
        dataset = datasets.load_dataset(
            path,
            name=spec.config,
            split=spec.split,
            data_files=spec.data_files,
            revision=revision if hub_root is None else None,
            cache_dir=str(cache_dir) if cache_dir else None,
            token=token,
            **spec.loader_options,
        )
    except Exception as error:  # datasets raises many types; name the source whatever it was
        where = f"local mirror {path}" if hub_root is not None else f"Hub repo {path}@{revision}"
        raise SourceError(f"{spec.source_id}: could not load split '{spec.split}' from {where}: {error}") from error
    rows = dataset.to_polars()
    missing = [column for column in spec.required_columns if column not in rows.columns]
    if missing:
        raise SourceError(
            f"{spec.source_id}: column(s) {missing} not found in {path} (found {rows.columns}). "
            "The upstream schema changed: update `required_columns` and the mapper for this source "
            "in medset_dagster/sources/registry.py and mappers.py."
        )
    return rows


def map_source(spec: SourceSpec, rows: pl.DataFrame) -> tuple[pl.DataFrame, SourceStats]:
    """Apply the source's mapper, drop rows that break a rule, then dedup; count every drop."""
    assert spec.mapper is not None, spec.source_id
    try:
        mapped = spec.mapper(rows)
    except Exception as error:
        raise SourceError(f"{spec.source_id}: mapping failed on its native columns: {error}") from error
    reasons = mapped.filter(pl.col("drop_reason").is_not_null()).group_by("drop_reason").len().sort("drop_reason")
    dropped = dict(zip(reasons["drop_reason"].to_list(), reasons["len"].to_list()))
    kept = mapped.filter(pl.col("drop_reason").is_null()).drop("drop_reason")
    rows_mapped = kept.height
    if spec.dedup_on:
        kept = kept.unique(subset=[spec.dedup_on], keep="first", maintain_order=True)
        if rows_mapped - kept.height:
            dropped[f"duplicate_{spec.dedup_on}"] = rows_mapped - kept.height
    stats = SourceStats(
        source_id=spec.source_id,
        rows_read=rows.height,
        rows_mapped=rows_mapped,
        rows_kept=kept.height,
        dropped=dropped,
    )
    return kept, stats


def with_source(records: pl.DataFrame, source_id: str) -> pl.DataFrame:
    return records.with_columns(pl.lit(source_id).alias("source"))


def with_item_ids(items: pl.DataFrame, source_id: str) -> pl.DataFrame:
    """Add `item_id`: a content hash of the item, stable across polars versions and machines."""
    key = pl.concat_str([pl.lit(source_id), "input", "context", "reference"], separator="\x1f")
    ids = key.map_batches(
        lambda keys: pl.Series([sha256_text(k)[:16] for k in keys], dtype=pl.String),
        return_dtype=pl.String,
    )
    return items.select(ids.alias("item_id"), pl.all())
