"""The dataset card (`README.md`) and its two charts, written for people reading the dataset on the Hub.

The card states what the build really did: the sources at their revisions and licences, the excluded
sources and why, the curation funnel, how generation and retrieval were done (and, for the sample
profile, that its generations are only for trying the pipeline), and the licence the sources allow,
naming any acknowledged conflict plainly.

It holds no run id or timestamp (they belong in `build.json`), and the charts are rendered with fixed
size, dpi, style and no software metadata, so identical content gives identical bytes and the
manifest's `content_hash` does not change on a rebuild.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from medset_dagster.common.markdown import Raw, table
from medset_dagster.dataset.curation import FUNNEL_STAGES
from medset_dagster.release.build_manifest import (
    DocumentEntry,
    GenerationInfo,
    RetrievalInfo,
    SourceEntry,
    coerce,
    policy_dict,
)
from medset_dagster.release.export import DATA_DIR, JSON_NAME
from medset_dagster.release.licensing import LicenceDecision, classify_licence

README_NAME = "README.md"
SOURCE_MIX_IMAGE = "images/source_mix.png"
LENGTH_HISTOGRAM_IMAGE = "images/length_histogram.png"
ORIGINAL_REPO = "ericrisco/medical-training-dataset"
HUB = "https://huggingface.co"

TASK_CATEGORIES = ["question-answering", "text-generation"]
TAGS = [
    "medical",
    "healthcare",
    "first-aid",
    "emergency-medicine",
    "medical-qa",
    "clinical-reasoning",
    "disaster-response",
]
# Licence ids the Hub accepts in `license:`; anything else is declared `other` with a name and link.
HUB_LICENCE_IDS = frozenset({
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0",
    "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0",
    "etalab-2.0", "eupl-1.1", "eupl-1.2", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1",
    "lgpl-3.0", "isc", "lppl-1.3c", "ms-pl", "mpl-2.0", "odc-by", "odbl", "openrail++", "osl-3.0", "postgresql",
    "ofl-1.1", "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr", "unknown", "other",
})
# Our normalised ids (licensing.py) that the Hub spells differently.
HUB_ALIASES = {"odbl-1.0": "odbl"}
# (upper bound exclusive, Hub size category)
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)
# Fixed so the PNG bytes depend on the data only.
CHART_SIZE = (8.0, 4.5)
CHART_DPI = 100


@dataclass(frozen=True)
class ExcludedSource:
    source_id: str
    hub_repo: str | None
    reason: str


@dataclass(frozen=True)
class CardInputs:
    """Everything the card states, as plain data (dataclasses or dicts of the same shape)."""

    pretty_name: str
    version: str
    repo_id: str | None  # the Hub dataset repo; None for a local (dry-run) release
    licence: LicenceDecision
    sources: list[SourceEntry]  # per source: repo, config, revision, licence, rows, description
    excluded: list[ExcludedSource]
    funnel: list[dict[str, Any]]  # curation.funneltable(...).to_dicts(): source + FUNNEL_STAGES, TOTAL last
    policy: dict[str, Any]  # curation policy: name, seed, min_chars, max_chars (a CurationPolicy is accepted)
    generation: GenerationInfo | None
    retrieval: RetrievalInfo | None
    documents: list[DocumentEntry]
    profile: str  # "sample" or "full"
    citation_author: str = "medset_dagster contributors"
    citation_year: int | None = None  # an input, not the clock: the card must not change by itself
    code_url: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "sources", [coerce(SourceEntry, s) for s in self.sources])
        set_(self, "excluded", [coerce(ExcludedSource, e) for e in self.excluded])
        set_(self, "documents", [coerce(DocumentEntry, d) for d in self.documents])
        set_(self, "funnel", [dict(row) for row in self.funnel])
        set_(self, "policy", policy_dict(self.policy))
        if self.generation is not None:
            set_(self, "generation", coerce(GenerationInfo, self.generation))
        if self.retrieval is not None:
            set_(self, "retrieval", coerce(RetrievalInfo, self.retrieval))


def excluded_sources() -> list[ExcludedSource]:
    """The registry's documented exclusions (II-Medical-Reasoning-SFT, CAMEO) with their reasons."""
    from medset_dagster.sources.registry import SOURCES

    return [
        ExcludedSource(spec.source_id, spec.hub_repo, spec.excluded_reason or "")
        for spec in SOURCES
        if spec.role == "excluded"
    ]


# ---------------------------------------------------------------------------------------------------
# YAML header


