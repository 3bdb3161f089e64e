"""PHI/PII scan: every detector kind is found in realistic sentences, doses, codes, years and public
figures are not, the policy redacts or drops, findings hold offsets and never text, and nothing
reaches the network."""

import json
import socket

import polars as pl
import pytest

from medset_dagster.dataset import phi, quality
from medset_dagster.dataset.phi import (
    FINDINGS_SCHEMA,
    PhiConfig,
    apply_phi_policy,
    scan,
    scan_and_apply,
    scan_chunks,
    scan_text,
)
from medset_dagster_tests.fixtures import sample_benchmarks, sample_mirrors

FOUND = [
    ("Please email the results to jane.doe@example.org before Friday.", [("EMAIL", "jane.doe@example.org")]),
    ("Call her daughter on (212) 555-0187 or +44 20 7946 0958 if she deteriorates.", [("PHONE", "(212) 555-0187"), ("PHONE", "+44 20 7946 0958")]),
    ("His SSN is 536-22-8751 and the insurer needs it.", [("SSN", "536-22-8751")]),
    ("MRN: 4821937 was admitted to ward 7 overnight.", [("MRN", "4821937")]),
    ("Medical record number 00482193 belongs to this patient.", [("MRN", "00482193")]),
    ("NPI 1234567893 prescribed it and Rx #7654321 was filled.", [("ID", "1234567893"), ("ID", "7654321")]),
    ("DOB: 03/14/1962, presented with crushing chest pain.", [("DOB", "03/14/1962")]),
    ("She was born on 12 May 1948 and lives alone.", [("DOB", "12 May 1948")]),
    ("He lives at 42 Wallaby Way with his wife.", [("ADDRESS", "42 Wallaby Way")]),
    ("Results: https://portal.example-hospital.org/patients/884213/results?mrn=4821937 today.",
     [("URL", "https://portal.example-hospital.org/patients/884213/results?mrn=4821937")]),
    ("The log shows access from 192.168.10.24 at midnight.", [("IP_ADDRESS", "192.168.10.24")]),
    ("Mr. John Smith, 67, was seen by Dr. Patel; the patient Maria Lopez went home.",
     [("PERSON", "John Smith"), ("PERSON", "Patel"), ("PERSON", "Maria Lopez")]),
]
NOT_FOUND = [
    "Take 1,000 mg every 4-6 hours, up to 4,000 mg in 24 hours; children 15 mg/kg per dose.",
    "ICD-10 codes E11.9 and I10; blood pressure 120/80 mmHg; sodium 135-145 mmol/L.",
    "The guidelines changed in 2019 and again in 1999; see section 2.1.3.",
    "Give 0.5 mg adrenaline IM (1:1000), repeat after 5 minutes, and dial 911 or 112.",
    "The patient Education leaflet explains how to use the inhaler.",
    "More at https://www.example.org/druginfo/lisinopril.html and www.who.int/news.",
    "Born at 34 weeks, the baby weighed 2.1 kg and needed 40% oxygen.",
]


@pytest.mark.parametrize("sentence, expected", FOUND, ids=[e[0][0] for _, e in FOUND])
def test_each_detector_kind_finds_its_phi(sentence, expected):
    found = [(kind, sentence[start:end]) for kind, start, end, _, _ in scan_text(sentence)]
    assert found == expected


@pytest.mark.parametrize("sentence", NOT_FOUND)
def test_doses_codes_years_and_plain_links_are_not_phi(sentence):
    assert scan_text(sentence) == []


def rows(source: str, *texts: str) -> pl.DataFrame:
    return pl.DataFrame({"row_id": [f"{source}-{i}" for i in range(len(texts))], "source": [source] * len(texts),
                         "input": list(texts), "context": [""] * len(texts), "output": ["ok"] * len(texts)})


def test_public_figures_in_the_encyclopaedia_source_are_not_patients():
    article = "Hashimoto thyroiditis was described by Dr. Hakaru Hashimoto, born on 5 May 1881, in Berlin."
    assert scan(rows("wiki_medical_terms", article)).is_empty()
    elsewhere = scan(rows("medical_o1_reasoning_sft", article))
    assert elsewhere.select("kind", "start", "end").rows() == [("PERSON", 43, 59), ("DOB", 69, 79)]
    # Other kinds still count in the encyclopaedia source.
    assert scan(rows("wiki_medical_terms", "Write to jane.doe@example.org.")).select("kind").to_series().to_list() == ["EMAIL"]


def test_redact_replaces_each_span_with_its_placeholder_and_findings_hold_no_text():
    frame = pl.concat([rows("medicationqa", "Mr. John Smith can be reached on (212) 555-0187.", "Take 500 mg twice a day."),
                       rows("first_aid_dataset", "Email jane.doe@example.org, MRN: 4821937.")])
    kept, findings, stats = scan_and_apply(frame)
    assert findings.schema == pl.Schema(FINDINGS_SCHEMA)
    assert findings.select("row_id", "field", "kind", "start", "end").rows() == [
        ("medicationqa-0", "input", "PERSON", 4, 14), ("medicationqa-0", "input", "PHONE", 33, 47),
        ("first_aid_dataset-0", "input", "EMAIL", 6, 26), ("first_aid_dataset-0", "input", "MRN", 33, 40)]
    assert kept["input"].to_list() == ["Mr. [NAME] can be reached on [PHONE].", "Take 500 mg twice a day.", "Email [EMAIL], MRN: [MRN]."]
    assert stats["findings_by_source_kind"] == {"first_aid_dataset": {"EMAIL": 1, "MRN": 1}, "medicationqa": {"PERSON": 1, "PHONE": 1}}
    assert (stats["rows_in"], stats["rows_out"], stats["rows_with_findings"], stats["rows_redacted"], stats["rows_dropped"]) == (3, 3, 2, 2, 0)
    assert "4821937" not in json.dumps(stats) and "jane.doe" not in json.dumps(findings.to_dicts())
    assert quality.no_phi_remaining(kept, PhiConfig()).passed


