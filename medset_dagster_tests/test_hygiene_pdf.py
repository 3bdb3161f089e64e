"""Text from PDFs (issue 9): Unicode repair, lost glyphs, de-hyphenation. Real pypdf extraction of the
cases' PDFs (cases/text_hygiene) and of PDFs built here with a ToUnicode CMap."""

from collections import Counter
from pathlib import Path

import pytest

from medset_dagster.retrieval.chunking import chunk_document
from medset_dagster.retrieval.pdf_text import PageText, clean_pages, extract_pages, restore_lost_ligatures
from medset_dagster_tests.fixtures.cmap_pdfs import cmap_pdf

CASES = Path(__file__).parent / "cases" / "text_hygiene"


# --- ligatures and compatibility forms ------------------------------------------------------------


def test_case_01_ligature_glyphs_are_expanded():
    document = clean_pages(extract_pages(CASES / "01_pdf_ligature_glyphs" / "input_ligatures.pdf"))
    for word in ("Atrial fibrillation", "firm", "Anti-inflammatory", "difficulty"):
        assert word in document.text
    assert not any("\ufb00" <= ch <= "\ufb06" for ch in document.text)
    assert document.stats.compatibility_characters == 4


def test_ligatures_through_a_tounicode_cmap_and_full_width_letters(tmp_path):
    pdf = cmap_pdf(
        tmp_path / "second_font.pdf",
        [["An e{ff}ective splint, ba{ffl}ing pain, {fi}rst aid, {C}{P}{R} now."]],
        {"ff": "FB00", "ffl": "FB04", "fi": "FB01", "C": "FF23", "P": "FF30", "R": "FF32"},
    )
    document = clean_pages(extract_pages(pdf))
    assert document.text == "An effective splint, baffling pain, first aid, CPR now."
    assert document.stats.compatibility_characters == 6


def test_meaningful_compatibility_characters_are_kept():
    document = clean_pages([PageText(1, "Platelets below 150 × 10⁹/L; a dose of 2 mg/m² and 5 µg.")])
    assert document.text == "Platelets below 150 × 10⁹/L; a dose of 2 mg/m² and 5 µg."


# --- NUL, control characters and U+FFFD -----------------------------------------------------------


def test_case_12_nul_never_reaches_chunks_and_lost_ligatures_are_restored_and_counted():
    document = clean_pages(extract_pages(CASES / "12_pdf_nul_and_replacement_chars_in_chunks" / "input_unmapped_glyphs.pdf"))
    assert document.text == (
        "Cut off the supply of air to a fat or oil fire with a damp cloth.\n"
        "Never pour water on burning oil; the fire can spread explosively.\n"
        "Turn off the heat source only if it is safe to reach it.\n"
        "Leave the kitchen, close the door and call the fire service."
    )
    # 3 unmapped "fi" (U+FFFD) + 2 NUL-for-"ff": all five restored, none left to count.
    assert document.stats.replacement_characters_restored == 5
    assert document.stats.replacement_characters == 0 and document.stats.replacement_pages == 0
    chunks, stats = chunk_document(document, doc_id="case12", doc_sha256="0" * 64, min_chars=10)
    assert not chunks["text"].str.contains("\x00|\ufffd").any()
    assert (stats.replacement_characters, stats.chunks_with_replacement_characters) == (0, 0)


def test_lost_glyphs_restored_only_where_the_word_is_clear():
    restore = lambda text, words=(): restore_lost_ligatures(text, Counter(words))  # noqa: E731
    # A common English word wins by a clear margin; capitals are kept.
    assert restore("E\ufffdective su\ufffdicient bene\ufffdt, o\ufffden the \ufffdrst") == ("Effective sufficient benefit, often the first", 5)
    assert restore("BREATHING IS DI\ufffdICULT") == ("BREATHING IS DIFFICULT", 1)
    # The document's own spelling decides a word no dictionary knows.
    assert restore("the Sca\ufffdold trial", ["scaffold"]) == ("the Scaffold trial", 1)
    assert restore("the gri\ufffdin test", ["griffin"]) == ("the griffin test", 1)
    # Unclear: no candidate is a word, two candidates are (a\ufffd: aft / aff?), or two glyphs are lost.
    assert restore("ma\ufffdx and \ufffd\ufffd and wa\ufffd\ufffdle") == ("ma\ufffdx and \ufffd\ufffd and wa\ufffd\ufffdle", 0)
    assert restore("Xq\ufffdz") == ("Xq\ufffdz", 0)


