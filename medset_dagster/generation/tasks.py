"""The four generation tasks: items in, validated records out, every drop counted by reason.

Each task renders its prompts (`prompts.py`), runs them through `run_generation` (cached per item,
resumable), validates every output (`validation.py`), and returns records `item_id, input, context,
output`. The two question-then-answer tasks (wiki terms, emergency scenarios) share one two-stage
flow, `_question_then_answer`; only how an asked question gets its context differs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import polars as pl

from medset_dagster.common.drops import merge_drops
from medset_dagster.common.hashing import sha256_json
from medset_dagster.common.text import normalised_text
from medset_dagster.generation.backends import GenerationResult, Generator
from medset_dagster.generation.cache import GenerationCache
from medset_dagster.generation.prompts import (
    MEDQA_EXPLANATION,
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
from medset_dagster.generation.validation import (
    DROP_RULES,
    OutputRules,
    count_outcomes,
    validate_outputs,
)

GENERATED_SCHEMA = {"item_id": pl.String, "input": pl.String, "context": pl.String, "output": pl.String}

# Minimum cosine similarity of a scenario question's best chunk. The sample's on-topic questions score
# 0.5-0.9 with the local embedder; a question sharing no word with the corpus scores 0 there. 0.3 keeps
# the first and refuses weakly related chunks; it is a parameter of `emergency_scenarios` and the card
# records the value used.
DEFAULT_MIN_SIMILARITY = 0.3

# What each prompt's output must satisfy (validation.py applies it).
OUTPUT_RULES: dict[str, OutputRules] = {
    SCENARIO_QUESTION.name: OutputRules(),
    SCENARIO_ANSWER.name: OutputRules(null_sentinel=True, grounded=True),
    WIKI_QUESTION.name: OutputRules(max_words=20),
    WIKI_ANSWER.name: OutputRules(grounded=True),
    MEDQA_EXPLANATION.name: OutputRules(reference="medqa_option"),
    SYMPTOM_DIAGNOSIS.name: OutputRules(reference="label"),
}


def task_drop_rules(min_similarity: float = DEFAULT_MIN_SIMILARITY) -> dict[str, str]:
    """One sentence per drop reason a task can return (reason -> sentence), for the card and metadata.

    `generation_failed/<error>` stands for every backend error (timeout, malformed_json, ...).
    """
    return {
        "generation_not_run": "The item was not generated in this run.",
        "generation_failed/<error>": "The model server failed for the item after its retries (the error is named).",
        **DROP_RULES,
        "repeated_question": "The generated question repeated an earlier one of the same task (after normalisation).",
        "no_relevant_context": (
            f"No retrieved chunk reached the minimum cosine similarity of {min_similarity:g} to the question "
            "(or the question embedded to a zero vector), so it had no context to be answered from."
        ),
    }


class Retriever(Protocol):
    """What the RAG task needs (`vector_index.Retriever`): per query, up to `k` chunks best first, each with
    `chunk_id` and `text`, without those whose cosine similarity (-1..1) is below `min_score`."""

    def retrieve_many(self, queries: Sequence[str], k: int = 5, *, min_score: float | None = None) -> list[list]: ...


@dataclass
class TaskOutcome:
    """A task's records (GENERATED_SCHEMA), drops by reason, repairs by name (REPAIR_RULES; counted
    on kept outputs), and the runner's reports (one per stage and call)."""

    records: pl.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)
    reports: list[GenerationReport] = field(default_factory=list)
    repaired: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def count(self, dropped: dict[str, int], repaired: dict[str, int]) -> None:
        self.dropped = merge_drops(self.dropped, dropped)
        self.repaired = merge_drops(self.repaired, repaired)


@dataclass(frozen=True)
class TaskSettings:
    """What a run may vary without changing the task: token cap, progress reporting."""

    max_tokens_cap: int | None = None
    on_progress: Callable[..., None] | None = None
    progress_every_s: float = 30.0
    # A `time.monotonic()` instant after which generation stops (the step's deadline); None: none.
    deadline: float | None = None
    # Ask the model again for items whose cached answer failed (truncated, malformed, empty); by
    # default such an answer is settled, as the same request would give it again.
    retry_model_failures: bool = False


