"""Extraction and cleaning, with real pypdf on the committed sample PDFs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pypdf import PdfWriter

from medset_dagster.retrieval.documents import SAMPLE_DOCUMENTS, SAMPLE_PDF_DIR
from medset_dagster.retrieval.pdf_text import (
    CleaningStats,
    PageText,
    PdfExtractionError,
    clean_pages,
    extract_pages,
    raw_document,
)

INJURIES, ENVIRONMENT = (SAMPLE_PDF_DIR / spec.filename for spec in SAMPLE_DOCUMENTS)
TITLES = {INJURIES: SAMPLE_DOCUMENTS[0].title, ENVIRONMENT: SAMPLE_DOCUMENTS[1].title}


@pytest.fixture(scope="module")
def pages() -> dict[Path, list[PageText]]:
    return {path: extract_pages(path) for path in (INJURIES, ENVIRONMENT)}


def test_page_counts_and_numbers(pages):
    assert len(pages[INJURIES]) == 8
    assert len(pages[ENVIRONMENT]) == 7
    assert [p.page_number for p in pages[INJURIES]] == list(range(1, 9))


def test_raw_pages_carry_header_and_footer(pages):
    page = pages[INJURIES][1]
    assert page.text.startswith(TITLES[INJURIES] + "\n")
    assert page.text.endswith("Page 2 of 8")


def test_cleaning_stats_exact(pages):
    assert clean_pages(pages[INJURIES]).stats == CleaningStats(
        pages=8, textless_pages=1, header_footer_lines_removed=14, hyphenations_joined=1, characters=5406
    )
    assert clean_pages(pages[ENVIRONMENT]).stats == CleaningStats(
        pages=7, textless_pages=1, header_footer_lines_removed=12, hyphenations_joined=1, characters=4013
    )


@pytest.mark.parametrize("path", [INJURIES, ENVIRONMENT])
def test_headers_and_footers_removed(pages, path):
    document = clean_pages(pages[path])
    assert TITLES[path] not in document.text
    assert "Page " not in document.text and " of 8" not in document.text
    assert document.running_lines == (TITLES[path].lower(), "page # of #")


def test_hyphenated_words_joined(pages):
    assert "haemor-\nrhage" in pages[INJURIES][2].text
    injuries = clean_pages(pages[INJURIES]).text
    assert "most haemorrhage from limbs" in injuries and "haemor-" not in injuries
    environment = clean_pages(pages[ENVIRONMENT]).text
    assert "quickly block breathing." in environment and "breath-" not in environment
    # Real compound words on one line keep their hyphen.
    assert "life-threatening" in injuries


def test_textless_page_counted_not_fatal(pages):
    assert pages[INJURIES][4].text == ""
    assert clean_pages(pages[INJURIES]).textless_page_numbers == (5,)
    assert clean_pages(pages[ENVIRONMENT]).textless_page_numbers == (4,)


def test_page_mapping_of_known_sentences(pages):
    document = clean_pages(pages[INJURIES])
    for sentence, page in [
        ("Check whether the person responds.", 2),
        ("most haemorrhage from limbs", 3),
        ("Suspect a broken bone when there is pain", 6),  # after the image-only page 5
        ("Shock means that the organs", 8),
    ]:
        start = document.text.index(sentence)
        assert document.page_range(start, start + len(sentence)) == (page, page)
    assert document.page_at(0) == 1
    assert document.page_at(len(document.text) - 1) == 8
    # The paragraph break joining pages 1 and 2 counts toward page 1.
    boundary = document.text.index("\n\nAirway and breathing basics")
    assert document.page_at(boundary) == 1 and document.page_at(boundary + 2) == 2


def test_paragraph_breaks_between_pages_and_whitespace_normalised(pages):
    text = clean_pages(pages[ENVIRONMENT]).text
    assert "\n\nSerious burns\n" in text
    assert "\n\n\n" not in text and "  " not in text and text == text.strip()


def test_published_concatenation_has_no_separator(pages):
    document = raw_document(pages[INJURIES])
    assert "Page 1 of 8" + TITLES[INJURIES] in document.text
    assert document.stats.characters == sum(len(p.text) for p in pages[INJURIES])
    assert document.page_numbers == (1, 2, 3, 4, 6, 7, 8)


def test_hyphenation_across_pages_and_running_line_threshold():
    pages = [
        PageText(1, "Manual\nBleeding can be severe and may cause haemor-"),
        PageText(2, "Manual\nrhage that needs pressure.\n7"),
        PageText(3, "Other top line\nA third page.\n8"),
    ]
    document = clean_pages(pages)
    # "Manual" and the bare page numbers recur on 2 of 3 pages (>= 50%): running lines.
    assert document.text == "Bleeding can be severe and may cause haemorrhage that needs pressure.\n\nOther top line\nA third page."
    assert document.stats.hyphenations_joined == 1
    assert document.stats.header_footer_lines_removed == 4
    assert document.page_at(document.text.index("rhage")) == 2


def test_body_line_matching_a_header_is_kept_away_from_edges():
    body = ["one", "two", "three", "Manual", "four", "five", "six"]
    pages = [PageText(n, "\n".join(["Manual", *body])) for n in (1, 2)]
    text = clean_pages(pages).text
    assert text.count("Manual") == 2  # only the top-edge copies went


def test_corrupt_pdf_fails_naming_file(tmp_path):
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(b"%PDF-1.7\nthis is not really a pdf\n" * 20)
    with pytest.raises(PdfExtractionError, match="garbage.pdf"):
        extract_pages(garbage)
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(INJURIES.read_bytes()[:4000])
    with pytest.raises(PdfExtractionError, match="truncated.pdf.*unreadable"):
        extract_pages(truncated)


def test_encrypted_pdf_fails_naming_file(tmp_path):
    locked = tmp_path / "locked.pdf"
    writer = PdfWriter(clone_from=INJURIES)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    writer.write(locked)
    with pytest.raises(PdfExtractionError, match=r"locked\.pdf: encrypted"):
        extract_pages(locked)


def test_permission_only_encryption_is_read(tmp_path):
    """An empty user password (common on published PDFs) only restricts permissions: readable."""
    restricted = tmp_path / "restricted.pdf"
    writer = PdfWriter(clone_from=INJURIES)
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    writer.write(restricted)
    assert [p.text for p in extract_pages(restricted)] == [p.text for p in extract_pages(INJURIES)]
