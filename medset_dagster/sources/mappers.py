"""One mapping function per source: native rows in, the dataset's fields out.

Each mapper is a set of columnar polars expressions following `shared/reference/sources.md`. It
returns, row for row, the mapped fields plus `drop_reason`: null for a kept row, otherwise the
first rule the row breaks. Counting, dropping and per-source dedup are shared (`source_records`).

Record mappers return `input, context, output, drop_reason`. Mappers of sources whose output an
LLM writes return `input, context, reference, drop_reason`: the item the generation task needs.
"""

from __future__ import annotations

import polars as pl

# Published wrapper around the chain of thought, ahead of the final response.
REASONING_FORMAT = "<reasoning>\n{}\n</reasoning>\n{}"


def text(column: str) -> pl.Expr:
    # A number where text belongs (CSV, JSON) becomes its string form rather than failing the load.
    return pl.col(column).cast(pl.String, strict=False)


def stripped(column: str) -> pl.Expr:
    return text(column).str.strip_chars()


def is_blank(expr: pl.Expr) -> pl.Expr:
    return expr.is_null() | (expr.str.strip_chars().str.len_chars() == 0)


def first_broken_rule(*rules: tuple[str, pl.Expr]) -> pl.Expr:
    """The name of the first rule whose condition holds, else null: the row's drop reason."""
    (reason, condition), *rest = rules
    expr = pl.when(condition).then(pl.lit(reason))
    for reason, condition in rest:
        expr = expr.when(condition).then(pl.lit(reason))
    return expr.otherwise(pl.lit(None, dtype=pl.String)).alias("drop_reason")


def _records(rows: pl.DataFrame, input: pl.Expr, output: pl.Expr, *rules: tuple[str, pl.Expr]) -> pl.DataFrame:
    return rows.select(
        input.alias("input"),
        pl.lit("").alias("context"),
        output.alias("output"),
        first_broken_rule(*rules),
    )


def map_medical_o1_verifiable_problem(rows: pl.DataFrame) -> pl.DataFrame:
    question = stripped("Open-ended Verifiable Question")
    answer = stripped("Ground-True Answer")
    return _records(
        rows,
        question,
        answer,
        ("missing_question", is_blank(question)),
        ("missing_answer", is_blank(answer)),
    )


def map_medical_o1_reasoning_sft(rows: pl.DataFrame) -> pl.DataFrame:
    question, cot, response = stripped("Question"), stripped("Complex_CoT"), stripped("Response")
    output = pl.format(REASONING_FORMAT, cot, response)
    return _records(
        rows,
        question,
        output,
        ("missing_question", is_blank(question)),
        ("missing_reasoning", is_blank(cot)),
        ("missing_response", is_blank(response)),
    )


def map_synthetic_disaster_reports(rows: pl.DataFrame) -> pl.DataFrame:
    severity = stripped("severity_level")
    disaster = stripped("disaster_type")
    notes = stripped("responder_notes")
    needs = (
        pl.col("resource_needs")
        .list.eval(pl.element().cast(pl.String, strict=False).str.strip_chars())
        .list.eval(pl.element().filter(pl.element().str.len_chars() > 0))
        .list.join(", ")
    )
    return _records(
        rows,
        pl.format("There is a {} {}. Situation: {}", severity.str.to_lowercase(), disaster.str.to_lowercase(), notes),
        pl.format("The main resources needed are: {}.", needs),
        ("missing_severity_level", is_blank(severity)),
        ("missing_disaster_type", is_blank(disaster)),
        ("missing_responder_notes", is_blank(notes)),
        ("missing_resource_needs", is_blank(needs)),
    )


def map_medicationqa(rows: pl.DataFrame) -> pl.DataFrame:
    # The published build kept both fields unstripped; it also passed null answers through,
    # a defect not copied: blank questions and answers are dropped and counted.
    question, answer = text("Question"), text("Answer")
    return _records(
        rows,
        question,
        answer,
        ("missing_question", is_blank(question)),
        ("missing_answer", is_blank(answer)),
    )


def map_diseases_symptoms(rows: pl.DataFrame) -> pl.DataFrame:
    name, symptoms, treatments = stripped("Name"), stripped("Symptoms"), stripped("Treatments")
    return _records(
        rows,
        symptoms,
        pl.format("It seems you may have {}. The usual treatment is {}.", name, treatments),
        ("missing_symptoms", is_blank(symptoms)),
        ("missing_name", is_blank(name)),
        ("missing_treatments", is_blank(treatments)),
    )


def map_first_aid_dataset(rows: pl.DataFrame) -> pl.DataFrame:
    patterns, responses = pl.col("patterns"), pl.col("responses")
    pattern = patterns.list.first().cast(pl.String, strict=False).str.strip_chars()
    response = responses.list.first().cast(pl.String, strict=False).str.strip_chars()
    return _records(
        rows,
        pattern,
        response,
        ("no_patterns", patterns.is_null() | (patterns.list.len() == 0)),
        ("no_responses", responses.is_null() | (responses.list.len() == 0)),
        ("empty_pattern", is_blank(pattern)),
        ("empty_response", is_blank(response)),
    )


def _generation_items(
    rows: pl.DataFrame, input: pl.Expr, context: pl.Expr, reference: pl.Expr, *rules: tuple[str, pl.Expr]
) -> pl.DataFrame:
    return rows.select(
        input.alias("input"),
        context.alias("context"),
        reference.alias("reference"),
        first_broken_rule(*rules),
    )


def medqa_generation_inputs(rows: pl.DataFrame) -> pl.DataFrame:
    """Question; the options as `A) text`, one a line, empty ones left out; the correct option."""
    options = rows.schema["options"]
    if not isinstance(options, pl.Struct):
        raise TypeError(f"column 'options' should map option letters to texts, found {options}")
    letters = sorted(field.name for field in options.fields)
    option_texts = {letter: pl.col("options").struct.field(letter).cast(pl.String, strict=False).str.strip_chars() for letter in letters}
    rendered = pl.concat_str(
        [
            pl.when(~is_blank(option)).then(pl.format(f"{letter}) {{}}", option))
            for letter, option in option_texts.items()
        ],
        separator="\n",
        ignore_nulls=True,
    )
    question, answer = stripped("question"), stripped("answer")
    correct = pl.coalesce(
        [
            pl.when(~is_blank(option) & (option == answer)).then(pl.format(f"{letter}) {{}}", option))
            for letter, option in option_texts.items()
        ]
    )
    return _generation_items(
        rows,
        question,
        rendered,
        correct,
        ("missing_question", is_blank(question)),
        ("missing_answer", is_blank(answer)),
        ("no_options", is_blank(rendered)),
        ("answer_not_in_options", correct.is_null()),
    )


def wiki_generation_inputs(rows: pl.DataFrame) -> pl.DataFrame:
    """The article title and text: the LLM writes a question from the text and answers it."""
    title, article = stripped("page_title"), stripped("page_text")
    return _generation_items(
        rows,
        title,
        article,
        pl.lit(""),
        ("missing_title", is_blank(title)),
        ("missing_text", is_blank(article)),
    )


def symptom_generation_inputs(rows: pl.DataFrame) -> pl.DataFrame:
    """The patient's symptom description and the diagnosis label the LLM states in a sentence."""
    symptoms, label = stripped("input_text"), stripped("output_text")
    return _generation_items(
        rows,
        symptoms,
        pl.lit(""),
        label,
        ("missing_symptoms", is_blank(symptoms)),
        ("missing_diagnosis", is_blank(label)),
    )