def _generate(
    source_id: str,
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
        template_version=task_version(source_id),
        on_progress=settings.on_progress,
        progress_every_s=settings.progress_every_s,
        deadline=settings.deadline,
        retry_model_failures=settings.retry_model_failures,
    )
    outcome.reports.append(report)
    return report.results


def _requests(
    template: PromptTemplate,
    rows: pl.DataFrame,
    fields: Callable[[dict], dict],
    settings: TaskSettings,
    *,
    seed: Callable[[dict], int] | None = None,
    extra: Callable[[dict], dict] | None = None,
) -> list[GenerationItem]:
    return [
        GenerationItem(
            row["item_id"],
            template.request(max_tokens_cap=settings.max_tokens_cap, seed=seed(row) if seed else None, **fields(row)),
            extra=extra(row) if extra else None,
        )
        for row in rows.iter_rows(named=True)
    ]


def _judged(
    rows: pl.DataFrame,
    results: dict[str, GenerationResult],
    template: PromptTemplate,
    outcome: TaskOutcome,
    output_column: str,
) -> pl.DataFrame:
    """`rows` with `output_column` set to the validated output of each; failed and dropped rows
    are removed and counted in `outcome` (validation rules: OUTPUT_RULES[template.name])."""
    failures, outputs = [], []
    for item_id in rows["item_id"].to_list():
        result = results.get(item_id)
        failure = "generation_not_run" if result is None else (None if result.ok else f"generation_failed/{result.error}")
        failures.append(failure)
        outputs.append((result.parsed or {}).get(template.output_field) if failure is None else None)
    frame = rows.with_columns(
        pl.Series("_failure", failures, dtype=pl.String), pl.Series(output_column, outputs, dtype=pl.String)
    )
    for reason, count in frame.group_by("_failure").len().drop_nulls().iter_rows():
        outcome.drop(reason, count)
    rules = OUTPUT_RULES[template.name]
    frame = frame.filter(pl.col("_failure").is_null()).drop("_failure")
    if rules.reference == "medqa_option":
        frame = frame.with_columns(pl.col("context").alias("options"))
    validated = validate_outputs(frame, rules, column=output_column)
    outcome.count(*count_outcomes(validated))
    return validated.filter(pl.col("drop_reason").is_null()).select(frame.columns).drop("options", strict=False)


def _records(frame: pl.DataFrame, input_column: str, output_column: str) -> pl.DataFrame:
    return frame.select(
        "item_id", pl.col(input_column).alias("input"), "context", pl.col(output_column).alias("output")
    ).cast(GENERATED_SCHEMA)


def _single_stage(
    source_id: str,
    template: PromptTemplate,
    items: pl.DataFrame,
    fields: Callable[[dict], dict],
    generator: Generator,
    cache: GenerationCache,
    settings: TaskSettings,
) -> TaskOutcome:
    outcome = TaskOutcome(records=pl.DataFrame(schema=GENERATED_SCHEMA))
    results = _generate(source_id, _requests(template, items, fields, settings), generator, cache, settings, outcome)
    outcome.records = _records(_judged(items, results, template, outcome, "output"), "input", "output")
    return outcome


def explain_medqa(items: pl.DataFrame, generator: Generator, cache: GenerationCache, settings: TaskSettings) -> TaskOutcome:
    """input = question, context = the rendered options, output = why the answer is right.

    `items`: item_id, input, context (options, "X) text" per line), reference (the correct option,
    "C) text"), all String. Outputs that do not name the correct option, or name another as correct,
    are dropped as contradicts_reference.
    """
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
    """input = the symptom description, context = "", output = one diagnosis sentence.

    `items`: item_id, input, context, reference (the diagnosis label), all String. A sentence that
    does not name the label is dropped as contradicts_reference.
    """
    return _single_stage(
        "symptom_to_diagnosis",
        SYMPTOM_DIAGNOSIS,
        items,
        lambda row: {"symptoms": row["input"], "diagnosis": row["reference"]},
        generator,
        cache,
        settings,
    )


def normalised_question(column: str = "question") -> pl.Expr:
    """Key under which two generated questions are the same: the dedup key, trailing "?. " ignored."""
    return normalised_text(pl.col(column)).str.strip_chars_end("?. ")


