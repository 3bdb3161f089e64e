"""Where the steps of a run execute, chosen by configuration when the definitions load.

`MEDSET_EXECUTOR` selects one of:

- `in_process` (default): every step in the run's own process. On 2 cores a process per step
  spends more time importing dagster, datasets and faiss than most steps take.
- `celery`: every step is a Celery task taken by `dagster-celery` workers on any machine that
  reaches the broker, the instance's Postgres and the data folder. `MEDSET_CELERY_BROKER` is the
  broker URL (Redis: `redis://[:password@]host:port/db`); `MEDSET_CELERY_BACKEND` the result
  backend (default: the broker). Both are read from the environment when the executor starts (a
  Dagster `env:` source), so a password never lands in the definitions or a run's config.
  Steps go to the `dagster` queue, except steps of a concurrency pool listed in
  `MEDSET_CELERY_QUEUES` (`pool=queue,...`, default `llm=llm`): generation steps (pool `llm`) go
  to the queue of their LLM endpoint group, taken by workers started near those servers
  (`dagster-celery worker start -q llm`). An op tag `dagster-celery/queue` on an asset wins over
  its pool's queue (`celery_queue_op_tags`).
- `k8s`: every step is a Kubernetes Job (`dagster-k8s`, the `k8s` extra), inside a run launched
  by the Helm chart's K8sRunLauncher, whose image, env and volumes the step pods inherit.
  `MEDSET_K8S_MAX_CONCURRENT` caps the step pods of one run (default 8);
  `MEDSET_K8S_LLM_NODE_SELECTOR` (`label=value,...`) places generation steps on the nodes next to
  the LLM servers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

from dagster import ExecutorDefinition, Field, Map, executor, in_process_executor
from dagster._core.definitions.executor_definition import (
    multiple_process_executor_requirements,
)
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.step import ExecutionStep
from dagster._core.execution.retries import RetryMode
from dagster_celery.config import DEFAULT_CONFIG
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

EXECUTORS = ("in_process", "celery", "k8s")
DEFAULT_QUEUE = DEFAULT_CONFIG["task_default_queue"]  # "dagster"
DEFAULT_POOL_QUEUES = {"llm": "llm"}
# The generation steps: the assets of pool `llm` (defs/generation.py).
LLM_POOL = "llm"

# Celery settings shared by the executor (the side that submits) and the workers (the side that
# consumes): `celery_worker_config()` writes them into the workers' config file.
CELERY_SETTINGS: dict = {
    # One task at a time per worker process: a step holds a worker until it ends.
    "worker_prefetch_multiplier": 1,
    "broker_transport_options": {
        **DEFAULT_CONFIG["broker_transport_options"],
        # Redis re-delivers a task that is not acknowledged within this time; a generation shard
        # of the full profile runs for hours, so a short value would run it twice.
        "visibility_timeout": 12 * 3600,
    },
    # Step results (their Dagster events) are read once by the run's process.
    "result_expires": 24 * 3600,
}


# dagster-celery defines its `execute_plan` task anew for every step it submits (the same code each
# time); Celery 5.7 warns about the second definition once per run. Nothing is wrong: silence that.
warnings.filterwarnings("ignore", message="Task name 'execute_plan' is already registered to a different callable")


class ExecutorChoiceError(ValueError):
    """The executor settings name no executor, or miss what the chosen one needs."""


def _parse_pairs(name: str, value: str) -> dict[str, str]:
    pairs = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        key, sep, target = (side.strip() for side in item.partition("="))
        if not sep or not key or not target:
            raise ExecutorChoiceError(f"{name}={value!r}: expected `key=value` pairs separated by commas, got {item!r}")
        pairs[key] = target
    return pairs


def pool_queues(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Concurrency pool -> Celery queue, from `MEDSET_CELERY_QUEUES` (default `llm=llm`)."""
    value = environ.get("MEDSET_CELERY_QUEUES", "").strip()
    return _parse_pairs("MEDSET_CELERY_QUEUES", value) if value else dict(DEFAULT_POOL_QUEUES)


