"""Near-duplicate removal: planted near-duplicates are found, templated rows are not merged, runs
are deterministic, and the source-loss guard names the source it protects."""

import polars as pl
import pytest

from medset_dagster.dataset import ngrams, quality
from medset_dagster.dataset.near_duplicates import (
    NearDuplicateConfig,
    remove_near_duplicates,
)
from medset_dagster.sources.mappers import REASONING_FORMAT
from medset_dagster_tests.fixtures.sample_mirrors import (
    DISASTER_GOOD,
    DISEASES_GOOD,
    REASONING_EN_GOOD,
)


def test_vectorised_tokens_and_ngrams_equal_the_reference_on_awkward_text():
    texts = ["The patient’s BP—120/80 mmHg.", "", None, "Sjögren SYNDROME × 2 … «quoted» ½ 中文", "a b c d e f g", "x"]
    tokenised = ngrams.segment_tokens(pl.Series(texts, dtype=pl.String))
    assert ngrams.tokens(texts[0]) == ["the", "patient", "s", "bp", "120", "80", "mmhg"]
    assert ngrams.tokens(texts[3]) == ["sjögren", "syndrome", "2", "quoted", "中文"]
    assert pl.select(ngrams.tokens_expr(pl.lit(texts[3]))).item().to_list() == ngrams.tokens(texts[3])
    for n in (1, 3, 5):
        grams = ngrams.ngram_hashes(tokenised, n, short_segments=True)
        offsets = grams.offsets(len(texts))
        for i, text in enumerate(texts):
            words = ngrams.tokens(text or "")
            assert tokenised.hashes[tokenised.offsets[i] : tokenised.offsets[i + 1]].tolist() == [ngrams.hash_token(w) for w in words]
            expected = [ngrams.hash_ngram(words[p : p + n]) for p in range(len(words) - n + 1)] if len(words) >= n else (
                [ngrams.hash_ngram(words)] if words else [])
            assert grams.hashes[offsets[i] : offsets[i + 1]].tolist() == expected


def _reasoning(i: int) -> tuple[str, str]:
    """A reasoning row as its mapper writes it: the output holds the chain of thought and the answer."""
    question, cot, response = REASONING_EN_GOOD[i]
    return question, REASONING_FORMAT.format(cot, response)


def _planted() -> pl.DataFrame:
    """Ten distinct reasoning rows, three planted variants of row r0, and templated rows."""
    rows = []
    for i in range(10):
        question, response = _reasoning(i)
        rows.append((f"r{i}", "medical_o1_reasoning_sft", question, response))
    question, output = _reasoning(0)
    sentences = output.split(". ")
    rows.append(("reworded", "medqa", question.replace("fatigue", "tiredness"), output.replace("most likely", "most probable")))
    rows.append(("reordered", "medicationqa", question, ". ".join([*sentences[:2], sentences[3], sentences[2], *sentences[4:]])))
    rows.append(("truncated", "medical_o1_verifiable_problem", question, ". ".join(sentences[:-1]) + "."))
    for i, (name, symptoms, treatments) in enumerate(DISEASES_GOOD):
        rows.append((f"d{i}", "diseases_symptoms", symptoms, f"It seems you may have {name}. The usual treatment is {treatments}."))
    for i, (kind, severity, _, notes, needs) in enumerate(DISASTER_GOOD):
        rows.append((f"s{i}", "synthetic_disaster_reports", f"There is a {severity.lower()} {kind.lower()}. Situation: {notes}",
                     f"The main resources needed are: {', '.join(needs)}."))
    return pl.DataFrame(rows, schema=["row_id", "source", "input", "output"], orient="row")


def test_planted_near_duplicates_are_found_and_templated_rows_are_not_merged():
    rows = _planted()
    kept, removed, stats = remove_near_duplicates(rows)
    # medical_o1_verifiable_problem ranks first in the registry, so the truncated copy is kept.
    assert removed.select("row_id", "source", "cluster_id", "cluster_size", "kept_row_id", "kept_source").rows() == [
        ("r0", "medical_o1_reasoning_sft", 0, 4, "truncated", "medical_o1_verifiable_problem"),
        ("reworded", "medqa", 0, 4, "truncated", "medical_o1_verifiable_problem"),
        ("reordered", "medicationqa", 0, 4, "truncated", "medical_o1_verifiable_problem"),
    ]
    # MinHash estimates under seed 42 (true 5-gram Jaccard to the kept row: 0.92, 0.86, 0.81).
    assert removed["similarity"].to_list() == [0.9140625, 0.859375, 0.8046875]
    assert kept.height == rows.height - 3
    assert set(kept["row_id"]) >= {f"d{i}" for i in range(len(DISEASES_GOOD))} | {f"s{i}" for i in range(len(DISASTER_GOOD))}
    assert stats["removed_by_source"] == {"medical_o1_reasoning_sft": 1, "medicationqa": 1, "medqa": 1}
    assert stats["clusters"] == 1 and stats["largest_clusters"][0]["size"] == 4
    assert stats["largest_clusters"][0]["sources"] == {
        "medical_o1_reasoning_sft": 1, "medical_o1_verifiable_problem": 1, "medicationqa": 1, "medqa": 1}


