"""The nightly rebuild, declared with Dagster's automation conditions (public API).

- Every `hub_datasets/<id>` is observed when the 02:00 UTC cron tick passes.
- Every pipeline asset is requested when a dependency was updated (a new data version observed
  upstream, or an upstream rebuild in the same tick) or its own code version changed, and not
  while a dependency is missing or in progress. A night whose observations change no data
  version requests nothing.
- The publish (`hub_release`) has no condition: it never runs by itself.

The `nightly_rebuild` sensor evaluates these conditions; it ships stopped (start it in the UI,
Automation tab) and needs the daemon (`dagster dev` runs one).
"""

from __future__ import annotations

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

NIGHTLY_CRON = "0 2 * * *"

NIGHTLY_OBSERVATION = AutomationCondition.cron_tick_passed(NIGHTLY_CRON, "UTC").since_last_handled().with_label(
    "observe at 02:00 UTC"
)

REBUILD_WHEN_STALE = (
    (AutomationCondition.any_deps_updated() | AutomationCondition.code_version_changed()).since_last_handled()
    & ~AutomationCondition.any_deps_missing()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("rebuild when a source or the code changed")

nightly_rebuild = AutomationConditionSensorDefinition(
    name="nightly_rebuild",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.STOPPED,
    description=(
        "Observes every source at 02:00 UTC, then rebuilds exactly what a changed source or "
        "changed code made stale, and everything downstream of it (never the publish)."
    ),
)
