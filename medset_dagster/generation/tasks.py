"""The four generation tasks: items in, validated records out, every drop counted by reason.

Each task renders its prompts (`prompts.py`), runs them through `run_generation` (cached per item,
resumable), validates every output, and returns records `item_id, input, context, output`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

import polars as pl

from medset_dagster.common.hashing import sha256_json
from medset_dagster.generation.backends import GenerationResult, Generator
from medset_dagster.generation.cache import GenerationCache
from medset_dagster.generation.prompts import (
    MEDQA_EXPLANATION,
    NULL_ANSWER,
    SCENARIO_ANSWER,
    SCENARIO_QUESTION,
    SCENARIO_SITUATIONS,
    SCENARIO_TOPICS,
    SYMPTOM_DIAGNOSIS,
    WIKI_ANSWER,
    WIKI_QUESTION,
    PromptTemplate,
    task_version,
)
from medset_dagster.generation.runner import (
    GenerationItem,
    GenerationReport,
    run_generation,
)

GENERATED_SCHEMA = {"item_id": pl.String, "input": pl.String, "context": pl.String, "output": pl.String}
MAX_OUTPUT_CHARS = 6000
MIN_OUTPUT_CHARS = 10

_FENCE = re.compile(r"^```[\w-]*\s*\n?|\n?```\s*$")
_PREAMBLE = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|great)[,!.]?\s+(?:here(?:'s| is| are)[^:\n]*:\s*)?"
    r"|^here(?:'s| is| are)[^:\n]{0,60}:\s*"
    r"|^(?:question|answer|explanation|sentence|diagnosis)\s*:\s*",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"^(?:i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|i'm unable|i am unable|as an ai|i am an ai|i'm an ai)",
    re.IGNORECASE,
)
_DISCLAIMER = re.compile(
    r"(consult|see|contact|speak (?:to|with))\s+(?:a|your)\s+(?:qualified\s+)?"
    r"(?:doctor|physician|healthcare (?:professional|provider)|medical professional)",
    re.IGNORECASE,
)
_NULL = re.compile(rf"\b{NULL_ANSWER}\b")
_WORD = re.compile(r"[^\W\d_]{2,}")  # a run of letters: "2022-03-29T11:24" has none
MIN_WORDS = 3


class Retriever(Protocol):
    def retrieve_many(self, queries: Sequence[str], k: int = 5) -> list[list]: ...


def clean_output(text: str | None, *, max_words: int | None = None) -> tuple[str | None, str | None]:
    """(cleaned text, None) or (None, drop reason): fences and preambles stripped, then judged."""
    if text is None:
        return None, "empty_output"
    cleaned = _FENCE.sub("", text.strip()).strip()
    for _ in range(2):  # "Sure! Here is the answer: Answer: ..." takes two passes
        cleaned = _PREAMBLE.sub("", cleaned).strip()
    cleaned = cleaned.strip('"“”').strip()
    if not cleaned:
        return None, "empty_output"
    if _REFUSAL.match(cleaned):
        return None, "refusal"
    if _DISCLAIMER.search(cleaned) and len(_DISCLAIMER.sub("", cleaned).strip(" .,!")) < 40:
        return None, "disclaimer_only"
    if len(cleaned) < MIN_OUTPUT_CHARS:
        return None, "too_short"
    if len(_WORD.findall(cleaned)) < MIN_WORDS:
        return None, "not_prose"
    if len(cleaned) > MAX_OUTPUT_CHARS:
        return None, "too_long"
    if max_words is not None and len(cleaned.split()) > max_words:
        return None, "too_many_words"
    return cleaned, None


def normalised_question(text: str) -> str:
    return " ".join(text.lower().split()).rstrip("?. ")


@dataclass
class TaskOutcome:
    records: pl.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)
    reports: list[GenerationReport] = field(default_factory=list)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count


@dataclass(frozen=True)
class TaskSettings:
    """What a run may vary without changing the task: token cap, progress reporting."""

    max_tokens_cap: int | None = None
    on_progress: Callable[..., None] | None = None
    progress_every_s: float = 30.0


def _generate(
    template_source: str,
    items: list[GenerationItem],
    generator: Generator,
    cache: GenerationCache,
    settings: TaskSettings,
    outcome: TaskOutcome,
) -> dict[str, GenerationResult]:
    report = run_generation(
        generator,
        items,
        cache,
        template_version=task_version(template_source),
        on_progress=settings.on_progress,
        progress_every_s=settings.progress_every_s,
    )
    outcome.reports.append(report)
    return report.results


def _validated(
    result: GenerationResult | None, template: PromptTemplate, outcome: TaskOutcome, *, max_words: int | None = None
) -> str | None:
    if result is None:
        outcome.drop("generation_not_run")
        return None
    if not result.ok:
        outcome.drop(f"generation_failed/{result.error}")
        return None
    text, reason = clean_output((result.parsed or {}).get(template.output_field), max_words=max_words)
    if reason:
        outcome.drop(reason)
    return text


def _records(rows: Iterable[dict]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=GENERATED_SCHEMA)


def _single_stage(
    source_id: str,
    template: PromptTemplate,
    items: pl.DataFrame,
    fields: Callable[[dict], dict],
    generator: Generator,
    cache: GenerationCache,
    settings: TaskSettings,
) -> TaskOutcome:
    outcome = TaskOutcome(records=_records([]))
    rows = items.to_dicts()
    requests = [
        GenerationItem(row["item_id"], template.request(max_tokens_cap=settings.max_tokens_cap, **fields(row)))
        for row in rows
    ]
    results = _generate(source_id, requests, generator, cache, settings, outcome)
    kept = []
    for row in rows:
        output = _validated(results.get(row["item_id"]), template, outcome)
        if output:
            kept.append({"item_id": row["item_id"], "input": row["input"], "context": row["context"], "output": output})
    outcome.records = _records(kept)
    return outcome


def explain_medqa(items: pl.DataFrame, generator: Generator, cache: GenerationCache, settings: TaskSettings) -> TaskOutcome:
    """input = question, context = the rendered options, output = why the answer is right."""
    return _single_stage(
        "medqa",
        MEDQA_EXPLANATION,
        items,
        lambda row: {"question": row["input"], "options": row["context"], "answer": row["reference"]},
        generator,
        cache,
        settings,
    )


def diagnose_symptoms(items: pl.DataFrame, generator: Generator, cache: GenerationCache, settings: TaskSettings) -> TaskOutcome:
    """input = the symptom description, context = "", output = one diagnosis sentence."""
    return _single_stage(
        "symptom_to_diagnosis",
        SYMPTOM_DIAGNOSIS,
        items,
        lambda row: {"symptoms": row["input"], "diagnosis": row["reference"]},
        generator,
        cache,
        settings,
    )


def _first_occurrences(rows: list[dict], key: str, outcome: TaskOutcome) -> list[dict]:
    """Drop rows whose question repeats an earlier one (normalised), counting them."""
    seen: set[str] = set()
    unique = []
    for row in rows:
        norm = normalised_question(row[key])
        if norm in seen:
            outcome.drop("repeated_question")
            continue
        seen.add(norm)
        unique.append(row)
    return unique


def wiki_question_answers(items: pl.DataFrame, generator: Generator, cache: GenerationCache, settings: TaskSettings) -> TaskOutcome:
    """A question of at most 20 words from the article, then an answer from the article only."""
    outcome = TaskOutcome(records=_records([]))
    rows = items.to_dicts()
    cap = settings.max_tokens_cap
    questions = _generate(
        "wiki_medical_terms",
        [GenerationItem(r["item_id"], WIKI_QUESTION.request(max_tokens_cap=cap, title=r["input"], article=r["context"])) for r in rows],
        generator,
        cache,
        settings,
        outcome,
    )
    asked = []
    for row in rows:
        question = _validated(questions.get(row["item_id"]), WIKI_QUESTION, outcome, max_words=20)
        if question:
            asked.append({**row, "question": question})
    asked = _first_occurrences(asked, "question", outcome)
    answers = _generate(
        "wiki_medical_terms",
        [GenerationItem(r["item_id"], WIKI_ANSWER.request(max_tokens_cap=cap, article=r["context"], question=r["question"])) for r in asked],
        generator,
        cache,
        settings,
        outcome,
    )
    kept = []
    for row in asked:
        answer = _validated(answers.get(row["item_id"]), WIKI_ANSWER, outcome)
        if answer:
            kept.append({"item_id": row["item_id"], "input": row["question"], "context": row["context"], "output": answer})
    outcome.records = _records(kept)
    return outcome


def sample_scenarios(count: int, seed: int) -> pl.DataFrame:
    """`count` (topic, situation) draws with a recorded seed; `draw` also seeds each generation."""
    rng = random.Random(seed)
    rows = []
    for draw in range(count):
        topic, situation = rng.choice(SCENARIO_TOPICS), rng.choice(SCENARIO_SITUATIONS)
        rows.append({"item_id": sha256_json([seed, draw])[:16], "draw": draw, "topic": topic, "situation": situation})
    return pl.DataFrame(rows, schema={"item_id": pl.String, "draw": pl.Int64, "topic": pl.String, "situation": pl.String})


def emergency_scenarios(
    scenarios: pl.DataFrame,
    generator: Generator,
    cache: GenerationCache,
    retriever: Retriever,
    settings: TaskSettings,
    *,
    top_k: int = 5,
) -> TaskOutcome:
    """Question from the scenario; top-k chunks retrieved for it; an answer grounded in them or NULL."""
    outcome = TaskOutcome(records=_records([]))
    rows = scenarios.to_dicts()
    cap = settings.max_tokens_cap
    questions = _generate(
        "extreme_firstaid_qa_dataset",
        [
            GenerationItem(r["item_id"], SCENARIO_QUESTION.request(max_tokens_cap=cap, seed=r["draw"], topic=r["topic"], situation=r["situation"]))
            for r in rows
        ],
        generator,
        cache,
        settings,
        outcome,
    )
    asked = []
    for row in rows:
        question = _validated(questions.get(row["item_id"]), SCENARIO_QUESTION, outcome)
        if question:
            asked.append({**row, "question": question})
    asked = _first_occurrences(asked, "question", outcome)
    retrieved = retriever.retrieve_many([r["question"] for r in asked], k=top_k) if asked else []
    answer_items = []
    for row, chunks in zip(asked, retrieved):
        row["context"] = "\n".join(chunk.text for chunk in chunks)
        answer_items.append(
            GenerationItem(
                row["item_id"],
                SCENARIO_ANSWER.request(max_tokens_cap=cap, context=row["context"], question=row["question"]),
                extra={"chunk_ids": [chunk.chunk_id for chunk in chunks]},
            )
        )
    answers = _generate("extreme_firstaid_qa_dataset", answer_items, generator, cache, settings, outcome)
    kept = []
    for row in asked:
        result = answers.get(row["item_id"])
        raw = (result.parsed or {}).get("answer", "") if result is not None and result.ok else ""
        if _NULL.search(raw or ""):
            outcome.drop("insufficient_context")
            continue
        answer = _validated(result, SCENARIO_ANSWER, outcome)
        if answer:
            kept.append({"item_id": row["item_id"], "input": row["question"], "context": row["context"], "output": answer})
    outcome.records = _records(kept)
    return outcome
