"""The funnel columns of the three quality stages between the merged records and the release.

Each stage (`near_duplicates`, `decontamination`, `phi`) returns stats with per-source counts; this
joins them into the columns the dataset funnel shows after its own: `after_near_dedup`,
`after_decontamination`, `after_phi`.
"""

from __future__ import annotations

from typing import Mapping

import polars as pl

FUNNEL_COLUMNS = ("after_near_dedup", "after_decontamination", "after_phi")


def quality_funnel(near_duplicate_stats: Mapping, decontamination_stats: Mapping, phi_stats: Mapping) -> pl.DataFrame:
    """Per source: rows after near-duplicate removal, after decontamination, after the PHI policy.

    Inputs are the `stats` of `remove_near_duplicates`, `decontaminate` and `apply_phi_policy`, run
    in that order. Columns: `source` (String), `FUNNEL_COLUMNS` (Int64), sorted by source, then a
    `TOTAL` row. Under the `redact` policy the PHI stage drops no row, so `after_phi` repeats
    `after_decontamination`.
    """
    rows_in = near_duplicate_stats["rows_in_by_source"]
    near = near_duplicate_stats["removed_by_source"]
    decontaminated = decontamination_stats["removed_by_source"]
    dropped = phi_stats["rows_by_source"] if phi_stats["policy"] == "drop" else {}
    rows = []
    for source in sorted(rows_in):
        after_near = rows_in[source] - near.get(source, 0)
        after_decontamination = after_near - decontaminated.get(source, 0)
        rows.append((source, after_near, after_decontamination, after_decontamination - dropped.get(source, 0)))
    table = pl.DataFrame(rows, schema={"source": pl.String, **{c: pl.Int64 for c in FUNNEL_COLUMNS}}, orient="row")
    total = table.select(pl.lit("TOTAL").alias("source"), *[pl.col(c).sum() for c in FUNNEL_COLUMNS])
    return pl.concat([table, total])
