"""The full-profile rehearsal data: synthetic mirrors of the nine sources at real size, served over HTTP.

At scale 0.05 the mirrors are generated, committed into the loopback Hub under the registry's pinned
revisions, and loaded by the pipeline's own `load_native_rows` + `map_source` in a process whose
HF_ENDPOINT is the loopback Hub: every source must report exactly the counts the generator planned.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader

from medset_dagster.retrieval.pdf_text import PageText, clean_pages
from medset_dagster.sources.registry import SOURCES_BY_ID, hub_sources
from medset_dagster_tests.fixtures.full_mirrors import (
    PUBLISHED_KEPT,
    build_mirrors,
    check_local,
    expected_stats,
    plan_counts,
    push_mirrors,
    stats_fields,
    write_mirrors,
)
from medset_dagster_tests.servers.hub_process import load_over_http
from medset_dagster_tests.servers.hub_server import HubServer

SCALE = 0.05

# The published policy's counts on the real sources (shared/reference/sources.md).
REAL_ROWS = {
    "medical_o1_verifiable_problem": 40_644,
    "medical_o1_reasoning_sft": 19_704,
    "medqa": 10_178,
    "wiki_medical_terms": 6_861,
    "symptom_to_diagnosis": 853,
    "synthetic_disaster_reports": 1_000,
    "medicationqa": 690,
    "diseases_symptoms": 400,
    "first_aid_dataset": 44,
}

# What the pipeline must report on the scale-0.05 mirrors: (rows read, rows kept, drops by reason).
AT_0_05 = {
    "medical_o1_verifiable_problem": (2032, 2014, {"duplicate_input": 16, "missing_answer": 1, "missing_question": 1}),
    "medical_o1_reasoning_sft": (985, 985, {}),
    "medqa": (509, 508, {"duplicate_input": 1}),
    "wiki_medical_terms": (343, 340, {"duplicate_context": 1, "missing_text": 1, "missing_title": 1}),
    "symptom_to_diagnosis": (43, 41, {"duplicate_input": 1, "missing_symptoms": 1}),
    "synthetic_disaster_reports": (50, 50, {}),
    "medicationqa": (35, 35, {}),
    "diseases_symptoms": (20, 18, {"duplicate_input": 1, "missing_treatments": 1}),
    "first_aid_dataset": (9, 5, {"duplicate_input": 1, "empty_response": 1, "no_patterns": 1, "no_responses": 1}),
}


@pytest.fixture(scope="module")
def mirrors():
    return build_mirrors(SCALE)


def test_the_plan_gives_the_real_sizes_and_the_published_counts_at_full_scale() -> None:
    full = expected_stats(1.0)
    assert {sid: s["rows_read"] for sid, s in full.items()} == REAL_ROWS
    assert {sid: s["rows_kept"] for sid, s in full.items()} == PUBLISHED_KEPT
    for sid, stats in full.items():
        if sid != "wiki_medical_terms":  # its registry count is of generated rows, not of inputs
            assert stats["rows_kept"] == SOURCES_BY_ID[sid].published_rows, sid
    extra = plan_counts(1.0)
    assert extra["medqa"].extra_files == {"validation": 1_272, "test": 1_273}
    assert extra["symptom_to_diagnosis"].extra_files == {"test": 212}


def test_reduced_counts_are_planned_exactly(mirrors) -> None:
    assert {sid: (s["rows_read"], s["rows_kept"], s["dropped"]) for sid, s in mirrors.expected.items()} == AT_0_05
    assert mirrors.expected == expected_stats(SCALE)


def test_mirrors_over_http_at_pinned_revisions_give_the_exact_counts(mirrors, tmp_path: Path) -> None:
    with HubServer(lfs=True) as hub:
        shas = push_mirrors(hub, mirrors)
        assert shas == {spec.source_id: spec.revision for spec in hub_sources()}, "each mirror sits at the registry's pin"
        for spec in hub_sources():  # upstream moves on after the pin; the pipeline must not follow
            hub.push(spec.hub_repo, {"CHANGELOG.md": b"a newer upstream commit\n"})
        assert hub.lfs_files("gamino/wiki_medical_terms", shas["wiki_medical_terms"]) == {"wiki_medical_terms.parquet"}

        results = load_over_http(
            hub.endpoint,
            [{"label": spec.source_id, "source_id": spec.source_id, "revision": spec.revision} for spec in hub_sources()],
            hf_home=tmp_path / "hf",
        )
        for result in results:
            assert result["error"] is None, f"{result['label']}: {result['error']}"
            assert stats_fields(result["stats"]) == mirrors.expected[result["label"]], result["label"]

        read_at = {r.path.split("/resolve/")[1].split("/")[0] for r in hub.requests_to("resolve")}
        assert read_at <= set(shas.values()), "every file was read at its pinned revision"
        assert len(hub.requests_to("cdn")) == 3, "the three Parquet files came through the CDN redirect"


def test_mirrors_are_seeded_and_written_in_the_sample_layout(mirrors, tmp_path: Path) -> None:
    again = build_mirrors(SCALE, pdf=False)
    assert again.repos == mirrors.repos, "same seed, same bytes"
    assert build_mirrors(SCALE, seed=99, pdf=False).repos != mirrors.repos

    write_mirrors(mirrors, tmp_path / "hub", tmp_path / "pdfs")
    assert (tmp_path / "hub" / "FreedomIntelligence" / "medical-o1-reasoning-SFT" / "README.md").is_file()
    assert (tmp_path / "hub" / "badri55" / "First_aid__dataset" / "first_aid1.json").is_file()
    # The sample profile's local-folder path reads the same counts.
    assert check_local(tmp_path / "hub", mirrors.expected) == {spec.source_id: "" for spec in hub_sources()}


def test_the_guideline_pdf_has_the_planned_pages_and_running_lines(mirrors) -> None:
    reader = PdfReader(io.BytesIO(mirrors.pdf))
    assert len(reader.pages) == mirrors.pdf_pages == 12
    document = clean_pages([PageText(i + 1, page.extract_text()) for i, page in enumerate(reader.pages)])
    assert document.textless_page_numbers == (6,)
    assert "page # of #" in document.running_lines
    assert document.stats.hyphenations_joined == 1 and "haemorrhage control" in document.text
