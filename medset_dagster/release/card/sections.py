"""The card's Markdown sections, one function each, in the order they appear (those on how the rows
were made are in `processing.py`)."""

from __future__ import annotations

import json
import re
from typing import Any

import polars as pl

from medset_dagster.common.markdown import Raw, table
from medset_dagster.dataset.records import COLUMN_DESCRIPTIONS, RECORD_COLUMNS
from medset_dagster.release.build_manifest import CODE_URL_SETTING, SourceEntry
from medset_dagster.release.card.header import card_header
from medset_dagster.release.card.inputs import (
    HUB,
    ORIGINAL_REPO,
    CardInputs,
)
from medset_dagster.release.card.processing import PHI_HEADING, curation_section, generation_section, heading_anchor, quality_section, retrieval_section
from medset_dagster.release.export import DATA_DIR, JSON_NAME
from medset_dagster.release.files import MANIFEST_NAME
from medset_dagster.release.licensing import classify_licence

# Revisions on the card: this many hex characters (build.json has them in full).
SHORT = 12


def _repo_link(repo: str | None) -> Raw | str:
    return Raw(f"[{repo}]({HUB}/datasets/{repo})") if repo else "generated here (RAG over the PDFs)"


def _links_hub_commit(card: CardInputs, s: SourceEntry) -> bool:
    """Only a Hub commit that a full-profile build really read is linked to the Hub."""
    return card.profile == "full" and s.loaded_from == "hub" and bool(s.hub_repo)


def _revision_loaded_cell(card: CardInputs, s: SourceEntry) -> Raw | str:
    """What the build read: a Hub commit (linked on the full profile), a mirror's content hash, or
    "not recorded" for a Hub source whose load recorded no revision."""
    if s.revision_loaded is None:
        return "not recorded" if s.hub_repo else "–"
    short = s.revision_loaded[:SHORT]
    if _links_hub_commit(card, s):
        return Raw(f"[`{short}`]({HUB}/datasets/{s.hub_repo}/tree/{s.revision_loaded})")
    if s.loaded_from == "local_mirror":
        return Raw(f"mirror `{short}`")
    return Raw(f"`{short}`")


def _revision_pinned_cell(s: SourceEntry) -> Raw | str:
    return Raw(f"`{s.revision_pinned[:SHORT]}`") if s.revision_pinned else "–"


def _revision_footnote(card: CardInputs) -> str:
    """What the two revision columns mean, saying only what the rows above show."""
    kinds = {("linked" if _links_hub_commit(card, s) else s.loaded_from or ("missing" if s.hub_repo else None))
             for s in card.sources}
    parts = ["**revision loaded** is what this build read:"]
    if "linked" in kinds:
        parts.append("a commit of the Hub repository, linked to it;")
    if "hub" in kinds:
        parts.append("a Hub commit;")
    if "local_mirror" in kinds:
        parts.append("*mirror*: the SHA-256 content hash of the local mirror folder read instead of the Hub "
                     "(sample profile; same files and columns as the Hub repo), so no Hub commit was read and "
                     "none is linked;")
    if "missing" in kinds:
        parts.append("*not recorded*: the load recorded no revision;")
    if None in kinds:
        parts.append("– for a source generated here from the PDFs (pinned by SHA-256 under *Retrieval*);")
    parts[-1] = parts[-1].rstrip(";") + "."
    parts.append(f"**revision pinned** is the commit the source registry pins. Both are shortened to {SHORT} "
                 "characters; `build.json` has them in full as `revision_loaded` and `revision_pinned`.")
    return " ".join(parts)


def _summary(card: CardInputs, dataset: pl.DataFrame) -> str:
    contributing = sum(1 for s in card.sources if s.rows > 0)
    lines = [
        f"# {card.pretty_name}",
        "",
        f"Medical question-answer pairs for training and evaluating language models on healthcare knowledge, "
        f"clinical reasoning and first aid in austere settings. This release (version `{card.version}`) has "
        f"**{dataset.height:,}** rows from **{contributing}** sources, each row `{{input, context, output, source}}`.",
        "",
        f"It rebuilds [{ORIGINAL_REPO}]({HUB}/datasets/{ORIGINAL_REPO}) (84,325 rows) from its sources with "
        "`medset_dagster`: source datasets pinned to a revision, PDFs pinned by SHA-256, prompts versioned by "
        "hash, curation under a recorded seed, and a manifest (`build.json`) with the hash of every file.",
        "",
        "> **⚠️ Disclaimer: for educational and research purposes only. This is not medical advice.** Models "
        "trained on this data must not replace professional medical judgement. Always consult qualified "
        "healthcare professionals for medical decisions; in an emergency, call your local emergency services.",
    ]
    if card.profile == "sample":
        lines += [
            "",
            "> **Sample build.** This release was made with the `sample` profile: small local mirrors of the "
            "source datasets, a tiny local language model and a local embedder. It exists to try the pipeline "
            "end to end. **Do not train on it.**",
        ]
    return "\n".join(lines)


