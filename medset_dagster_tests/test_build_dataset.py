"""The whole graph through Dagster on the sample profile, in a temporary instance and data folder.

Generation goes through the real `ollama` client to the loopback Ollama stand-in (deterministic
answers), so final counts are exact; the llama.cpp backend has its own test.
"""

import json
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, AssetMaterialization, AssetRecordsFilter, Definitions

from medset_dagster.definitions import make_definitions
from medset_dagster.defs.launcher import build_phases
from medset_dagster_tests.conftest import materialized, metadata_of

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
# What the release holds after the quality stages: the planted benchmark overlaps are removed (one
# row each from the two o1 sources, medicationqa, medqa and wiki; see sample_data/hub/BENCHMARKS.md);
# under `published`, near-duplicate removal also takes the three pairs that policy's exact dedup keeps.
RELEASED = {
    "card": {**FINAL["card"], "medical_o1_reasoning_sft": 14, "medical_o1_verifiable_problem": 15, "medicationqa": 14, "medqa": 15, "wiki_medical_terms": 16},
    "published": {**FINAL["published"], "medical_o1_reasoning_sft": 16, "medical_o1_verifiable_problem": 18, "medicationqa": 16, "medqa": 17, "wiki_medical_terms": 16},
}
# Rows of each generated source's Hub split as read (scenario draws for the RAG source), and the
# items sent to the LLM after the input rules and dedup.
ROWS_READ = {"medqa": 23, "wiki_medical_terms": 22, "symptom_to_diagnosis": 26, "extreme_firstaid_qa_dataset": 8}
ITEMS_SENT = {"medqa": 18, "wiki_medical_terms": 17, "symptom_to_diagnosis": 20, "extreme_firstaid_qa_dataset": 8}


@pytest.mark.parametrize("policy", ["card", "published"])
def test_sample_build_gives_exact_counts_and_identical_bytes_twice(pipeline, instance, ollama, policy):
    pipeline.observe_and_build(instance, policy)
    curated = metadata_of(instance, "curated_dataset")
    assert curated["per_source_counts"] == FINAL[policy]
    funnel = {row["source"]: row for row in curated["funnel_json"]}
    for source, rows in ROWS_READ.items():
        assert funnel[source]["rows_read"] == rows, source
        assert funnel[source]["after_sample_cap"] == ITEMS_SENT[source], source
    assert funnel["TOTAL"]["final"] == sum(FINAL[policy].values())
    released = {row["source"]: row for row in metadata_of(instance, "phi_scrubbed_dataset")["funnel_json"]}
    assert released["TOTAL"]["after_length_filter"] == sum(FINAL[policy].values())
    assert released["TOTAL"]["after_decontamination"] == released["TOTAL"]["after_near_dedup"] - 5
    assert released["TOTAL"]["final"] == released["TOTAL"]["after_phi"] == sum(RELEASED[policy].values())
    release = pipeline.release.resolve()
    first = {p.name: p.read_bytes() for p in (release / "data").iterdir()}
    first_json = (release / "medical_training_dataset.json").read_bytes()
    calls_after_first = ollama.calls

    # A second build: same bytes, in a new release folder, and no LLM call (all from the cache).
    pipeline.build(instance, policy)
    assert ollama.calls == calls_after_first
    assert pipeline.release.resolve() != release  # each build writes its own release folder
    assert {p.name: p.read_bytes() for p in (pipeline.release / "data").iterdir()} == first
    assert (pipeline.release / "medical_training_dataset.json").read_bytes() == first_json
    rows = json.loads(first_json)
    assert metadata_of(instance, "phi_scrubbed_dataset")["per_source_counts"] == RELEASED[policy]
    assert len(rows) == sum(RELEASED[policy].values())
    assert list(rows[0]) == ["input", "context", "output", "source"]
    assert pl.read_parquet(pipeline.release / "data").height == len(rows)


