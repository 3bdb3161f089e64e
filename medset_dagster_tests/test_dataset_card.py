"""The dataset card: a parseable Hub header, honest tables and statements, deterministic charts."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import polars as pl
import pytest
import yaml
from huggingface_hub import DatasetCard

from medset_dagster.dataset.curation import FUNNEL_STAGES, CurationPolicy
from medset_dagster.release.build_manifest import (
    DocumentEntry,
    GenerationInfo,
    RetrievalInfo,
    SourceEntry,
    generation_task,
    source_entries,
)
from medset_dagster.release.card import CardInputs, ExcludedSource, render_card
from medset_dagster.release.card.header import hub_licence_fields, size_category
from medset_dagster.release.card.inputs import (
    LENGTH_HISTOGRAM_IMAGE,
    README_NAME,
    SOURCE_MIX_IMAGE,
)
from medset_dagster.release.licensing import LicenceDecision, derive_release_licence
from medset_dagster.sources.registry import dataset_sources, excluded_sources

SOURCE_IDS = [s.source_id for s in dataset_sources()]
EXCLUDED = [ExcludedSource(s.source_id, s.hub_repo, s.excluded_reason or "") for s in excluded_sources()]
RUN_ID = "5f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f"


def make_dataset(rows: int) -> pl.DataFrame:
    """`rows` rows spread over the registry's sources, lengths varying deterministically."""
    index = pl.int_range(0, rows, eager=True)
    return pl.DataFrame({
        "input": [f"question {i} " + "x" * (i % 300) for i in index],
        "context": ["" for _ in index],
        "output": [f"answer {i} " + "y" * ((i * 7) % 1400) for i in index],
        "source": [SOURCE_IDS[i % len(SOURCE_IDS)] for i in index],
    })


def funnel_rows(dataset: pl.DataFrame) -> list[dict]:
    counts = dict(dataset.group_by("source").len().iter_rows())
    rows = [{"source": s, **{stage: counts.get(s, 0) + (5 if stage == "rows_read" else 0) for stage in FUNNEL_STAGES}}
            for s in sorted(counts)]
    rows.append({"source": "TOTAL", **{stage: sum(r[stage] for r in rows) for stage in FUNNEL_STAGES}})
    return rows


def card_inputs(dataset: pl.DataFrame, licence: LicenceDecision | None = None, **overrides) -> CardInputs:
    counts = dict(dataset.group_by("source").len().iter_rows())
    args = dict(
        pretty_name="Medical Training Dataset (rebuild)",
        version="0.1.0",
        repo_id="example/medical-training-dataset",
        licence=licence or LicenceDecision("apache-2.0", [], ["apache-2.0: all sources are permissive."]),
        sources=source_entries(dataset_sources(), counts),
        excluded=EXCLUDED,
        funnel=funnel_rows(dataset),
        policy=CurationPolicy(),
        generation=GenerationInfo("llama_cpp", "SmolLM2-135M-Instruct-Q8_0", None,
                                  [generation_task("medqa", 12, 9, max_tokens_cap=256)]),
        retrieval=RetrievalInfo(512, 128, 50, {"backend": "local-tfidf-svd", "model": "tfidf+svd64",
                                               "fingerprint": "f" * 64, "dimension": 64}, "flat_ip", 5, 120),
        documents=[DocumentEntry("sample_field_injuries", "sample_field_injuries.pdf", "5" * 64, "CC0-1.0",
                                 "Field First Aid Notes: Bleeding, Wounds and Injuries")],
        profile="sample",
        citation_year=2025,
    )
    args.update(overrides)
    return CardInputs(**args)


def header(readme: Path) -> dict:
    text = readme.read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md must start with a YAML header"
    return yaml.safe_load(match.group(1))