def _structure(card: CardInputs, dataset: pl.DataFrame) -> str:
    lines = [
        "## Dataset structure",
        "",
        "One split, `train`. Each row has four string fields:",
        "",
        *[f"- `{column}`: {COLUMN_DESCRIPTIONS[column]}" + (";" if column != RECORD_COLUMNS[-1] else ".")
          for column in RECORD_COLUMNS],
        "",
        "Files:",
        "",
        f"- `{DATA_DIR}/train-*.parquet`: the data, in the Hub layout (the `default` config);",
        f"- `{JSON_NAME}`: the same rows as one JSON array, keys in the published order;",
        "- `build.json`: the build manifest (source revisions, document and file hashes, prompt versions, "
        "settings, code version, git commit, the command that rebuilds it, run id).",
        "",
        "### Loading",
        "",
    ]
    if card.repo_id:
        lines += [
            "From the Hub:",
            "",
            "```python",
            "from datasets import load_dataset",
            "",
            f'dataset = load_dataset("{card.repo_id}", split="train")',
            "```",
            "",
            "From a copy of the release folder (the folder holding this README), run there:",
        ]
    else:
        lines += ["This release was not published to the Hub (a local, dry-run release). Load it from the release "
                  "folder (the folder holding this README, `.medset/release/` after `make build`), run there:"]
    lines += [
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'dataset = load_dataset("parquet", data_files="{DATA_DIR}/train-*.parquet", split="train")',
        "```",
        "",
        f"`{JSON_NAME}` loads to the same features and rows (`load_dataset(\"json\", data_files=\"{JSON_NAME}\", "
        "split=\"train\")`); both have four `string` columns.",
    ]
    return "\n".join(lines)


def _examples(card: CardInputs, dataset: pl.DataFrame) -> str:
    """One record per source: the source's first row in the release's order, long fields shortened."""
    if not dataset.height:
        return ""
    lines = ["## Examples", "",
             f"One record per source: its first row in the release's order, fields longer than {EXAMPLE_CHARS} "
             "characters shortened here (marked …)."]
    for s in card.sources:
        rows = dataset.filter(pl.col("source") == s.source_id)
        if not rows.height:
            continue
        example = {column: _truncate(str(rows[column][0] or ""), EXAMPLE_CHARS) for column in RECORD_COLUMNS}
        lines += ["", f"### `{s.source_id}`", "", "```json", json.dumps(example, indent=2, ensure_ascii=False), "```"]
    return "\n".join(lines)


EXAMPLE_CHARS = 300


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def _unestablished(card: CardInputs) -> list[SourceEntry]:
    """Sources with rows whose redistribution rights are not established, from the licence decision
    (a decision built by hand, with no per-source terms, falls back to classifying the strings)."""
    terms = card.licence.sources
    if terms:
        return [s for s in card.sources if s.rows > 0 and s.source_id in terms and not terms[s.source_id].established]
    return [s for s in card.sources if s.rows > 0 and classify_licence(s.licence).kind in ("unclear", "derived")]


def _share(part: int, whole: int) -> str:
    return f"{part:,} of {whole:,} rows ({part / whole:.0%})" if whole else f"{part:,} rows"