def test_asset_metadata_reports_what_users_look_at_per_partition(pipeline, instance):
    results = pipeline.observe_and_build(instance)
    source = metadata_of(instance, "source_records/medicationqa")
    assert source["dagster/row_count"] == 18
    assert source["rows_read"] == 21 and source["after_mapping"] == 18
    assert source["dropped/missing_answer"] == 2
    assert source["licence"] == "none declared"
    assert "preview" in source and "dagster/column_schema" in source
    # Each shard's metadata is its own: row counts match the shard's table, and sum to the total.
    task_key = AssetKey("medqa_explanations")
    total = 0
    for shard in ("shard-0", "shard-1", "shard-2", "shard-3"):
        shard_meta = metadata_of(instance, "medqa_explanations", shard)
        table = pl.read_parquet(pipeline.storage.tables_dir / "medqa_explanations" / f"{shard}.parquet")
        assert shard_meta["dagster/row_count"] == table.height == shard_meta["items_kept"], shard
        for key in ("items_requested", "generated", "from_cache", "llm_calls", "prompt_tokens", "completion_tokens", "model_digest"):
            assert key in shard_meta, key
        total += shard_meta["items_requested"]
    assert total == ITEMS_SENT["medqa"]
    # ... and so are their data versions (one run per shard).
    versions = {
        shard: instance.fetch_materializations(
            AssetRecordsFilter(asset_key=task_key, asset_partitions=[shard]), limit=1
        ).records[0].asset_materialization.tags["dagster/data_version"]
        for shard in ("shard-0", "shard-1", "shard-2", "shard-3")
    }
    assert len(set(versions.values())) == 4
    generated = metadata_of(instance, "generated_records/medqa")
    assert generated["after_sample_cap"] == ITEMS_SENT["medqa"] and generated["prompt_template_hash"]
    curated = metadata_of(instance, "curated_dataset")
    assert curated["policy"] == "card" and "funnel" in curated and curated["seed"] == "42"
    assert {r.dagster_run.tags.get("medset/phase") for r in results} == {"upstream", "shard-0", "shard-1", "shard-2", "shard-3", "downstream"}
    # The build log's LLM figures per run are the shards' metadata summed; runs without generation have none.
    from medset_dagster.defs.launcher import llm_figures

    by_phase = {r.dagster_run.tags["medset/phase"]: llm_figures(r) for r in results}
    assert by_phase["upstream"] == {} and by_phase["downstream"] == {}
    shard_0_calls = sum(
        metadata_of(instance, task, "shard-0")["llm_calls"]
        for task in ("emergency_scenarios", "medical_term_questions", "medqa_explanations", "symptom_diagnoses")
    )
    assert by_phase["shard-0"]["llm_calls"] == shard_0_calls > 0


def test_a_failing_blocking_check_stops_the_release_and_keeps_the_last_good_one(pipeline, instance):
    pipeline.observe_and_build(instance)
    release_before = pipeline.release.resolve()
    card_before = (pipeline.release / "README.md").read_bytes()
    # Pretend the last release that passed its checks had far more medicationqa rows.
    counts = dict(metadata_of(instance, "release_files")["per_source_counts"])
    counts["medicationqa"] = 1000
    instance.report_runless_asset_event(AssetMaterialization("release_files", metadata={"per_source_counts": counts}))
    results = pipeline.build(instance)
    assert not results[-1].success
    checks = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in results[-1].all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert checks["source_counts_steady"] is False
    assert "release_files" not in materialized(results)
    assert pipeline.release.resolve() == release_before
    assert (pipeline.release / "README.md").read_bytes() == card_before


def test_the_build_runs_upstream_then_one_run_per_shard_then_downstream():
    defs = make_definitions("sample")
    phases = build_phases(defs)
    assert [p.name for p in phases] == ["upstream", "shard-0", "shard-1", "shard-2", "shard-3", "downstream"]
    names = {p.name: {k.to_user_string() for k in p.asset_keys} for p in phases}
    assert names["shard-2"] == {"emergency_scenarios", "medical_term_questions", "medqa_explanations", "symptom_diagnoses"}
    assert {"faiss_index", "generation_inputs/medqa", "source_records/medicationqa"} <= names["upstream"]
    assert {"generated_records/medqa", "curated_dataset", "release_files", "dataset_card"} <= names["downstream"]
    # A selection (`build --changed`) keeps the names: what follows generation is downstream.
    changed = build_phases(defs, selection={AssetKey("curated_dataset"), AssetKey(["source_records", "medicationqa"])})
    assert [(p.name, {k.to_user_string() for k in p.asset_keys}) for p in changed] == [
        ("upstream", {"source_records/medicationqa"}),
        ("downstream", {"curated_dataset"}),
    ]


def test_definitions_load_and_validate_and_groups_follow_the_stages():
    defs = make_definitions("sample")
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups["generation_inputs/medqa"] == "sources"
    assert groups["medqa_explanations"] == groups["generated_records/medqa"] == "generation"
    assert groups["curated_dataset"] == "dataset"
    assert groups["dataset_card"] == groups["hub_release"] == "release"
    assert groups["hub_datasets/medqa"] == "sources"
    assert "excluded_sources/cameo" in groups
    # The observed sources have a kind; the publish cannot be materialized in bulk.
    assert "huggingface" in graph.get(AssetKey(["hub_datasets", "medqa"])).kinds
    assert not graph.get(AssetKey("hub_release")).is_materializable


