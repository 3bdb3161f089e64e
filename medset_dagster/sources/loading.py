"""Load a source's native rows with `datasets` and apply its mapper: drop, count, dedup.

One code path for both profiles: `hub_root` is None for the Hub (the path is the repo id and the
revision is honoured) or a local folder that mirrors the Hub repos file for file (sample profile).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from medset_dagster.common.files import is_no_space
from medset_dagster.common.hashing import sha256_text
from medset_dagster.common.hub_client import hub_call, is_transient
from medset_dagster.common.retry import RetryPolicy
from medset_dagster.sources.registry import SourceSpec


class SourceError(RuntimeError):
    """A source cannot be turned into records; the message names the source and what to fix.
    Not transient: retrying the same load cannot help."""


class SourceUnavailable(RuntimeError):
    """The Hub did not answer (5xx, timeouts, dropped connections) through every retry; a later
    attempt may succeed."""


# A load is retried this often on transient Hub failures before the asset's own retry policy.
LOAD_RETRY = RetryPolicy(attempts=4, initial_s=2.0, maximum_s=30.0)


@dataclass
class SourceStats:
    """One source's load, in rows: `rows_read` (native rows of the split), `rows_mapped`, `rows_kept`,
    `dropped` {reason: rows} (`duplicate_<column>` for the dedup)."""

    source_id: str
    rows_read: int
    rows_mapped: int  # after the per-row rules
    rows_kept: int  # after per-source dedup
    dropped: dict[str, int] = field(default_factory=dict)


def dataset_path(spec: SourceSpec, hub_root: Path | None) -> str:
    """What `datasets` loads for the source: its Hub repo id, or with `hub_root` the local mirror folder
    `hub_root/<hub_repo>`. Raises `SourceError` for a source without `hub_repo`."""
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
    """The source's split as a polars frame, with its native column names.

    Column types come from the registry, not from what `datasets` infers from the first rows:
    `spec.features` (the complete schema, for CSV files) is passed to the loader, and every column
    in `spec.text_columns` comes back as String (`text_columns_as_text`). Raises SourceError naming
    the source (and, for a value that cannot be text, the column, file and the value's JSON type).
    """
    import datasets  # imported here: it is slow to import and only the source assets need it

    path = dataset_path(spec, hub_root)
    if hub_root is not None and not Path(path).is_dir():
        raise SourceError(f"{spec.source_id}: local mirror folder {path} does not exist")
    features = datasets.Features({name: datasets.Value(dtype) for name, dtype in spec.features.items()}) if spec.features else None
    where = f"local mirror {path}" if hub_root is not None else f"Hub repo {path}@{revision}"
    builder = None

    def load():
        nonlocal builder
        builder = datasets.load_dataset_builder(
            path,
            name=spec.config,
            data_files=spec.data_files,
            revision=revision if hub_root is None else None,
            cache_dir=str(cache_dir) if cache_dir else None,
            token=token,
            features=features,
            **spec.loader_options,
        )
        builder.download_and_prepare()
        return builder.as_dataset(split=spec.split)

    try:
        # A 503 or a dropped connection from the Hub is worth another try; datasets does not retry them.
        dataset = hub_call(load, what=f"load {spec.source_id} from {where}", policy=LOAD_RETRY, token=token)
    except Exception as error:  # datasets raises many types; name the source whatever it was
        if is_no_space(error):
            raise
        files = _split_files(builder, spec.split) if builder is not None else []
        reason = diagnose_data_files(files) or f"{type(error).__name__}: {error}"
        if is_transient(error):
            raise SourceUnavailable(f"{spec.source_id}: the Hub kept failing while loading split '{spec.split}' from {where}: {reason}") from error
        raise SourceError(f"{spec.source_id}: could not load split '{spec.split}' from {where}: {reason}") from error
    files = _split_files(builder, spec.split)
    rows, json_columns = _arrow_to_polars(dataset.data.table)
    missing = [column for column in spec.required_columns if column not in rows.columns]
    if missing:
        raise SourceError(
            f"{spec.source_id}: column(s) {missing} not found in {path} (found {rows.columns}). "
            "The upstream schema changed: update `required_columns` and the mapper for this source "
            "in medset_dagster/sources/registry.py and mappers.py."
        )
    return text_columns_as_text(spec, rows, json_columns=json_columns, files=files)


def _split_files(builder, split: str) -> list[str]:
    """The data files `builder` resolved for `split` (local paths or hf:// URLs)."""
    data_files = getattr(getattr(builder, "config", None), "data_files", None) or {}
    return [str(file) for name, files in data_files.items() if str(name) == split for file in files]


def diagnose_data_files(files: list[str]) -> str | None:
    """Why a split's data files cannot be read, naming the file: "file X is empty (0 bytes)",
    "file X is not valid JSON: line N column C: ...", "file X is not a Parquet file"; None when
    each file reads (or cannot be looked at: files on the Hub are diagnosed by `datasets` alone)."""
    for name in files:
        local = Path(name)
        if not local.is_file():
            continue
        if local.stat().st_size == 0 or not local.read_bytes().strip():
            return f"file {local} is empty ({local.stat().st_size} bytes)"
        if local.suffix == ".json":
            try:
                json.loads(local.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                return f"file {local} is not valid JSON: line {error.lineno} column {error.colno}: {error.msg}"
        elif local.suffix == ".jsonl":
            for number, line in enumerate(local.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        json.loads(line)
                    except json.JSONDecodeError as error:
                        return f"file {local} is not valid JSON lines: line {number} column {error.colno}: {error.msg}"
        elif local.suffix == ".parquet":
            try:
                pl.read_parquet_schema(local)
            except Exception as error:  # polars names the defect; we name the file
                return f"file {local} is not a readable Parquet file ({type(error).__name__}: {error})"
    return None


def _arrow_to_polars(table) -> tuple[pl.DataFrame, frozenset[str]]:
    """The table as polars; columns `datasets` stored as JSON text (its `Json` feature, for a JSON
    column whose values mix types) come back as their JSON text, and their names are returned."""
    import pyarrow as pa

    json_columns = set()
    for index, field_ in enumerate(table.schema):
        if isinstance(field_.type, pa.BaseExtensionType) and field_.type.extension_name == "arrow.json":
            storage = pa.chunked_array([chunk.storage for chunk in table.column(index).chunks], type=field_.type.storage_type)
            table = table.set_column(index, field_.name, storage)
            json_columns.add(field_.name)
    return pl.from_arrow(table), frozenset(json_columns)


_JSON_KIND = {"{": "object", "[": "array"}


def text_columns_as_text(
    spec: SourceSpec, rows: pl.DataFrame, *, json_columns: frozenset[str] = frozenset(), files: list[str] | None = None
) -> pl.DataFrame:
    """`rows` with every column of `spec.text_columns` as String.

    Numbers and booleans become their text ("7.45", "30"), all-null columns null strings. A column in
    `json_columns` holds JSON texts: JSON strings are decoded, numbers kept as written, JSON null is
    null. An object or array, or a non-scalar column type, cannot be text: SourceError naming the
    source, the column, the file (found among `files`) and the value's type.
    """
    fixed = []
    for column in spec.text_columns:
        if column not in rows.columns:
            continue
        dtype = rows.schema[column]
        values = pl.col(column)
        if column in json_columns:
            first = values.str.strip_chars_start().str.slice(0, 1)
            bad = rows.filter(first.is_in(list(_JSON_KIND)))
            if bad.height:
                kind = _JSON_KIND[bad[column][0].strip()[0]]
                raise _not_text(spec, column, kind, files, repr(bad[column][0][:80]))
            fixed.append(
                pl.when(first == '"')
                .then(values.str.json_decode(pl.String))
                .when(values.str.strip_chars() == "null")
                .then(pl.lit(None, dtype=pl.String))
                .otherwise(values.str.strip_chars())
                .alias(column)
            )
        elif dtype == pl.String:
            continue
        elif dtype == pl.Null or dtype.is_numeric() or dtype == pl.Boolean:
            fixed.append(values.cast(pl.String).alias(column))
        else:
            kind = "array" if isinstance(dtype, (pl.List, pl.Array)) else "object" if isinstance(dtype, pl.Struct) else str(dtype)
            raise _not_text(spec, column, kind, files, f"column type {dtype}")
    return rows.with_columns(fixed) if fixed else rows


def _not_text(spec: SourceSpec, column: str, kind: str, files: list[str] | None, shown: str) -> SourceError:
    where = _file_with_kind(files or [], column, kind)
    return SourceError(
        f"{spec.source_id}: column '{column}' must be text, but {where} holds a JSON {kind} ({shown}). "
        f"Fix the value upstream, or declare the column's type in medset_dagster/sources/registry.py."
    )


def _file_with_kind(files: list[str], column: str, kind: str) -> str:
    """The data file (local JSON or JSON-lines) whose `column` holds a value of `kind`; with no way to
    look inside, the split's files by name. Only called on the failure path."""
    wanted = dict if kind == "object" else list
    for file in files:
        local = Path(file)
        if not local.is_file() or local.suffix not in (".json", ".jsonl"):
            continue
        text = local.read_text(encoding="utf-8")
        try:
            parsed = json.loads(text)
            records = parsed if isinstance(parsed, list) else [parsed]
        except json.JSONDecodeError:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        if any(isinstance(record, dict) and isinstance(record.get(column), wanted) for record in records):
            return f"file {file}"
    return f"file {files[0]}" if len(files) == 1 else f"one of the files {files}"


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
    """`records` with a String column `source` (every row `source_id`) appended, the last record column."""
    return records.with_columns(pl.lit(source_id).alias("source"))


def with_item_ids(items: pl.DataFrame, source_id: str) -> pl.DataFrame:
    """Add `item_id`: a content hash of the item, stable across polars versions and machines."""
    key = pl.concat_str([pl.lit(source_id), "input", "context", "reference"], separator="\x1f")
    ids = key.map_batches(
        lambda keys: pl.Series([sha256_text(k)[:16] for k in keys], dtype=pl.String),
        return_dtype=pl.String,
    )
    return items.select(ids.alias("item_id"), pl.all())
