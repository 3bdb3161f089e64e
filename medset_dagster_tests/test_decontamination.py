"""Benchmark decontamination on the sample mirrors: the benchmark mirrors load and map, every
planted overlap (input, context, output) is found with its item and span, the 12-token near miss
is not flagged at 13, and the publish gate catches a row that still matches."""

import polars as pl
import pytest

from medset_dagster.dataset import quality
from medset_dagster.dataset.decontamination import (
    CONTAMINATED_SCHEMA,
    DecontaminationConfig,
    build_index,
    decontaminate,
    find_contamination,
    source_benchmark_markdown,
    source_benchmark_table,
)
from medset_dagster.sources.loading import load_native_rows
from medset_dagster.sources.registry import benchmark_sources
from medset_dagster_tests.fixtures import sample_benchmarks, sample_mirrors

PLANTED_FLAGGED = [p for p in sample_benchmarks.PLANTED if p.flagged]


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> pl.DataFrame:
    """Every benchmark's items, loaded from its sample mirror with `datasets` and mapped."""
    cache = tmp_path_factory.mktemp("hf-cache")
    frames = []
    for spec in benchmark_sources():
        native = load_native_rows(spec, hub_root=sample_mirrors.HUB, revision=None, cache_dir=cache)
        mapped = spec.mapper(native).filter(pl.col("drop_reason").is_null()).drop("drop_reason")
        frames.append(mapped.select(pl.lit(spec.source_id).alias("benchmark"), pl.all()))
    return pl.concat(frames)


@pytest.fixture(scope="module")
def rows() -> pl.DataFrame:
    """Every sample source row as its mapper writes it (LLM sources: the item, reference as output)."""
    return sample_benchmarks.mapped_sample_rows().drop("drop_reason")


def test_the_benchmark_mirrors_load_with_datasets_and_map_to_items(items):
    counts = dict(items.group_by("benchmark").len().iter_rows())
    assert counts == {
        "medqa_usmle_test": 6, "medmcqa_validation": 6, "pubmedqa_labeled": 5, "mmlu_anatomy": 3, "mmlu_clinical_knowledge": 3,
        "mmlu_college_biology": 3, "mmlu_college_medicine": 3, "mmlu_medical_genetics": 3, "mmlu_professional_medicine": 3}
    first = {b: items.filter(pl.col("benchmark") == b).row(0, named=True) for b in counts}
    assert first["medmcqa_validation"]["item_id"] == "7d2c1e0a-0001-4c8e-9f01-000000000001"
    assert first["medmcqa_validation"]["answer"] == "Pain out of proportion to the examination"
    assert first["pubmedqa_labeled"]["item_id"] == "90000001" and first["pubmedqa_labeled"]["options"] == []
    assert first["medqa_usmle_test"]["options"] == ["Intravenous thiamine", "Intravenous dextrose", "Oral folic acid", "Haloperidol"]
    assert first["mmlu_clinical_knowledge"]["answer"] == "Liver"
    assert items.select("benchmark", "item_id").n_unique() == items.height


