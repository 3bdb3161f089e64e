"""Deriving the release licence from the sources' licences (sources.md, "What the card claims")."""

from __future__ import annotations

import pytest

from medset_dagster.release.licensing import (
    LicenceConflictError,
    classify_licence,
    derive_release_licence,
)

# The published build's sources with their licences, plus the two PDFs behind the generated first-aid set.
SOURCES = {
    "medical_o1_verifiable_problem": "apache-2.0",
    "medical_o1_reasoning_sft": "apache-2.0",
    "medqa": "none declared (upstream MedQA: MIT)",
    "wiki_medical_terms": "gpl-3.0",
    "symptom_to_diagnosis": "apache-2.0",
    "synthetic_disaster_reports": "unknown",
    "medicationqa": "none declared",
    "diseases_symptoms": "none declared",
    "first_aid_dataset": "unknown",
    "extreme_firstaid_qa_dataset": "derived",
    "who_basic_emergency_care_pdf": "CC BY-NC-SA 3.0 IGO",
}
DERIVED = {"extreme_firstaid_qa_dataset": ["who_basic_emergency_care_pdf"]}
UNCLEAR = ["medqa", "synthetic_disaster_reports", "medicationqa", "diseases_symptoms", "first_aid_dataset"]


def test_declaring_cc_by_over_gpl_and_non_commercial_sources_raises_naming_them() -> None:
    with pytest.raises(LicenceConflictError) as caught:
        derive_release_licence(SOURCES, "cc-by-4.0", False, derived_from=DERIVED)

    err = caught.value
    by_source = {source: licence for source, licence, _ in err.conflicts}
    assert by_source["wiki_medical_terms"] == "gpl-3.0"
    assert by_source["who_basic_emergency_care_pdf"] == "CC BY-NC-SA 3.0 IGO"
    assert set(by_source) == {"wiki_medical_terms", "who_basic_emergency_care_pdf", "extreme_firstaid_qa_dataset"}
    text = str(err)
    for needle in ("wiki_medical_terms", "gpl-3.0", "who_basic_emergency_care_pdf", "CC BY-NC-SA 3.0 IGO", "cc-by-4.0"):
        assert needle in text
    for source in UNCLEAR:
        assert source not in by_source, "unclear licences are not conflicts"


def test_acknowledged_conflict_returns_the_declared_licence_with_the_statement() -> None:
    decision = derive_release_licence(SOURCES, "CC-BY-4.0", True, derived_from=DERIVED)

    assert decision.licence == "cc-by-4.0"
    assert {c[0] for c in decision.conflicts} == {"wiki_medical_terms", "who_basic_emergency_care_pdf", "extreme_firstaid_qa_dataset"}
    statement = decision.notes[0]
    assert "card must state" in statement
    assert "wiki_medical_terms [gpl-3.0]" in statement and "who_basic_emergency_care_pdf [CC BY-NC-SA 3.0 IGO]" in statement
    unclear = next(n for n in decision.notes if n.startswith("Licence unclear"))
    for source in UNCLEAR:
        assert source in unclear


def test_custom_non_commercial_pdf_terms_conflict_with_a_permissive_declaration() -> None:
    sources = {"ifrc_first_aid_guidelines_pdf": "non-commercial copying with acknowledgement", "medqa": "mit"}
    with pytest.raises(LicenceConflictError, match="ifrc_first_aid_guidelines_pdf"):
        derive_release_licence(sources, "apache-2.0", False)
    # A standard non-commercial licence does not relicense custom terms either.
    with pytest.raises(LicenceConflictError, match="custom terms"):
        derive_release_licence(sources, "cc-by-nc-4.0", False)


def test_default_for_the_full_build_is_other_with_per_source_terms() -> None:
    decision = derive_release_licence(SOURCES, None, False, derived_from=DERIVED)

    assert decision.licence == "other"
    assert decision.conflicts == []
    why, terms = decision.notes[0], decision.notes[1]
    assert "wiki_medical_terms" in why and "who_basic_emergency_care_pdf" in why
    assert "No commercial use of the rows from extreme_firstaid_qa_dataset" in why
    assert "wiki_medical_terms: gpl-3.0" in terms and "extreme_firstaid_qa_dataset: terms of who_basic_emergency_care_pdf" in terms
    assert any(n.startswith("Licence unclear") for n in decision.notes)


def test_default_with_gpl_and_permissive_sources_is_gpl() -> None:
    sources = {k: v for k, v in SOURCES.items() if v in ("apache-2.0", "gpl-3.0")}
    decision = derive_release_licence(sources, None, False)
    assert decision.licence == "gpl-3.0"
    assert "wiki_medical_terms" in decision.notes[0]
    assert decision.unestablished() == []


