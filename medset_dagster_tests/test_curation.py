"""Curation policies, the funnel, export, and each quality gate failing on data built to fail it."""

import json
import os

import polars as pl

from medset_dagster.dataset import quality
from medset_dagster.dataset.curation import CurationPolicy, curate, funnel_table
from medset_dagster.release.export import JSON_NAME, write_release_data
from medset_dagster.sources.registry import dataset_sources

DATASET_SOURCE_IDS = [s.source_id for s in dataset_sources()]


def frame(rows):
    return pl.DataFrame(rows, schema={"input": pl.String, "context": pl.String, "output": pl.String, "source": pl.String})


A = frame(
    [
        {"input": "What is asthma?", "context": "", "output": "A chronic airway disease.", "source": "medqa"},
        {"input": "what is  ASTHMA?", "context": "", "output": "A chronic airway disease. ", "source": "medqa"},
        {"input": "Short", "context": "", "output": "Long enough output here.", "source": "medqa"},
        {"input": "A long enough input", "context": "", "output": "x" * 1501, "source": "medqa"},
    ]
)
B = frame(
    [
        {"input": "What is asthma?", "context": "", "output": "A chronic airway disease.", "source": "medicationqa"},
        {"input": "How to treat a burn?", "context": "", "output": "Cool it under running water.", "source": "medicationqa"},
    ]
)


def test_card_policy_dedups_globally_and_filters_lengths():
    result = curate([A, B], CurationPolicy(name="card"))
    assert sorted(result.dataset["input"].to_list()) == ["How to treat a burn?", "What is asthma?"]
    # The first occurrence (registry order) wins the global dedup.
    assert result.dataset.filter(pl.col("input") == "What is asthma?")["source"].to_list() == ["medqa"]
    assert result.stage_counts.to_dicts() == [
        {"source": "medicationqa", "after_generation": 2, "after_field_bounds": 2, "after_global_dedup": 1, "after_length_filter": 1},
        {"source": "medqa", "after_generation": 4, "after_field_bounds": 4, "after_global_dedup": 3, "after_length_filter": 1},
    ]


def test_published_policy_keeps_everything_mapped():
    result = curate([A, B], CurationPolicy(name="published"))
    assert result.dataset.height == 6


def test_shuffle_is_seeded_and_independent_of_arrival_order():
    one = curate([A, B], CurationPolicy(name="published", seed=7)).dataset
    two = curate([B, A], CurationPolicy(name="published", seed=7)).dataset
    other_seed = curate([A, B], CurationPolicy(name="published", seed=8)).dataset
    assert one.equals(two)
    assert not one.equals(other_seed)
    assert one.sort("input", "output", "source").equals(other_seed.sort("input", "output", "source"))


def test_funnel_table_has_every_stage_and_a_total():
    result = curate([A, B], CurationPolicy(name="card"))
    stages = {
        # A generated source reports every stage up to generation; a record source stops earlier.
        "medqa": {"rows_read": 10, "after_mapping": 8, "after_source_dedup": 7, "after_sample_cap": 6, "after_generation": 4},
        "medicationqa": {"rows_read": 3, "after_mapping": 2, "after_source_dedup": 2},
    }
    table = funnel_table(stages, result.stage_counts, result.dataset)
    assert table.to_dicts() == [
        {"source": "medicationqa", "rows_read": 3, "after_mapping": 2, "after_source_dedup": 2, "after_sample_cap": 2, "after_generation": 2,
         "after_field_bounds": 2, "after_global_dedup": 1, "after_length_filter": 1, "final": 1},
        {"source": "medqa", "rows_read": 10, "after_mapping": 8, "after_source_dedup": 7, "after_sample_cap": 6, "after_generation": 4,
         "after_field_bounds": 4, "after_global_dedup": 3, "after_length_filter": 1, "final": 1},
        {"source": "TOTAL", "rows_read": 13, "after_mapping": 10, "after_source_dedup": 9, "after_sample_cap": 8, "after_generation": 6,
         "after_field_bounds": 6, "after_global_dedup": 4, "after_length_filter": 2, "final": 2},
    ]


def test_release_files_are_sharded_and_byte_identical_in_each_release_folder(tmp_path):
    dataset = curate([A, B], CurationPolicy(name="published")).dataset
    first = write_release_data(dataset, tmp_path / "one", max_rows_per_shard=4)
    assert [f.path for f in first] == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet", JSON_NAME]
    again = write_release_data(dataset, tmp_path / "two", max_rows_per_shard=4)
    assert [f.sha256 for f in first] == [f.sha256 for f in again]
    rows = json.loads((tmp_path / "one" / JSON_NAME).read_text())
    assert len(rows) == 6 and list(rows[0]) == ["input", "context", "output", "source"]
    assert pl.read_parquet(tmp_path / "one" / "data").equals(dataset)


def test_a_release_folder_becomes_current_atomically_and_old_ones_are_pruned(tmp_path):
    from medset_dagster.release.folders import (
        current_release,
        new_release_folder,
        prune_releases,
        publish_current,
    )

    pointer, releases = tmp_path / "release", tmp_path / "releases"
    assert current_release(pointer) is None
    folders = []
    for number in range(5):
        folder = new_release_folder(releases, f"run-{number}")
        (folder / "README.md").write_text(f"release {number}")
        os.utime(folder, (1_000_000 + number, 1_000_000 + number))
        publish_current(pointer, folder)
        folders.append(folder)
        assert (pointer / "README.md").read_text() == f"release {number}"
    pruned = prune_releases(releases, pointer, keep_previous=2)
    assert sorted(p.name for p in pruned) == ["run-0", "run-1"]
    assert sorted(p.name for p in releases.iterdir()) == ["run-2", "run-3", "run-4"]
    assert current_release(pointer) == folders[-1].resolve()


