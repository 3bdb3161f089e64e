"""Lineage and the nightly rebuild (declarative automation), the publish against a loopback Hub,
the publish guard, and secret hygiene.

Real clients throughout: `huggingface_hub` against the loopback Hub, `ollama` against the Ollama
stand-in, `cohere` against the Cohere stand-in.
"""

import datetime
import json
from pathlib import Path

import pytest
from dagster import AssetKey, EnvVar, evaluate_automation_conditions, instance_for_test

from medset_dagster.defs.generation import GenerationSettings
from medset_dagster.defs.launcher import build as run_build
from medset_dagster.defs.release import ReleaseSettings
from medset_dagster.defs.resources import PipelineStorage
from medset_dagster.defs.retrieval import EmbedderResource
from medset_dagster.defs.sources import HubDatasets
from medset_dagster.defs.staleness import stale_assets
from medset_dagster_tests.conftest import make_pipeline, materialized
from medset_dagster_tests.servers.cohere_server import CohereTestServer
from medset_dagster_tests.servers.hub_server import HubServer

REPO = "medset/medical-training-dataset-test"
SMALL = {"scenario_count": 4, "max_items_per_task": 5}


def small_pipeline(tmp_path, ollama_url, **overrides):
    from medset_dagster.defs.generation import GenerationSettings

    return make_pipeline(tmp_path, ollama_url, generation_settings=GenerationSettings(**SMALL), **overrides)


def requested(result) -> set[str]:
    """Asset keys (partitions folded) an automation evaluation requested."""
    return {p.asset_key.to_user_string() for p in result._requested_asset_partitions}


def settle(pipeline, instance, cursor, limit: int = 5):
    """Evaluate the automation conditions and run what they request, tick after tick, until a
    tick requests nothing (a partitioned task and its downstream take one tick each); returns
    (everything requested, the cursor)."""
    seen: set[str] = set()
    for _ in range(limit):
        tick = evaluate_automation_conditions(defs=pipeline.defs, instance=instance, cursor=cursor)
        cursor = tick.cursor
        keys = requested(tick)
        if not keys:
            return seen, cursor
        seen |= keys
        results = pipeline.build(instance, selection={AssetKey.from_user_string(k) for k in keys})
        assert all(r.success for r in results)
    raise AssertionError(f"automation kept requesting after {limit} ticks: {seen}")


def stale(pipeline, instance) -> set[str]:
    graph = pipeline.defs.resolve_asset_graph()
    keys = pipeline.defs.resolve_job_def("build_dataset").asset_layer.selected_asset_keys
    return {key.to_user_string() for key in stale_assets(instance, graph, keys)}


QUALITY_AND_RELEASE = {
    "near_deduplicated_dataset",
    "near_duplicates",
    "decontaminated_dataset",
    "contaminated_rows",
    "phi_scrubbed_dataset",
    "phi_findings",
    "release_files",
    "dataset_card",
}
DOWNSTREAM_OF_DISEASES = {"source_records/diseases_symptoms", "curated_dataset", *QUALITY_AND_RELEASE}


def test_a_source_edit_rebuilds_exactly_its_downstream_and_a_quiet_night_nothing(tmp_path, ollama, instance):
    pipeline = small_pipeline(tmp_path, ollama.url)
    pipeline.observe_and_build(instance)
    assert stale(pipeline, instance) == set()
    cursor = evaluate_automation_conditions(defs=pipeline.defs, instance=instance).cursor

    # A night with no change: the observation runs, nothing is requested, no LLM call.
    calls = ollama.calls
    pipeline.observe(instance)
    quiet = evaluate_automation_conditions(defs=pipeline.defs, instance=instance, cursor=cursor)
    assert requested(quiet) == set() and quiet.total_requested == 0
    cursor = quiet.cursor

    # Upstream changes one source: a new row in the diseases CSV.
    csv = pipeline.mirrors / "QuyenAnhDE" / "Diseases_Symptoms" / "Diseases_Symptoms.csv"
    csv.write_text(csv.read_text() + '99,Tonsillitis,"Sore throat, fever and swollen tonsils",Rest and fluids\n')
    pipeline.observe(instance)
    assert stale(pipeline, instance) == {"source_records/diseases_symptoms"}
    night = evaluate_automation_conditions(defs=pipeline.defs, instance=instance, cursor=cursor)
    assert requested(night) == DOWNSTREAM_OF_DISEASES

    # Rebuilding exactly that set, with no LLM call, leaves nothing stale.
    results = pipeline.build(instance, selection={AssetKey.from_user_string(k) for k in requested(night)})
    assert all(r.success for r in results)
    assert materialized(results) == DOWNSTREAM_OF_DISEASES
    assert ollama.calls == calls
    assert stale(pipeline, instance) == set()