def test_every_planted_overlap_is_found_in_input_context_and_output(items, rows):
    kept, contaminated, stats = decontaminate(rows, build_index(items))
    assert contaminated.schema == pl.Schema(CONTAMINATED_SCHEMA)
    expected = []
    for p in PLANTED_FLAGGED:
        item_id = items.filter(pl.col("benchmark") == p.benchmark)["item_id"][p.split_row]
        expected.append((f"{p.source}-{p.row}", p.source, p.benchmark, item_id, p.field, p.tokens))
    assert sorted(contaminated.select("row_id", "source", "benchmark", "item_id", "field", "span_tokens").rows()) == sorted(expected)
    assert {r[4] for r in expected} == {"input", "context", "output"}
    spans = dict(zip(contaminated["row_id"], contaminated["matched_span"]))
    assert spans["medicationqa-8"] == "the maximum is 4 000 mg of acetaminophen paracetamol in 24 hours taken as no more than 1 000 mg at a time"
    assert spans["wiki_medical_terms-0"] == "it usually begins with vague pain around the navel that moves to the lower right abdomen over several hours"
    assert stats["removed"] == 5 and kept.height == rows.height - 5
    assert stats["removed_by_source_benchmark"] == {
        "medical_o1_reasoning_sft": {"medmcqa_validation": 1}, "medical_o1_verifiable_problem": {"medqa_usmle_test": 1},
        "medicationqa": {"mmlu_clinical_knowledge": 1}, "medqa": {"medqa_usmle_test": 1}, "wiki_medical_terms": {"pubmedqa_labeled": 1}}
    assert stats["index"]["medqa_usmle_test"] == {"items": 6, "items_indexed": 6, "ngrams": 113}
    table = source_benchmark_table(contaminated, ["medqa_usmle_test", "medmcqa_validation"])
    assert table.rows() == [("medical_o1_reasoning_sft", 0, 1, 1), ("medical_o1_verifiable_problem", 1, 0, 1),
                            ("medicationqa", 0, 0, 1), ("medqa", 1, 0, 1), ("wiki_medical_terms", 0, 0, 1)]
    assert source_benchmark_markdown(contaminated).splitlines()[0] == (
        "| source | medmcqa_validation | medqa_usmle_test | mmlu_clinical_knowledge | pubmedqa_labeled | total |")


def test_a_12_token_overlap_is_not_flagged_at_13_but_is_by_8_grams(items, rows):
    near_miss = next(p for p in sample_benchmarks.PLANTED if not p.flagged)
    row_id = f"{near_miss.source}-{near_miss.row}"
    assert row_id not in find_contamination(rows, build_index(items))["row_id"].to_list()
    eight = DecontaminationConfig.eight_gram(min_match_ratio=0.0)
    found = find_contamination(rows.filter(pl.col("row_id") == row_id), build_index(items, n=8), eight)
    assert found.select("benchmark", "field", "matched_span", "span_tokens").rows() == [
        ("mmlu_anatomy", "output", "pinch the soft part of the nose for 10 to 15 minutes", 12)]
    # With the match-ratio rule the five shared 8-grams are too small a share of the item's.
    assert find_contamination(rows.filter(pl.col("row_id") == row_id), build_index(items, n=8), DecontaminationConfig.eight_gram()).is_empty()


def test_exactly_13_shared_tokens_are_flagged_and_fields_are_scanned_separately():
    items = pl.DataFrame({"benchmark": ["b"], "item_id": ["i1"], "question": ["one two three four five six seven eight nine ten eleven twelve thirteen fourteen"],
                          "options": [["short option"]], "answer": [None]}, schema_overrides={"answer": pl.String})
    rows = pl.DataFrame({
        "row_id": ["r13", "r12", "split"],
        "source": ["s", "s", "s"],
        "input": ["ZERO one two three four five six seven eight nine ten eleven twelve thirteen", "one two three four five six seven eight nine ten eleven twelve", "one two three four five six seven"],
        "context": ["", "", ""],
        "output": ["", "", "eight nine ten eleven twelve thirteen fourteen"],
    })
    found = find_contamination(rows, build_index(items))
    assert found.select("row_id", "field", "span_tokens", "match_ratio").rows() == [("r13", "input", 13, 0.5)]


def test_the_publish_gate_fails_while_a_release_row_still_matches(items, rows):
    index = build_index(items)
    config = DecontaminationConfig()
    kept, _, _ = decontaminate(rows, index, config)
    assert quality.no_benchmark_overlap(kept, index, config).passed
    gate = quality.no_benchmark_overlap(rows, index, config)
    assert not gate.passed and gate.description == "5 release rows share a 13-gram with a benchmark item"
    assert {m["row_id"] for m in gate.details["matches"]} == {f"{p.source}-{p.row}" for p in PLANTED_FLAGGED}


def test_a_wrong_index_length_or_missing_columns_are_refused(items, rows):
    with pytest.raises(ValueError, match="8-grams"):
        find_contamination(rows, build_index(items, n=8))
    with pytest.raises(ValueError, match="needs columns"):
        find_contamination(rows.drop("context"), build_index(items))
    with pytest.raises(ValueError, match="unique"):
        build_index(pl.concat([items, items]))
