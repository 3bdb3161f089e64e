"""The card's Markdown sections, one function each, in the order they appear."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import polars as pl

from medset_dagster.common.markdown import Raw, table
from medset_dagster.dataset.curation import (
    FUNNEL_STAGES,
    RELEASE_FUNNEL_STAGES,
    STAGE_MEANINGS,
)
from medset_dagster.generation.tasks import DEFAULT_MIN_SIMILARITY, task_drop_rules
from medset_dagster.generation.validation import REPAIR_RULES
from medset_dagster.release.card.header import card_header
from medset_dagster.release.card.inputs import (
    HUB,
    LENGTH_HISTOGRAM_IMAGE,
    ORIGINAL_REPO,
    SOURCE_MIX_IMAGE,
    CardInputs,
)
from medset_dagster.release.export import DATA_DIR, JSON_NAME
from medset_dagster.release.hygiene_rules import PDF_RULES, RECORD_RULES
from medset_dagster.release.licensing import classify_licence


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
    # The stages recorded in the funnel, in pipeline order (quality stages included when they ran).
    recorded = set(card.funnel[0]) if card.funnel else set(FUNNEL_STAGES)
    stages = [stage for stage in RELEASE_FUNNEL_STAGES if stage in recorded]
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
        "Rows per source at each stage, one stage per cause (the same names as in the pipeline's metadata):",
        "",
        *[f"- `{stage}`: {STAGE_MEANINGS[stage]}." for stage in stages if stage in STAGE_MEANINGS],
        "",
        table(["source", *stages], rows) if rows else "_No funnel recorded._",
        "",
        "Text hygiene applied before these counts:",
        "",
        *[f"- {sentence}" for sentence in (*PDF_RULES.values(), *RECORD_RULES.values())],
        "",
        f"![Rows per source]({SOURCE_MIX_IMAGE})",
        "",
        f"![Character lengths of input and output]({LENGTH_HISTOGRAM_IMAGE})",
    ]
    return "\n".join(lines)


def _quality(card: CardInputs) -> str:
    """What the three quality stages removed: near-duplicates, benchmark contamination, PHI."""
    q = card.quality
    if not q:
        return ""
    near, decon, found = q.get("near_duplicates") or {}, q.get("decontamination") or {}, q.get("phi") or {}
    near_params, decon_params = near.get("params") or {}, decon.get("params") or {}
    lines = [
        "## Near-duplicates, benchmark contamination and personal information",
        "",
        "### Near-duplicates",
        "",
        f"Rows whose word {near_params.get('ngram', 5)}-grams of `input` and `output` have an estimated Jaccard similarity "
        f"of at least {near_params.get('threshold', 0.8)} (MinHash, {near_params.get('num_perm', 128)} permutations, LSH) "
        "form a cluster; one row is kept per cluster: the source first in the registry's order, then the first "
        f"occurrence. **{int(near.get('removed') or 0):,} rows removed** in {int(near.get('clusters') or 0):,} clusters.",
    ]
    removed = near.get("removed_by_source") or {}
    if removed:
        lines += ["", table(["source", "rows removed"], sorted(removed.items()))]
    largest = near.get("largest_clusters") or []
    if largest:
        lines += ["", "Largest clusters (sizes and sources only):", "",
                  table(["cluster", "rows", "kept from", "sources"],
                        [(c.get("cluster_id"), c.get("size"), Raw(f"`{c.get('kept_source')}`"),
                          ", ".join(f"{k} {v}" for k, v in sorted((c.get("sources") or {}).items()))) for c in largest])]
    ngram, ratio = decon_params.get("ngram", 13), decon_params.get("min_match_ratio", 0.0)
    rule = (f"shares a {ngram}-token n-gram (after normalisation) with a benchmark item's question, options or answer, "
            "the rule of GPT-3 and NeMo Curator" if not ratio else
            f"holds at least {ratio:.0%} of a benchmark item's {ngram}-grams")
    lines += [
        "",
        "### Benchmark decontamination",
        "",
        f"A row is removed when its `input`, `context` or `output` {rule}, so the test splits medical models are "
        f"scored on do not leak into training. **{int(decon.get('removed') or 0):,} rows removed.**",
    ]
    by_pair = decon.get("removed_by_source_benchmark") or {}
    index = decon.get("index") or {}
    benchmarks = sorted({b for pairs in by_pair.values() for b in pairs} | set(index))
    if by_pair:
        lines += ["", table(["source", *benchmarks],
                            [(Raw(f"`{src}`"), *[int(pairs.get(b, 0)) for b in benchmarks]) for src, pairs in sorted(by_pair.items())])]
    if index:
        lines += ["", "Benchmarks indexed:", "",
                  table(["benchmark", "items", "n-grams"], [(Raw(f"`{b}`"), v.get("items"), v.get("ngrams")) for b, v in sorted(index.items())])]
    policy = found.get("policy", "redact")
    lines += [
        "",
        "### Personal and health information",
        "",
        "Every field was scanned for e-mail addresses, phone numbers, US social security numbers, medical record and "
        "other identifiers, dates of birth in context, street addresses, URLs carrying personal tokens, IP addresses "
        "and person names after a title or a role (Presidio's pattern recognizers, no model). People named in the "
        "encyclopaedia source are public figures, not patients, and are not flagged by name. Policy **"
        + policy + "**: "
        + ("each finding was replaced by a typed placeholder such as `[PHONE]`." if policy == "redact" else "rows with a finding were dropped.")
        + f" **{int(found.get('findings') or 0):,} findings** in {int(found.get('rows_with_findings') or 0):,} rows.",
    ]
    by_kind = found.get("findings_by_source_kind") or {}
    if by_kind:
        kinds = sorted({k for kinds in by_kind.values() for k in kinds})
        lines += ["", table(["source", *kinds], [(Raw(f"`{src}`"), *[int(v.get(k, 0)) for k in kinds]) for src, v in sorted(by_kind.items())])]
    lines += ["", "These scans reduce, but cannot rule out, personal information or benchmark overlap: they match "
              "patterns and exact n-grams, not meaning."]
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
    min_similarity = card.retrieval.min_similarity if card.retrieval and card.retrieval.min_similarity is not None else DEFAULT_MIN_SIMILARITY
    rules = task_drop_rules(min_similarity)
    lines += [
        "Every output went through automatic checks, each drop counted by reason in the funnel. What they check, "
        "rule by rule:",
        "",
        *[f"- `{reason}`: {sentence}" for reason, sentence in rules.items()],
        *[f"- `{name}` (repaired, not dropped): {sentence}" for name, sentence in REPAIR_RULES.items()],
        "",
        "What they do **not** check: whether an answer is medically correct beyond naming the reference answer "
        "(MedQA's correct option, the symptom set's diagnosis label), whether a RAG answer is faithful to its "
        "passages beyond the passages being relevant, and whether a question is well posed. **No output was "
        "reviewed by a medical professional.**",
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
            "per question, joined as the row's `context`"
            + (
                f"; a question whose best passage scores below {ret.min_similarity:g} gets no context and is dropped."
                if ret.min_similarity is not None
                else "."
            ),
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
    sections = [section for section in [
        _summary(card, dataset),
        _structure(card, dataset),
        _licence(card),
        _sources(card),
        _curation(card),
        _quality(card),
        _generation(card),
        _retrieval(card),
        _citation(card),
        _attribution(card),
        "---\n\n**Remember:** this is a training dataset for research and education. It is not medical advice. "
        "Always consult healthcare professionals; in an emergency, contact your local emergency services.",
    ] if section]
    return card_header(card, dataset.height) + "\n" + "\n\n".join(sections) + "\n"


def _check_rows(card: CardInputs, dataset: pl.DataFrame) -> None:
    """The table's per-source rows must be the dataset's, or the card would misstate the release."""
    actual = dict(dataset.group_by("source").len().iter_rows()) if dataset.height else {}
    stated = {s.source_id: s.rows for s in card.sources}
    wrong = {k: (stated.get(k, 0), actual.get(k, 0)) for k in set(actual) | set(stated) if stated.get(k, 0) != actual.get(k, 0)}
    if wrong:
        raise ValueError(f"card source rows differ from the dataset (stated, actual): {dict(sorted(wrong.items()))}")