def size_category(rows: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if rows < bound:
            return name
    return "n>1T"


def licence_link(licence_id: str) -> str | None:
    """A canonical URL for a licence id we may declare as `other`."""
    cc = re.fullmatch(r"cc-(by(?:-(?:nc|sa|nd))*)-(\d\.\d)(?:-([a-z]+))?", licence_id)
    if cc:
        port = f"{cc.group(3)}/" if cc.group(3) else ""
        return f"https://creativecommons.org/licenses/{cc.group(1)}/{cc.group(2)}/{port}"
    gpl = re.fullmatch(r"(a|l)?gpl-(\d\.\d)", licence_id)
    if gpl:
        return f"https://www.gnu.org/licenses/{gpl.group(1) or ''}gpl-{gpl.group(2)}.html"
    return None


def hub_licence_fields(licence: str) -> dict[str, str]:
    """`license:` and, for ids the Hub does not know, `license_name` / `license_link`."""
    licence = HUB_ALIASES.get(licence, licence)
    if licence == "other":
        # Per-source terms: the card's licence section is the licence text (a link to a file in the repo).
        return {"license": "other", "license_name": "per-source-terms", "license_link": README_NAME}
    if licence in HUB_LICENCE_IDS:
        return {"license": licence}
    name = re.sub(r"[^a-z0-9.-]+", "-", licence.lower()).strip("-") or "custom"
    return {"license": "other", "license_name": name, "license_link": licence_link(name) or README_NAME}


def _card_data(card: CardInputs, rows: int) -> Any:
    from huggingface_hub import DatasetCardData

    return DatasetCardData(
        pretty_name=card.pretty_name,
        language=["en"],
        task_categories=list(TASK_CATEGORIES),
        size_categories=[size_category(rows)],
        tags=list(TAGS) + (["synthetic"] if card.generation is not None else []),
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": f"{DATA_DIR}/train-*"}]}],
        **hub_licence_fields(card.licence.licence),
    )


def card_header(card: CardInputs, rows: int) -> str:
    return "---\n" + _card_data(card, rows).to_yaml().rstrip("\n") + "\n---\n"


# ---------------------------------------------------------------------------------------------------
# Markdown body



def _is_commit(revision: str | None) -> bool:
    return bool(revision and re.fullmatch(r"[0-9a-f]{40}", revision))


def _repo_link(repo: str | None) -> Raw | str:
    return Raw(f"[{repo}]({HUB}/datasets/{repo})") if repo else "generated here (RAG over the PDFs)"


def _revision_link(repo: str | None, revision: str | None) -> Raw | str | None:
    if not revision:
        return None
    short = revision[:7]
    if repo and _is_commit(revision):
        return Raw(f"[`{short}`]({HUB}/datasets/{repo}/tree/{revision})")
    return Raw(f"`{short}`")


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
        "- `input`: the medical question or scenario;",
        "- `context`: supporting text when there is one (answer options, an encyclopaedia article, retrieved "
        "guideline passages), otherwise empty;",
        "- `output`: the answer;",
        "- `source`: the id of the source the row comes from (table below).",
        "",
        "Files:",
        "",
        f"- `{DATA_DIR}/train-*.parquet`: the data, in the Hub layout (the `default` config);",
        f"- `{JSON_NAME}`: the same rows as one JSON array, keys in the published order;",
        "- `build.json`: the build manifest (source revisions, document and file hashes, prompt versions, "
        "settings, code version, run id).",
    ]
    if card.repo_id:
        lines += [
            "",
            "```python",
            "from datasets import load_dataset",
            "",
            f'dataset = load_dataset("{card.repo_id}", split="train")',
            "```",
        ]
    if dataset.height:
        example = {
            column: _truncate(str(dataset[column][0] or ""), 300) for column in ("input", "context", "output", "source")
        }
        lines += ["", "An example (long fields shortened here):", "", "```json",
                  json.dumps(example, indent=2, ensure_ascii=False), "```"]
    return "\n".join(lines)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


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
    unclear = [s for s in card.sources if s.rows > 0 and classify_licence(s.licence).kind in ("unclear", "derived")]
    if unclear:
        lines += [
            "",
            "**Licence unclear** for " + ", ".join(f"`{s.source_id}` ({s.licence})" for s in unclear)
            + ": their upstream repositories declare no licence (or this build could not establish the terms "
            "of what they were generated from), so redistribution rights for their rows are not established.",
        ]
    if decision.notes:
        lines += ["", "Details from the automated licence check:", ""] + [f"- {note}" for note in decision.notes]
    lines += [
        "",
        "The published dataset declared CC-BY-4.0 although one of its sources is GPL-3.0 and the guideline PDFs "
        "behind its first-aid rows are non-commercial (CC BY-NC-SA 3.0 IGO); this rebuild derives the licence "
        "from the sources instead. This is a good-faith reading of the licences, not legal advice.",
    ]
    return "\n".join(lines)