def test_drop_removes_rows_and_the_gate_fails_while_a_finding_remains():
    frame = rows("medqa", "Contact jane.doe@example.org for the results.", "A 40-year-old with fever.")
    kept, _, stats = scan_and_apply(frame, PhiConfig(policy="drop"))
    assert kept["row_id"].to_list() == ["medqa-1"] and stats["rows_dropped"] == 1 and stats["rows_redacted"] == 0
    gate = quality.no_phi_remaining(frame, PhiConfig())
    assert not gate.passed
    assert gate.description == "1 PHI/PII findings remain in 1 release rows"
    assert gate.details == {"by_source_kind": {"medqa": {"EMAIL": 1}}, "row_ids": ["medqa-0"]}


def test_pdf_chunks_are_scanned_by_chunk_id_and_document():
    chunks = pl.DataFrame({"chunk_id": ["c1", "c2"], "document": ["who-bec", "who-bec"],
                           "text": ["Apply firm pressure for 10 minutes.", "Call 415-867-5309 to reach the duty doctor."]})
    findings = scan_chunks(chunks)
    assert findings.select("row_id", "source", "field", "kind").rows() == [("c2", "who-bec", "text", "PHONE")]


def test_nothing_reaches_the_network(monkeypatch):
    phi._detectors.cache_clear()

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert [k for k, *_ in scan_text("Mail j.smith@nhs.net or visit https://example.org/users/jsmith today.")] == ["EMAIL", "URL"]
    phi._detectors.cache_clear()


def test_an_unknown_kind_or_policy_and_missing_columns_are_refused():
    with pytest.raises(ValueError, match="unknown PHI kinds"):
        PhiConfig(kinds=("EMAIL", "FAX"))
    with pytest.raises(ValueError, match="policy"):
        PhiConfig(policy="mask")
    with pytest.raises(ValueError, match="needs columns"):
        scan(pl.DataFrame({"row_id": ["a"], "input": ["x"]}))
    assert apply_phi_policy(rows("x", "plain"), pl.DataFrame(schema=FINDINGS_SCHEMA)).kept.equals(rows("x", "plain"))


def test_the_sample_mirrors_hold_exactly_the_planted_phi():
    rows = sample_benchmarks.mapped_sample_rows().filter(pl.col("drop_reason").is_null())
    kept, findings, stats = scan_and_apply(rows)
    found = sorted((r["row_id"], r["field"], r["kind"]) for r in findings.to_dicts())
    planted = sorted((f"{source}-{row}", field, kind) for source, row, field, kinds in sample_mirrors.PLANTED_PHI for kind in kinds)
    assert found == planted
    assert stats["findings_by_source_kind"] == {
        "first_aid_dataset": {"ADDRESS": 1, "PERSON": 1}, "medical_o1_verifiable_problem": {"MRN": 1},
        "medicationqa": {"EMAIL": 1}, "synthetic_disaster_reports": {"PHONE": 1}}
    redacted = dict(zip(kept["row_id"], kept["output"]))["first_aid_dataset-3"]
    assert redacted.endswith("Seek help if it is deep or will not come out: Dr. [NAME] sees walk-ins at [ADDRESS].")


def test_the_quality_funnel_chains_the_three_stages_on_the_sample_rows():
    from medset_dagster.dataset.decontamination import build_index, decontaminate
    from medset_dagster.dataset.near_duplicates import remove_near_duplicates
    from medset_dagster.dataset.quality_funnel import quality_funnel

    rows = sample_benchmarks.mapped_sample_rows().filter(pl.col("drop_reason").is_null()).drop("drop_reason")
    items = pl.concat([
        sample_benchmarks.items(b).filter(pl.col("drop_reason").is_null()).drop("drop_reason").select(pl.lit(b).alias("benchmark"), pl.all())
        for b in sample_benchmarks.benchmark_split_rows()
    ])
    near = remove_near_duplicates(rows)
    clean = decontaminate(near.kept, build_index(items))
    dropped = scan_and_apply(clean.kept, PhiConfig(policy="drop"))
    funnel = quality_funnel(near.stats, clean.stats, dropped.stats)
    assert funnel.columns == ["source", "after_near_dedup", "after_decontamination", "after_phi"]
    total = funnel.filter(pl.col("source") == "TOTAL").row(0)
    assert total[1:] == (near.kept.height, clean.kept.height, dropped.kept.height)
    assert clean.stats["removed"] == 5 and dropped.stats["rows_dropped"] == 4
    redacted = quality_funnel(near.stats, clean.stats, scan_and_apply(clean.kept).stats)
    assert redacted["after_phi"].to_list() == redacted["after_decontamination"].to_list()
