"""The card sections on how the rows were made: curation, the quality stages, generation and
retrieval (one function each, called by `sections.card_markdown`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from medset_dagster.common.markdown import Raw, table
from medset_dagster.dataset.curation import (
    FUNNEL_STAGES,
    RELEASE_FUNNEL_STAGES,
    STAGE_MEANINGS,
)
from medset_dagster.generation.tasks import DEFAULT_MIN_SIMILARITY, task_drop_rules
from medset_dagster.generation.validation import REPAIR_RULES
from medset_dagster.release.card.inputs import (
    LENGTH_HISTOGRAM_IMAGE,
    SOURCE_MIX_IMAGE,
    CardInputs,
)
from medset_dagster.release.hygiene_rules import PDF_RULES, RECORD_RULES

# The heading of the personal-information section, which other sections link to.
PHI_HEADING = "Personal and health information"


def heading_anchor(heading: str) -> str:
    """The anchor the Hub (and GitHub) give a Markdown heading: lower case, punctuation removed,
    spaces as hyphens."""
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))


def _policy_words(policy: Mapping[str, Any]) -> str:
    name, seed = policy.get("name"), policy.get("seed")
    low, high = policy.get("min_chars"), policy.get("max_chars")
    shuffle = (f"Finally the rows are ordered by a hash of their content under seed {seed}, so the same records "
               "give the same file in the same order, whatever order the sources arrive in.")
    if name == "card":
        return (
            f"Curation policy **`card`** (what the published card describes): each source's own rules first "
            f"(mapping, skips, exact dedup on `input` within the source); then a global exact dedup on the "
            f"normalised `(input, output)` pair (NFKC, format characters removed, case folded, whitespace collapsed), keeping the first in registry order; then "
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


def curation_section(card: CardInputs) -> str:
    """`## Curation`: the policy in words, the funnel table (one row per source, a column per stage of
    `FUNNEL_STAGES`) and a sentence defining each stage."""
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


def quality_section(card: CardInputs) -> str:
    """What the three quality stages removed (near-duplicates, benchmark contamination, PHI), with
    their settings and counts per source, from `card.quality`; "" when the stages did not run."""
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
        f"### {PHI_HEADING}",
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


def generation_section(card: CardInputs) -> str:
    """`## Generation`: the backend, model and parameters actually used, and the repair and drop rules
    applied to every output, a sentence each; a line saying so when nothing was generated."""
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


def retrieval_section(card: CardInputs) -> str:
    """`## Retrieval`: the documents, the chunking (characters), the embedder and index actually used,
    `top_k` and the minimum similarity; a line saying so without retrieval."""
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

