"""Faults that must fail loudly, name what to fix, and never block or corrupt the next build:
a dead or model-less LLM server, a shrunken source, unreadable source files, a full disk, two
builds at once, a killed build, a crash between release steps, an instance used from elsewhere."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DagsterRunStatus

from medset_dagster.common.files import NoSpaceLeftError, atomic_write
from medset_dagster.definitions import make_definitions
from medset_dagster.defs.generation import GenerationSettings, GeneratorResource
from medset_dagster.defs.launcher import (
    HOST_TAG,
    PID_TAG,
    BuildInProgress,
    build,
    build_phases,
    exclusive_build,
    process_tags,
    recover_dead_runs,
)
from medset_dagster.defs.resources import REPO_ROOT
from medset_dagster.sources.loading import SourceError, load_native_rows
from medset_dagster.sources.registry import SOURCES_BY_ID
from medset_dagster_tests.conftest import make_pipeline, materialized, metadata_of
from medset_dagster_tests.servers.ollama_server import FakeOllamaServer

SMALL = GenerationSettings(scenario_count=4, max_items_per_task=4)


def step_failures(results) -> list[str]:
    return [str(e.event_specific_data.error) for r in results for e in r.all_events if e.event_type_value == "STEP_FAILURE"]


# --- a dead LLM --------------------------------------------------------------------------------


def test_every_chat_call_failing_fails_the_generation_asset_even_with_tiny_shards(tmp_path, instance):
    with FakeOllamaServer() as server:
        server.fail_after(0, "server_error")
        pipeline = make_pipeline(
            tmp_path,
            server.url,
            generation_settings=SMALL,
            generator_backend=GeneratorResource(backend="ollama", ollama_host=server.url, timeout_s=5, max_attempts=1),
        )
        pipeline.observe(instance)
        results = pipeline.build(instance)
    assert not results[-1].success and results[-1].dagster_run.tags["medset/phase"] == "shard-0"
    message = step_failures(results)[0]
    assert "server_error" in message and "max_failure_share" in message and "ollama serve" in message
    assert "curated_dataset" not in materialized(results) and not pipeline.release.exists()


def test_a_model_removed_mid_run_is_not_retried_and_says_ollama_pull(tmp_path, instance):
    with FakeOllamaServer() as server:
        pipeline = make_pipeline(
            tmp_path,
            server.url,
            generation_settings=SMALL,
            generator_backend=GeneratorResource(backend="ollama", ollama_host=server.url, timeout_s=5, max_attempts=3),
        )
        pipeline.observe(instance)
        server.set_fault_predicate(lambda index, body: "missing_model" if index >= 1 else None)
        results = pipeline.build(instance)
        calls = server.calls
    message = step_failures(results)[0]
    assert "ollama pull gemma3n:e4b" in message and "model_not_found" in message
    # No step retry: one attempt of the step, each item tried once (404 is not retried either).
    assert sum(1 for r in results for e in r.all_events if e.event_type_value == "STEP_RESTARTED") == 0
    assert calls <= 8


def test_a_server_that_never_answers_fails_the_step_at_its_deadline(tmp_path, instance):
    with FakeOllamaServer(slow_s=60) as server:
        server.set_fault_predicate(lambda index, body: "slow")
        pipeline = make_pipeline(
            tmp_path,
            server.url,
            generation_settings=GenerationSettings(scenario_count=4, max_items_per_task=4, step_deadline_s=3.0),
            generator_backend=GeneratorResource(backend="ollama", ollama_host=server.url, timeout_s=60, max_attempts=1),
        )
        pipeline.observe(instance)
        started = time.monotonic()
        results = pipeline.build(instance)
        elapsed = time.monotonic() - started
        server.heal()
    message = step_failures(results)[0]
    assert "did not finish within the step's deadline" in message and "step_deadline_s is 3 s" in message
    assert sum(1 for r in results for e in r.all_events if e.event_type_value == "STEP_RESTARTED") == 0
    assert elapsed < 45, elapsed  # the upstream phase plus one 3-second step, not a minute per request


# --- a source that shrinks upstream ----------------------------------------------------------


def test_a_shrunken_source_blocks_every_build_until_acknowledged(tmp_path, ollama, instance):
    from medset_dagster.defs.dataset import QualityGates

    pipeline = make_pipeline(tmp_path, ollama.url, generation_settings=SMALL)
    pipeline.observe_and_build(instance)
    csv = pipeline.mirrors / "QuyenAnhDE" / "Diseases_Symptoms" / "Diseases_Symptoms.csv"
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[:5]))  # 21 data rows become 4
    pipeline.observe(instance)
    for _ in range(2):  # the second identical build must not pass either
        results = pipeline.build(instance)
        assert not results[-1].success
        checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data for e in results[-1].all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
        assert checks["source_counts_steady"].passed is False
        assert "diseases_symptoms 14→" in checks["source_counts_steady"].description
        assert "MEDSET_ACKNOWLEDGE_SHRINK=diseases_symptoms" in checks["source_counts_steady"].description
    acknowledged = pipeline.with_resources(quality_gates=QualityGates(acknowledge_shrink=["diseases_symptoms"]))
    assert all(r.success for r in acknowledged.build(instance))
    assert metadata_of(instance, "release_files")["per_source_counts"]["diseases_symptoms"] < 14


# --- source files that cannot be read ------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[{"Open-ended Verifiable Question": "What is shock?", "Ground-True Answer": "Low perfusion"},\n {"Open-ended', "is not valid JSON: line 2"),
        ("", "is empty (0 bytes)"),
    ],
)
def test_an_unreadable_source_file_is_named_with_the_reason(tmp_path, content, expected):
    spec = SOURCES_BY_ID["medical_o1_verifiable_problem"]
    folder = tmp_path / "hub" / spec.hub_repo
    folder.mkdir(parents=True)
    broken = folder / "medical_o1_verifiable_problem.json"
    broken.write_text(content)
    with pytest.raises(SourceError) as caught:
        load_native_rows(spec, hub_root=tmp_path / "hub", revision=None, cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert "medical_o1_verifiable_problem" in message and str(broken) in message and expected in message


# --- a full disk ---------------------------------------------------------------------------------


def test_out_of_space_names_the_file_and_keeps_the_last_good_copy(tmp_path):
    target = tmp_path / "records.parquet"
    target.write_bytes(b"the last good copy")

    def write_then_fill_the_disk(temporary: Path) -> None:
        temporary.write_bytes(b"half a fi")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(NoSpaceLeftError) as caught:
        atomic_write(target, write_then_fill_the_disk, folder=tmp_path)
    assert "no space left on device" in str(caught.value) and str(target) in str(caught.value)
    assert target.read_bytes() == b"the last good copy"
    assert [p.name for p in tmp_path.iterdir()] == ["records.parquet"], "no temporary file left behind"
    # Libraries that word it their own way (polars, SQLite) are recognised too.
    with pytest.raises(NoSpaceLeftError):
        atomic_write(target, lambda t: (_ for _ in ()).throw(RuntimeError("database or disk is full")))


def test_a_full_disk_fails_the_asset_at_once_naming_file_and_folder(tmp_path, ollama, instance, monkeypatch):
    pipeline = make_pipeline(tmp_path, ollama.url, generation_settings=SMALL)
    pipeline.observe_and_build(instance)
    good = pipeline.storage.tables_dir / "source_records" / "medicationqa.parquet"
    before = good.read_bytes()
    real = pl.DataFrame.write_parquet

    def full_disk(self, file, *args, **kwargs):
        if "medicationqa" in str(file):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, file, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full_disk)
    pipeline.storage.tables_dir.joinpath("source_records", "medicationqa.parquet")  # written by the asset below
    results = pipeline.build(instance, selection={AssetKey.from_user_string("source_records/medicationqa")})
    message = step_failures(results)[0]
    assert "no space left on device" in message and "medicationqa.parquet" in message and str(pipeline.storage.root) in message
    assert sum(1 for r in results for e in r.all_events if e.event_type_value == "STEP_RESTARTED") == 0
    assert good.read_bytes() == before


# --- two builds, a killed build, a crash between release steps ------------------------------------


def test_two_builds_of_one_data_folder_cannot_overlap(tmp_path):
    with exclusive_build(tmp_path):
        with pytest.raises(BuildInProgress, match="another build is writing"):
            with exclusive_build(tmp_path):
                pass
    with exclusive_build(tmp_path):  # released when the first ends
        pass


def test_a_crash_between_release_files_and_the_card_leaves_the_old_release_current(tmp_path, ollama, instance):
    from medset_dagster.release.hub_release import publish_release

    pipeline = make_pipeline(tmp_path, ollama.url, generation_settings=SMALL)
    pipeline.observe_and_build(instance)
    current = pipeline.release.resolve()
    card = (pipeline.release / "README.md").read_bytes()
    # A stricter bound changes the data; the build stops after release_files (as a kill there would).
    config = {"ops": {"curated_dataset": {"config": {"max_chars": 1000}}}}
    everything_but_card = {k for phase in build_phases(pipeline.defs) for k in phase.asset_keys} - {AssetKey("dataset_card")}
    results = build(pipeline.defs, instance, run_config=config, selection=everything_but_card, log=lambda _l: None)
    assert all(r.success for r in results) and "release_files" in materialized(results)
    assert pipeline.release.resolve() == current, "the new data is not current until its card and manifest exist"
    assert (pipeline.release / "README.md").read_bytes() == card
    outcome = publish_release(pipeline.release, repo_id=None, token=None, version_tag="v1")
    assert outcome.status == "dry_run"  # the old release verifies against its build.json


def test_runs_whose_process_is_gone_are_failed_and_free_their_slots(instance):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job = make_definitions("sample").resolve_job_def("observe_sources")
    gone = instance.create_run_for_job(job, status=DagsterRunStatus.STARTED, tags={**process_tags(), PID_TAG: str(dead.pid)})
    alive = instance.create_run_for_job(job, status=DagsterRunStatus.STARTED, tags=process_tags())
    elsewhere = instance.create_run_for_job(job, status=DagsterRunStatus.STARTED, tags={**process_tags(), HOST_TAG: "another-host", PID_TAG: str(dead.pid)})
    assert recover_dead_runs(instance, log=lambda _l: None) == [gone.run_id]
    assert instance.get_run_by_id(gone.run_id).status == DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED
    assert instance.get_run_by_id(elsewhere.run_id).status == DagsterRunStatus.STARTED


def _cli_env(tmp_path: Path, server_url: str, data: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / ".dagster" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDSET_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        MEDSET_DATA_DIR=str(tmp_path / data),
        MEDSET_GENERATOR="ollama",
        OLLAMA_HOST=server_url,
        PYTHONWARNINGS="ignore",
    )
    return env


def _chat_rows(data_dir: Path) -> int:
    path = data_dir / "cache" / "generations.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as connection:
            return connection.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.timeout(600)
def test_a_build_killed_during_generation_never_blocks_the_next_one(tmp_path):
    command = [sys.executable, "-m", "medset_dagster", "build"]
    with FakeOllamaServer(latency_s=0.4) as server:
        # The reference: an uninterrupted build in its own data folder and instance.
        clean = subprocess.run(command, env=_cli_env(tmp_path / "clean", server.url, "data"), cwd=tmp_path, capture_output=True, text=True, timeout=400)
        assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]
        uninterrupted_calls = server.calls
        reference = {p.name: p.read_bytes() for p in (tmp_path / "clean" / "data" / "release" / "data").iterdir()}

        server.reset_counters()
        env = _cli_env(tmp_path / "killed", server.url, "data")
        data_dir = tmp_path / "killed" / "data"
        first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while _chat_rows(data_dir) < 3 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert first.poll() is None, "the build ended before generation"
        first.send_signal(signal.SIGKILL)
        first.wait()
        cached_at_kill = _chat_rows(data_dir)

        second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "marked failed, its slots freed" in second.stdout
    release = {p.name: p.read_bytes() for p in (data_dir / "release" / "data").iterdir()}
    assert release == reference
    # Nothing done twice but the calls in flight when the process died (at most 5 in flight).
    assert server.calls - uninterrupted_calls <= 5, (server.calls, uninterrupted_calls, cached_at_kill)


@pytest.mark.timeout(300)
def test_a_command_run_from_another_folder_uses_the_instance_of_dagster_home(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDSET_", "DAGSTER_"))}
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / ".dagster" / "dagster.yaml", home / "dagster.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env["DAGSTER_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-c", "from dagster import DagsterInstance; i = DagsterInstance.get(); print(i.root_directory); i.get_runs()"],
        env=env, cwd=elsewhere, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(home)
    assert list(elsewhere.iterdir()) == [], "nothing written where the command ran"
    assert (home / "storage").is_dir() or (home / "history").is_dir()


def test_the_failure_share_counts_server_failures_over_every_item_that_reached_the_server():
    from dagster import Failure

    from medset_dagster.defs.generation import check_failure_share
    from medset_dagster.generation.runner import GenerationReport
    from medset_dagster.generation.tasks import TaskOutcome

    class Server:
        backend, model = "ollama", "gemma3n:e4b"

    def outcome(**report) -> TaskOutcome:
        return TaskOutcome(records=pl.DataFrame(), reports=[GenerationReport(results={}, backend="ollama", model="m", digest=None, template_version="v", **report)])

    # A rebuild: 1 item cached, 1 retried and truncated again: the model's fault, not the server's.
    check_failure_share("task shard-0", outcome(from_cache=1, failed_by_reason={"truncated": 1}), Server(), 0.5)
    # Cached items reached the server before: 1 server error out of 3 is within 50%.
    check_failure_share("task shard-0", outcome(from_cache=2, failed_by_reason={"server_error": 1}), Server(), 0.5)
    # Exactly half is allowed; more is not, and the message names the server's reasons only.
    check_failure_share("task shard-0", outcome(generated=1, failed_by_reason={"server_error": 2, "truncated": 1}), Server(), 0.5)
    with pytest.raises(Failure) as caught:
        check_failure_share("task shard-0", outcome(generated=1, failed_by_reason={"server_error": 2, "timeout": 1}), Server(), 0.5)
    assert "3 of 4 items" in str(caught.value) and "server_error 2, timeout 1" in str(caught.value)
    assert "truncated" not in str(caught.value) and caught.value.allow_retries