@pytest.mark.parametrize("rows, category", [(0, "n<1K"), (90, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"),
                                            (84_325, "10K<n<100K"), (100_000, "100K<n<1M"), (2_000_000, "1M<n<10M")])
def test_size_category(rows: int, category: str) -> None:
    assert size_category(rows) == category


@pytest.mark.parametrize("rows, category", [(90, "n<1K"), (84_325, "10K<n<100K")])
def test_yaml_header_fields(tmp_path: Path, rows: int, category: str) -> None:
    dataset = make_dataset(rows)
    render_card(card_inputs(dataset), dataset, tmp_path)
    meta = header(tmp_path / README_NAME)
    assert meta["license"] == "apache-2.0"
    assert "license_name" not in meta
    assert meta["size_categories"] == [category]
    assert meta["task_categories"] == ["question-answering", "text-generation"]
    assert meta["language"] == ["en"]
    assert {"medical", "healthcare", "first-aid"} <= set(meta["tags"])
    assert meta["pretty_name"] == "Medical Training Dataset (rebuild)"
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    # The Hub client's own parser reads the same header.
    card = DatasetCard.load(tmp_path / README_NAME)
    assert card.data.license == "apache-2.0"
    assert card.data.to_dict()["configs"][0]["data_files"][0]["path"] == "data/train-*"
    assert f"**{rows:,}** rows" in card.text


def test_non_standard_licences_are_declared_other_with_name_and_link(tmp_path: Path) -> None:
    assert hub_licence_fields("gpl-3.0") == {"license": "gpl-3.0"}
    assert hub_licence_fields("cc-by-nc-sa-3.0-igo") == {
        "license": "other",
        "license_name": "cc-by-nc-sa-3.0-igo",
        "license_link": "https://creativecommons.org/licenses/by-nc-sa/3.0/igo/",
    }
    dataset = make_dataset(30)
    decision = LicenceDecision("other", [], ["other: no single licence satisfies every source."])
    render_card(card_inputs(dataset, decision), dataset, tmp_path)
    meta = header(tmp_path / README_NAME)
    assert meta["license"] == "other"
    assert meta["license_name"] and meta["license_link"]
    assert "each source's rows keep that source's terms" in (tmp_path / README_NAME).read_text()


def test_per_source_table_lists_each_source_with_its_rows(tmp_path: Path) -> None:
    dataset = make_dataset(90)
    inputs = card_inputs(dataset)
    render_card(inputs, dataset, tmp_path)
    text = (tmp_path / README_NAME).read_text()
    sources_section = text.split("## Sources", 1)[1].split("## Curation", 1)[0]
    counts = dict(dataset.group_by("source").len().iter_rows())
    for entry in inputs.sources:
        line = next(l for l in sources_section.splitlines() if l.startswith(f"| `{entry.source_id}` |"))
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert cells[6] == f"{counts[entry.source_id]:,}"
        assert entry.licence == cells[5]
        if entry.hub_repo:
            assert f"(https://huggingface.co/datasets/{entry.hub_repo})" in cells[1]
    assert "| `medical_o1_reasoning_sft` |" in sources_section and "| en |" in sources_section
    assert "revision loaded | revision pinned" in sources_section
    # Excluded sources, with their reasons, in their own table.
    excluded = sources_section.split("### Excluded sources", 1)[1]
    assert "Intelligent-Internet/II-Medical-Reasoning-SFT" in excluded and "amu-cai/CAMEO" in excluded
    assert "speech-emotion audio corpus" in excluded
    # The funnel: every stage, every source, and TOTAL.
    curation = text.split("## Curation", 1)[1].split("## Generation", 1)[0]
    assert "| source | " + " | ".join(FUNNEL_STAGES) + " |" in curation
    assert "| **TOTAL** | 140 | 90 | 90 | 90 | 90 | 90 |" in curation
    assert "seed 42" in curation and "10 to 1,500 characters" in curation


def test_card_rows_must_match_the_dataset(tmp_path: Path) -> None:
    dataset = make_dataset(20)
    wrong = [SourceEntry("medqa", "truehealth/medqa", None, None, None, "mit", 999)]
    with pytest.raises(ValueError, match="differ from the dataset"):
        render_card(card_inputs(dataset, sources=wrong), dataset, tmp_path)
    assert not (tmp_path / README_NAME).exists()


def test_acknowledged_conflict_names_the_gpl_source(tmp_path: Path) -> None:
    decision = derive_release_licence(
        {"medical_o1_verifiable_problem": "apache-2.0", "wiki_medical_terms": "gpl-3.0"}, "cc-by-4.0", True
    )
    assert decision.conflicts  # precondition: a real acknowledged conflict
    dataset = make_dataset(40)
    render_card(card_inputs(dataset, decision), dataset, tmp_path)
    text = (tmp_path / README_NAME).read_text()
    licence = text.split("## Licence", 1)[1].split("## Sources", 1)[0]
    assert "acknowledged licence conflict" in licence
    assert "| wiki_medical_terms | gpl-3.0 |" in licence
    assert "not available under cc-by-4.0" in licence
    assert header(tmp_path / README_NAME)["license"] == "cc-by-4.0"


def test_sample_profile_generations_are_called_what_they_are(tmp_path: Path) -> None:
    dataset = make_dataset(20)
    render_card(card_inputs(dataset), dataset, tmp_path)
    generation = (tmp_path / README_NAME).read_text().split("## Generation", 1)[1].split("## Retrieval", 1)[0]
    assert "not for training" in generation
    assert "`llama_cpp`" in generation and "SmolLM2-135M-Instruct-Q8_0" in generation
    task = generation_task("medqa", 12, 9)
    assert f"`{task.template_version}`" in generation and "max_tokens 256" in generation
    full = tmp_path / "full"
    render_card(card_inputs(dataset, profile="full"), dataset, full)
    assert "not for training" not in (full / README_NAME).read_text()


def test_images_embedded_exist_and_are_byte_identical_over_renders(tmp_path: Path) -> None:
    dataset = make_dataset(500)
    first = render_card(card_inputs(dataset), dataset, tmp_path / "a")
    second = render_card(card_inputs(dataset), dataset, tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in first] == [Path(README_NAME), Path(SOURCE_MIX_IMAGE),
                                                               Path(LENGTH_HISTOGRAM_IMAGE)]
    for a, b in zip(first, second):
        assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" or a.suffix == ".md"
        assert a.read_bytes() == b.read_bytes(), a.name
    text = first[0].read_text()
    assert f"]({SOURCE_MIX_IMAGE})" in text and f"]({LENGTH_HISTOGRAM_IMAGE})" in text
    # The data changes: the chart does too.
    other = render_card(card_inputs(dataset.head(200)), dataset.head(200), tmp_path / "c")
    assert other[1].read_bytes() != first[1].read_bytes()


def test_card_holds_no_run_id_or_timestamp(tmp_path: Path) -> None:
    dataset = make_dataset(20)
    render_card(card_inputs(dataset), dataset, tmp_path)
    text = (tmp_path / README_NAME).read_text()
    # CardInputs has no field for them; the card only points at build.json, which has them.
    assert RUN_ID not in text
    assert not re.search(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", text)


def test_empty_dataset_still_renders(tmp_path: Path) -> None:
    dataset = make_dataset(0)
    paths = render_card(card_inputs(dataset, sources=[], funnel=[]), dataset, tmp_path)
    assert all(p.exists() for p in paths)
    assert header(tmp_path / README_NAME)["size_categories"] == ["n<1K"]


# --- revisions: one field for what was loaded, one for the registry's pin -------------------------

SPECS = {s.source_id: s for s in dataset_sources()}
HUB_SOURCES = [s.source_id for s in dataset_sources() if s.hub_repo]


def mirror_hash(source_id: str) -> str:
    """A stand-in for a local mirror's SHA-256 content hash (64 hex)."""
    return hashlib.sha256(source_id.encode()).hexdigest()


def source_cells(text: str, source_id: str) -> list[str]:
    sources_section = text.split("## Sources", 1)[1].split("## Curation", 1)[0]
    line = next(l for l in sources_section.splitlines() if l.startswith(f"| `{source_id}` |"))
    return [c.strip() for c in line.strip("|").split(" | ")]


def test_sample_revisions_are_mirror_hashes_unlinked_with_the_pin_beside_them(tmp_path: Path) -> None:
    """Generated sources used to link the registry's Hub commit although the sample read a mirror."""
    dataset = make_dataset(60)
    counts = dict(dataset.group_by("source").len().iter_rows())
    sources = source_entries(dataset_sources(), counts, revisions_loaded={s: mirror_hash(s) for s in HUB_SOURCES})
    render_card(card_inputs(dataset, sources=sources), dataset, tmp_path)
    text = (tmp_path / README_NAME).read_text()
    assert "/tree/" not in text  # no Hub commit was read: none is linked
    for source_id in HUB_SOURCES:
        cells = source_cells(text, source_id)
        assert cells[3] == f"mirror `{mirror_hash(source_id)[:12]}`", source_id
        assert cells[4] == f"`{SPECS[source_id].revision[:12]}`", source_id
    rag = source_cells(text, "extreme_firstaid_qa_dataset")
    assert rag[3] == rag[4] == "–"
    footnote = next(l for l in text.splitlines() if l.startswith("**revision loaded** is what this build read:"))
    assert "*mirror*: the SHA-256 content hash of the local mirror folder" in footnote
    assert "linked" not in footnote.replace("none is linked", "") and "*not recorded*" not in footnote
    assert "`revision_loaded` and `revision_pinned`" in footnote


def test_full_profile_links_only_the_hub_commits_it_loaded(tmp_path: Path) -> None:
    dataset = make_dataset(60)
    counts = dict(dataset.group_by("source").len().iter_rows())
    loaded = {s: SPECS[s].revision for s in HUB_SOURCES if s != "medqa"}  # medqa: no revision recorded
    heads = {"wiki_medical_terms": "f" * 40, "symptom_to_diagnosis": SPECS["symptom_to_diagnosis"].revision}
    sources = source_entries(dataset_sources(), counts, revisions_loaded=loaded, hub_heads=heads)
    render_card(card_inputs(dataset, sources=sources, profile="full"), dataset, tmp_path)
    text = (tmp_path / README_NAME).read_text()
    for source_id, revision in loaded.items():
        repo = SPECS[source_id].hub_repo
        assert source_cells(text, source_id)[3] == f"[`{revision[:12]}`](https://huggingface.co/datasets/{repo}/tree/{revision})"
    assert source_cells(text, "medqa")[3] == "not recorded"
    assert source_cells(text, "medqa")[4] == f"`{SPECS['medqa'].revision[:12]}`"
    assert text.count("/tree/") == len(loaded)
    footnote = next(l for l in text.splitlines() if l.startswith("**revision loaded** is what this build read:"))
    assert "a commit of the Hub repository, linked to it;" in footnote and "*not recorded*" in footnote
    assert "mirror" not in footnote
    # Only the source whose Hub head differs from what was loaded is listed as moved.
    moved = text.split("has moved on since", 1)[1].split("###", 1)[0]
    assert f"- `wiki_medical_terms`: loaded `{loaded['wiki_medical_terms'][:12]}`, Hub head `ffffffffffff`" in moved
    assert "symptom_to_diagnosis" not in moved
    # The same revisions on a sample card are not links: only a full-profile Hub commit is.
    render_card(card_inputs(dataset, sources=sources, profile="sample"), dataset, tmp_path / "sample")
    assert "/tree/" not in (tmp_path / "sample" / README_NAME).read_text()


# --- the licence: one set of facts, stated the same in every section ------------------------------

SAMPLE_LICENCES = {
    **{s.source_id: s.licence for s in dataset_sources()},
    "sample_field_injuries": "CC0-1.0",
}
SAMPLE_DERIVED = {"extreme_firstaid_qa_dataset": ["sample_field_injuries"]}


def licence_card(tmp_path: Path, rows: int = 100) -> tuple[str, CardInputs]:
    dataset = make_dataset(rows)
    counts = dict(dataset.group_by("source").len().iter_rows())
    decision = derive_release_licence(SAMPLE_LICENCES, None, False, derived_from=SAMPLE_DERIVED)
    sources = source_entries(dataset_sources(), counts, licences={k: v.licence for k, v in decision.sources.items()})
    inputs = card_inputs(dataset, decision, sources=sources)
    render_card(inputs, dataset, tmp_path)
    return (tmp_path / README_NAME).read_text(), inputs


def test_every_section_states_the_licence_of_the_documents_actually_used(tmp_path: Path) -> None:
    """The RAG source's licence was CC BY-NC-SA in two sections while its sample PDFs are CC0."""
    text, _ = licence_card(tmp_path)
    rag = "CC0-1.0 (generated from sample_field_injuries)"
    assert source_cells(text, "extreme_firstaid_qa_dataset")[5] == rag
    attribution = text.split("## Attribution", 1)[1]
    assert f"- `extreme_firstaid_qa_dataset`: generated by this pipeline, licence: {rag}." in attribution
    assert "(`sample_field_injuries.pdf`), licence: CC0-1.0." in attribution
    retrieval = text.split("## Retrieval", 1)[1].split("## ", 1)[0]
    assert "| `sample_field_injuries.pdf` |" in retrieval and "| CC0-1.0 |" in retrieval
    assert "NC-SA" not in text and "derived (PDFs" not in text


def test_unclear_sources_make_the_card_declare_other_and_say_how_many_rows(tmp_path: Path) -> None:
    """The sample card declared gpl-3.0 while five sources have no established redistribution rights."""
    text, inputs = licence_card(tmp_path, rows=100)
    assert header(tmp_path / README_NAME)["license"] == "other"
    licence = text.split("## Licence", 1)[1].split("## Sources", 1)[0]
    unclear = ["medqa", "synthetic_disaster_reports", "medicationqa", "diseases_symptoms", "first_aid_dataset"]
    rows = sum(s.rows for s in inputs.sources if s.source_id in unclear)
    published = sum(SPECS[s].published_rows for s in unclear)
    assert (f"**Redistribution rights not established** for 5 of 10 sources, {rows:,} of 100 rows ({rows / 100:.0%}) "
            f"of this release; in the published build they were {published:,} of 84,325 rows ({published / 84_325:.0%}): ") in licence
    assert published == 12_287 and f"{published / 84_325:.0%}" == "15%"
    assert ", ".join(f"`{s}` ({SPECS[s].licence})" for s in unclear) in licence
    assert "this is why the declared licence is `other`." in licence
    # The same sources are named as out of scope for redistribution.
    uses = text.split("### Out-of-scope uses", 1)[1].split("## ", 1)[0]
    assert "- Redistributing the rows from " + ", ".join(f"`{s}`" for s in unclear) in uses


def test_a_card_whose_source_licence_differs_from_the_decision_is_refused(tmp_path: Path) -> None:
    dataset = make_dataset(30)
    counts = dict(dataset.group_by("source").len().iter_rows())
    decision = derive_release_licence(SAMPLE_LICENCES, None, False, derived_from=SAMPLE_DERIVED)
    stale = source_entries(dataset_sources(), counts)  # the registry's strings, not the decision's terms
    with pytest.raises(ValueError, match="extreme_firstaid_qa_dataset"):
        render_card(card_inputs(dataset, decision, sources=stale), dataset, tmp_path)
    assert not (tmp_path / README_NAME).exists()


# --- what readers of a card expect ----------------------------------------------------------------

def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def test_load_snippets_for_a_hub_and_a_local_release(tmp_path: Path) -> None:
    dataset = make_dataset(20)
    render_card(card_inputs(dataset), dataset, tmp_path / "hub")
    hub = code_blocks((tmp_path / "hub" / README_NAME).read_text(), "python")
    assert 'dataset = load_dataset("example/medical-training-dataset", split="train")' in hub[0]
    assert 'dataset = load_dataset("parquet", data_files="data/train-*.parquet", split="train")' in hub[1]
    render_card(card_inputs(dataset, repo_id=None), dataset, tmp_path / "local")
    local = (tmp_path / "local" / README_NAME).read_text()
    assert code_blocks(local, "python") == [
        'from datasets import load_dataset\n\ndataset = load_dataset("parquet", data_files="data/train-*.parquet", split="train")\n'
    ]
    assert "not published to the Hub (a local, dry-run release)" in local


def test_one_example_per_source_is_its_first_row_in_release_order(tmp_path: Path) -> None:
    dataset = make_dataset(60).with_columns(pl.col("output").str.replace(r"^answer 1 ", "answer 1 " + "z" * 400))
    render_card(card_inputs(dataset), dataset, tmp_path)
    examples = (tmp_path / README_NAME).read_text().split("## Examples", 1)[1].split("\n## ", 1)[0]
    shown = {json.loads(block)["source"]: json.loads(block) for block in code_blocks(examples, "json")}
    assert list(shown) == [s for s in SOURCE_IDS]  # registry order, every source with rows
    for source_id, example in shown.items():
        first = dataset.filter(pl.col("source") == source_id).row(0, named=True)
        for column, value in first.items():
            assert example[column] == (value if len(value) <= 300 else value[:300].rstrip() + " …")
    assert shown[SOURCE_IDS[1]]["output"].endswith(" …") and len(shown[SOURCE_IDS[1]]["output"]) == 302


def test_reproduce_section_states_the_command_code_url_and_where_the_commit_is(tmp_path: Path) -> None:
    dataset = make_dataset(20)
    render_card(card_inputs(dataset, command="MEDSET_PROFILE=sample make build", code_url="https://git.example.org/medset"),
                dataset, tmp_path)
    text = (tmp_path / README_NAME).read_text()
    section = text.split("## Reproducing this release", 1)[1].split("\n## ", 1)[0]
    assert code_blocks(section, "bash") == ["MEDSET_PROFILE=sample make build\n"]
    assert "The code that built it: <https://git.example.org/medset>." in section
    assert "the commit recorded as `git_commit` in `build.json`" in section
    render_card(card_inputs(dataset, code_url=None), dataset, tmp_path / "nourl")
    assert "recorded no URL for it (its checkout has no git remote at a web or SSH address, only local ones or none, and `MEDSET_CODE_URL` was not set)" in (
        tmp_path / "nourl" / README_NAME).read_text()


def test_uses_risks_and_personal_information_sections_link_to_headings_that_exist(tmp_path: Path) -> None:
    dataset = make_dataset(40)
    quality = {"phi": {"policy": "redact", "findings": 5, "rows_with_findings": 4}}
    render_card(card_inputs(dataset, quality=quality), dataset, tmp_path)
    text = (tmp_path / README_NAME).read_text()
    headings = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#") and " " in line]
    for heading in ("Uses", "Intended uses", "Out-of-scope uses", "Personal and sensitive information",
                    "Bias, risks and limitations", "Reproducing this release", "Citation", "Personal and health information"):
        assert heading in headings, heading
    slugs = {re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", h.lower())) for h in headings}
    anchors = re.findall(r"\]\(#([^)]+)\)", text)
    assert {"personal-and-health-information", "bias-risks-and-limitations", "personal-and-sensitive-information"} <= set(anchors)
    assert set(anchors) <= slugs
    personal = text.split("## Personal and sensitive information", 1)[1].split("\n## ", 1)[0]
    assert "(policy **redact**): 5 findings in 4 rows" in personal
    risks = text.split("## Bias, risks and limitations", 1)[1].split("\n## ", 1)[0]
    generated = sum(1 for i in range(40) if SOURCE_IDS[i % len(SOURCE_IDS)] == "medqa")
    assert f"**Written by a language model**: {generated:,} of 40 rows ({generated / 40:.0%}) (sources `medqa`)" in risks
    # Without a PHI scan the card says so instead of linking to a section that is not there.
    render_card(card_inputs(dataset, quality=None), dataset, tmp_path / "noscan")
    noscan = (tmp_path / "noscan" / README_NAME).read_text()
    assert "This build ran no scan for personal information" in noscan and "(#personal-and-health-information)" not in noscan


def test_citation_has_the_year_given_and_a_url(tmp_path: Path) -> None:
    dataset = make_dataset(20)
    render_card(card_inputs(dataset, citation_year=2019), dataset, tmp_path / "hub")
    bib = code_blocks((tmp_path / "hub" / README_NAME).read_text(), "bibtex")[0]
    assert "  year = {2019},\n" in bib and "  url = {https://huggingface.co/datasets/example/medical-training-dataset},\n" in bib
    render_card(card_inputs(dataset, repo_id=None, citation_year=2019, code_url="https://git.example.org/medset"),
                dataset, tmp_path / "local")
    assert "  url = {https://git.example.org/medset},\n" in code_blocks((tmp_path / "local" / README_NAME).read_text(), "bibtex")[0]


def test_generation_lists_its_rules_instead_of_claiming_every_output_was_checked(tmp_path: Path) -> None:
    dataset = make_dataset(20)
    render_card(card_inputs(dataset), dataset, tmp_path)
    generation = (tmp_path / README_NAME).read_text().split("## Generation", 1)[1].split("\n## ", 1)[0]
    assert "every output was checked automatically" not in generation.lower()
    for reason in ("empty_output", "refusal", "contradicts_reference", "no_relevant_context", "not_english"):
        assert f"- `{reason}`: " in generation
    assert "What they do **not** check" in generation and "No output was reviewed by a medical professional" in generation


# --- a sample release built through Dagster (fake Ollama, copied mirrors, temporary instance) -----

@pytest.fixture(scope="module")
def sample_release(tmp_path_factory, ollama):
    """One sample build for the tests below: (pipeline, instance, release folder, build.json)."""
    from dagster import instance_for_test

    from medset_dagster_tests.conftest import make_pipeline

    tmp = tmp_path_factory.mktemp("sample_release")
    pipeline = make_pipeline(tmp, ollama.url)
    (tmp / "home").mkdir()
    with instance_for_test(temp_dir=str(tmp / "home")) as instance:
        pipeline.observe_and_build(instance)
        release = pipeline.release.resolve()
        yield pipeline, instance, release, json.loads((release / "build.json").read_text())


def test_sample_release_parquet_and_json_load_to_the_same_features_and_rows(sample_release, tmp_path) -> None:
    from datasets import Features, Value, concatenate_datasets, load_dataset

    _, _, release, manifest = sample_release
    shards = sorted(str(p) for p in (release / "data").glob("train-*.parquet"))
    parquet = load_dataset("parquet", data_files=shards, split="train", cache_dir=str(tmp_path / "a"))
    array = load_dataset("json", data_files=str(release / "medical_training_dataset.json"), split="train",
                         cache_dir=str(tmp_path / "b"))
    expected = Features({column: Value("string") for column in ("input", "context", "output", "source")})
    assert parquet.features == array.features == expected
    assert parquet.num_rows == array.num_rows == manifest["rows"] > 0
    assert parquet.to_list() == array.to_list()
    both = concatenate_datasets([parquet, array])
    assert both.num_rows == 2 * manifest["rows"] and both.features == expected


def test_sample_release_revisions_are_the_mirrors_read_in_card_and_build_json(sample_release) -> None:
    from medset_dagster.common.hashing import sha256_tree

    pipeline, instance, release, manifest = sample_release
    text = (release / README_NAME).read_text()
    by_id = {s["source_id"]: s for s in manifest["sources"]}
    for spec in dataset_sources():
        entry = by_id[spec.source_id]
        assert entry["revision_pinned"] == spec.revision
        if spec.hub_repo is None:  # generated from the PDFs alone
            assert entry["revision_loaded"] is None and entry["loaded_from"] is None
            continue
        # Generated sources too: the mirror their items were read from, not the registry's Hub commit.
        assert entry["revision_loaded"] == sha256_tree(pipeline.mirrors / spec.hub_repo), spec.source_id
        assert entry["loaded_from"] == "local_mirror"
        cells = source_cells(text, spec.source_id)
        assert cells[3] == f"mirror `{entry['revision_loaded'][:12]}`" and cells[4] == f"`{spec.revision[:12]}`"
    for generated in ("medqa", "wiki_medical_terms", "symptom_to_diagnosis"):
        from medset_dagster_tests.conftest import metadata_of

        assert metadata_of(instance, f"generated_records/{generated}")["revision_loaded"] == by_id[generated]["revision_loaded"]
    assert "/tree/" not in text and "local mirror of" not in json.dumps(manifest)


def test_sample_release_licence_is_other_and_the_same_everywhere(sample_release) -> None:
    _, _, release, manifest = sample_release
    text = (release / README_NAME).read_text()
    assert header(release / README_NAME)["license"] == "other" and manifest["licence"]["licence"] == "other"
    documents = [d["doc_id"] for d in manifest["documents"]]
    rag = f"CC0-1.0 (generated from {', '.join(documents)})"
    for entry in manifest["sources"]:
        assert source_cells(text, entry["source_id"])[5] == entry["licence"]
        assert f"- `{entry['source_id']}`: " in text and f"licence: {entry['licence']}." in text
    assert next(s for s in manifest["sources"] if s["source_id"] == "extreme_firstaid_qa_dataset")["licence"] == rag
    assert "NC-SA" not in text


def test_sample_release_funnel_stages_are_the_metadata_names_each_defined(sample_release) -> None:
    from medset_dagster.dataset.curation import RELEASE_FUNNEL_STAGES, STAGE_MEANINGS
    from medset_dagster_tests.conftest import metadata_of

    _, instance, release, _ = sample_release
    funnel = metadata_of(instance, "phi_scrubbed_dataset")["funnel_json"]
    # The metadata's names (its JSON keys come back sorted) are the card's, which keeps pipeline order.
    assert {k for k in funnel[0] if k != "source"} == set(RELEASE_FUNNEL_STAGES)
    stages = list(RELEASE_FUNNEL_STAGES)
    curation = (release / README_NAME).read_text().split("## Curation", 1)[1].split("\n## ", 1)[0]
    assert "| source | " + " | ".join(stages) + " |" in curation
    for stage in stages:
        assert f"- `{stage}`: {STAGE_MEANINGS[stage]}." in curation
    total = next(r for r in funnel if r["source"] == "TOTAL")
    assert "| **TOTAL** | " + " | ".join(f"{total[s]:,}" for s in stages) + " |" in curation


def test_sample_release_load_snippet_runs_and_the_reproduce_facts_match(sample_release, monkeypatch, tmp_path) -> None:
    import datasets

    from medset_dagster.release.build_manifest import REPO_ROOT, commit_year, git_commit

    _, _, release, manifest = sample_release
    text = (release / README_NAME).read_text()
    (snippet,) = code_blocks(text, "python")  # a local release: the release-folder snippet only
    monkeypatch.chdir(release)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)
    namespace: dict = {}
    exec(snippet, namespace)
    assert namespace["dataset"].num_rows == manifest["rows"]
    # The command (the test pipeline generates through Ollama) and the commit, in build.json and on the card.
    assert manifest["command"] == "MEDSET_PROFILE=sample MEDSET_GENERATOR=ollama make build"
    assert code_blocks(text, "bash") == [manifest["command"] + "\n"]
    assert manifest["git_commit"] == git_commit(REPO_ROOT)
    year = commit_year(REPO_ROOT)
    bib = code_blocks(text, "bibtex")[0]
    assert (f"  year = {{{year}}},\n" in bib) if year else ("year =" not in bib)
