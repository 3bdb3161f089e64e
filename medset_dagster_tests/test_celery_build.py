"""A build through the Celery executor, on a Postgres instance and a Redis broker, gives the same
release as the in-process build.

Both builds are `python -m medset_dagster build` on the sample profile with the same data,
generating through the real `ollama` client against the loopback stand-in; one in-process on a
SQLite instance, one with MEDSET_EXECUTOR=celery, its steps taken by two worker processes (the
first also listens on the `llm` queue). Postgres, Redis and the workers are real processes on
127.0.0.1 (services.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from medset_dagster.defs.generation import TASKS
from medset_dagster.defs.resources import REPO_ROOT
from medset_dagster_tests.servers.ollama_server import FakeOllamaServer
from medset_dagster_tests.services import cluster_services  # noqa: F401 - the session fixture

BUILD_TIMEOUT_S = 600


@dataclass
class LlmServer:
    """One loopback LLM server the build generates through."""

    kind: str
    url: str


# The stand-ins a build generates through. A second server (e.g. an OpenAI-compatible one) is one
# more entry here and one more case in `generator_env`.
LLM_STAND_INS = {"ollama": FakeOllamaServer}


@pytest.fixture(scope="module")
def llm_servers() -> Iterator[list[LlmServer]]:
    """Every stand-in of `LLM_STAND_INS`, started on 127.0.0.1."""
    started, servers = [], []
    try:
        for kind, server_class in LLM_STAND_INS.items():
            server = server_class()
            server.__enter__()
            started.append(server)
            servers.append(LlmServer(kind, server.url))
        yield servers
    finally:
        for server in started:
            server.__exit__(None, None, None)


def generator_env(servers: list[LlmServer]) -> dict[str, str]:
    """The environment that points the sample profile's generator at `servers` (today one
    Ollama server: MEDSET_GENERATOR=ollama and OLLAMA_HOST)."""
    (server,) = servers
    assert server.kind == "ollama", server
    return {"MEDSET_GENERATOR": "ollama", "OLLAMA_HOST": server.url}


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any pipeline, Dagster or Ollama setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDSET_", "DAGSTER_", "OLLAMA_"))}
    return {**env, **extra}


def run_build(env: Mapping[str, str], log: Path) -> float:
    """`python -m medset_dagster build` with `env`; returns its wall time, fails with its log's tail."""
    started = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call([sys.executable, "-m", "medset_dagster", "build"], env=dict(env), cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    assert code == 0, f"build failed ({code}):\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    return elapsed


def release_bytes(data_dir: Path) -> dict[str, bytes]:
    """The release's data files and JSON array, by name."""
    release = (data_dir / "release").resolve()
    files = {f"data/{p.name}": p.read_bytes() for p in sorted((release / "data").iterdir())}
    files["medical_training_dataset.json"] = (release / "medical_training_dataset.json").read_bytes()
    return files


def step_workers(instance: DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> the Celery worker that executed it, from the run's engine events."""
    workers = {}
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        metadata = event.event_specific_data.metadata if event.event_specific_data else {}
        if "Celery worker" in metadata:
            workers[event.step_key] = metadata["Celery worker"].value.split("@")[0]
    return workers


def test_celery_build_on_postgres_and_redis_gives_the_in_process_release(cluster_services, llm_servers, tmp_path, monkeypatch):  # noqa: F811
    base = clean_env(MEDSET_PROFILE="sample", **generator_env(llm_servers))

    # The reference: in-process, on a SQLite instance (.dagster/dagster.yaml).
    sqlite_home = tmp_path / "sqlite_home"
    sqlite_home.mkdir()
    shutil.copy(REPO_ROOT / ".dagster" / "dagster.yaml", sqlite_home / "dagster.yaml")
    in_process_dir = tmp_path / "in_process"
    in_process_s = run_build({**base, "DAGSTER_HOME": str(sqlite_home), "MEDSET_DATA_DIR": str(in_process_dir)}, tmp_path / "in_process.log")

    # Through Celery: two workers, the first also on the `llm` queue.
    celery_dir = tmp_path / "celery"
    celery_env = {**base, **cluster_services.env, "MEDSET_EXECUTOR": "celery", "MEDSET_DATA_DIR": str(celery_dir)}
    with cluster_services.workers(2, celery_env, llm_workers=1) as workers:
        assert [(w.name, w.queues) for w in workers] == [("medset-w1", ("dagster", "llm")), ("medset-w2", ("dagster",))]
        celery_s = run_build(celery_env, tmp_path / "celery.log")
    print(f"\nsample build, same data: in-process {in_process_s:.1f} s, Celery (2 workers, Postgres, Redis) {celery_s:.1f} s")

    # The same release, byte for byte.
    assert release_bytes(celery_dir) == release_bytes(in_process_dir)

    # Every step of every build run ran in a worker; generation steps only on the `llm` worker;
    # the steps of one run were shared by both workers.
    for key, value in cluster_services.env.items():
        monkeypatch.setenv(key, value)
    with DagsterInstance.from_config(cluster_services.env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs(RunsFilter(job_name="build_dataset"))
        assert {run.tags["medset/phase"] for run in runs} == {"upstream", "shard-0", "shard-1", "shard-2", "shard-3", "downstream"}
        assert all(run.status == DagsterRunStatus.SUCCESS for run in runs)
        by_phase: dict[str, dict[str, str]] = {}
        for run in runs:
            executed = {r.dagster_event.step_key for r in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_SUCCESS)}
            workers_of = step_workers(instance, run.run_id)
            assert executed and set(workers_of) == executed, run.tags["medset/phase"]
            by_phase[run.tags["medset/phase"]] = workers_of
        generation_steps = defaultdict(set)
        for workers_of in by_phase.values():
            for step, worker in workers_of.items():
                if step in TASKS:
                    generation_steps[worker].add(step)
        assert set(generation_steps) == {"medset-w1"} and generation_steps["medset-w1"] == set(TASKS)
        assert set(by_phase["upstream"].values()) == {"medset-w1", "medset-w2"}
