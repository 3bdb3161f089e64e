"""Each source's mapper: native rows in, exact records out, every drop rule hit at least once."""

import polars as pl
import pytest

from medset_dagster.sources.loading import map_source, with_item_ids
from medset_dagster.sources.registry import SOURCES_BY_ID


def run(source_id: str, rows: dict | list[dict], schema: dict | None = None):
    frame = pl.DataFrame(rows, schema=schema, strict=False) if schema else pl.DataFrame(rows)
    return map_source(SOURCES_BY_ID[source_id], frame)


def test_medical_o1_verifiable_problem():
    records, stats = run(
        "medical_o1_verifiable_problem",
        {
            "Open-ended Verifiable Question": ["  What causes scurvy? ", "What causes scurvy?", None, "Q3", "   "],
            "Ground-True Answer": ["Vitamin C deficiency ", "Other", "A", "", "B"],
        },
    )
    assert records.to_dicts() == [{"input": "What causes scurvy?", "context": "", "output": "Vitamin C deficiency"}]
    assert stats.dropped == {"missing_question": 2, "missing_answer": 1, "duplicate_input": 1}
    assert (stats.rows_read, stats.rows_mapped, stats.rows_kept) == (5, 2, 1)


def test_medical_o1_reasoning_sft_wraps_the_chain_of_thought_and_keeps_duplicates():
    records, stats = run(
        "medical_o1_reasoning_sft",
        {
            "Question": ["Why? ", "Why? ", "How?", "", "Who?"],
            "Complex_CoT": [" Think. ", "Think again.", None, "x", "y"],
            "Response": ["Because.", "Because.", "So.", "z", " "],
        },
    )
    assert records.to_dicts() == [
        {"input": "Why?", "context": "", "output": "<reasoning>\nThink.\n</reasoning>\nBecause."},
        {"input": "Why?", "context": "", "output": "<reasoning>\nThink again.\n</reasoning>\nBecause."},
    ]
    assert stats.dropped == {"missing_question": 1, "missing_reasoning": 1, "missing_response": 1}


def test_synthetic_disaster_reports_templates():
    records, stats = run(
        "synthetic_disaster_reports",
        {
            "disaster_type": ["Flood", "Flood", "Earthquake", "Fire", "Storm", None],
            "severity_level": ["HIGH", "HIGH", None, "Low", "low", "low"],
            "responder_notes": ["Roads cut off. ", "Roads cut off.", "x", "", "Wind.", "n"],
            "resource_needs": [[" boats", "", "water "], ["food"], ["a"], ["b"], [], ["c"]],
        },
    )
    assert records.to_dicts() == [
        {
            "input": "There is a high flood. Situation: Roads cut off.",
            "context": "",
            "output": "The main resources needed are: boats, water.",
        }
    ]
    assert stats.dropped == {
        "duplicate_input": 1,
        "missing_disaster_type": 1,
        "missing_resource_needs": 1,
        "missing_responder_notes": 1,
        "missing_severity_level": 1,
    }


def test_medicationqa_keeps_fields_unstripped_and_drops_null_answers():
    records, stats = run(
        "medicationqa",
        {
            "Question": [" how much ibuprofen? ", " how much ibuprofen? ", "what is x?", "  "],
            "Answer": ["400 mg\n", "400 mg\n", None, "a"],
            "Focus (Drug)": ["ibuprofen", "ibuprofen", "x", "y"],
        },
    )
    assert records.to_dicts() == [
        {"input": " how much ibuprofen? ", "context": "", "output": "400 mg\n"},
        {"input": " how much ibuprofen? ", "context": "", "output": "400 mg\n"},
    ]
    assert stats.dropped == {"missing_answer": 1, "missing_question": 1}


def test_diseases_symptoms_template():
    records, stats = run(
        "diseases_symptoms",
        {
            "Code": [1, 2, 3, 4, 5],
            "Name": ["Gout", "Gout", "", "Flu", "Cold"],
            "Symptoms": ["Painful big toe", "Painful big toe", "x", "Fever", None],
            "Treatments": ["NSAIDs, colchicine", "Rest", "y", None, "Rest"],
        },
    )
    assert records.to_dicts() == [
        {
            "input": "Painful big toe",
            "context": "",
            "output": "It seems you may have Gout. The usual treatment is NSAIDs, colchicine.",
        }
    ]
    assert stats.dropped == {"duplicate_input": 1, "missing_name": 1, "missing_symptoms": 1, "missing_treatments": 1}