def test_a_release_folder_from_the_old_layout_is_kept_as_legacy(tmp_path):
    from medset_dagster.release.folders import new_release_folder, publish_current

    pointer = tmp_path / "release"
    pointer.mkdir()
    (pointer / "README.md").write_text("old layout")
    folder = new_release_folder(tmp_path / "releases", "new")
    publish_current(pointer, folder)
    assert pointer.is_symlink() and (tmp_path / "releases" / "legacy" / "README.md").read_text() == "old layout"


# --- quality gates: each shown passing on good data and failing on data built to fail it ---

GOOD = curate([A, B], CurationPolicy(name="card")).dataset


def test_exact_schema_gate():
    assert quality.exact_schema(GOOD).passed
    assert not quality.exact_schema(GOOD.select("input", "output", "context", "source")).passed
    assert not quality.exact_schema(GOOD.with_columns(pl.lit(1).alias("context"))).passed
    with_null = pl.concat([GOOD, frame([{"input": "a question", "context": None, "output": "an answer", "source": "medqa"}])])
    result = quality.exact_schema(with_null)
    assert not result.passed and result.details == {"nulls": 1, "null_columns": {"context": 1}}


def test_registered_sources_gate():
    assert quality.registered_sources(GOOD, DATASET_SOURCE_IDS).passed
    bad = GOOD.with_columns(pl.lit("made_up_source").alias("source"))
    result = quality.registered_sources(bad, DATASET_SOURCE_IDS)
    assert not result.passed and "made_up_source" in result.description


def test_no_duplicates_gate_follows_the_policy():
    card, published = CurationPolicy(name="card"), CurationPolicy(name="published")
    dedup_on = {"medqa": "input", "medicationqa": None}
    assert quality.no_duplicates(GOOD, card, dedup_on).passed
    near_copy = GOOD.head(1).with_columns(pl.col("input").str.to_uppercase())
    assert not quality.no_duplicates(pl.concat([GOOD, near_copy]), card, dedup_on).passed
    # Under `published`, only a source with a dedup rule may not repeat its field.
    repeated_medication = frame([{"input": "q?", "context": "", "output": "a", "source": "medicationqa"}] * 2)
    assert quality.no_duplicates(repeated_medication, published, dedup_on).passed
    repeated_medqa = repeated_medication.with_columns(pl.lit("medqa").alias("source"))
    assert quality.no_duplicates(repeated_medqa, published, dedup_on).details == {"duplicates": 1}


def test_length_bounds_gate():
    card = CurationPolicy(name="card")
    assert quality.length_bounds(GOOD, card).passed
    too_long = frame([{"input": "a fine question", "context": "", "output": "y" * 1501, "source": "medqa"}])
    assert quality.length_bounds(too_long, card).details["outside"] == 1
    assert quality.length_bounds(too_long, card).details["max_output_chars"] == 1501
    assert quality.length_bounds(too_long, CurationPolicy(name="published")).passed


def test_no_empty_fields_gate():
    assert quality.no_empty_fields(GOOD).passed
    empty = frame([{"input": "  ", "context": "", "output": "answer", "source": "medqa"}])
    assert quality.no_empty_fields(empty).details == {"empty": 1, "empty_columns": {"input": 1}}


def test_source_counts_steady_gate():
    assert quality.source_counts_steady({"medqa": 10}, None, 0.5).passed
    assert quality.source_counts_steady({"medqa": 6}, {"medqa": 10}, 0.5).passed
    result = quality.source_counts_steady({"medqa": 4}, {"medqa": 10, "medicationqa": 3}, 0.5)
    assert not result.passed
    assert result.details["fallen"] == {"medqa": {"before": 10, "now": 4}, "medicationqa": {"before": 3, "now": 0}}
    assert result.details["fallen_sources"] == 2 and result.details["change/medqa"] == -6
    assert "MEDSET_ACKNOWLEDGE_SHRINK=medqa,medicationqa" in result.description
    acknowledged = quality.source_counts_steady({"medqa": 4}, {"medqa": 10}, 0.5, acknowledged=["medqa"])
    assert acknowledged.passed and "acknowledged: medqa" in acknowledged.description


def test_field_bounds_gate_and_curation_drop_oversized_fields_under_both_policies():
    huge = frame([{"input": "What is a big cell?", "context": "x" * 100_001, "output": "It is too big to ship.", "source": "wiki_medical_terms"}])
    for name in ("card", "published"):
        policy = CurationPolicy(name=name)
        result = curate([A, huge], policy)
        assert "What is a big cell?" not in result.dataset["input"].to_list()
        counts = {row["source"]: row for row in result.stage_counts.to_dicts()}
        assert counts["wiki_medical_terms"]["after_generation"] == 1 and counts["wiki_medical_terms"]["after_field_bounds"] == 0
        assert quality.field_bounds(result.dataset, policy).passed
        gate = quality.field_bounds(pl.concat([result.dataset, huge.select(result.dataset.columns)]), policy)
        assert not gate.passed and gate.details["over_bound"] == 1 and "1 context" in gate.description
