"""Lineage and the nightly rebuild, the publish job against a loopback Hub, and secret hygiene.

Real clients throughout: `huggingface_hub` against the loopback Hub, `ollama` against the Ollama
stand-in, `cohere` against the Cohere stand-in.
"""

import json
import shutil
from pathlib import Path

import pytest
from dagster import (
    EnvVar,
    RunRequest,
    SkipReason,
    build_run_status_sensor_context,
    instance_for_test,
)

from medset_dagster.definitions import make_definitions
from medset_dagster.defs.backends import (
    EmbedderResource,
    GenerationSettings,
    GeneratorResource,
)
from medset_dagster.defs.freshness import stale_or_missing_with_downstream
from medset_dagster.defs.jobs import NIGHTLY_TAG
from medset_dagster.defs.profiles import SAMPLE_DATA
from medset_dagster.defs.release import ReleaseSettings
from medset_dagster.defs.sources import HubDatasets
from medset_dagster.defs.storage import PipelineStorage
from medset_dagster_tests.servers.cohere_server import CohereTestServer
from medset_dagster_tests.servers.hub_server import HubServer
from medset_dagster_tests.servers.ollama_server import FakeOllamaServer

REPO = "medset/medical-training-dataset-test"


@pytest.fixture(scope="module")
def ollama():
    with FakeOllamaServer() as server:
        yield server


def definitions(tmp_path: Path, ollama_url: str, **overrides):
    mirrors = tmp_path / "mirrors"
    if not mirrors.exists():
        shutil.copytree(SAMPLE_DATA / "hub", mirrors)
    resources = {
        "storage": PipelineStorage(data_dir=str(tmp_path / "data")),
        "hub_datasets": HubDatasets(mirror_root=str(mirrors)),
        "generator_backend": GeneratorResource(backend="ollama", ollama_host=ollama_url, timeout_s=10, max_attempts=2),
        "generation_settings": GenerationSettings(scenario_count=4, max_items_per_task=5),
        **overrides,
    }
    return make_definitions("sample", resources), mirrors, resources["storage"]


def home(tmp_path: Path) -> str:
    folder = tmp_path / "home"
    folder.mkdir(exist_ok=True)
    return str(folder)


