"""The dataset's record schema: four non-null strings, in the published key order."""

from __future__ import annotations

import polars as pl

RECORD_COLUMNS: tuple[str, ...] = ("input", "context", "output", "source")


def as_records(frame: pl.DataFrame) -> pl.DataFrame:
    """Select and order the four record columns, cast to strings."""
    return frame.select([pl.col(name).cast(pl.String) for name in RECORD_COLUMNS])


def markdown_preview(frame: pl.DataFrame, rows: int = 5, width: int = 80) -> str:
    """A Markdown table of the first rows, each cell cut to `width` characters, for the Dagster UI."""
    head = frame.head(rows)
    if head.is_empty():
        return "_no rows_"
    columns = head.columns

    def cell(value: object) -> str:
        text = "" if value is None else str(value)
        text = text.replace("\n", " ").replace("|", "\\|")
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)