def test_an_explicit_source_priority_changes_the_kept_row_only():
    config = NearDuplicateConfig(source_priority=("medqa",))
    kept, removed, _ = remove_near_duplicates(_planted(), config)
    assert sorted(removed["row_id"]) == ["r0", "reordered", "truncated"]
    assert set(removed["kept_row_id"]) == {"reworded"}


def test_two_runs_give_identical_clusters_and_the_seed_is_what_decides():
    rows = _planted()
    first, second = remove_near_duplicates(rows), remove_near_duplicates(rows)
    assert first.near_duplicates.equals(second.near_duplicates)
    assert first.kept.equals(second.kept)
    assert first.stats == second.stats
    other_seed = remove_near_duplicates(rows, NearDuplicateConfig(seed=7))
    assert sorted(other_seed.near_duplicates["row_id"]) == sorted(first.near_duplicates["row_id"])
    assert other_seed.near_duplicates["similarity"].to_list() != first.near_duplicates["similarity"].to_list()


def test_empty_and_blank_rows_are_never_near_duplicates():
    rows = pl.DataFrame({"row_id": ["a", "b", "c"], "source": ["x"] * 3, "input": ["", "  ", None], "output": ["", "...", None]})
    kept, removed, stats = remove_near_duplicates(rows)
    assert kept.height == 3 and removed.is_empty() and stats["candidates"] == 0


def test_the_source_loss_guard_names_the_source_and_its_clusters_unless_acknowledged():
    notes = ("Shallow flooding of streets and basements in the lower village after two days of rain. No injuries "
             "reported, but residents worry about contaminated wells and diarrhoeal illness in the coming days. "
             "The community hall is open as a shelter with blankets and drinking water, and the road to the "
             "district hospital remains passable for ambulances. Volunteers are checking on elderly residents "
             "who live alone along the river. Team")
    rows = pl.DataFrame({
        "row_id": [f"s{i}" for i in range(10)] + ["m0"],
        "source": ["synthetic_disaster_reports"] * 10 + ["medqa"],
        "input": [f"There is a low flood. Situation: {notes} {i}." for i in range(10)] + ["An unrelated question about gout."],
        "output": ["The main resources needed are: sandbags, pumps."] * 10 + ["Colchicine"],
    })
    _, removed, stats = remove_near_duplicates(rows)
    assert stats["removed_by_source"] == {"synthetic_disaster_reports": 9}
    gate = quality.near_duplicate_source_loss(stats, max_share=0.2)
    assert not gate.passed
    assert "synthetic_disaster_reports (9 of 10, 90%)" in gate.description
    clusters = gate.details["sources"]["synthetic_disaster_reports"]["largest_clusters"]
    assert clusters[0]["size"] == 10 and clusters[0]["kept_row_id"] == "s0"
    assert clusters[0]["preview"].startswith("There is a low flood. Situation: Shallow flooding")
    waived = quality.near_duplicate_source_loss(stats, max_share=0.2, acknowledged=["synthetic_disaster_reports"])
    assert waived.passed and waived.details == {"acknowledged": ["synthetic_disaster_reports"]}
    assert quality.near_duplicate_source_loss(stats, max_share=0.95).passed


def test_missing_columns_and_repeated_ids_are_refused():
    with pytest.raises(ValueError, match="needs columns"):
        remove_near_duplicates(pl.DataFrame({"row_id": ["a"], "input": ["x"]}))
    with pytest.raises(ValueError, match="unique"):
        remove_near_duplicates(pl.DataFrame({"row_id": ["a", "a"], "source": ["x", "x"], "input": ["p", "q"], "output": ["", ""]}))
    with pytest.raises(ValueError, match="multiple"):
        NearDuplicateConfig(num_perm=100, num_bands=16)