# The sample build's sources as the card's dataset_card asset passes them: the registry's licences of
# the ten sources, and the two CC0 sample PDFs the RAG answers were generated from.
SAMPLE = {
    "diseases_symptoms": "none declared",
    "extreme_firstaid_qa_dataset": "derived (PDFs: CC BY-NC-SA 3.0 IGO)",
    "first_aid_dataset": "unknown",
    "medical_o1_reasoning_sft": "apache-2.0",
    "medical_o1_verifiable_problem": "apache-2.0",
    "medicationqa": "none declared",
    "medqa": "none declared (upstream MedQA: MIT)",
    "symptom_to_diagnosis": "apache-2.0",
    "synthetic_disaster_reports": "unknown",
    "wiki_medical_terms": "gpl-3.0",
    "sample_field_injuries": "CC0-1.0",
    "sample_field_environment": "CC0-1.0",
}
SAMPLE_DERIVED = {"extreme_firstaid_qa_dataset": ["sample_field_injuries", "sample_field_environment"]}


def test_sources_without_established_rights_make_the_derived_licence_other() -> None:
    """The sample build used to declare gpl-3.0 although five sources have unclear terms."""
    decision = derive_release_licence(SAMPLE, None, False, derived_from=SAMPLE_DERIVED)
    assert decision.licence == "other" and decision.conflicts == []
    unclear = ["diseases_symptoms", "first_aid_dataset", "medicationqa", "medqa", "synthetic_disaster_reports"]
    assert decision.unestablished() == unclear
    assert decision.notes[0] == (
        "other: " + ", ".join(unclear) + " have no established redistribution rights (licence unclear), so no "
        "licence can be declared for their rows. Each source's rows keep that source's terms."
    )
    # Without them, the same sources give the GPL (wiki_medical_terms' share-alike terms).
    known = {k: v for k, v in SAMPLE.items() if k not in unclear}
    assert derive_release_licence(known, None, False, derived_from=SAMPLE_DERIVED).licence == "gpl-3.0"


def test_the_generated_source_carries_the_licence_of_the_documents_actually_used() -> None:
    decision = derive_release_licence(SAMPLE, None, False, derived_from=SAMPLE_DERIVED)
    rag = decision.sources["extreme_firstaid_qa_dataset"]
    assert rag.licence == "CC0-1.0 (generated from sample_field_injuries, sample_field_environment)"
    assert rag.established and rag.derived_from == ("sample_field_injuries", "sample_field_environment")
    assert "NC-SA" not in " ".join(n for n in decision.notes)
    assert decision.sources["medqa"].licence == "none declared (upstream MedQA: MIT)"
    assert not decision.sources["medqa"].established
    assert decision.sources["sample_field_injuries"].licence == "CC0-1.0"
    assert set(decision.sources) == set(SAMPLE)
    # The full build's document: the same source states the non-commercial terms.
    full = derive_release_licence(SOURCES, None, False, derived_from=DERIVED)
    assert full.sources["extreme_firstaid_qa_dataset"].licence == (
        "CC BY-NC-SA 3.0 IGO (generated from who_basic_emergency_care_pdf)"
    )
    # A generated source whose inputs are unclear has no established terms either.
    unclear_pdf = derive_release_licence({"gen": "derived", "pdf": "unknown", "a": "mit"}, None, False,
                                         derived_from={"gen": ["pdf"]})
    assert unclear_pdf.unestablished() == ["gen", "pdf"] and unclear_pdf.licence == "other"


def test_default_with_non_commercial_pdfs_only_keeps_their_terms() -> None:
    only_pdf = {"extreme_firstaid_qa_dataset": "derived", "who_basic_emergency_care_pdf": "CC BY-NC-SA 3.0 IGO"}
    assert derive_release_licence(only_pdf, None, False, derived_from=DERIVED).licence == "cc-by-nc-sa-3.0-igo"

    with_custom = only_pdf | {"ifrc_first_aid_guidelines_pdf": "non-commercial copying with acknowledgement"}
    decision = derive_release_licence(
        with_custom, None, False,
        derived_from={"extreme_firstaid_qa_dataset": ["who_basic_emergency_care_pdf", "ifrc_first_aid_guidelines_pdf"]},
    )
    assert decision.licence == "other"
    assert "custom terms" in decision.notes[0] and "No commercial use" in decision.notes[0]


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ({"a": "apache-2.0", "b": "apache-2.0"}, "apache-2.0"),
        ({"a": "apache-2.0", "b": "mit"}, "apache-2.0"),
        ({"a": "apache-2.0", "b": "cc-by-4.0"}, "other"),
        ({"a": "unknown", "b": "none declared"}, "unknown"),
        ({"a": "cc-by-sa-4.0", "b": "apache-2.0"}, "cc-by-sa-4.0"),
        ({"a": "cc-by-nd-4.0", "b": "mit"}, "other"),
    ],
)
def test_default_choices(sources: dict[str, str], expected: str) -> None:
    assert derive_release_licence(sources, None, False).licence == expected


