"""The dataset card: a parseable Hub header, honest tables and statements, deterministic charts."""

from __future__ import annotations

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
        assert cells[5] == f"{counts[entry.source_id]:,}"
        assert entry.licence in cells[4]
        if entry.hub_repo:
            assert f"(https://huggingface.co/datasets/{entry.hub_repo})" in cells[1]
            assert cells[3].startswith(f"[`{entry.revision[:7]}`]")
    assert "| `medical_o1_reasoning_sft` |" in sources_section and "| en |" in sources_section
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
    wrong = [SourceEntry("medqa", "truehealth/medqa", None, "r", "mit", 999)]
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
