"""Markdown tables for asset metadata in the UI and for the dataset card."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Raw:
    """A cell that is Markdown already (a link, code): written as is."""

    text: str


def cell(value: Any) -> str:
    """A table cell: pipes escaped, newlines flattened, ints with thousands separators."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(v.text if isinstance(v, Raw) else cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
