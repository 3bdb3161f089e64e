"""Loading Hub sources with the registry's column types, and the normalised dedup key (issue 9)."""

import csv
import json
from pathlib import Path

import polars as pl
import pytest

from medset_dagster.dataset import quality
from medset_dagster.dataset.curation import CurationPolicy, curate
from medset_dagster.sources.loading import SourceError, load_native_rows, map_source
from medset_dagster.sources.registry import SOURCES_BY_ID

CASES = Path(__file__).parent / "cases" / "text_hygiene"
VERIFIABLE = SOURCES_BY_ID["medical_o1_verifiable_problem"]


def load(spec, root: Path, tmp_path: Path) -> pl.DataFrame:
    return load_native_rows(spec, hub_root=root, revision=None, cache_dir=tmp_path / "hf-cache")


def mirror(root: Path, spec, name: str) -> Path:
    folder = root / spec.hub_repo
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


# --- column types from the registry ---------------------------------------------------------------


def test_case_04_numbers_in_a_json_text_column_load_as_text(tmp_path):
    rows = load(VERIFIABLE, CASES / "04_hub_json_mixed_types_column" / "hub", tmp_path)
    records, stats = map_source(VERIFIABLE, rows)
    assert records["output"].to_list() == ["Thiamine (vitamin B1)", "Acute respiratory acidosis", "7.45", "30"]
    assert stats.rows_kept == 4


def test_json_lines_with_a_long_null_prefix_then_strings_and_a_number(tmp_path):
    spec = SOURCES_BY_ID["symptom_to_diagnosis"]
    path = mirror(tmp_path / "hub", spec, "train.jsonl")
    with path.open("w") as handle:  # about 3 MB of nulls before the first value
        for i in range(40_000):
            handle.write(json.dumps({"input_text": f"I have had a cough for {i} days and it keeps me awake.", "output_text": None}) + "\n")
        handle.write(json.dumps({"input_text": "My skin is red and itchy.", "output_text": "psoriasis"}) + "\n")
        handle.write(json.dumps({"input_text": "Code 12", "output_text": 12}) + "\n")
    assert path.stat().st_size > 2_000_000
    rows = load(spec, tmp_path / "hub", tmp_path)
    assert rows.schema["output_text"] == pl.String
    assert rows.tail(2)["output_text"].to_list() == ["psoriasis", "12"]
    assert rows["output_text"].null_count() == 40_000


def test_csv_with_a_column_empty_for_its_first_rows(tmp_path):
    spec = SOURCES_BY_ID["diseases_symptoms"]
    path = mirror(tmp_path / "hub", spec, "Diseases_Symptoms.csv")
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Code", "Name", "Symptoms", "Treatments"])
        writer.writerows([i, f"Disease {i}", f"Symptom {i}", ""] for i in range(30_000))
        writer.writerow([30_000, "Gout", "Painful big toe", "NSAIDs, colchicine"])
    rows = load(spec, tmp_path / "hub", tmp_path)
    assert rows.schema["Treatments"] == pl.String
    assert rows.tail(1)["Treatments"].to_list() == ["NSAIDs, colchicine"]


@pytest.mark.parametrize(("value", "kind"), [({"value": 7.45}, "object"), (["a", "b"], "array")])
def test_a_value_that_cannot_be_text_fails_naming_source_column_file_and_type(tmp_path, value, kind):
    path = mirror(tmp_path / "hub", VERIFIABLE, "medical_o1_verifiable_problem.json")
    path.write_text(json.dumps([
        {"Open-ended Verifiable Question": "Which vitamin?", "Ground-True Answer": "Thiamine"},
        {"Open-ended Verifiable Question": "Normal pH?", "Ground-True Answer": value},
    ]))
    with pytest.raises(SourceError) as error:
        load(VERIFIABLE, tmp_path / "hub", tmp_path)
    message = str(error.value)
    assert message.startswith("medical_o1_verifiable_problem: column 'Ground-True Answer' must be text")
    assert f"file {path} holds a JSON {kind}" in message


# --- the normalised dedup key ----------------------------------------------------------------------


def records(path: Path) -> pl.DataFrame:
    return pl.read_ndjson(path, schema={"input": pl.String, "context": pl.String, "output": pl.String, "source": pl.String})


def test_case_05_unicode_variants_are_one_record():
    frame = records(CASES / "05_dedup_unicode_variants_slip_through" / "input_records.jsonl")
    assert frame.height == 7
    result = curate(frame, CurationPolicy(name="card"))
    assert result.dataset["input"].to_list() == ["What is the first-line treatment for Ménière's disease attacks?"]
    assert quality.no_duplicates(result.dataset, CurationPolicy(name="card"), {}).passed
    # The gate uses the same key: the NBSP variant alone next to the plain one is a duplicate.
    assert quality.no_duplicates(frame.head(2), CurationPolicy(name="card"), {}).details == {"duplicates": 1}


def test_more_whitespace_and_format_variants_are_one_record():
    base = "Apply firm pressure to the wound for ten minutes."
    variants = [
        base,
        base.replace(" ", "\u3000", 1),  # one ideographic space
        base.replace(" ", "\u2009", 1),  # one thin space
        base.replace("firm", "fi\u2060rm"),  # word joiner
        base.replace("ten", "t\ufeffen"),  # BOM inside a word
        base.replace("Apply", "Ａｐｐｌｙ"),  # full-width letters
        base.replace("wound", "wou\u200dnd").upper(),  # zero-width joiner, upper case
    ]
    frame = pl.DataFrame({"input": variants, "context": "", "output": "Then check circulation.", "source": "first_aid_dataset"})
    assert curate(frame, CurationPolicy(name="card")).dataset["input"].to_list() == [base]
    different = frame.head(1).with_columns(pl.lit("Apply firm pressure to the wound for five minutes.").alias("input"))
    assert curate(pl.concat([frame.head(1), different]), CurationPolicy(name="card")).dataset.height == 2
