"""The dataset's record schema: four non-null strings, in the published key order."""

from __future__ import annotations

import polars as pl

from medset_dagster.common import markdown

RECORD_COLUMNS: tuple[str, ...] = ("input", "context", "output", "source")
# What each column holds: shown in the UI's column schema and on the dataset card.
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "input": "the medical question or scenario",
    "context": "supporting text when there is one (answer options, an encyclopaedia article, "
    "retrieved guideline passages), otherwise empty",
    "output": "the answer",
    "source": "the id of the source the row comes from (the registry's source_id)",
}


def as_records(frame: pl.DataFrame) -> pl.DataFrame:
    """Select and order the four record columns, cast to strings."""
    return frame.select([pl.col(name).cast(pl.String) for name in RECORD_COLUMNS])


def markdown_preview(frame: pl.DataFrame, rows: int = 5, width: int = 80) -> str:
    """A Markdown table of the first `rows` rows, each cell cut to `width` characters, for the UI."""
    head = frame.head(rows)
    if head.is_empty():
        return "_no rows_"
    return markdown.table(head.columns, head.rows(), width=width)
