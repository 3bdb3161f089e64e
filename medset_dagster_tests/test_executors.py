"""The executor is chosen by configuration; Celery steps are routed to queues by pool; the workers'
config matches the executor's; the Postgres instance file reads what the local cluster provides."""

from __future__ import annotations

import pytest
import yaml
from dagster import Definitions, asset, define_asset_job, in_process_executor
from dagster._core.execution.api import create_execution_plan
from dagster._core.instance.config import dagster_instance_config
from dagster_celery.cli import get_validated_config

from medset_dagster.definitions import make_definitions
from medset_dagster.defs.executors import (
    CELERY_SETTINGS,
    ExecutorChoiceError,
    celery_executor_config,
    celery_queue_op_tags,
    celery_worker_config,
    executor_from_env,
    k8s_executor_config,
    pool_queues,
    with_queue_tags,
)
from medset_dagster.defs.generation import GENERATION_TASK_ASSETS, TASKS
from medset_dagster.defs.resources import REPO_ROOT
from medset_dagster_tests.services import cluster_module

BROKER = {"MEDSET_CELERY_BROKER": "redis://:secret@127.0.0.1:6379/0"}
QUEUE_TAG = "dagster-celery/queue"


def test_in_process_is_the_default_and_unknown_choices_name_the_options():
    assert executor_from_env({}) is in_process_executor
    assert executor_from_env({"MEDSET_EXECUTOR": "in_process"}) is in_process_executor
    with pytest.raises(ExecutorChoiceError, match=r"MEDSET_EXECUTOR='dask'.*in_process.*celery.*k8s"):
        executor_from_env({"MEDSET_EXECUTOR": "dask"})


def test_celery_needs_a_broker_and_keeps_its_url_out_of_the_config():
    with pytest.raises(ExecutorChoiceError, match="MEDSET_CELERY_BROKER"):
        executor_from_env({"MEDSET_EXECUTOR": "celery"})
    config = celery_executor_config(BROKER)
    # Broker and backend are `env:` sources, resolved when the executor starts: no password here.
    assert config["broker"] == config["backend"] == {"env": "MEDSET_CELERY_BROKER"}
    assert "secret" not in repr(config)
    assert celery_executor_config({**BROKER, "MEDSET_CELERY_BACKEND": "redis://h/1"})["backend"] == {"env": "MEDSET_CELERY_BACKEND"}
    assert config["pool_queues"] == {"llm": "llm"}
    assert config["config_source"]["broker_transport_options"]["visibility_timeout"] >= 6 * 3600


def test_pool_queues_come_from_the_environment():
    assert pool_queues({}) == {"llm": "llm"}
    assert pool_queues({"MEDSET_CELERY_QUEUES": "llm=llm-rack-a, llm-b = llm-rack-b"}) == {"llm": "llm-rack-a", "llm-b": "llm-rack-b"}
    with pytest.raises(ExecutorChoiceError, match="key=value"):
        pool_queues({"MEDSET_CELERY_QUEUES": "llm"})
    assert celery_queue_op_tags("llm", {"MEDSET_CELERY_QUEUES": "llm=llm-rack-a"}) == {QUEUE_TAG: "llm-rack-a"}
    assert celery_queue_op_tags("other", {}) == {}


def test_the_build_job_runs_on_the_chosen_executor_and_observation_stays_in_process(monkeypatch):
    for key, value in {"MEDSET_EXECUTOR": "celery", **BROKER}.items():
        monkeypatch.setenv(key, value)
    defs = make_definitions("sample")
    Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("build_dataset").executor_def.name == "celery"
    assert defs.resolve_job_def("observe_sources").executor_def is in_process_executor
    monkeypatch.delenv("MEDSET_EXECUTOR")
    assert make_definitions("sample").resolve_job_def("build_dataset").executor_def is in_process_executor