def _licence(card: CardInputs) -> str:
    decision = card.licence
    licence = decision.licence
    lines = ["## Licence", ""]
    if decision.conflicts:
        lines += [
            f"Declared licence: **{licence}**, with an **acknowledged licence conflict**.",
            "",
            f"The following sources do not allow their rows to be released under {licence}. The conflict was "
            "acknowledged when the release was built, rather than these sources being dropped, so this card "
            f"states it: **rows from these sources are not available under {licence}**; they keep their own terms.",
            "",
            table(["source", "its licence", "why it conflicts"], [(s, lic, why) for s, lic, why in decision.conflicts]),
        ]
    elif licence == "other":
        lines += [
            "Declared licence: **other (per-source terms)**. No single licence honestly covers every source, so "
            "the dataset is an aggregate in which **each source's rows keep that source's terms** (the `source` "
            "column says which). The licence of every source is in the table under *Sources*.",
        ]
    elif licence == "unknown":
        lines += ["Declared licence: **unknown**. No source in this release has known licence terms."]
    else:
        lines += [
            f"Declared licence: **{licence}**, derived from the licences of the sources: it is the licence every "
            "source with known terms allows. Keep the sources' attribution notices (see *Attribution*).",
        ]
    unclear = _unestablished(card)
    if unclear:
        with_rows = [s for s in card.sources if s.rows > 0]
        rows = sum(s.rows for s in unclear)
        published = (
            f"; in the published build they were {_share(sum(s.published_rows or 0 for s in unclear), sum(s.published_rows or 0 for s in with_rows))}"
            if all(s.published_rows is not None for s in with_rows) else ""
        )
        lines += [
            "",
            f"**Redistribution rights not established** for {len(unclear)} of {len(with_rows)} sources, "
            f"{_share(rows, sum(s.rows for s in with_rows))} of this release{published}: "
            + ", ".join(f"`{s.source_id}` ({s.licence})" for s in unclear)
            + ". Their upstream repositories declare no licence (or this build could not establish the terms of "
            "what they were generated from), so no licence can be granted for their rows"
            + (": this is why the declared licence is `other`." if licence == "other" else "."),
        ]
    if decision.notes:
        lines += ["", "Details from the automated licence check:", ""] + [f"- {note}" for note in decision.notes]
    lines += [
        "",
        "The published dataset declared CC-BY-4.0 although one of its sources is GPL-3.0 and the WHO/ICRC guideline "
        "its first-aid rows were generated from allows non-commercial use only; this rebuild derives the licence "
        "from the sources instead. This is a good-faith reading of the licences, not legal advice.",
    ]
    return "\n".join(lines)


def _sources(card: CardInputs) -> str:
    show_published = any(s.published_rows is not None for s in card.sources)
    header = ["source", "Hub repo", "config", "revision loaded", "revision pinned", "licence", "rows"]
    header += ["published build"] if show_published else []
    header += ["description"]
    rows = []
    for s in card.sources:
        row: list[Any] = [Raw(f"`{s.source_id}`"), _repo_link(s.hub_repo), s.config,
                          _revision_loaded_cell(card, s), _revision_pinned_cell(s), s.licence, s.rows]
        row += [s.published_rows] if show_published else []
        rows.append([*row, s.description])
    total: list[Any] = ["**TOTAL**", "", "", "", "", "", sum(s.rows for s in card.sources)]
    total += [sum(s.published_rows or 0 for s in card.sources)] if show_published else []
    rows.append([*total, ""])
    lines = ["## Sources", "", "Train split only. `rows` is the number of rows each source has in this release.", "",
             table(header, rows)]
    if card.sources:
        lines += ["", _revision_footnote(card)]
    moved = [s for s in card.sources if s.hub_head and s.loaded_from == "hub" and s.hub_head != s.revision_loaded]
    if moved:
        lines += ["", "Sources whose Hub repository has moved on since (this release used the revision loaded):", ""]
        lines += [f"- `{s.source_id}`: loaded `{str(s.revision_loaded)[:SHORT]}`, Hub head `{s.hub_head[:SHORT]}` when observed."  # type: ignore[index]
                  for s in moved]
    if card.excluded:
        lines += [
            "",
            "### Excluded sources",
            "",
            "Named on the published card but not part of its build, so not part of this one either:",
            "",
            table(["source", "Hub repo", "why excluded"],
                   [(Raw(f"`{e.source_id}`"), _repo_link(e.hub_repo), e.reason) for e in card.excluded]),
        ]
    return "\n".join(lines)



def _bibtex_key(card: CardInputs) -> str:
    base = card.repo_id or card.pretty_name
    return re.sub(r"[^a-z0-9]+", "_", f"{base} {card.version}".lower()).strip("_")


def _citation_url(card: CardInputs) -> str | None:
    return f"{HUB}/datasets/{card.repo_id}" if card.repo_id else card.code_url


