"""The recursive character splitter: exact boundaries on small texts, invariants on the sample corpus."""

from __future__ import annotations

import pytest

from medset_dagster.retrieval.chunking import (
    CHUNK_SCHEMA,
    ChunkStats,
    chunk_document,
    chunk_id,
    split_spans,
)
from medset_dagster.retrieval.documents import SAMPLE_DOCUMENTS, SAMPLE_PDF_DIR
from medset_dagster.retrieval.pdf_text import PageText, clean_pages, extract_pages

DOC_SHA = "ab" * 32


def texts(text: str, spans: list[tuple[int, int]]) -> list[str]:
    return [text[s:e] for s, e in spans]


def test_paragraphs_merge_up_to_chunk_size():
    text = "Alpha beta.\n\nGamma delta.\n\nEpsilon."
    spans = split_spans(text, chunk_size=30, chunk_overlap=0)
    assert spans == [(0, 25), (27, 35)]
    assert texts(text, spans) == ["Alpha beta.\n\nGamma delta.", "Epsilon."]


def test_word_level_overlap_is_whole_words_within_budget():
    text = "one two three four five six seven eight nine ten"
    spans = split_spans(text, chunk_size=20, chunk_overlap=8)
    assert texts(text, spans) == ["one two three four", "four five six seven", "seven eight nine ten"]
    assert spans == [(0, 18), (14, 33), (28, 48)]


def test_oversized_paragraph_falls_back_to_sentences_then_words():
    text = "Stop the bleeding. Press hard on it. Keep pressing.\n\nCall for help now."
    spans = split_spans(text, chunk_size=40, chunk_overlap=0)
    assert texts(text, spans) == ["Stop the bleeding. Press hard on it.", "Keep pressing.", "Call for help now."]


def test_character_fallback_for_a_long_token():
    text = "x" * 25
    assert split_spans(text, chunk_size=10, chunk_overlap=3) == [(0, 10), (7, 17), (14, 24), (21, 25)]


def test_separator_priority_line_before_sentence():
    text = "First line. Still first line\nSecond line here"
    assert texts(text, split_spans(text, chunk_size=30, chunk_overlap=0)) == [
        "First line. Still first line",
        "Second line here",
    ]


@pytest.mark.parametrize("size,overlap", [(0, 0), (10, 10), (10, -1)])
def test_invalid_sizes_rejected(size, overlap):
    with pytest.raises(ValueError):
        split_spans("text", chunk_size=size, chunk_overlap=overlap)


def small_document():
    pages = [
        PageText(1, "Severe bleeding\nPress firmly on the wound with a clean cloth and keep pressing hard."),
        PageText(2, "Ok.\nRaise the injured limb if possible while pressing, and keep the person warm."),
    ]
    return clean_pages(pages)


def test_chunk_document_exact():
    document = small_document()
    assert document.text == (
        "Severe bleeding\nPress firmly on the wound with a clean cloth and keep pressing hard."
        "\n\nOk.\nRaise the injured limb if possible while pressing, and keep the person warm."
    )
    frame, stats = chunk_document(document, doc_id="doc", doc_sha256=DOC_SHA, chunk_size=70, chunk_overlap=0)
    assert frame.schema == CHUNK_SCHEMA
    assert frame.columns == ["chunk_id", "doc_id", "start", "end", "page_start", "page_end", "text"]
    rows = [(r["start"], r["end"], r["page_start"], r["page_end"], r["text"]) for r in frame.to_dicts()]
    assert rows == [
        (16, 84, 1, 1, "Press firmly on the wound with a clean cloth and keep pressing hard."),
        # 76 characters do not fit in 70: split on words; the tail "person warm." is too short.
        (90, 153, 2, 2, "Raise the injured limb if possible while pressing, and keep the"),
    ]
    # "Severe bleeding", "Ok." and "person warm." are under min_chars=50: dropped and counted.
    assert stats == ChunkStats(chunks=2, dropped_short=3, length_min=63, length_p50=68, length_p95=68, length_max=68)
    assert frame["chunk_id"][0] == chunk_id(DOC_SHA, 16, 84, rows[0][4])


def test_chunk_spanning_pages_reports_both():
    frame, _ = chunk_document(small_document(), doc_id="doc", doc_sha256=DOC_SHA, chunk_size=512, chunk_overlap=0)
    assert frame.select("start", "end", "page_start", "page_end").row(0) == (0, 166, 1, 2)


def test_ids_stable_and_document_specific():
    document = small_document()
    first, _ = chunk_document(document, doc_id="doc", doc_sha256=DOC_SHA, chunk_size=70, chunk_overlap=0)
    again, _ = chunk_document(document, doc_id="doc", doc_sha256=DOC_SHA, chunk_size=70, chunk_overlap=0)
    other, _ = chunk_document(document, doc_id="doc", doc_sha256="cd" * 32, chunk_size=70, chunk_overlap=0)
    assert first["chunk_id"].to_list() == again["chunk_id"].to_list()
    assert set(first["chunk_id"]).isdisjoint(other["chunk_id"])
    assert first["chunk_id"].to_list() == ["5e20ab94fc950d6b", "e47a85189a304deb"]


@pytest.fixture(scope="module")
def sample_documents():
    return [
        (spec, clean_pages(extract_pages(SAMPLE_PDF_DIR / spec.filename))) for spec in SAMPLE_DOCUMENTS
    ]


@pytest.mark.parametrize("size,overlap", [(512, 128), (200, 50), (64, 0), (30, 29)])
def test_invariants_on_sample_corpus(sample_documents, size, overlap):
    for spec, document in sample_documents:
        spans = split_spans(document.text, size, overlap)
        assert all(0 < e - s <= size for s, e in spans)
        for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
            assert s2 > s1 and e2 > e1  # in order, always moving forward
            assert e1 - s2 <= overlap  # overlap respected (a negative value is a whitespace gap)
            if s2 >= e1:
                assert document.text[e1:s2].strip() == ""  # a gap is only whitespace
        covered = set().union(*(range(s, e) for s, e in spans))
        assert all(i in covered for i, ch in enumerate(document.text) if not ch.isspace())


def test_sample_corpus_chunk_counts(sample_documents):
    results = {
        spec.doc_id: chunk_document(document, doc_id=spec.doc_id, doc_sha256=spec.sha256)[1]
        for spec, document in sample_documents
    }
    assert results == {
        "sample_field_injuries": ChunkStats(15, 0, 220, 432, 489, 509),
        "sample_field_environment": ChunkStats(12, 0, 174, 440, 497, 504),
    }