def test_k8s_runs_generation_steps_on_the_llm_nodes(monkeypatch):
    environ = {"MEDSET_EXECUTOR": "k8s", "MEDSET_K8S_LLM_NODE_SELECTOR": "medset/llm-group=gpu-a", "MEDSET_K8S_MAX_CONCURRENT": "3"}
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    defs = make_definitions("sample")
    Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("build_dataset").executor_def.name == "k8s"
    config = k8s_executor_config(environ)
    assert config["max_concurrent"] == 3
    assert set(config["per_step_k8s_config"]) == set(TASKS)
    assert config["per_step_k8s_config"]["medqa_explanations"] == {"pod_spec_config": {"node_selector": {"medset/llm-group": "gpu-a"}}}
    assert "per_step_k8s_config" not in k8s_executor_config({})


def test_generation_steps_are_in_the_llm_pool():
    # The Celery executor routes by pool: every generation task must be in pool `llm`.
    assert {assets.op.name for assets in GENERATION_TASK_ASSETS} == set(TASKS)
    assert {assets.op.pool for assets in GENERATION_TASK_ASSETS} == {"llm"}


def _plan_steps(queues: dict[str, str]) -> dict[str, dict]:
    @asset(pool="llm")
    def generated():
        return 1

    @asset(pool="llm", op_tags={QUEUE_TAG: "llm-rack-b"})
    def pinned():
        return 2

    @asset
    def plain(generated, pinned):
        return generated + pinned

    job = Definitions(assets=[generated, pinned, plain], jobs=[define_asset_job("all", "*")]).resolve_job_def("all")
    plan = with_queue_tags(create_execution_plan(job), queues)
    assert plan.get_step_by_key("generated") is plan.step_dict_by_key["generated"]
    return {step.key: dict(step.tags) for step in plan.steps}


def test_queue_tags_follow_the_pool_and_an_op_tag_wins():
    # The one use of Dagster internals in executors.py: fails here if plans or steps change shape.
    tags = _plan_steps({"llm": "llm-rack-a"})
    assert tags["generated"][QUEUE_TAG] == "llm-rack-a"
    assert tags["pinned"][QUEUE_TAG] == "llm-rack-b"
    assert QUEUE_TAG not in tags["plain"]
    assert QUEUE_TAG not in _plan_steps({})["generated"]


def test_workers_get_the_executors_broker_and_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSET_CELERY_BROKER", BROKER["MEDSET_CELERY_BROKER"])
    document = celery_worker_config(BROKER)
    path = tmp_path / "worker.yaml"
    path.write_text(yaml.safe_dump(document))
    # What `dagster-celery worker start -y` reads, validated by its own code.
    validated = get_validated_config(str(path))
    assert validated["broker"] == validated["backend"] == BROKER["MEDSET_CELERY_BROKER"]
    assert validated["config_source"] == CELERY_SETTINGS == celery_executor_config(BROKER)["config_source"]


def test_the_local_cluster_gives_each_worker_its_queues():
    cluster = cluster_module()
    assert cluster.worker_queues(0, 1, {"llm": "llm"}) == ("dagster", "llm")
    assert cluster.worker_queues(1, 1, {"llm": "llm"}) == ("dagster",)
    assert cluster.worker_queues(0, 2, {"llm": "llm-a", "llm-b": "llm-b"}) == ("dagster", "llm-a", "llm-b")


def test_the_postgres_instance_file_is_valid_and_reads_what_the_cluster_writes(tmp_path):
    config, _ = dagster_instance_config(str(REPO_ROOT / "deploy" / "postgres"))  # validates it
    database = config["storage"]["postgres"]["postgres_db"]
    read = {value["env"] for value in database.values() if isinstance(value, dict)}
    service = cluster_module().PostgresService(tmp_path)
    service.port_file.write_text("5433")
    service.password_file.write_text("pw")
    assert read == set(service.env())
    assert database["scheme"] == "postgresql+psycopg2"  # the driver dagster-postgres installs
    # The SQLite instance stays the default of the sample profile.
    assert "storage" not in yaml.safe_load((REPO_ROOT / ".dagster" / "dagster.yaml").read_text())