def test_first_aid_takes_first_pattern_and_first_response():
    records, stats = run(
        "first_aid_dataset",
        [
            {"tag": "Cuts", "patterns": ["What to do if Cuts?", "cut"], "responses": [" Wash the cut. ", "b"]},
            {"tag": "Cuts2", "patterns": ["What to do if Cuts?"], "responses": ["Other"]},
            {"tag": "Empty", "patterns": [], "responses": ["x"]},
            {"tag": "NoResp", "patterns": ["p"], "responses": []},
            {"tag": "Blank", "patterns": ["q"], "responses": [""]},
            {"tag": "BlankP", "patterns": ["  "], "responses": ["r"]},
        ],
    )
    assert records.to_dicts() == [{"input": "What to do if Cuts?", "context": "", "output": "Wash the cut."}]
    assert stats.dropped == {
        "duplicate_input": 1,
        "empty_pattern": 1,
        "empty_response": 1,
        "no_patterns": 1,
        "no_responses": 1,
    }


def test_medqa_renders_options_and_the_correct_one():
    rows = [
        {"question": " Which drug? ", "options": {"A": "Aspirin", "B": "", "C": "Heparin", "D": "Warfarin"}, "answer": "Heparin"},
        {"question": "Which drug?", "options": {"A": "x", "B": "y", "C": "z", "D": "w"}, "answer": "x"},
        {"question": "Bad answer", "options": {"A": "x", "B": "y", "C": "z", "D": "w"}, "answer": "nothing"},
        {"question": "", "options": {"A": "x", "B": "y", "C": "z", "D": "w"}, "answer": "x"},
        {"question": "No answer", "options": {"A": "x", "B": "y", "C": "z", "D": "w"}, "answer": None},
        {"question": "No options", "options": {"A": "", "B": None, "C": " ", "D": ""}, "answer": "x"},
    ]
    items, stats = run("medqa", rows)
    assert items.to_dicts() == [
        {"input": "Which drug?", "context": "A) Aspirin\nC) Heparin\nD) Warfarin", "reference": "C) Heparin"}
    ]
    assert stats.dropped == {
        "answer_not_in_options": 1,
        "duplicate_input": 1,
        "missing_answer": 1,
        "missing_question": 1,
        "no_options": 1,
    }


def test_wiki_items_and_duplicate_articles():
    items, stats = run(
        "wiki_medical_terms",
        {"page_title": ["Asthma ", "Asthma copy", None, "Empty"], "page_text": [" Asthma is... ", "Asthma is...", "x", " "]},
    )
    assert items.to_dicts() == [{"input": "Asthma", "context": "Asthma is...", "reference": ""}]
    assert stats.dropped == {"duplicate_context": 1, "missing_text": 1, "missing_title": 1}


def test_symptom_items():
    items, stats = run(
        "symptom_to_diagnosis",
        {"input_text": ["I itch.", "I itch.", "", "I cough."], "output_text": ["psoriasis", "eczema", "x", " "]},
    )
    assert items.to_dicts() == [{"input": "I itch.", "context": "", "reference": "psoriasis"}]
    assert stats.dropped == {"duplicate_input": 1, "missing_diagnosis": 1, "missing_symptoms": 1}
    with_ids = with_item_ids(items, "symptom_to_diagnosis")
    assert with_ids.columns == ["item_id", "input", "context", "reference"]
    assert with_ids["item_id"].to_list() == with_item_ids(items, "symptom_to_diagnosis")["item_id"].to_list()
    assert len(with_ids["item_id"][0]) == 16


def test_a_number_where_text_belongs_becomes_text():
    records, _ = run(
        "diseases_symptoms",
        {"Name": ["Gout"], "Symptoms": [12345], "Treatments": ["Rest"]},
    )
    assert records["input"].to_list() == ["12345"]


@pytest.mark.parametrize("source_id", ["medical_o1_verifiable_problem", "medqa"])
def test_a_renamed_column_fails_naming_the_source_and_field(source_id, tmp_path):
    from medset_dagster.sources.loading import SourceError, load_native_rows

    spec = SOURCES_BY_ID[source_id]
    mirror = tmp_path / spec.hub_repo
    mirror.mkdir(parents=True)
    (mirror / "train.jsonl").write_text('{"renamed": "x", "answer": "y"}\n')
    with pytest.raises(SourceError) as error:
        load_native_rows(spec, hub_root=tmp_path, revision=None, cache_dir=tmp_path / "cache")
    assert source_id in str(error.value)
    assert spec.required_columns[0] in str(error.value)