def test_the_quality_stages_remove_the_planted_rows_and_the_card_says_so(pipeline, instance):
    pipeline.observe_and_build(instance)
    contaminated = pl.read_parquet(pipeline.storage.tables_dir / "contaminated_rows.parquet")
    assert sorted(zip(contaminated["source"], contaminated["benchmark"], contaminated["field"])) == [
        ("medical_o1_reasoning_sft", "medmcqa_validation", "output"),
        ("medical_o1_verifiable_problem", "medqa_usmle_test", "input"),
        ("medicationqa", "mmlu_clinical_knowledge", "output"),
        ("medqa", "medqa_usmle_test", "input"),
        ("wiki_medical_terms", "pubmedqa_labeled", "context"),
    ]
    findings = pl.read_parquet(pipeline.storage.tables_dir / "phi_findings.parquet")
    assert findings.height == 5 and set(findings.columns) >= {"row_id", "kind", "start", "end"}
    assert "text" not in findings.columns and "match" not in " ".join(findings.columns)
    release = json.loads((pipeline.release / "medical_training_dataset.json").read_text())
    texts = " ".join(r["input"] + r["context"] + r["output"] for r in release)
    assert "[MRN]" in texts and "[PHONE]" in texts and "[EMAIL]" in texts
    near = metadata_of(instance, "near_deduplicated_dataset")
    assert near["removed"] == 0 and "largest_clusters" in near
    checks = {
        record.key.name: record.status.value
        for key in ("near_deduplicated_dataset", "phi_scrubbed_dataset")
        for record in [instance.get_latest_asset_check_evaluation_record(k) for k in
                       make_definitions("sample").resolve_asset_graph().get_check_keys_for_assets({AssetKey(key)})]
        if record is not None
    }
    assert checks == {"near_duplicate_source_loss": "SUCCEEDED", "no_benchmark_overlap": "SUCCEEDED", "no_phi_remaining": "SUCCEEDED"}
    card = (pipeline.release / "README.md").read_text()
    for heading in ("### Near-duplicates", "### Benchmark decontamination", "### Personal and health information"):
        assert heading in card
    assert "| `medicationqa` | 0 | 0 | 0 | 1 |" in card  # source x benchmark: mmlu_clinical_knowledge
    manifest = json.loads((pipeline.release / "build.json").read_text())
    assert manifest["quality"]["decontamination"]["removed"] == 5 and manifest["quality"]["phi"]["findings"] == 5


def test_cli_runs_carry_the_code_locations_origin_so_the_ui_lists_them_under_the_job(instance, tmp_path, monkeypatch):
    """`python -m medset_dagster` runs are recorded with the origin of the code location that
    workspace.yaml loads, so the job's Runs tab lists them and "Re-execute" finds the same job."""
    import yaml

    from medset_dagster.defs.launcher import run_phase

    monkeypatch.setenv("MEDSET_DATA_DIR", str(tmp_path / "data"))
    result = run_phase(make_definitions("sample"), instance, "observe_sources", None, with_origin=True)
    assert result.success
    run = instance.get_run_by_id(result.run_id)
    workspace = yaml.safe_load((Path(__file__).resolve().parents[1] / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    origin = run.remote_job_origin
    assert origin is not None
    assert origin.location_name == workspace["location_name"]
    assert origin.job_name == "observe_sources"
    assert origin.repository_origin.code_location_origin.loadable_target_origin.module_name == workspace["module_name"]
    assert [r.run_id for r in instance.get_runs()] == [result.run_id]


def test_the_card_and_build_json_state_the_top_k_and_chunking_actually_used(tmp_path, ollama, instance):
    """Not the defaults (top_k 5, 512/128 characters): the settings this build ran with."""
    from medset_dagster.defs.generation import GenerationSettings
    from medset_dagster.defs.launcher import build
    from medset_dagster_tests.conftest import make_pipeline

    pipeline = make_pipeline(tmp_path, ollama.url, generation_settings=GenerationSettings(scenario_count=8, scenario_seed=7, retrieval_top_k=3))
    pipeline.observe(instance)
    config = {"ops": {"pdf_chunks": {"config": {"chunk_size": 400, "chunk_overlap": 64, "min_chars": 40}}}}
    results = build(pipeline.defs, instance, run_config=config, log=lambda _line: None)
    assert all(r.success for r in results)
    retrieval = json.loads((pipeline.release / "build.json").read_text())["retrieval"]
    assert (retrieval["top_k"], retrieval["chunk_size"], retrieval["chunk_overlap"], retrieval["chunk_min_chars"]) == (3, 400, 64, 40)
    card = (pipeline.release / "README.md").read_text()
    assert "- Chunking: 400 characters with 64 overlap" in card and "top 3 passages" in card
    assert "512 characters" not in card and "top 5 passages" not in card