def test_the_nightly_observation_is_requested_at_two_utc(tmp_path, ollama, instance):
    pipeline = small_pipeline(tmp_path, ollama.url)
    one_am = datetime.datetime(2026, 11, 30, 1, 0, tzinfo=datetime.timezone.utc)
    first = evaluate_automation_conditions(defs=pipeline.defs, instance=instance, evaluation_time=one_am)
    assert requested(first) == set()
    night = evaluate_automation_conditions(
        defs=pipeline.defs, instance=instance, cursor=first.cursor, evaluation_time=one_am + datetime.timedelta(hours=1, minutes=1)
    )
    from medset_dagster.sources.registry import benchmark_sources, hub_sources

    assert requested(night) == {f"hub_datasets/{s.source_id}" for s in (*hub_sources(), *benchmark_sources())}


def test_a_benchmark_change_reruns_decontamination_and_its_downstream_only(tmp_path, ollama, instance):
    pipeline = small_pipeline(tmp_path, ollama.url)
    pipeline.observe_and_build(instance)
    cursor = evaluate_automation_conditions(defs=pipeline.defs, instance=instance).cursor
    test_file = pipeline.mirrors / "GBaker" / "MedQA-USMLE-4-options" / "phrases_no_exclude_test.jsonl"
    test_file.write_bytes(test_file.read_bytes().replace(b"year-old", b"year old", 1))
    pipeline.observe(instance)
    calls = ollama.calls
    rebuilt, _ = settle(pipeline, instance, cursor)
    assert rebuilt == {
        "benchmark_items/medqa_usmle_test",
        "benchmark_index",
        "decontaminated_dataset",
        "contaminated_rows",
        "phi_scrubbed_dataset",
        "phi_findings",
        "release_files",
        "dataset_card",
    }
    assert ollama.calls == calls


def test_a_generation_input_change_regenerates_only_that_task(tmp_path, ollama, instance):
    pipeline = small_pipeline(tmp_path, ollama.url)
    pipeline.observe_and_build(instance)
    cursor = evaluate_automation_conditions(defs=pipeline.defs, instance=instance).cursor
    jsonl = pipeline.mirrors / "gretelai" / "symptom_to_diagnosis" / "train.jsonl"
    rows = jsonl.read_text().splitlines()
    first = json.loads(rows[0])
    first["input_text"] = "I have had a high fever, a rash and pain behind my eyes since yesterday."
    jsonl.write_text("\n".join([json.dumps(first), *rows[1:]]) + "\n")
    pipeline.observe(instance)
    chats = len([r for r in ollama.requests if r.path == "/api/chat"])
    rebuilt, _ = settle(pipeline, instance, cursor)
    assert rebuilt == {
        "generation_inputs/symptom_to_diagnosis",
        "symptom_diagnoses",
        "generated_records/symptom_to_diagnosis",
        "curated_dataset",
        *QUALITY_AND_RELEASE,
    }
    new = [r for r in ollama.requests if r.path == "/api/chat"][chats:]
    assert len(new) == 1 and "rash and pain behind my eyes" in json.dumps(new[0].body)
    assert stale(pipeline, instance) == set()


def test_changing_one_prompt_regenerates_that_task_only(tmp_path, ollama, instance, monkeypatch):
    from dataclasses import replace

    from medset_dagster.generation import prompts, tasks

    pipeline = small_pipeline(tmp_path, ollama.url)
    pipeline.observe_and_build(instance)
    chats = lambda: [r for r in ollama.requests if r.path == "/api/chat"]  # noqa: E731 (readiness probes aside)
    before = len(chats())
    cursor = evaluate_automation_conditions(defs=pipeline.defs, instance=instance).cursor

    changed = replace(prompts.SYMPTOM_DIAGNOSIS, system="You are a senior doctor speaking to a colleague.")
    monkeypatch.setattr(tasks, "SYMPTOM_DIAGNOSIS", changed)
    monkeypatch.setitem(prompts.TASK_TEMPLATES, "symptom_to_diagnosis", (changed,))
    import importlib

    from medset_dagster.defs import generation

    importlib.reload(generation)  # code versions follow the prompt hash
    import medset_dagster.definitions as definitions

    importlib.reload(definitions)
    changed_pipeline = pipeline.with_resources()
    try:
        expected = {"symptom_diagnoses", "generated_records/symptom_to_diagnosis", "curated_dataset", *QUALITY_AND_RELEASE}
        assert stale(changed_pipeline, instance) == {"symptom_diagnoses"}
        rebuilt, _ = settle(changed_pipeline, instance, cursor)
        assert rebuilt == expected
        new = chats()[before:]
        assert len(new) == 5  # max_items_per_task symptom items, nothing else
        assert all(r.body["messages"][0]["content"] == changed.system for r in new)
    finally:
        monkeypatch.undo()
        importlib.reload(generation)
        importlib.reload(definitions)