def _citation(card: CardInputs) -> str:
    url = _citation_url(card)
    fields = [f"  title = {{{card.pretty_name} (version {card.version})}}", f"  author = {{{card.citation_author}}}"]
    if card.citation_year is not None:
        fields.append(f"  year = {{{card.citation_year}}}")
    if url:
        fields.append(f"  url = {{{url}}}")
    fields.append(f"  note = {{Rebuilt with medset_dagster from the sources of {ORIGINAL_REPO}}}")
    year_words = (" (the year is that of the build's git commit)" if card.citation_year is not None else "")
    return "\n".join([
        "## Citation",
        "",
        "This rebuild" + year_words + ":",
        "",
        "```bibtex",
        f"@misc{{{_bibtex_key(card)},",
        ",\n".join(fields),
        "}",
        "```",
        "",
        "The dataset it rebuilds:",
        "",
        "```bibtex",
        "@dataset{medical_training_dataset_2024,",
        "  title={Medical Training Dataset: Comprehensive Medical Q&A for AI Training},",
        "  author={Eric Risco},",
        "  year={2024},",
        f"  url={{{HUB}/datasets/{ORIGINAL_REPO}}},",
        "  note={Compiled from multiple medical data sources for educational AI training}",
        "}",
        "```",
        "",
        "Please also cite the source datasets you rely on (below).",
    ])


def _code_words(card: CardInputs) -> str:
    if card.code_url:
        return f"The code that built it: <{card.code_url}>."
    return ("The code that built it is `medset_dagster`; this build recorded no URL for it (its checkout has no git "
            f"remote at a web or SSH address, only local ones or none, and `{CODE_URL_SETTING}` was not set).")


def _reproduce(card: CardInputs) -> str:
    lines = ["## Reproducing this release", "", _code_words(card)]
    if card.command:
        lines += [
            "",
            f"From a checkout of the commit recorded as `git_commit` in `{MANIFEST_NAME}`, this command rebuilds "
            "the release (set-up included):",
            "",
            "```bash",
            card.command,
            "```",
            "",
            f"The new release folder's `{MANIFEST_NAME}` lists every file with its SHA-256, to compare with this "
            f"one's. The commit is recorded in `{MANIFEST_NAME}` rather than here so that rebuilding identical "
            "content from a later commit gives an identical card.",
        ]
    return "\n".join(lines)


def _uses(card: CardInputs) -> str:
    """Intended and out-of-scope uses; the licence-dependent ones follow the licence decision."""
    non_commercial = [s.source_id for s in card.sources
                      if s.rows > 0 and classify_licence(s.licence).non_commercial]
    unclear = [s.source_id for s in _unestablished(card)]
    lines = [
        "## Uses",
        "",
        "### Intended uses",
        "",
        "- Research and education on medical question answering: fine-tuning or evaluating language models on "
        "medical knowledge, clinical reasoning and first aid, with the `source` column to select or weight sources.",
        "- Studying how a compiled dataset is built: every row traces to a source, a revision and (for generated "
        "rows) a prompt version.",
    ]
    if card.profile == "sample":
        lines += ["- This sample build: trying the pipeline end to end. It is not fit for training."]
    lines += [
        "",
        "### Out-of-scope uses",
        "",
        "- Diagnosing, triaging or treating real patients, or giving medical advice to anyone, directly or through a "
        "model trained on this data: no row was reviewed by a medical professional (see "
        "[Bias, risks and limitations](#bias-risks-and-limitations)).",
        "- Dosing or prescribing: drug, dose and interaction statements may be outdated, regional or wrong.",
        "- Evaluating a model as medically safe: the rows are not a benchmark, and the benchmarks named under "
        "*Benchmark decontamination* were removed from them, not represented by them.",
    ]
    if non_commercial:
        lines.append("- Commercial use of the rows from " + ", ".join(f"`{s}`" for s in non_commercial)
                     + ": their terms allow non-commercial use only.")
    if unclear:
        lines.append("- Redistributing the rows from " + ", ".join(f"`{s}`" for s in unclear)
                     + " as if they were licensed: their redistribution rights are not established (see *Licence*).")
    return "\n".join(lines)


def _personal_information(card: CardInputs) -> str:
    lines = [
        "## Personal and sensitive information",
        "",
        "The rows are medical questions, answers and scenarios, not patient records, but medical text can carry "
        "personal and health information about real people, which is sensitive by nature.",
        "",
    ]
    found = (card.quality or {}).get("phi")
    if found:
        policy = found.get("policy", "redact")
        lines.append(
            f"Every field was scanned for personal identifiers (policy **{policy}**): "
            f"{int(found.get('findings') or 0):,} findings in {int(found.get('rows_with_findings') or 0):,} rows; "
            "what was scanned for and what was done is under "
            f"[Personal and health information](#{heading_anchor(PHI_HEADING)}). The scan matches patterns; it cannot "
            "rule out a person being identifiable from a rare combination of details."
        )
    else:
        lines.append("**This build ran no scan for personal information**: treat every row as possibly containing it.")
    return "\n".join(lines)