def materialized_keys(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def observe_and_build(defs, instance):
    assert defs.resolve_job_def("observe_sources").execute_in_process(instance=instance).success
    return defs.resolve_job_def("build_dataset").execute_in_process(instance=instance)


def nightly(defs, instance):
    """The 02:00 schedule's observation run, then the sensor's decision on it."""
    observed = defs.resolve_job_def("observe_sources").execute_in_process(instance=instance, tags={NIGHTLY_TAG: "true"})
    context = build_run_status_sensor_context(
        sensor_name="rebuild_stale_assets",
        dagster_event=observed.get_run_success_event(),
        dagster_instance=instance,
        dagster_run=observed.dagster_run,
        repository_def=defs.get_repository_def(),
    )
    return defs.get_sensor_def("rebuild_stale_assets")(context), observed


def stale(defs, instance) -> set[str]:
    keys = stale_or_missing_with_downstream(instance, defs.resolve_asset_graph(), defs.resolve_job_def("build_dataset"))
    return {key.to_user_string() for key in keys}


def test_a_source_edit_marks_exactly_its_downstream_stale_and_the_night_rebuilds_only_that(tmp_path, ollama):
    defs, mirrors, _ = definitions(tmp_path, ollama.url)
    with instance_for_test(temp_dir=home(tmp_path)) as instance:
        assert observe_and_build(defs, instance).success
        assert stale(defs, instance) == set()

        # A night with no change: the sensor skips, says so on the night's run, and no LLM call is made.
        calls = ollama.calls
        decision, night = nightly(defs, instance)
        assert isinstance(decision, SkipReason)
        assert instance.get_run_by_id(night.run_id).tags["medset/stale_assets"] == "0"
        assert "0 LLM calls" in instance.get_run_by_id(night.run_id).tags["medset/verdict"]

        # Upstream changes one source: a new row in the diseases CSV.
        csv = mirrors / "QuyenAnhDE" / "Diseases_Symptoms" / "Diseases_Symptoms.csv"
        csv.write_text(csv.read_text() + '99,Tonsillitis,"Sore throat, fever and swollen tonsils",Rest and fluids\n')
        decision, _ = nightly(defs, instance)
        expected = {"source_records/diseases_symptoms", "curated_dataset", "release_files", "dataset_card"}
        assert stale(defs, instance) == expected
        assert isinstance(decision, RunRequest)
        assert {key.to_user_string() for key in decision.asset_selection} == expected

        # The nightly rebuild materializes exactly that set, with no LLM call.
        result = defs.resolve_job_def("build_dataset").execute_in_process(
            instance=instance, asset_selection=decision.asset_selection, tags=decision.tags
        )
        assert result.success
        assert materialized_keys(result) == expected
        assert ollama.calls == calls
        assert stale(defs, instance) == set()


def test_a_generation_input_change_regenerates_only_that_task(tmp_path, ollama):
    defs, mirrors, _ = definitions(tmp_path, ollama.url)
    with instance_for_test(temp_dir=home(tmp_path)) as instance:
        assert observe_and_build(defs, instance).success
        jsonl = mirrors / "gretelai" / "symptom_to_diagnosis" / "train.jsonl"
        rows = jsonl.read_text().splitlines()
        first = json.loads(rows[0])
        first["input_text"] = "I have had a high fever, a rash and pain behind my eyes since yesterday."
        jsonl.write_text("\n".join([json.dumps(first), *rows[1:]]) + "\n")
        assert defs.resolve_job_def("observe_sources").execute_in_process(instance=instance).success
        assert stale(defs, instance) == {
            "generation_inputs/symptom_to_diagnosis",
            "symptom_diagnoses",
            "source_records/symptom_to_diagnosis",
            "curated_dataset",
            "release_files",
            "dataset_card",
        }


@pytest.fixture(scope="module")
def built(tmp_path_factory, ollama):
    tmp_path = tmp_path_factory.mktemp("publish")
    with HubServer(token="hf_test_token") as hub, instance_for_test(temp_dir=home(tmp_path)) as instance:
        settings = ReleaseSettings(repo_id=REPO, token="hf_test_token", endpoint=hub.endpoint)
        defs, _, storage = definitions(tmp_path, ollama.url, release_settings=settings)
        assert observe_and_build(defs, instance).success
        yield {"defs": defs, "hub": hub, "instance": instance, "storage": storage, "tmp_path": tmp_path}


def publish(built, **settings):
    defs = built["defs"]
    if settings:
        release = ReleaseSettings(repo_id=REPO, token="hf_test_token", endpoint=built["hub"].endpoint, **settings)
        defs, _, _ = definitions(built["tmp_path"], "unused", release_settings=release)
    return defs.resolve_job_def("publish_dataset").execute_in_process(instance=built["instance"], raise_on_error=False)


def test_publish_commits_exactly_the_release_then_makes_no_second_commit(built):
    hub, storage = built["hub"], built["storage"]
    result = publish(built)
    assert result.success
    release = storage.release_dir
    local = {p.relative_to(release).as_posix(): p.read_bytes() for p in release.rglob("*") if p.is_file()}
    remote = {path: data for path, data in hub.files(REPO).items() if path != ".gitattributes"}
    assert remote == local
    assert {"README.md", "build.json", "medical_training_dataset.json", "images/source_mix.png"} <= set(remote)
    assert any(p.startswith("data/train-") for p in remote)
    commits = len(hub.history(REPO))
    metadata = result.asset_materializations_for_node("hub_release")[0].metadata
    assert metadata["status"].value == "committed"
    assert metadata["tag"].value.startswith("release-")

    again = publish(built)
    assert again.success
    assert again.asset_materializations_for_node("hub_release")[0].metadata["status"].value == "unchanged"
    assert len(hub.history(REPO)) == commits


def test_a_5xx_on_commit_leaves_no_partial_release_and_the_retry_succeeds(built):
    hub = built["hub"]
    # Change the content so there is something to commit: a stricter length bound.
    before = hub.head_sha(REPO) if hub.has_repo(REPO) else None
    hub.fail_next("commit", status=500)
    defs = built["defs"]
    result = defs.resolve_job_def("publish_dataset").execute_in_process(
        instance=built["instance"],
        run_config={"ops": {"curated_dataset": {"config": {"max_chars": 1400}}}},
        raise_on_error=False,
    )
    assert result.success, "the client's retry after one 500 must land the commit"
    assert hub.head_sha(REPO) != before
    assert len(hub.requests_to("commit")) >= 2


def test_a_licence_conflict_stops_the_publish_naming_the_sources(built):
    hub = built["hub"]
    commits = len(hub.history(REPO)) if hub.has_repo(REPO) else 0
    result = publish(built, licence="cc-by-4.0")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "wiki_medical_terms" in str(failure.event_specific_data.error)
    assert "gpl-3.0" in str(failure.event_specific_data.error).lower()
    assert not result.asset_materializations_for_node("hub_release")
    assert (len(hub.history(REPO)) if hub.has_repo(REPO) else 0) == commits


def test_an_acknowledged_licence_conflict_is_stated_in_the_card(built):
    result = publish(built, licence="cc-by-4.0", acknowledge_licence_conflict=True)
    assert result.success
    card = (built["storage"].release_dir / "README.md").read_text()
    assert "license: cc-by-4.0" in card
    assert "wiki_medical_terms" in card and "gpl-3.0" in card.lower()


def test_a_failing_blocking_check_stops_the_publish(built):
    hub, storage = built["hub"], built["storage"]
    commits = len(hub.history(REPO))
    report = json.loads(storage.curation_report_path.read_text())
    report["per_source_counts"] = {source: 10_000 for source in report["per_source_counts"]}
    storage.curation_report_path.write_text(json.dumps(report))
    result = publish(built)
    assert not result.success
    assert not result.asset_materializations_for_node("hub_release")
    assert len(hub.history(REPO)) == commits


CANARY_HF = "hf_CANARY_d41d8cd98f00b204e9800998ecf8427e"
CANARY_COHERE = "co_CANARY_9e107d9d372bb6826bd81d3542a419d6"


def test_secrets_never_appear_in_logs_events_metadata_config_or_card(tmp_path, ollama, monkeypatch, capfd):
    monkeypatch.setenv("HF_TOKEN", CANARY_HF)
    monkeypatch.setenv("COHERE_API_KEY", CANARY_COHERE)
    with HubServer(token=CANARY_HF) as hub, CohereTestServer(api_key=CANARY_COHERE) as cohere_server:
        defs, _, storage = definitions(
            tmp_path,
            ollama.url,
            embedder=EmbedderResource(backend="cohere", api_key=EnvVar("COHERE_API_KEY"), base_url=cohere_server.base_url),
            release_settings=ReleaseSettings(repo_id=REPO, token=EnvVar("HF_TOKEN"), endpoint=hub.endpoint),
        )
        with instance_for_test(temp_dir=home(tmp_path)) as instance:
            assert observe_and_build(defs, instance).success
            assert defs.resolve_job_def("publish_dataset").execute_in_process(instance=instance).success
            assert cohere_server.requests, "the Cohere stand-in was used"
            assert hub.history(REPO), "the release was committed"
            texts = []
            for run in instance.get_runs():
                texts.append(json.dumps(run.run_config, default=str))
                texts.append(json.dumps(run.tags, default=str))
                for entry in instance.all_logs(run.run_id):
                    texts.append(repr(entry))
            for path in storage.root.rglob("*"):
                if path.is_file() and path.suffix in {".json", ".md", ".txt", ".log"}:
                    texts.append(path.read_text(errors="replace"))
            for path in Path(home(tmp_path)).rglob("*"):  # compute logs and storage
                if path.is_file() and path.suffix in {".out", ".err", ".log", ".txt"}:
                    texts.append(path.read_text(errors="replace"))
            captured = capfd.readouterr()
            texts.extend([captured.out, captured.err])
    everything = "\n".join(texts)
    assert CANARY_HF not in everything
    assert CANARY_COHERE not in everything


def test_revision_policy_pinned_reports_an_upstream_move_and_track_follows_it(tmp_path):
    from medset_dagster.sources.registry import SOURCES_BY_ID

    spec = SOURCES_BY_ID["medicationqa"]
    storage = PipelineStorage(data_dir=str(tmp_path / "data"))
    with HubServer() as hub:
        head = hub.add_repo(spec.hub_repo, {"data/train-00000-of-00001.parquet": b"x"})
        pinned = HubDatasets(endpoint=hub.endpoint)
        version, metadata = pinned.observe(spec)
        assert version == spec.revision  # the data does not change ...
        assert metadata["upstream_moved"] is True and metadata["hub_head"] == head  # ... but the UI says so
        assert pinned.revision_to_load(spec, storage) == spec.revision

        tracking = HubDatasets(endpoint=hub.endpoint, track=["medicationqa"])
        version, metadata = tracking.observe(spec)
        assert version == head and metadata["policy"] == "track"
        storage.path("observations", "medicationqa.json").write_text(json.dumps({"data_version": version}))
        assert tracking.revision_to_load(spec, storage) == head


def test_changing_one_prompt_regenerates_that_task_only(tmp_path, ollama, monkeypatch):
    from dataclasses import replace

    from medset_dagster.generation import prompts, tasks

    defs, _, _ = definitions(tmp_path, ollama.url)
    with instance_for_test(temp_dir=home(tmp_path)) as instance:
        assert observe_and_build(defs, instance).success
        chats = lambda: [r for r in ollama.requests if r.path == "/api/chat"]  # noqa: E731 (readiness probes aside)
        before = len(chats())
        assert defs.resolve_job_def("build_dataset").execute_in_process(instance=instance).success
        assert len(chats()) == before, "an unchanged rebuild is served from the cache"

        changed = replace(prompts.SYMPTOM_DIAGNOSIS, system="You are a senior doctor speaking to a colleague.")
        monkeypatch.setattr(tasks, "SYMPTOM_DIAGNOSIS", changed)
        monkeypatch.setitem(prompts.TASK_TEMPLATES, "symptom_to_diagnosis", (changed,))
        defs, _, _ = definitions(tmp_path, ollama.url)  # code versions follow the prompt hash
        assert stale(defs, instance) == {
            "symptom_diagnoses",
            "source_records/symptom_to_diagnosis",
            "curated_dataset",
            "release_files",
            "dataset_card",
        }
        assert defs.resolve_job_def("build_dataset").execute_in_process(instance=instance).success
        new = chats()[before:]
        assert len(new) == 5  # max_items_per_task symptom items, nothing else
        assert all(r.body["messages"][0]["content"] == changed.system for r in new)
