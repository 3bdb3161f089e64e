"""What is stale: Dagster's own stale status, behind one function, and what that means for a release.

Dagster marks an asset stale when a parent's data version or its own code version changed since
it was materialized. The automation conditions (automation.py) rebuild on the same signals through
the public API; the publish needs the status itself, to refuse a release built from anything but
the current upstream. No public API answers that in 1.13, so `stale_assets` is the one place that
calls Dagster internals (the resolver behind "Materialize unsynced"); a test fails if they move.
"""

from __future__ import annotations

from dagster import AssetCheckKey, AssetKey, AssetSelection, DagsterInstance

from medset_dagster.defs.metadata import latest_metadata


def stale_assets(instance: DagsterInstance, asset_graph, keys) -> dict[AssetKey, str]:
    """For each of `keys` (any partition of a partitioned one) that is stale or never
    materialized: the reason, as the UI words it ("missing", "code version changed", ...)."""
    from dagster._core.asset_graph_view.asset_graph_view import (
        AssetGraphView,
        TemporalContext,
    )
    from dagster._core.definitions.data_version import (
        CachingStaleStatusResolver,
        StaleStatus,
    )
    from dagster._time import get_current_datetime

    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=asset_graph,
    )
    resolver = CachingStaleStatusResolver(instance, asset_graph, view)
    found: dict[AssetKey, str] = {}
    for key in keys:
        node = asset_graph.get(key)
        if not node.is_materializable:
            continue
        partitions = node.partitions_def.get_partition_keys() if node.partitions_def else [None]
        for partition in partitions:
            status = resolver.get_status(key, partition)
            if status == StaleStatus.MISSING:
                found[key] = f"{partition + ' ' if partition else ''}never materialized"
                break
            if status == StaleStatus.STALE:
                causes = resolver.get_stale_root_causes(key, partition)
                reason = "; ".join(sorted({f"{c.key.asset_key.to_user_string()}: {c.reason}" for c in causes})) or "stale"
                found[key] = f"{partition + ': ' if partition else ''}{reason}"
                break
    return found


def _evaluation_target(record) -> int | None:
    """Storage id of the materialization a check evaluation looked at."""
    event = record.event.dagster_event if record.event else None
    data = getattr(event, "event_specific_data", None) if event else None
    target = getattr(data, "target_materialization_data", None)
    return getattr(target, "storage_id", None)


def failed_blocking_checks(instance: DagsterInstance, asset_graph, key: AssetKey) -> list[str]:
    """Blocking checks of `key` that did not pass on its latest materialization, with why."""
    latest = instance.fetch_materializations(key, limit=1).records
    if not latest:
        return [f"{key.to_user_string()} was never materialized"]
    storage_id = latest[0].storage_id
    problems = []
    for check_key in sorted(asset_graph.get_check_keys_for_assets({key}), key=lambda k: k.name):
        spec = asset_graph.get_check_spec(check_key) if hasattr(asset_graph, "get_check_spec") else None
        if spec is not None and not spec.blocking:
            continue
        record = instance.get_latest_asset_check_evaluation_record(AssetCheckKey(key, check_key.name))
        if record is None or _evaluation_target(record) != storage_id:
            problems.append(f"check {check_key.name} was not evaluated on the latest {key.to_user_string()}")
        elif record.status.value != "SUCCEEDED":
            problems.append(f"check {check_key.name} on {key.to_user_string()} {record.status.value.lower()}")
    return problems


def release_blockers(instance: DagsterInstance, asset_graph, card_key: AssetKey) -> list[str]:
    """Why the current release may not be published: stale or missing assets it was built from
    (the card included), and blocking checks of the curated dataset that did not pass on it."""
    upstream = AssetSelection.assets(card_key).upstream().resolve(asset_graph)
    blockers = [f"{key.to_user_string()} is stale ({why})" for key, why in sorted(stale_assets(instance, asset_graph, upstream).items())]
    blockers += failed_blocking_checks(instance, asset_graph, AssetKey("curated_dataset"))
    card = latest_metadata(instance, card_key)
    if card and not card.get("content_hash"):
        blockers.append(f"{card_key.to_user_string()} recorded no content hash")
    return blockers