@pytest.fixture(scope="module")
def built(tmp_path_factory, ollama):
    tmp_path = tmp_path_factory.mktemp("publish")
    home = tmp_path / "home"
    home.mkdir()
    with HubServer(token="hf_test_token") as hub, instance_for_test(temp_dir=str(home)) as instance:
        settings = ReleaseSettings(repo_id=REPO, token="hf_test_token", endpoint=hub.endpoint)
        pipeline = small_pipeline(tmp_path, ollama.url, release_settings=settings)
        pipeline.observe_and_build(instance)
        yield {"pipeline": pipeline, "hub": hub, "instance": instance}


def publish(built, pipeline=None):
    pipeline = pipeline or built["pipeline"]
    return pipeline.defs.resolve_job_def("publish_hub_release").execute_in_process(instance=built["instance"], raise_on_error=False)


def failure_message(result) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return str(failure.event_specific_data.error)


def test_publish_commits_exactly_the_release_then_makes_no_second_commit(built):
    hub, pipeline, instance = built["hub"], built["pipeline"], built["instance"]
    result = publish(built)
    assert result.success
    release = pipeline.release
    local = {p.relative_to(release).as_posix(): p.read_bytes() for p in release.rglob("*") if p.is_file()}
    remote = {path: data for path, data in hub.files(REPO).items() if path != ".gitattributes"}
    assert remote == local
    assert {"README.md", "build.json", "medical_training_dataset.json", "images/source_mix.png"} <= set(remote)
    commits = len(hub.history(REPO))
    reported = instance.get_latest_materialization_event(AssetKey("hub_release")).asset_materialization.metadata
    assert reported["status"].value == "committed" and reported["tag"].value.startswith("release-")

    again = publish(built)
    assert again.success
    assert instance.get_latest_materialization_event(AssetKey("hub_release")).asset_materialization.metadata["status"].value == "unchanged"
    assert len(hub.history(REPO)) == commits


def test_a_stale_release_is_not_published_and_the_message_names_what_is_stale(built, tmp_path):
    hub, pipeline, instance = built["hub"], built["pipeline"], built["instance"]
    commits = len(hub.history(REPO)) if hub.has_repo(REPO) else 0
    csv = pipeline.mirrors / "QuyenAnhDE" / "Diseases_Symptoms" / "Diseases_Symptoms.csv"
    original = csv.read_text()
    csv.write_text(original + '98,Sinusitis,"Blocked nose and facial pain",Saline rinses\n')
    try:
        pipeline.observe(instance)
        result = publish(built)
        assert not result.success
        message = failure_message(result)
        assert "source_records/diseases_symptoms is stale" in message and "make build" in message
        assert (len(hub.history(REPO)) if hub.has_repo(REPO) else 0) == commits
    finally:
        csv.write_text(original)
        pipeline.observe(instance)
    assert publish(built).success


def test_a_5xx_on_commit_leaves_no_partial_release_and_the_retry_succeeds(built):
    hub, pipeline, instance = built["hub"], built["pipeline"], built["instance"]
    # Change the content so there is something to commit: a stricter length bound.
    config = {"ops": {"curated_dataset": {"config": {"max_chars": 1400}}}}
    assert all(r.success for r in run_build(pipeline.defs, instance, run_config=config, log=lambda _l: None))
    before = hub.head_sha(REPO) if hub.has_repo(REPO) else None
    hub.fail_next("commit", status=500)
    result = publish(built)
    assert result.success, "the client's retry after one 500 must land the commit"
    assert hub.head_sha(REPO) != before
    assert len(hub.requests_to("commit")) >= 2


def test_a_licence_conflict_stops_the_card_naming_the_sources(built):
    pipeline, instance = built["pipeline"], built["instance"]
    conflicting = pipeline.with_resources(release_settings=ReleaseSettings(repo_id=REPO, token="hf_test_token", endpoint=built["hub"].endpoint, licence="cc-by-4.0"))
    results = conflicting.build(instance)
    assert not results[-1].success
    message = failure_message(results[-1])
    assert "wiki_medical_terms" in message and "gpl-3.0" in message.lower()
    # The release on disk is still the last good one, and publishing it still works.
    assert "license: cc-by-4.0" not in (pipeline.release / "README.md").read_text()


