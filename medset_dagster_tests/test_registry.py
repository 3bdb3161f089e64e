"""The registry is complete: every source has a revision, a licence and a mapper, or a reason."""

import pytest

from medset_dagster.sources.registry import (
    SOURCES,
    benchmark_sources,
    dataset_source_priority,
    dataset_sources,
    excluded_sources,
    generated_sources,
    hub_sources,
)


@pytest.mark.parametrize("spec", SOURCES, ids=lambda s: s.source_id)
def test_every_entry_is_complete_or_a_documented_exclusion(spec):
    assert spec.licence
    if spec.role == "excluded":
        assert spec.excluded_reason and spec.hub_repo and spec.mapper is None
    elif spec.role == "rag":
        assert spec.hub_repo is None and spec.published_rows
    elif spec.role == "benchmark":
        assert spec.hub_repo and spec.mapper is not None and spec.required_columns and spec.published_rows is None
        if spec.pinned_by == "registry":
            assert spec.revision and len(spec.revision) == 40 and int(spec.revision, 16) >= 0
        else:
            assert spec.pinned_by == "first_observation" and spec.revision is None
    else:
        assert spec.hub_repo and spec.mapper is not None and spec.required_columns
        assert spec.revision and len(spec.revision) == 40 and int(spec.revision, 16) >= 0


def test_the_registry_names_the_cards_eleven_sources_and_ten_dataset_ids():
    assert len(SOURCES) == 21  # 9 Hub sources, the RAG set, 2 documented exclusions, 9 benchmarks
    assert len(hub_sources()) == 9
    assert len(dataset_sources()) == 10
    assert dataset_source_priority() == tuple(s.source_id for s in dataset_sources())
    assert dataset_source_priority()[:2] == ("medical_o1_verifiable_problem", "medical_o1_reasoning_sft")
    excluded = {s.hub_repo for s in excluded_sources()}
    assert excluded == {"Intelligent-Internet/II-Medical-Reasoning-SFT", "amu-cai/CAMEO"}
    assert sum(s.published_rows or 0 for s in SOURCES) == 84_325
    assert next(s for s in SOURCES if s.source_id == "medical_o1_reasoning_sft").config == "en"


def test_each_generated_source_names_one_task_and_the_rag_source_is_one_id():
    assert {s.source_id: s.task for s in generated_sources()} == {
        "medqa": "medqa_explanations",
        "wiki_medical_terms": "medical_term_questions",
        "symptom_to_diagnosis": "symptom_diagnoses",
        "extreme_firstaid_qa_dataset": "emergency_scenarios",
    }
    assert [s.source_id for s in SOURCES if s.role == "rag"] == ["extreme_firstaid_qa_dataset"]


def test_the_benchmarks_are_the_test_splits_medical_models_are_scored_on():
    assert [(s.source_id, s.hub_repo, s.config, s.split, s.pinned_by) for s in benchmark_sources()] == [
        ("medqa_usmle_test", "GBaker/MedQA-USMLE-4-options", None, "test", "registry"),
        ("medmcqa_validation", "openlifescienceai/medmcqa", None, "validation", "registry"),
        ("pubmedqa_labeled", "qiaojin/PubMedQA", "pqa_labeled", "train", "first_observation"),
        ("mmlu_anatomy", "cais/mmlu", "anatomy", "test", "registry"),
        ("mmlu_clinical_knowledge", "cais/mmlu", "clinical_knowledge", "test", "registry"),
        ("mmlu_college_biology", "cais/mmlu", "college_biology", "test", "registry"),
        ("mmlu_college_medicine", "cais/mmlu", "college_medicine", "test", "registry"),
        ("mmlu_medical_genetics", "cais/mmlu", "medical_genetics", "test", "registry"),
        ("mmlu_professional_medicine", "cais/mmlu", "professional_medicine", "test", "registry"),
    ]
    assert not {s.source_id for s in dataset_sources()} & {s.source_id for s in benchmark_sources()}
