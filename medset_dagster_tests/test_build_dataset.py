"""The whole graph through Dagster on the sample profile, in a temporary DAGSTER_HOME.

Generation goes through the real `ollama` client to the loopback Ollama stand-in (deterministic
answers), so final counts are exact; the llama.cpp backend has its own test.
"""

import json

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, instance_for_test

from medset_dagster.definitions import make_definitions
from medset_dagster.defs.backends import GenerationSettings, GeneratorResource
from medset_dagster.defs.storage import PipelineStorage
from medset_dagster_tests.servers.ollama_server import FakeOllamaServer

# Expected rows per source after curation, from the deliberate bad rows of the sample mirrors
# (sample_data/hub/README.md) and, for generated sources, the stand-in's deterministic answers
# (which all pass validation, so the counts follow the inputs' own rules).
FINAL = {
    "card": {
        "diseases_symptoms": 14,
        "extreme_firstaid_qa_dataset": 8,
        "first_aid_dataset": 15,
        "medical_o1_reasoning_sft": 15,
        "medical_o1_verifiable_problem": 16,
        "medicationqa": 15,
        "medqa": 16,
        "symptom_to_diagnosis": 18,
        "synthetic_disaster_reports": 15,
        "wiki_medical_terms": 17,
    },
    "published": {
        "diseases_symptoms": 17,
        "extreme_firstaid_qa_dataset": 8,
        "first_aid_dataset": 17,
        "medical_o1_reasoning_sft": 18,
        "medical_o1_verifiable_problem": 20,
        "medicationqa": 18,
        "medqa": 18,
        "symptom_to_diagnosis": 20,
        "synthetic_disaster_reports": 16,
        "wiki_medical_terms": 17,
    },
}
# Items sent to the LLM per generated source: rows read from the mirror (scenario draws for RAG).
LOADED = {"medqa": 23, "wiki_medical_terms": 22, "symptom_to_diagnosis": 26, "extreme_firstaid_qa_dataset": 8}


def build(tmp_path, ollama_url: str, policy: str, data_dir=None):
    storage = PipelineStorage(data_dir=str(data_dir or tmp_path / "data"))
    defs = make_definitions(
        "sample",
        {
            "storage": storage,
            "generator_backend": GeneratorResource(backend="ollama", ollama_host=ollama_url, timeout_s=10, max_attempts=2),
            "generation_settings": GenerationSettings(scenario_count=8, scenario_seed=7),
        },
    )
    job = defs.resolve_job_def("build_dataset")
    return storage, defs, job


def run_build(job, instance: DagsterInstance, policy: str):
    return job.execute_in_process(
        instance=instance,
        run_config={"ops": {"curated_dataset": {"config": {"policy": policy}}}},
    )


def home(tmp_path):
    folder = tmp_path / "home"
    folder.mkdir(exist_ok=True)
    return str(folder)


@pytest.fixture(scope="module")
def ollama():
    with FakeOllamaServer() as server:
        yield server


@pytest.mark.parametrize("policy", ["card", "published"])
def test_sample_build_gives_exact_counts_and_identical_bytes_twice(tmp_path, ollama, policy):
    with instance_for_test(temp_dir=home(tmp_path)) as instance:
        storage, _, job = build(tmp_path, ollama.url, policy)
        result = run_build(job, instance, policy)
        assert result.success
        report = json.loads(storage.curation_report_path.read_text())
        counts = report["per_source_counts"]
        assert counts == FINAL[policy]
        funnel = {row["source"]: row for row in report["funnel"]}
        for source, loaded in LOADED.items():
            assert funnel[source]["loaded"] == loaded, source
        assert funnel["TOTAL"]["final"] == sum(FINAL[policy].values())
        release = storage.release_dir
        first = {p.name: p.read_bytes() for p in (release / "data").iterdir()}
        first_json = (release / "medical_training_dataset.json").read_bytes()
        calls_after_first = ollama.calls

        # A second run: same bytes, and no LLM call (everything is served from the cache).
        second = run_build(job, instance, policy)
        assert second.success
        assert ollama.calls == calls_after_first
        assert {p.name: p.read_bytes() for p in (release / "data").iterdir()} == first
        assert (release / "medical_training_dataset.json").read_bytes() == first_json
        rows = json.loads(first_json)
        assert len(rows) == sum(counts.values())
        assert list(rows[0]) == ["input", "context", "output", "source"]
        assert pl.read_parquet(release / "data").height == len(rows)


def test_asset_metadata_reports_what_users_look_at(tmp_path, ollama):
    with instance_for_test(temp_dir=home(tmp_path)) as instance:
        _, _, job = build(tmp_path, ollama.url, "card")
        assert run_build(job, instance, "card").success
        source = instance.get_latest_materialization_event(AssetKey(["source_records", "medicationqa"]))
        metadata = source.asset_materialization.metadata
        assert metadata["dagster/row_count"].value == 18
        assert metadata["rows_read"].value == 21
        assert metadata["dropped/missing_answer"].value == 2
        assert metadata["licence"].value == "none declared"
        assert "preview" in metadata and "dagster/column_schema" in metadata
        generated = instance.get_latest_materialization_event(AssetKey("medqa_explanations"))
        gen_meta = generated.asset_materialization.metadata
        for key in ("items_requested", "generated", "from_cache", "llm_calls", "prompt_tokens", "completion_tokens", "model_digest", "prompt_template_hash"):
            assert key in gen_meta, key
        curated = instance.get_latest_materialization_event(AssetKey("curated_dataset")).asset_materialization.metadata
        assert "funnel" in curated and curated["policy"].value == "card"


def test_a_failing_blocking_check_stops_the_release(tmp_path, ollama):
    """A source whose count collapses fails `source_counts_steady`; release_files does not run."""
    with instance_for_test(temp_dir=home(tmp_path)) as instance:
        storage, _, job = build(tmp_path, ollama.url, "card")
        assert run_build(job, instance, "card").success
        report = json.loads(storage.curation_report_path.read_text())
        report["per_source_counts"]["medicationqa"] = 1000  # pretend the last build had far more rows
        storage.curation_report_path.write_text(json.dumps(report))
        release_before = (storage.release_dir / "medical_training_dataset.json").stat().st_mtime_ns
        result = job.execute_in_process(
            instance=instance,
            run_config={"ops": {"curated_dataset": {"config": {"policy": "card"}}}},
            raise_on_error=False,
        )
        assert not result.success
        checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
                  for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
        assert checks["source_counts_steady"] is False
        assert (storage.release_dir / "medical_training_dataset.json").stat().st_mtime_ns == release_before


def test_definitions_load_and_validate():
    from dagster import Definitions

    defs = make_definitions("sample")
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"source_records/medqa", "generation_inputs/medqa", "faiss_index", "emergency_scenarios", "curated_dataset", "release_files"} <= keys
    assert "excluded_sources/cameo" in keys