def _first_occurrences(frame: pl.DataFrame, outcome: TaskOutcome) -> pl.DataFrame:
    """Rows whose question does not repeat an earlier one (normalised); the others are counted."""
    unique = frame.filter(normalised_question().is_first_distinct())
    if frame.height - unique.height:
        outcome.drop("repeated_question", frame.height - unique.height)
    return unique


def _question_then_answer(
    source_id: str,
    items: pl.DataFrame,
    generator: Generator,
    cache: GenerationCache,
    settings: TaskSettings,
    *,
    question: tuple[PromptTemplate, Callable[[dict], dict]],
    answer: tuple[PromptTemplate, Callable[[dict], dict]],
    ground: Callable[[pl.DataFrame, TaskOutcome], pl.DataFrame] | None = None,
    question_seed: Callable[[dict], int] | None = None,
    answer_extra: Callable[[dict], dict] | None = None,
) -> TaskOutcome:
    """The two-stage flow: a question per item, repeats dropped, `ground` gives each question its
    `context` (dropping and counting those it cannot), then an answer per question.

    Records: input = the question, context = the item's or the grounded context, output = the answer.
    """
    outcome = TaskOutcome(records=pl.DataFrame(schema=GENERATED_SCHEMA))
    question_template, question_fields = question
    answer_template, answer_fields = answer
    questions = _generate(
        source_id,
        _requests(question_template, items, question_fields, settings, seed=question_seed),
        generator,
        cache,
        settings,
        outcome,
    )
    asked = _first_occurrences(_judged(items, questions, question_template, outcome, "question"), outcome)
    if ground is not None:
        asked = ground(asked, outcome)
    answers = _generate(
        source_id,
        _requests(answer_template, asked, answer_fields, settings, extra=answer_extra),
        generator,
        cache,
        settings,
        outcome,
    )
    outcome.records = _records(_judged(asked, answers, answer_template, outcome, "answer"), "question", "answer")
    return outcome


def wiki_question_answers(items: pl.DataFrame, generator: Generator, cache: GenerationCache, settings: TaskSettings) -> TaskOutcome:
    """A question of at most 20 words from the article, then an answer from the article only.

    `items`: item_id, input (the title), context (the article), reference (""), all String.
    """
    return _question_then_answer(
        "wiki_medical_terms",
        items,
        generator,
        cache,
        settings,
        question=(WIKI_QUESTION, lambda row: {"title": row["input"], "article": row["context"]}),
        answer=(WIKI_ANSWER, lambda row: {"article": row["context"], "question": row["question"]}),
    )


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
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
) -> TaskOutcome:
    """Question from the scenario; top-k chunks retrieved for it; an answer grounded in them or NULL.

    `scenarios`: item_id, draw (Int64, seeds the question), topic, situation (`sample_scenarios`).
    Only chunks with cosine similarity >= `min_similarity` (-1..1) become context; a question with
    none is dropped as no_relevant_context before an answer is asked for.
    """

    def ground(asked: pl.DataFrame, outcome: TaskOutcome) -> pl.DataFrame:
        hits = retriever.retrieve_many(asked["question"].to_list(), k=top_k, min_score=min_similarity) if asked.height else []
        grounded = asked.with_columns(
            pl.Series("context", ["\n".join(chunk.text for chunk in chunks) for chunks in hits], dtype=pl.String),
            pl.Series("chunk_ids", [[chunk.chunk_id for chunk in chunks] for chunks in hits], dtype=pl.List(pl.String)),
        )
        kept = grounded.filter(pl.col("chunk_ids").list.len() > 0)
        if grounded.height - kept.height:
            outcome.drop("no_relevant_context", grounded.height - kept.height)
        return kept

    return _question_then_answer(
        "extreme_firstaid_qa_dataset",
        scenarios,
        generator,
        cache,
        settings,
        question=(SCENARIO_QUESTION, lambda row: {"topic": row["topic"], "situation": row["situation"]}),
        answer=(SCENARIO_ANSWER, lambda row: {"context": row["context"], "question": row["question"]}),
        ground=ground,
        question_seed=lambda row: row["draw"],
        answer_extra=lambda row: {"chunk_ids": row["chunk_ids"]},
    )
