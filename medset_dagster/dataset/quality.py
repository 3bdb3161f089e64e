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
    """Passes when the columns are exactly `input, context, output, source` in that order, all String,
    with no null; `details`: rows and nulls (on a null, `null_columns` {column: nulls})."""
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
    """Passes when every non-null `source` is one of `known` (the registry's dataset source ids);
    `details`: sources found and `unknown_sources` (on failure, `unknown`: the ids)."""
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
    """Passes when no `input` or `output` is null or whitespace only (`context` may be empty); `details`:
    `empty` rows (on failure, `empty_columns` {column: rows})."""
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


def near_duplicate_source_loss(
    stats: Mapping, max_share: float, acknowledged: Iterable[str] = ()
) -> GateResult:
    """No source lost more than `max_share` (0-1) of its rows to near-duplicate removal, except the
    `acknowledged` ones.

    `stats`: the stats of `near_duplicates.remove_near_duplicates` (`rows_in_by_source`,
    `removed_by_source`, `largest_clusters_by_source`). Guards against the known failure where
    clustering short templated text (synthetic_disaster_reports, diseases_symptoms) wipes out a whole
    source. On failure the description names each source with its loss, and `details` holds
    `sources` {source: {rows_in, removed, share, largest_clusters}}.
    """
    acknowledged = set(acknowledged)
    over: dict[str, dict] = {}
    waived: list[str] = []
    for source, rows_in in stats["rows_in_by_source"].items():
        removed = stats["removed_by_source"].get(source, 0)
        share = removed / rows_in if rows_in else 0.0
        if share > max_share:
            if source in acknowledged:
                waived.append(source)
                continue
            over[source] = {
                "rows_in": rows_in,
                "removed": removed,
                "share": round(share, 4),
                "largest_clusters": stats.get("largest_clusters_by_source", {}).get(source, []),
            }
    if over:
        return GateResult(
            False,
            f"near-duplicate removal took more than {max_share:.0%} of "
            + ", ".join(f"{s} ({v['removed']:,} of {v['rows_in']:,}, {v['share']:.0%})" for s, v in over.items())
            + "; review its largest clusters, then raise the threshold or acknowledge the source",
            {"sources": over},
        )
    note = f" (acknowledged: {', '.join(sorted(waived))})" if waived else ""
    return GateResult(True, f"no source lost more than {max_share:.0%} of its rows to near-duplicates{note}", {"acknowledged": sorted(waived)})


def no_benchmark_overlap(release: pl.DataFrame, index, config) -> GateResult:
    """No release row shares an n-gram with a benchmark item (the publish's last word on
    decontamination): `release` needs `row_id`, `source` and the configured text fields; `index` is
    a `decontamination.ContaminationIndex`, `config` a `DecontaminationConfig`. On failure `details`
    holds `matches` (at most 20 of row_id, source, benchmark, item_id, field) and `by_source_benchmark`.
    """
    from medset_dagster.dataset.decontamination import find_contamination

    matches = find_contamination(release, index, config)
    if matches.is_empty():
        return GateResult(True, f"no release row shares a {config.ngram}-gram with {index.items.height:,} benchmark items")
    pairs = matches.select("row_id", "source", "benchmark").unique().group_by("source", "benchmark").len().sort("source", "benchmark")
    return GateResult(
        False,
        f"{matches['row_id'].n_unique():,} release rows share a {config.ngram}-gram with a benchmark item",
        {
            "matches": matches.select("row_id", "source", "benchmark", "item_id", "field").head(20).to_dicts(),
            "by_source_benchmark": [dict(zip(("source", "benchmark", "rows"), r)) for r in pairs.iter_rows()],
        },
    )


def no_phi_remaining(release: pl.DataFrame, config) -> GateResult:
    """No PHI/PII finding remains in the release under the active policy (`config`: a
    `phi.PhiConfig`; `release`: `row_id`, `source` and the configured fields). Redaction
    placeholders such as `[PHONE]` match no detector. On failure `details` holds `by_source_kind`
    {source: {kind: findings}} and `row_ids` (at most 20); never the matched text.
    """
    from medset_dagster.dataset.phi import scan

    findings = scan(release, config)
    if findings.is_empty():
        return GateResult(True, f"no PHI/PII finding in the release ({config.policy} policy, {len(config.kinds)} kinds)")
    by_pair: dict[str, dict[str, int]] = {}
    for source, kind, count in findings.group_by("source", "kind").len().sort("source", "kind").iter_rows():
        by_pair.setdefault(source, {})[kind] = count
    return GateResult(
        False,
        f"{findings.height:,} PHI/PII findings remain in {findings['row_id'].n_unique():,} release rows",
        {"by_source_kind": by_pair, "row_ids": findings["row_id"].unique(maintain_order=True).head(20).to_list()},
    )
