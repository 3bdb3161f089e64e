"""The registry is complete: every source has a revision, a licence and a mapper, or a reason."""

import pytest

from medset_dagster.sources.registry import (
    SOURCES,
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
    else:
        assert spec.hub_repo and spec.mapper is not None and spec.required_columns
        assert spec.revision and len(spec.revision) == 40 and int(spec.revision, 16) >= 0


def test_the_registry_names_the_cards_eleven_sources_and_ten_dataset_ids():
    assert len(SOURCES) == 12  # 9 Hub sources, the RAG set and 2 documented exclusions
    assert len(hub_sources()) == 9
    assert len(dataset_sources()) == 10
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