def test_unclear_licences_never_conflict_but_are_listed() -> None:
    decision = derive_release_licence({"a": "apache-2.0", "b": "unknown", "c": "none declared"}, "cc-by-4.0", False)
    assert decision.licence == "cc-by-4.0" and decision.conflicts == []
    assert decision.unestablished() == ["b", "c"]
    assert any("b (unknown)" in n and "c (none declared)" in n for n in decision.notes)


def test_declaring_the_copyleft_licence_is_fine_unless_non_commercial_content_is_in() -> None:
    assert derive_release_licence({"w": "gpl-3.0", "a": "apache-2.0"}, "gpl-3.0", False).conflicts == []
    with pytest.raises(LicenceConflictError, match="who_basic_emergency_care_pdf"):
        derive_release_licence({"w": "gpl-3.0", "who_basic_emergency_care_pdf": "CC BY-NC-SA 3.0 IGO"}, "gpl-3.0", False)


def test_declaring_other_defers_to_the_card() -> None:
    decision = derive_release_licence(SOURCES, "other", False, derived_from=DERIVED)
    assert decision.licence == "other" and decision.conflicts == []
    assert any("wiki_medical_terms: gpl-3.0" in n for n in decision.notes)


def test_derived_source_without_inputs_is_unclear() -> None:
    decision = derive_release_licence({"gen": "derived", "a": "apache-2.0"}, None, False)
    assert decision.licence == "other"
    assert decision.unestablished() == ["gen"]
    assert any("gen is marked derived" in n for n in decision.notes)
    with pytest.raises(ValueError, match="not in the release"):
        derive_release_licence({"gen": "derived"}, None, False, derived_from={"gen": ["missing_pdf"]})


@pytest.mark.parametrize(
    ("raw", "kind", "ident"),
    [
        ("apache-2.0", "permissive", "apache-2.0"),
        ("Apache License 2.0", "permissive", "apache-2.0"),
        ("MIT", "permissive", "mit"),
        ("gpl-3.0", "copyleft", "gpl-3.0"),
        ("GPLv3", "copyleft", "gpl-3.0"),
        ("CC BY-NC-SA 3.0 IGO", "non_commercial", "cc-by-nc-sa-3.0-igo"),
        ("non-commercial copying with acknowledgement", "non_commercial", None),
        ("CC-BY-4.0", "permissive", "cc-by-4.0"),
        ("unknown", "unclear", None),
        ("none declared", "unclear", None),
        ("derived", "derived", None),
        ("some bespoke wording", "unclear", None),
    ],
)
def test_classify_licence(raw: str, kind: str, ident: str | None) -> None:
    terms = classify_licence(raw)
    assert (terms.kind, terms.id) == (kind, ident)


def test_strings_used_by_the_registry_and_pdf_corpus() -> None:
    """The exact licence strings of `registry.py` and `pdf_corpus.py` classify as intended."""
    generated = classify_licence("derived (PDFs: CC BY-NC-SA 3.0 IGO)")
    assert (generated.id, generated.non_commercial, generated.raw) == (
        "cc-by-nc-sa-3.0-igo", True, "derived (PDFs: CC BY-NC-SA 3.0 IGO)"
    )
    icrc = classify_licence("CC BY-NC-SA 3.0 IGO (if, as believed, the ICRC edition of Basic Emergency Care)")
    assert icrc.id == "cc-by-nc-sa-3.0-igo"
    ifrc = classify_licence("IFRC: non-commercial copying permitted with acknowledgement of the source")
    assert (ifrc.kind, ifrc.standard) == ("non_commercial", False)
    assert classify_licence("CC0-1.0").id == "cc0-1.0"

    # As the registry states them, without derived_from: the generated set still conflicts with CC-BY-4.0.
    with pytest.raises(LicenceConflictError) as caught:
        derive_release_licence(
            {"wiki_medical_terms": "gpl-3.0", "extreme_firstaid_qa_dataset": "derived (PDFs: CC BY-NC-SA 3.0 IGO)"},
            "cc-by-4.0",
            False,
        )
    assert {c[0] for c in caught.value.conflicts} == {"wiki_medical_terms", "extreme_firstaid_qa_dataset"}