def test_an_acknowledged_licence_conflict_is_stated_in_the_card(built):
    pipeline, instance = built["pipeline"], built["instance"]
    settings = ReleaseSettings(repo_id=REPO, token="hf_test_token", endpoint=built["hub"].endpoint, licence="cc-by-4.0", acknowledge_licence_conflict=True)
    acknowledged = pipeline.with_resources(release_settings=settings)
    assert all(r.success for r in acknowledged.build(instance))
    card = (pipeline.release / "README.md").read_text()
    assert "license: cc-by-4.0" in card
    assert "wiki_medical_terms" in card and "gpl-3.0" in card.lower()
    assert publish(built, acknowledged).success


def test_a_release_whose_checks_failed_is_not_published(built):
    from dagster import AssetMaterialization

    hub, pipeline, instance = built["hub"], built["pipeline"], built["instance"]
    commits = len(hub.history(REPO))
    counts = {source: 10_000 for source in json.loads(json.dumps(
        instance.get_latest_materialization_event(AssetKey("release_files")).asset_materialization.metadata["per_source_counts"].value))}
    instance.report_runless_asset_event(AssetMaterialization("release_files", metadata={"per_source_counts": counts}))
    results = pipeline.build(instance)
    assert not results[-1].success
    result = publish(built)
    assert not result.success
    assert "check source_counts_steady on curated_dataset failed" in failure_message(result)
    assert len(hub.history(REPO)) == commits


CANARY_HF = "hf_CANARY_d41d8cd98f00b204e9800998ecf8427e"
CANARY_COHERE = "co_CANARY_9e107d9d372bb6826bd81d3542a419d6"


def test_secrets_never_appear_in_logs_events_metadata_config_or_card(tmp_path, ollama, monkeypatch, capfd):
    monkeypatch.setenv("HF_TOKEN", CANARY_HF)
    monkeypatch.setenv("COHERE_API_KEY", CANARY_COHERE)
    home = tmp_path / "home"
    home.mkdir()
    with HubServer(token=CANARY_HF) as hub, CohereTestServer(api_key=CANARY_COHERE) as cohere_server:
        pipeline = make_pipeline(
            tmp_path,
            ollama.url,
            # The Cohere stand-in's vectors carry no meaning: no similarity floor for retrieval.
            generation_settings=GenerationSettings(**SMALL, retrieval_min_similarity=-1.0),
            embedder=EmbedderResource(backend="cohere", api_key=EnvVar("COHERE_API_KEY"), base_url=cohere_server.base_url),
            release_settings=ReleaseSettings(repo_id=REPO, token=EnvVar("HF_TOKEN"), endpoint=hub.endpoint),
        )
        with instance_for_test(temp_dir=str(home)) as instance:
            pipeline.observe_and_build(instance)
            assert pipeline.defs.resolve_job_def("publish_hub_release").execute_in_process(instance=instance).success
            assert cohere_server.requests, "the Cohere stand-in was used"
            assert hub.history(REPO), "the release was committed"
            texts = []
            for run in instance.get_runs():
                texts.append(json.dumps(run.run_config, default=str))
                texts.append(json.dumps(run.tags, default=str))
                for entry in instance.all_logs(run.run_id):
                    texts.append(repr(entry))
            for path in pipeline.storage.root.rglob("*"):
                if path.is_file() and path.suffix in {".json", ".md", ".txt", ".log"}:
                    texts.append(path.read_text(errors="replace"))
            for path in home.rglob("*"):  # compute logs and storage
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
    with HubServer() as hub:
        head = hub.add_repo(spec.hub_repo, {"data/train-00000-of-00001.parquet": b"x"})
        pinned = HubDatasets(endpoint=hub.endpoint)
        version, metadata = pinned.observe(spec)
        assert version == spec.revision  # the data does not change ...
        assert metadata["upstream_moved"] is True and metadata["hub_head"] == head  # ... but the UI says so
        assert pinned.revision_to_load(spec, observed=head) == spec.revision

        tracking = HubDatasets(endpoint=hub.endpoint, track=["medicationqa"])
        version, metadata = tracking.observe(spec)
        assert version == head and metadata["policy"] == "track"
        assert tracking.revision_to_load(spec, observed=version) == head
        with pytest.raises(Exception, match="observe hub_datasets/medicationqa first"):
            tracking.revision_to_load(spec, observed=None)
    assert PipelineStorage(data_dir=str(tmp_path)).root == Path(tmp_path)
