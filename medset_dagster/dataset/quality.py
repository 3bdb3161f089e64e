"""Quality gates on the curated dataset. Each returns a `GateResult`; asset checks wrap them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import polars as pl

from medset_dagster.dataset.curation import (
    CurationPolicy,
    normalised,
    within_length_bounds,
)
from medset_dagster.dataset.records import RECORD_COLUMNS


@dataclass
class GateResult:
    """A gate's verdict: `passed`, one sentence, and `details` (numbers are plotted in the UI)."""

    passed: bool
    description: str
    details: dict = field(default_factory=dict)


def exact_schema(dataset: pl.DataFrame) -> GateResult:
    expected = list(RECORD_COLUMNS)
    if dataset.columns != expected:
        return GateResult(False, f"columns are {dataset.columns}, expected {expected}")
    wrong = {name: str(dtype) for name, dtype in dataset.schema.items() if dtype != pl.String}
    if wrong:
        return GateResult(False, f"non-string columns: {wrong}")
    nulls = {name: n for name, n in zip(dataset.columns, dataset.null_count().row(0)) if n}
    if nulls:
        return GateResult(False, f"null values: {nulls}", {"nulls": sum(nulls.values()), "null_columns": nulls})
    return GateResult(True, "four non-null string columns: input, context, output, source", {"rows": dataset.height, "nulls": 0})


def registered_sources(dataset: pl.DataFrame, known: Iterable[str]) -> GateResult:
    present = set(dataset["source"].unique().drop_nulls().to_list())
    unknown = sorted(present - set(known))
    if unknown:
        return GateResult(False, f"source ids not in the registry: {unknown}", {"unknown_sources": len(unknown), "unknown": unknown})
    return GateResult(True, "every source id is in the registry", {"sources": len(present), "unknown_sources": 0})


def no_duplicates(dataset: pl.DataFrame, policy: CurationPolicy, dedup_on: Mapping[str, str | None]) -> GateResult:
    """Under `card`: no two rows share normalised (input, output). Under `published`: no source
    with a dedup rule repeats its dedup field."""
    if policy.global_dedup:
        keys = dataset.select(normalised("input").alias("i"), normalised("output").alias("o"))
        duplicates = keys.height - keys.unique().height
        what = "normalised (input, output) pairs"
    else:
        duplicates = 0
        for source, column in dedup_on.items():
            if column and column in dataset.columns:
                values = dataset.filter(pl.col("source") == source)[column]
                duplicates += values.len() - values.n_unique()
        what = "per-source dedup fields"
    if duplicates:
        return GateResult(False, f"{duplicates} duplicate {what}", {"duplicates": duplicates})
    return GateResult(True, f"no duplicate {what} under the {policy.name} policy", {"duplicates": 0})


def _length_range(dataset: pl.DataFrame) -> dict[str, int]:
    lengths = dataset.select(*(pl.col(c).str.len_chars().alias(c) for c in ("input", "output")))
    return {
        **{f"min_{c}_chars": int(lengths[c].min() or 0) for c in ("input", "output")},
        **{f"max_{c}_chars": int(lengths[c].max() or 0) for c in ("input", "output")},
    }


def length_bounds(dataset: pl.DataFrame, policy: CurationPolicy) -> GateResult:
    """Under `card`: input and output within `min_chars`..`max_chars` characters."""
    observed = _length_range(dataset)
    if not policy.length_filter:
        return GateResult(True, f"no length bounds under the {policy.name} policy", {"outside": 0, **observed})
    outside = dataset.filter(~within_length_bounds(policy)).height
    bounds = f"{policy.min_chars}-{policy.max_chars} characters"
    if outside:
        return GateResult(False, f"{outside} rows with input or output outside {bounds}", {"outside": outside, **observed})
    return GateResult(True, f"input and output within {bounds}", {"outside": 0, **observed})


def field_bounds(dataset: pl.DataFrame, policy: CurationPolicy) -> GateResult:
    """Under every policy: no field longer than its hard bound (`policy.field_bounds`, characters)."""
    over = {c: dataset.filter(pl.col(c).str.len_chars() > bound).height for c, bound in policy.field_bounds.items()}
    longest = {f"max_{c}_chars": int(dataset[c].str.len_chars().max() or 0) for c in policy.field_bounds}
    bounds = ", ".join(f"{c} {bound:,}" for c, bound in policy.field_bounds.items())
    if any(over.values()):
        listed = ", ".join(f"{n} {c}" for c, n in over.items() if n)
        return GateResult(False, f"fields over their bound ({bounds} characters): {listed}", {"over_bound": sum(over.values()), **longest})
    return GateResult(True, f"every field within its bound ({bounds} characters)", {"over_bound": 0, **longest})


def no_empty_fields(dataset: pl.DataFrame) -> GateResult:
    empty = {
        column: dataset.filter(pl.col(column).is_null() | (pl.col(column).str.strip_chars() == "")).height
        for column in ("input", "output")
    }
    empty = {k: v for k, v in empty.items() if v}
    if empty:
        return GateResult(False, f"empty values: {empty}", {"empty": sum(empty.values()), "empty_columns": empty})
    return GateResult(True, "no empty input or output", {"empty": 0})


def source_counts_steady(
    current: Mapping[str, int],
    previous: Mapping[str, int] | None,
    max_drop_share: float,
    acknowledged: Iterable[str] = (),
) -> GateResult:
    """No source fell more than `max_drop_share` below its count in the last release that passed
    its checks (`previous`), unless listed in `acknowledged` (QualityGates.acknowledge_shrink)."""
    if not previous:
        return GateResult(True, "no earlier release to compare with", {"fallen_sources": 0})
    acknowledged = set(acknowledged)
    fallen, accepted = {}, {}
    for source, before in previous.items():
        now = current.get(source, 0)
        if before and (before - now) / before > max_drop_share:
            (accepted if source in acknowledged else fallen)[source] = {"before": before, "now": now}
    details = {"fallen_sources": len(fallen), **{f"change/{s}": int(current.get(s, 0)) - int(b) for s, b in previous.items()}}
    if fallen:
        return GateResult(
            False,
            f"sources fell more than {max_drop_share:.0%} below the last release that passed its checks: "
            + ", ".join(f"{s} {v['before']}→{v['now']}" for s, v in fallen.items())
            + ". If the shrink is expected, acknowledge it: add the source ids to QualityGates.acknowledge_shrink "
            "(MEDSET_ACKNOWLEDGE_SHRINK=" + ",".join(fallen) + ") and rebuild.",
            {**details, "fallen": fallen},
        )
    note = f" (acknowledged: {', '.join(sorted(accepted))})" if accepted else ""
    return GateResult(True, f"no source fell more than {max_drop_share:.0%} below the last release{note}", details)