def celery_queue_op_tags(pool: str = LLM_POOL, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`op_tags` that send an asset's steps to the Celery queue of `pool`'s LLM endpoint group,
    e.g. `@asset(pool="llm", op_tags=celery_queue_op_tags("llm"))`. Optional: the Celery executor
    already routes every step of a listed pool; the tag shows the queue on the op in the UI and
    keeps the routing with any Celery-based executor. Empty when the pool has no queue."""
    queue = pool_queues(environ).get(pool)
    return {DAGSTER_CELERY_QUEUE_TAG: queue} if queue else {}


def with_queue_tags(plan: ExecutionPlan, queues: Mapping[str, str]) -> ExecutionPlan:
    """`plan` with the `dagster-celery/queue` tag set on every step whose pool has a queue in
    `queues` (a tag already on the op wins). dagster-celery picks each step's queue from that tag.

    The one use of Dagster internals here (execution plans and steps are named tuples), behind one
    function with a test that fails if Dagster changes them."""
    if not queues:
        return plan
    steps = {}
    for handle, step in plan.step_dict.items():
        queue = queues.get(step.pool) if isinstance(step, ExecutionStep) and step.pool else None
        if queue and DAGSTER_CELERY_QUEUE_TAG not in step.tags:
            step = step._replace(tags={**step.tags, DAGSTER_CELERY_QUEUE_TAG: queue})
        steps[handle] = step
    return plan._replace(step_dict=steps, step_dict_by_key={step.key: step for step in steps.values()})


class PoolRoutedCeleryExecutor(CeleryExecutor):
    """dagster-celery's executor, with each pool's steps sent to that pool's queue."""

    def __init__(self, pool_queues: Mapping[str, str], **kwargs):
        super().__init__(**kwargs)
        self.pool_queues = dict(pool_queues)

    def execute(self, plan_context, execution_plan):
        return super().execute(plan_context, with_queue_tags(execution_plan, self.pool_queues))


@executor(
    name="celery",
    config_schema={
        **CELERY_CONFIG,
        "pool_queues": Field(
            Map(str, str),
            is_required=False,
            default_value={},
            description="Celery queue of each concurrency pool's steps (a `dagster-celery/queue` op tag wins).",
        ),
    },
    requirements=multiple_process_executor_requirements(),
)
def pool_routed_celery_executor(init_context) -> PoolRoutedCeleryExecutor:
    """dagster-celery's `celery_executor`, plus `pool_queues`: the queue of each pool's steps."""
    config = init_context.executor_config
    return PoolRoutedCeleryExecutor(
        pool_queues=config["pool_queues"],
        broker=config.get("broker"),
        backend=config.get("backend"),
        include=config.get("include"),
        config_source=config.get("config_source"),
        retries=RetryMode.from_config(config["retries"]),
    )


def _celery_connection(environ: Mapping[str, str]) -> dict:
    if not environ.get("MEDSET_CELERY_BROKER", "").strip():
        raise ExecutorChoiceError(
            "MEDSET_EXECUTOR=celery needs MEDSET_CELERY_BROKER, the broker URL the workers listen to "
            "(e.g. redis://127.0.0.1:6379/0; `make cluster-up` prints it)"
        )
    backend = "MEDSET_CELERY_BACKEND" if environ.get("MEDSET_CELERY_BACKEND", "").strip() else "MEDSET_CELERY_BROKER"
    return {"broker": {"env": "MEDSET_CELERY_BROKER"}, "backend": {"env": backend}, "config_source": CELERY_SETTINGS}


def celery_executor_config(environ: Mapping[str, str] = os.environ) -> dict:
    """The Celery executor's config: broker and backend as `env:` sources, the shared settings,
    and the pool queues."""
    return {**_celery_connection(environ), "pool_queues": pool_queues(environ)}


def celery_worker_config(environ: Mapping[str, str] = os.environ) -> dict:
    """The YAML document for `dagster-celery worker start -y`: the same broker, backend and
    settings as the executor's (the workers' CLI does not know `pool_queues`)."""
    return {"execution": {"config": _celery_connection(environ)}}


def k8s_executor_config(environ: Mapping[str, str] = os.environ) -> dict:
    """The k8s executor's config: a cap on step pods per run, and generation steps on LLM nodes."""
    from medset_dagster.defs.generation import TASKS

    config: dict = {"max_concurrent": int(environ.get("MEDSET_K8S_MAX_CONCURRENT", "8"))}
    selector = _parse_pairs("MEDSET_K8S_LLM_NODE_SELECTOR", environ.get("MEDSET_K8S_LLM_NODE_SELECTOR", ""))
    if selector:
        config["per_step_k8s_config"] = {name: {"pod_spec_config": {"node_selector": selector}} for name in TASKS}
    return config


def executor_from_env(environ: Mapping[str, str] = os.environ) -> ExecutorDefinition:
    """The executor `MEDSET_EXECUTOR` names (default `in_process`), configured from the environment;
    raises `ExecutorChoiceError` naming what to set."""
    choice = environ.get("MEDSET_EXECUTOR", "").strip() or "in_process"
    if choice == "in_process":
        return in_process_executor
    if choice == "celery":
        return pool_routed_celery_executor.configured(celery_executor_config(environ), name="celery")
    if choice == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as error:
            raise ExecutorChoiceError("MEDSET_EXECUTOR=k8s needs dagster-k8s: install the `k8s` extra (pip install '.[k8s]')") from error
        return k8s_job_executor.configured(k8s_executor_config(environ), name="k8s")
    raise ExecutorChoiceError(f"MEDSET_EXECUTOR={choice!r} is not an executor: set it to one of {EXECUTORS}")
