"""Markdown tables for asset metadata in the UI and for the dataset card."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Raw:
    """A cell that is Markdown already (a link, code): written as is."""

    text: str


def cell(value: Any, width: int | None = None) -> str:
    """A table cell: pipes escaped, newlines flattened, ints with thousands separators, text cut
    to `width` characters (with "…") when given."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    text = str(value).replace("\n", " ")
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text.replace("|", "\\|")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None) -> str:
    """A Markdown table; `Raw` cells are written as they are, others through `cell`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(v.text if isinstance(v, Raw) else cell(v, width) for v in row) + " |" for row in rows]
    return "\n".join(lines)