def _sources(card: CardInputs) -> str:
    show_published = any(s.published_rows is not None for s in card.sources)
    header = ["source", "Hub repo", "config", "revision", "licence", "rows"]
    header += ["published build"] if show_published else []
    header += ["description"]
    rows = []
    for s in card.sources:
        row: list[Any] = [Raw(f"`{s.source_id}`"), _repo_link(s.hub_repo), s.config,
                          _revision_link(s.hub_repo, s.revision), s.licence, s.rows]
        row += [s.published_rows] if show_published else []
        rows.append([*row, s.description])
    total: list[Any] = ["**TOTAL**", "", "", "", "", sum(s.rows for s in card.sources)]
    total += [sum(s.published_rows or 0 for s in card.sources)] if show_published else []
    rows.append([*total, ""])
    lines = ["## Sources", "", "Train split only. `rows` is the number of rows each source has in this release.", "",
             table(header, rows)]
    moved = [s for s in card.sources if s.revision_observed and s.revision and s.revision_observed != s.revision]
    if moved:
        lines += ["", "Revisions that have moved on the Hub since (this release used the pinned one):", ""]
        lines += [f"- `{s.source_id}`: loaded `{s.revision[:7]}`, Hub head `{s.revision_observed[:7]}` when checked."  # type: ignore[index]
                  for s in moved]
    if card.profile == "sample":
        lines += ["", "With the `sample` profile the repositories are read from small local mirrors (same files "
                  "and columns as the Hub repos); their revision is the mirror's content hash."]
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


def _policy_words(policy: Mapping[str, Any]) -> str:
    name, seed = policy.get("name"), policy.get("seed")
    low, high = policy.get("min_chars"), policy.get("max_chars")
    shuffle = (f"Finally the rows are ordered by a hash of their content under seed {seed}, so the same records "
               "give the same file in the same order, whatever order the sources arrive in.")
    if name == "card":
        return (
            f"Curation policy **`card`** (what the published card describes): each source's own rules first "
            f"(mapping, skips, exact dedup on `input` within the source); then a global exact dedup on the "
            f"case-folded, whitespace-collapsed `(input, output)` pair, keeping the first in registry order; then "
            f"a length filter keeping rows whose `input` and `output` both have {low:,} to {high:,} characters. "
            + shuffle
        )
    if name == "published":
        return (
            "Curation policy **`published`** (what the published scripts really did): only each source's own "
            f"rules; no cross-source dedup and no length filter (the bounds {low:,}–{high:,} are not applied). "
            + shuffle
        )
    return f"Curation policy `{name}`, seed {seed}, length bounds {low}–{high} characters. " + shuffle


def _curation(card: CardInputs) -> str:
    stages = list(FUNNEL_STAGES)
    rows = []
    for row in card.funnel:
        label = row.get("source", "")
        cells = [int(row.get(stage, 0) or 0) for stage in stages]
        rows.append([Raw(f"**{label}**") if label == "TOTAL" else Raw(f"`{label}`"), *cells])
    lines = [
        "## Curation",
        "",
        _policy_words(card.policy),
        "",
        "Rows per source at each stage: `loaded` read from the source (for generated sources, items requested); "
        "`mapped` turned into records; `after_source_dedup` kept by the source's own rules; then the global dedup, "
        "the length filter, and `final` rows in the release.",
        "",
        table(["source", *stages], rows) if rows else "_No funnel recorded._",
        "",
        f"![Rows per source]({SOURCE_MIX_IMAGE})",
        "",
        f"![Character lengths of input and output]({LENGTH_HISTOGRAM_IMAGE})",
    ]
    return "\n".join(lines)


def _params_words(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in params.items())


