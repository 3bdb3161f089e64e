"""How `make build` and `make publish` run the jobs: through the code location, shard by shard.

- Runs carry the code location's origin (`medset_dagster` in workspace.yaml), so the UI shows
  them on the job's page and the Overview timeline and re-executes them without a warning.
- `build_dataset` runs in phases: the assets upstream of generation, then one run per shard of
  the partitioned generation tasks (so each partition's metadata and data version are its own),
  then everything downstream with the curated dataset's blocking checks.
- Before a build, runs of this machine whose process is gone (killed, OOM) are marked failed and
  their concurrency slots freed, so a crash never blocks the next build; a build holds a lock on
  the data folder, so two builds never write the same release at once.

Run creation and in-process execution use Dagster's internal run API (what `dagster job execute`
does), the only way to give an in-process run its code-location origin.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    RunsFilter,
)

from medset_dagster.defs.resources import REPO_ROOT

LOCATION_NAME = "medset_dagster"
DEFINITIONS_MODULE = "medset_dagster.definitions"
PID_TAG, HOST_TAG, BOOT_TAG = "medset/pid", "medset/host", "medset/process_started"
UNFINISHED = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.CANCELING]


@dataclass(frozen=True)
class Phase:
    """One run of a build: the assets it materializes, and the partition (shard) if any."""

    name: str
    asset_keys: frozenset[AssetKey]
    partition: str | None = None


def build_phases(defs: Definitions, job_name: str = "build_dataset", selection: set[AssetKey] | None = None) -> list[Phase]:
    """The job's assets (or `selection`) split into runs: unpartitioned upstream, each shard of
    the partitioned assets, the rest. Upstream and downstream are relative to the job's partitioned
    assets, whatever the selection holds, so a phase's name says where its assets are. Phases with
    nothing to do are left out."""
    graph = defs.resolve_asset_graph()
    job = defs.resolve_job_def(job_name)
    job_keys = set(job.asset_layer.selected_asset_keys)
    keys = job_keys if selection is None else set(selection)
    every_partitioned = {key for key in job_keys if graph.get(key).partitions_def is not None}
    downstream = set(AssetSelection.assets(*every_partitioned).downstream().resolve(graph)) - every_partitioned if every_partitioned else set()
    partitioned = keys & every_partitioned
    phases = [Phase("upstream", frozenset(keys - partitioned - downstream))]
    partition_keys = sorted({p for key in partitioned for p in graph.get(key).partitions_def.get_partition_keys()})
    phases += [Phase(partition, frozenset(partitioned), partition) for partition in partition_keys]
    phases.append(Phase("downstream", frozenset(keys & downstream)))
    return [phase for phase in phases if phase.asset_keys]


def _process_started(pid: int) -> str:
    """The kernel's start time of `pid` (clock ticks since boot): tells a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_tags() -> dict[str, str]:
    """Tags that let a later build tell whether this run's process is still alive."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), BOOT_TAG: _process_started(os.getpid())}


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not started or _process_started(pid) == started


def recover_dead_runs(instance: DagsterInstance, log=print) -> list[str]:
    """Mark failed every unfinished run started on this machine whose process is gone, and free
    its concurrency slots (the `llm` pool); returns their run ids. Runs of other machines, or
    launched by the daemon's run launcher (run monitoring covers those), are left alone."""
    recovered = []
    for run in instance.get_runs(RunsFilter(statuses=UNFINISHED)):
        pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
        if not pid or host != socket.gethostname() or _alive(int(pid), run.tags.get(BOOT_TAG, "")):
            continue
        instance.report_run_failed(run, f"the process that ran it (pid {pid}) is gone: killed or crashed; marked failed by the next build")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        log(f"Run {run.run_id} ({run.job_name}) was left {run.status.value} by a process that is gone: marked failed, its slots freed.")
        recovered.append(run.run_id)
    return recovered


@contextmanager
def exclusive_build(data_dir: Path) -> Iterator[None]:
    """Hold the data folder's build lock; raise `BuildInProgress` if another build holds it.
    The lock is released by the kernel when the process ends, however it ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir / ".build.lock"
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise BuildInProgress(
                f"another build is writing {data_dir} ({holder}); wait for it to finish. Two builds at once would "
                "write the same release."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class BuildInProgress(RuntimeError):
    """Another build holds the data folder's lock."""