def test_a_pdf_restores_the_clear_lost_ligatures_and_keeps_the_rest_counted(tmp_path):
    pdf = cmap_pdf(
        tmp_path / "lost.pdf",
        [["The Zyq{x}o splint was e{nul}ective and the {x}rst choice.", "A{x}er that, ma{x}x."]],
        {"x": "FFFD", "nul": "0000"},
    )
    document = clean_pages(extract_pages(pdf))
    assert document.text == "The Zyq\ufffdo splint was effective and the first choice.\nAfter that, ma\ufffdx."
    assert (document.stats.replacement_characters, document.stats.replacement_characters_restored) == (2, 3)
    assert document.replacement_characters_by_page == ((1, 2),)


def test_control_characters_removed_and_a_page_of_replacement_characters_flagged(tmp_path):
    pdf = cmap_pdf(
        tmp_path / "unmapped.pdf",
        [["Cool the burn {nul} for twenty minutes {bell} under water."], ["{x}{x}{x}{x}{x}{x} {x}{x}{x}{x} ok"]],
        {"nul": "0000", "bell": "0007", "x": "FFFD"},
    )
    document = clean_pages(extract_pages(pdf))
    assert document.text.split("\n\n")[0] == "Cool the burn for twenty minutes under water."
    assert document.stats.control_characters_removed == 2
    assert document.replacement_characters_by_page == ((2, 10),)
    assert document.replacement_heavy_page_numbers == (2,)
    assert document.stats.replacement_heavy_pages == 1


# --- de-hyphenation -------------------------------------------------------------------------------


def test_case_02_u2010_hyphen_at_line_end_is_joined():
    document = clean_pages(extract_pages(CASES / "02_pdf_unicode_hyphen_not_joined" / "input_u2010_hyphen.pdf"))
    assert "Internal haemorrhage may follow" in document.text
    assert "growing confusion while" in document.text
    assert document.stats.hyphenations_joined == 2 and document.stats.hyphens_kept == 0


def test_u2010_hyphen_at_a_page_break_and_u2011_compound(tmp_path):
    pdf = cmap_pdf(
        tmp_path / "page_break.pdf",
        [["Give a non{nbh}", "steroidal drug for pain.", "Internal haemor{hy}"], ["rhage is serious."]],
        {"nbh": "2011", "hy": "2010"},
    )
    document = clean_pages(extract_pages(pdf))
    assert document.text == "Give a non\u2011steroidal drug for pain.\nInternal haemorrhage is serious."
    assert (document.stats.hyphenations_joined, document.stats.hyphens_kept) == (1, 1)
    assert document.page_at(document.text.index("rhage is")) == 2


@pytest.mark.parametrize(
    ("pages", "expected", "joined", "kept"),
    [
        # The document spells the compound with its hyphen elsewhere: kept.
        (["A life-\nthreatening bleed. Treat any life-threatening bleed first."],
         "A life-threatening bleed. Treat any life-threatening bleed first.", 0, 1),
        # The document spells the word closed elsewhere: joined, even with a hyphen-taking look.
        (["Start the treat-\nment now. The treatment works."], "Start the treatment now. The treatment works.", 1, 0),
        # No evidence: prefixes decide (anti- before a vowel, non-), otherwise join.
        (["Avoid anti-\ninflammatory drugs and non-\nsteroidal ones; inflam-\nmation follows."],
         "Avoid anti-inflammatory drugs and non-steroidal ones; inflammation follows.", 1, 2),
        # A soft hyphen is always a hyphenation point, across a page break too.
        (["Apply pres\u00ad\nsure and ele\u00ad", "vate the limb."], "Apply pressure and elevate the limb.", 2, 0),
        # Upper case after the break: a name, left as it is.
        (["Suspect Guillain-\nBarré syndrome."], "Suspect Guillain-\nBarré syndrome.", 0, 0),
    ],
)
def test_hyphen_at_line_end_decided_by_the_document(pages, expected, joined, kept):
    document = clean_pages([PageText(n, text) for n, text in enumerate(pages, 1)], page_separator=" ")
    assert document.text == expected
    assert (document.stats.hyphenations_joined, document.stats.hyphens_kept) == (joined, kept)