def _risks(card: CardInputs, dataset: pl.DataFrame) -> str:
    generated = [s for s in card.sources if s.rows > 0 and s.source_id in _generated_ids(card)]
    generated_rows = sum(s.rows for s in generated)
    lines = [
        "## Bias, risks and limitations",
        "",
        "- **Not medical advice, and not reviewed.** No row was checked by a medical professional. Answers can be "
        "wrong, incomplete, outdated or unsafe; a model trained on them can repeat their errors with confidence.",
    ]
    if generated_rows:
        lines.append(
            f"- **Written by a language model**: {_share(generated_rows, dataset.height)} (sources "
            + ", ".join(f"`{s.source_id}`" for s in generated)
            + "). Automatic checks drop some failures (rule by rule under *Generation*), but they do not check "
            "medical correctness beyond the reference answer."
        )
    lines += [
        "- **Coverage and bias.** English only; the exam-style sources follow US licensing exams and US practice, "
        "first-aid material assumes particular settings, and some sources are synthetic. Conditions, populations "
        "and health systems outside them are under-represented.",
        "- **Personal information**: see [Personal and sensitive information](#personal-and-sensitive-information).",
    ]
    if card.profile == "sample":
        lines.append("- **Sample build**: small mirrors and a tiny model; its rows show what the pipeline does, not "
                     "what the full dataset contains.")
    return "\n".join(lines)


def _generated_ids(card: CardInputs) -> set[str]:
    return {task.task for task in card.generation.tasks} if card.generation else set()


def _attribution(card: CardInputs) -> str:
    lines = ["## Attribution", "", "This dataset is built from the following sources, under their licences:", ""]
    for s in card.sources:
        where = f"[{s.hub_repo}]({HUB}/datasets/{s.hub_repo})" if s.hub_repo else "generated by this pipeline"
        lines.append(f"- `{s.source_id}`: {where}, licence: {s.licence}. {s.description}".rstrip())
    if card.documents:
        lines += ["", "Emergency-care documents behind the retrieval-grounded rows:", ""]
        lines += [f"- {d.title or d.doc_id} (`{d.filename}`), licence: {d.licence}." for d in card.documents]
    lines += ["", f"Original compilation: [{ORIGINAL_REPO}]({HUB}/datasets/{ORIGINAL_REPO}) by Eric Risco."]
    return "\n".join(lines)


def card_markdown(card: CardInputs, dataset: pl.DataFrame) -> str:
    """The whole README: YAML header and body. Depends on the inputs and the data only.

    Raises `ValueError` when the stated rows per source differ from the dataset's, or a source's or
    document's licence differs from the licence decision's terms for it.
    """
    _check_rows(card, dataset)
    _check_licences(card)
    sections = [section for section in [
        _summary(card, dataset),
        _uses(card),
        _structure(card, dataset),
        _examples(card, dataset),
        _licence(card),
        _sources(card),
        curation_section(card),
        quality_section(card),
        generation_section(card),
        retrieval_section(card),
        _personal_information(card),
        _risks(card, dataset),
        _reproduce(card),
        _citation(card),
        _attribution(card),
        "---\n\n**Remember:** this is a training dataset for research and education. It is not medical advice. "
        "Always consult healthcare professionals; in an emergency, contact your local emergency services.",
    ] if section]
    return card_header(card, dataset.height) + "\n" + "\n\n".join(sections) + "\n"


def _check_licences(card: CardInputs) -> None:
    """Every section states a source's licence from `SourceEntry.licence` and a document's from
    `DocumentEntry.licence`: both must be the licence decision's terms for it, when it has them."""
    terms = card.licence.sources
    stated = {s.source_id: s.licence for s in card.sources} | {d.doc_id: d.licence for d in card.documents}
    wrong = {k: (v, terms[k].licence) for k, v in stated.items() if k in terms and terms[k].licence != v}
    if wrong:
        raise ValueError(f"card licences differ from the licence decision (stated, decided): {dict(sorted(wrong.items()))}")


def _check_rows(card: CardInputs, dataset: pl.DataFrame) -> None:
    """The table's per-source rows must be the dataset's, or the card would misstate the release."""
    actual = dict(dataset.group_by("source").len().iter_rows()) if dataset.height else {}
    stated = {s.source_id: s.rows for s in card.sources}
    wrong = {k: (stated.get(k, 0), actual.get(k, 0)) for k in set(actual) | set(stated) if stated.get(k, 0) != actual.get(k, 0)}
    if wrong:
        raise ValueError(f"card source rows differ from the dataset (stated, actual): {dict(sorted(wrong.items()))}")
