"""Drop reasons: every row a stage removes is counted under a named reason.

Stages return their drops as `{reason: rows}`; these helpers count them from a frame's
`drop_reason` column and merge the counts of several stages or shards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import polars as pl


def drop_counts(frame: pl.DataFrame, column: str = "drop_reason") -> dict[str, int]:
    """`{reason: rows}` over the non-null values of `column` (a String column), sorted by reason."""
    if frame.is_empty() or column not in frame.columns:
        return {}
    counts = frame.filter(pl.col(column).is_not_null()).group_by(column).len().sort(column)
    return dict(zip(counts[column].to_list(), counts["len"].to_list()))


def merge_drops(*counts: Mapping[str, int] | Iterable[tuple[str, int]]) -> dict[str, int]:
    """The sum of several `{reason: rows}` mappings, zero counts left out, sorted by reason."""
    total: Counter[str] = Counter()
    for each in counts:
        total.update(dict(each))
    return {reason: int(rows) for reason, rows in sorted(total.items()) if rows}