@contextmanager
def instance_from_home() -> Iterator[DagsterInstance]:
    """The instance of `$DAGSTER_HOME` (default: the repo's `.dagster/`), created under a lock so two
    first builds on a new home do not race on its database set-up."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster")))
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".instance.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        instance = DagsterInstance.get()
        fcntl.flock(handle, fcntl.LOCK_UN)
    with instance:
        yield instance


def _op_config(run_config: Mapping | None, ops: set[str]) -> dict:
    """The part of `run_config` that configures ops present in a phase."""
    if not run_config:
        return {}
    return {**run_config, "ops": {name: cfg for name, cfg in run_config.get("ops", {}).items() if name in ops}}


def _remote_origin(job_name: str):
    from dagster._core.remote_origin import (
        ManagedGrpcPythonEnvCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = ManagedGrpcPythonEnvCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            executable_path=sys.executable, module_name=DEFINITIONS_MODULE, working_directory=str(REPO_ROOT)
        ),
        location_name=LOCATION_NAME,
    )
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job_name)


def run_phase(
    defs: Definitions,
    instance: DagsterInstance,
    job_name: str,
    phase: Phase | None,
    *,
    run_config: Mapping | None = None,
    tags: Mapping[str, str] | None = None,
    with_origin: bool = False,
):
    """Execute one run of `job_name` (restricted to `phase`) in this process; returns the
    `JobExecutionResult`. `with_origin` records the code location's origin (the CLI's runs)."""
    job = defs.resolve_job_def(job_name)
    ops = {key.to_python_identifier() for key in (phase.asset_keys if phase else ())}
    run_tags = {**process_tags(), **(tags or {})}
    if phase and phase.partition:
        run_tags["dagster/partition"] = phase.partition
    config = _op_config(run_config, ops) if phase else dict(run_config or {})
    if not with_origin:
        return job.execute_in_process(
            instance=instance,
            run_config=config,
            tags=run_tags,
            asset_selection=sorted(phase.asset_keys, key=str) if phase else None,
            raise_on_error=False,
        )
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import execute_run

    recon_job = ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs", working_directory=str(REPO_ROOT)).get_reconstructable_job(job_name)
    selection = set(phase.asset_keys) if phase else None
    subset = job.get_subset(asset_selection=selection) if selection else job
    run = instance.create_run_for_job(
        job_def=subset,
        run_config=config,
        tags=run_tags,
        asset_selection=frozenset(selection) if selection else None,
        remote_job_origin=_remote_origin(job_name),
        job_code_origin=recon_job.get_python_origin(),
    )
    return execute_run(recon_job, run, instance)


def changed_assets(defs: Definitions, instance: DagsterInstance) -> set[AssetKey]:
    """The assets of `build_dataset` that are stale or missing, and everything downstream of them
    (what "Materialize unsynced" plus its downstream would run)."""
    from medset_dagster.defs.staleness import stale_assets

    graph = defs.resolve_asset_graph()
    keys = set(defs.resolve_job_def("build_dataset").asset_layer.selected_asset_keys)
    roots = set(stale_assets(instance, graph, keys))
    return set(AssetSelection.assets(*roots).downstream().resolve(graph)) & keys if roots else set()


def llm_figures(result) -> dict[str, int]:
    """`llm_calls`, `from_cache` and `failed_from_cache` summed over a run's generation shards
    (each partition's metadata); {} when the run materialized no shard."""
    totals = {"llm_calls": 0, "from_cache": 0, "failed_from_cache": 0}
    seen = False
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        metadata = materialization.metadata
        # Shards only: `generated_records/*` repeat their task's totals.
        if materialization.partition is not None and "llm_calls" in metadata:
            seen = True
            for key in totals:
                totals[key] += int(metadata[key].value) if key in metadata else 0
    return totals if seen else {}


def build(
    defs: Definitions,
    instance: DagsterInstance,
    *,
    run_config: Mapping | None = None,
    selection: set[AssetKey] | None = None,
    with_origin: bool = False,
    log=print,
) -> list:
    """Run `build_dataset` (or the assets in `selection`) phase by phase; stop at the first failed
    run. Returns the results (none when `selection` is empty)."""
    if selection is not None and not selection:
        log("build_dataset: nothing is stale or missing: nothing to build (0 LLM calls, 0 embedding calls)")
        return []
    results = []
    for phase in build_phases(defs, selection=selection):
        started = time.perf_counter()
        result = run_phase(defs, instance, "build_dataset", phase, run_config=run_config, tags={"medset/phase": phase.name}, with_origin=with_origin)
        calls = llm_figures(result)
        llm = f"; LLM calls {calls['llm_calls']:,}, items from the cache {calls['from_cache'] + calls['failed_from_cache']:,}" if calls else ""
        log(f"build_dataset [{phase.name}]: {'succeeded' if result.success else 'FAILED'} in {time.perf_counter() - started:.1f}s (run {result.run_id}){llm}")
        results.append(result)
        if not result.success:
            break
    return results