def _generation(card: CardInputs) -> str:
    gen = card.generation
    lines = ["## Generation", ""]
    if gen is None:
        return "\n".join(lines + ["No language-model generation was part of this build."])
    lines += [
        f"Some rows were written by a language model: backend `{gen.backend}`, model `{gen.model}`, digest "
        + (f"`{gen.digest}`." if gen.digest else "not reported by the backend."),
        "",
    ]
    if card.profile == "sample":
        lines += [
            "**These generations come from the sample profile's tiny local model. They are for trying the "
            "pipeline, not for training: expect wrong, shallow or odd answers.**",
            "",
        ]
    lines += [
        "Every output was checked automatically (markdown fences and preambles stripped; refusals, empty, "
        "over-long and malformed outputs dropped; answers saying `NULL`, i.e. the retrieved context was not "
        "enough, dropped). **No output was reviewed by a medical professional.**",
        "",
        "Each prompt template is identified by a hash of its text, output schema and sampling parameters; a "
        "task's hash covers all its templates. Counts are items requested and rows kept.",
        "",
    ]
    rows = []
    for task in gen.tasks:
        templates = "; ".join(f"`{name}` `{version}`" for name, version in task.templates.items())
        params = "; ".join(f"`{name}`: {_params_words(p)}" for name, p in task.parameters.items())
        rows.append([Raw(f"`{task.task}`"), Raw(f"`{task.template_version}`"), Raw(templates or "–"),
                     params, task.items_requested, task.items_kept])
    lines.append(table(["task", "task hash", "templates", "parameters", "requested", "kept"], rows)
                 if rows else "_No generation task produced rows._")
    return "\n".join(lines)


def _retrieval(card: CardInputs) -> str:
    ret = card.retrieval
    lines = ["## Retrieval", ""]
    if ret is None and not card.documents:
        return "\n".join(lines + ["No retrieval was part of this build."])
    lines += ["The first-aid scenario answers are grounded in passages retrieved from these documents, each "
              "pinned by SHA-256:", ""]
    lines.append(table(["document", "file", "sha256", "licence"],
                        [(d.title or d.doc_id, Raw(f"`{d.filename}`"), Raw(f"`{d.sha256}`"), d.licence)
                         for d in card.documents]) if card.documents else "_No documents recorded._")
    if ret is not None:
        emb = ret.embedder
        fingerprint = str(emb.get("fingerprint") or "")
        chunks = f" ({ret.chunks:,} chunks)" if ret.chunks is not None else ""
        lines += [
            "",
            f"- Chunking: {ret.chunk_size:,} characters with {ret.chunk_overlap:,} overlap, split recursively on "
            f"paragraph, line, sentence, word and character; chunks under {ret.chunk_min_chars:,} characters "
            f"dropped{chunks}.",
            f"- Embedder: `{emb.get('backend', '?')}`, model `{emb.get('model', '?')}`, dimension "
            f"{emb.get('dimension', '?')}" + (f", fingerprint `{fingerprint[:16]}`." if fingerprint else "."),
            f"- Index: `{ret.index_kind}` (inner product on unit vectors, i.e. cosine); top {ret.top_k} passages "
            "per question, joined as the row's `context`.",
        ]
        if emb.get("backend") != "cohere":
            lines += ["", "The published build embedded with Cohere `embed-english-v3.0` (1,024 dimensions) and a "
                      "FAISS `IndexFlatL2`; this build used the embedder above, so retrieved passages can differ."]
    return "\n".join(lines)


def _bibtex_key(card: CardInputs) -> str:
    base = card.repo_id or card.pretty_name
    return re.sub(r"[^a-z0-9]+", "_", f"{base} {card.version}".lower()).strip("_")


