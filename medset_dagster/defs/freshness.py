"""What a source change made stale: Dagster's own stale status, closed over the downstream graph.

Dagster marks an asset stale when a parent's data version or its own code version changed since it
was materialized; that does not pass further down until the parent is rematerialized, so a night
after a change rebuilds the stale roots and everything downstream of them, and nothing else.
"""

from dagster import AssetKey, AssetSelection, DagsterInstance
from dagster._core.asset_graph_view.asset_graph_view import (
    AssetGraphView,
    TemporalContext,
)
from dagster._core.definitions.data_version import (
    CachingStaleStatusResolver,
    StaleStatus,
)
from dagster._time import get_current_datetime

NEEDS_WORK = (StaleStatus.STALE, StaleStatus.MISSING)


def _resolver(instance: DagsterInstance, asset_graph) -> CachingStaleStatusResolver:
    # Internal API (the one Dagster's scheduler uses for `stale_assets_only`): no public equivalent.
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=asset_graph,
    )
    return CachingStaleStatusResolver(instance, asset_graph, view)


def stale_or_missing(instance: DagsterInstance, asset_graph, keys) -> set[AssetKey]:
    """The keys (any partition of a partitioned one) that are stale or never materialized."""
    resolver = _resolver(instance, asset_graph)
    found = set()
    for key in keys:
        partitions_def = asset_graph.get(key).partitions_def
        partition_keys = partitions_def.get_partition_keys() if partitions_def else [None]
        if any(resolver.get_status(key, partition) in NEEDS_WORK for partition in partition_keys):
            found.add(key)
    return found


def stale_or_missing_with_downstream(instance: DagsterInstance, asset_graph, job_def) -> set[AssetKey]:
    """Stale or missing assets of the job, plus everything the job holds downstream of them."""
    keys = set(job_def.asset_layer.selected_asset_keys)
    roots = stale_or_missing(instance, asset_graph, keys)
    if not roots:
        return set()
    return set(AssetSelection.assets(*roots).downstream().resolve(asset_graph)) & keys