def _citation(card: CardInputs) -> str:
    url = f"{HUB}/datasets/{card.repo_id}" if card.repo_id else card.code_url
    fields = [f"  title = {{{card.pretty_name} (version {card.version})}}", f"  author = {{{card.citation_author}}}"]
    if card.citation_year is not None:
        fields.append(f"  year = {{{card.citation_year}}}")
    if url:
        fields.append(f"  url = {{{url}}}")
    fields.append(f"  note = {{Rebuilt with medset_dagster from the sources of {ORIGINAL_REPO}}}")
    return "\n".join([
        "## Citation",
        "",
        "This rebuild:",
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


def _attribution(card: CardInputs) -> str:
    lines = ["## Attribution", "", "This dataset is built from the following sources, under their licences:", ""]
    for s in card.sources:
        where = f"[{s.hub_repo}]({HUB}/datasets/{s.hub_repo})" if s.hub_repo else "generated by this pipeline"
        lines.append(f"- `{s.source_id}`: {where}, licence: {s.licence}. {s.description}".rstrip())
    if card.documents:
        lines += ["", "Emergency-care documents behind the retrieval-grounded rows:", ""]
        lines += [f"- {d.title or d.doc_id} (`{d.filename}`), licence: {d.licence}." for d in card.documents]
    lines += ["", f"Original compilation: [{ORIGINAL_REPO}]({HUB}/datasets/{ORIGINAL_REPO}) by Eric Risco."]
    if card.code_url:
        lines += [f"Build code: {card.code_url}."]
    return "\n".join(lines)


def card_markdown(card: CardInputs, dataset: pl.DataFrame) -> str:
    """The whole README: YAML header and body. Depends on the inputs and the data only."""
    _check_rows(card, dataset)
    sections = [
        _summary(card, dataset),
        _structure(card, dataset),
        _licence(card),
        _sources(card),
        _curation(card),
        _generation(card),
        _retrieval(card),
        _citation(card),
        _attribution(card),
        "---\n\n**Remember:** this is a training dataset for research and education. It is not medical advice. "
        "Always consult healthcare professionals; in an emergency, contact your local emergency services.",
    ]
    return card_header(card, dataset.height) + "\n" + "\n\n".join(sections) + "\n"


def _check_rows(card: CardInputs, dataset: pl.DataFrame) -> None:
    """The table's per-source rows must be the dataset's, or the card would misstate the release."""
    actual = dict(dataset.group_by("source").len().iter_rows()) if dataset.height else {}
    stated = {s.source_id: s.rows for s in card.sources}
    wrong = {k: (stated.get(k, 0), actual.get(k, 0)) for k in set(actual) | set(stated) if stated.get(k, 0) != actual.get(k, 0)}
    if wrong:
        raise ValueError(f"card source rows differ from the dataset (stated, actual): {dict(sorted(wrong.items()))}")


# ---------------------------------------------------------------------------------------------------
# Charts


def _new_figure(ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure with its own Agg canvas: no pyplot global state, no GUI backend.
    fig = Figure(figsize=CHART_SIZE, dpi=CHART_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # No software/version metadata: bytes depend on the data (and the pinned matplotlib), nothing else.
    fig.savefig(tmp, format="png", dpi=CHART_DPI, metadata={"Software": None})
    os.replace(tmp, path)


def render_source_mix(dataset: pl.DataFrame, path: Path) -> Path:
    """Rows per source, horizontal bars, largest at the top."""
    import matplotlib.style

    counts = (
        dataset.group_by("source").len().sort(["len", "source"], descending=[False, True]).rows()
        if dataset.height else []
    )
    with matplotlib.style.context("default"):
        fig, ax = _new_figure()
        if counts:
            labels, values = [c[0] for c in counts], [c[1] for c in counts]
            bars = ax.barh(labels, values, color="#4C72B0")
            ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8)
            ax.set_xlim(0, max(values) * 1.15)
            ax.tick_params(axis="y", labelsize=8)
        else:
            ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("rows")
        ax.set_title(f"Rows per source ({dataset.height:,} in total)")
        fig.tight_layout()
        _save(fig, path)
    return path


def render_length_histogram(dataset: pl.DataFrame, path: Path, bounds: tuple[int, int] | None = None) -> Path:
    """Histograms of input and output lengths in characters; log-spaced bins, log counts."""
    import matplotlib.style
    import numpy as np

    with matplotlib.style.context("default"):
        fig, axes = _new_figure(ncols=2)
        for ax, column in zip(axes, ("input", "output")):
            lengths = dataset[column].str.len_chars().to_numpy() if dataset.height else np.array([], dtype=np.int64)
            if lengths.size:
                low, high = max(int(lengths.min()), 1), int(lengths.max()) + 1
                bins = np.unique(np.geomspace(low, max(high, low + 1), 40).round().astype(np.int64))
                ax.hist(np.maximum(lengths, 1), bins=bins, color="#55A868", log=True)
                ax.set_xscale("log")
                if bounds is not None:
                    for i, bound in enumerate(bounds):
                        ax.axvline(bound, color="#C44E52", linestyle="--", linewidth=1,
                                   label="length bounds" if i == 0 else None)
                    ax.legend(loc="upper left", fontsize=8)
            else:
                ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{column} length")
            ax.set_xlabel("characters (log scale)")
            ax.set_ylabel("rows (log scale)")
        fig.tight_layout()
        _save(fig, path)
    return path


# ---------------------------------------------------------------------------------------------------
# Entry point


def render_card(card: CardInputs, dataset: pl.DataFrame, release_dir: Path) -> list[Path]:
    """Write README.md, images/source_mix.png and images/length_histogram.png; return their paths."""
    release_dir = Path(release_dir)
    release_dir.mkdir(parents=True, exist_ok=True)
    text = card_markdown(card, dataset)  # validates the inputs before anything is written
    policy = card.policy
    bounds = (int(policy["min_chars"]), int(policy["max_chars"])) if policy.get("length_filter") else None
    mix = render_source_mix(dataset, release_dir / SOURCE_MIX_IMAGE)
    hist = render_length_histogram(dataset, release_dir / LENGTH_HISTOGRAM_IMAGE, bounds)
    readme = release_dir / README_NAME
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, readme)
    return [readme, mix, hist]
