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
    """`column` as a String expression (cast not strict: a value that cannot be cast becomes null).
    A missing column raises polars' ColumnNotFoundError when the frame is selected."""
    # A number where text belongs (CSV, JSON) becomes its string form rather than failing the load.
    return pl.col(column).cast(pl.String, strict=False)


def stripped(column: str) -> pl.Expr:
    """`text(column)` without leading and trailing whitespace (null stays null)."""
    return text(column).str.strip_chars()


def is_blank(expr: pl.Expr) -> pl.Expr:
    """Boolean: True where `expr` (String) is null or holds nothing but whitespace."""
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
    """sources.md: input = `Open-ended Verifiable Question`, output = `Ground-True Answer` (both stripped),
    context "". Drop reasons: `missing_question`, `missing_answer` (blank). Row for row: input, context,
    output, drop_reason (String, null when kept); the dedup on input is the registry's `dedup_on`."""
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
    """sources.md: input = `Question`, output = `Complex_CoT` and `Response` in REASONING_FORMAT (all
    stripped), context "". Drop reasons: `missing_question`, `missing_reasoning`, `missing_response`
    (blank). Row for row: input, context, output, drop_reason (String, null when kept); no dedup."""
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
    """sources.md: input = "There is a {severity_level} {disaster_type}. Situation: {responder_notes}" (the
    first two lower-cased), output = "The main resources needed are: {resource_needs joined by ', '}."
    (blank needs left out), all stripped, context "". Drop reasons: `missing_severity_level`,
    `missing_disaster_type`, `missing_responder_notes`, `missing_resource_needs` (blank). Row for row:
    input, context, output, drop_reason (String, null when kept); the dedup on input is the registry's."""
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
    """sources.md: input = `Question`, output = `Answer`, both unstripped as published, context "".
    Drop reasons (not in the published build): `missing_question`, `missing_answer` (blank).
    Row for row: input, context, output, drop_reason (String, null when kept); no dedup."""
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
    """sources.md: input = `Symptoms`, output = "It seems you may have {Name}. The usual treatment is
    {Treatments}." (all stripped), context "". Drop reasons: `missing_symptoms`, `missing_name`,
    `missing_treatments` (blank). Row for row: input, context, output, drop_reason (String, null when
    kept); the dedup on input is the registry's `dedup_on`."""
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
    """sources.md: input = the first of `patterns`, output = the first of `responses` (both stripped),
    context "". Drop reasons: `no_patterns`, `no_responses` (null or empty list), `empty_pattern`,
    `empty_response` (blank). Row for row: input, context, output, drop_reason (String, null when
    kept); the dedup on input is the registry's `dedup_on`."""
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


# --------------------------------------------------------------------------------------------------
# Benchmark items (role `benchmark`): what decontamination indexes.
#
# Every benchmark mapper returns, row for row: `item_id` (String: the benchmark's own id where it
# has one, else a content hash), `question` (String), `options` (List[String], option texts in
# order, blanks left out; empty for PubMedQA), `answer` (String, null when the split has none) and
# `drop_reason` (null, or `missing_question`).


def content_id(*columns: pl.Expr) -> pl.Expr:
    """The first 16 hex digits of the SHA-256 of the columns joined by U+001F: an id stable across
    polars versions and machines (polars' own hash is not)."""
    from medset_dagster.common.hashing import sha256_text

    key = pl.concat_str([c.fill_null("") for c in columns], separator="\x1f")
    return key.map_batches(lambda keys: pl.Series([sha256_text(k)[:16] for k in keys], dtype=pl.String), return_dtype=pl.String)


def _option_list(*options: pl.Expr) -> pl.Expr:
    return pl.concat_list([o.cast(pl.String, strict=False).str.strip_chars() for o in options]).list.eval(
        pl.element().filter(pl.element().is_not_null() & (pl.element().str.len_chars() > 0))
    )


def _benchmark_items(rows: pl.DataFrame, item_id: pl.Expr, question: pl.Expr, options: pl.Expr, answer: pl.Expr) -> pl.DataFrame:
    return rows.select(
        item_id.alias("item_id"),
        question.alias("question"),
        options.alias("options"),
        answer.alias("answer"),
        first_broken_rule(("missing_question", is_blank(question))),
    )


def medqa_usmle_items(rows: pl.DataFrame) -> pl.DataFrame:
    """GBaker/MedQA-USMLE-4-options: `question`, `options` (struct A-D, or A-E), `answer` (the text)."""
    options = rows.schema["options"]
    if not isinstance(options, pl.Struct):
        raise TypeError(f"column 'options' should map option letters to texts, found {options}")
    letters = sorted(field.name for field in options.fields)
    question = stripped("question")
    return _benchmark_items(
        rows,
        content_id(question),
        question,
        _option_list(*(pl.col("options").struct.field(letter) for letter in letters)),
        stripped("answer"),
    )


def medmcqa_items(rows: pl.DataFrame) -> pl.DataFrame:
    """openlifescienceai/medmcqa: `id`, `question`, `opa`-`opd`, `cop` (0-3, the correct option;
    -1 or null where the split withholds it)."""
    options = [stripped(column) for column in ("opa", "opb", "opc", "opd")]
    correct = pl.col("cop").cast(pl.Int64, strict=False)
    answer = pl.when(correct.is_between(0, 3)).then(pl.concat_list(options).list.get(correct.clip(0, 3), null_on_oob=True))
    return _benchmark_items(rows, stripped("id"), stripped("question"), _option_list(*options), answer)


def pubmedqa_items(rows: pl.DataFrame) -> pl.DataFrame:
    """qiaojin/PubMedQA (pqa_labeled): `pubid`, `question`, `long_answer` (the abstract's
    conclusion, used as the answer text); yes/no/maybe decisions are not text worth indexing."""
    return _benchmark_items(
        rows,
        text("pubid"),
        stripped("question"),
        pl.lit([], dtype=pl.List(pl.String)),
        stripped("long_answer"),
    )


def mmlu_items(rows: pl.DataFrame) -> pl.DataFrame:
    """cais/mmlu (one subject config): `question`, `choices` (list of 4), `answer` (index 0-3)."""
    question = stripped("question")
    choices = pl.col("choices").list.eval(pl.element().cast(pl.String, strict=False).str.strip_chars())
    answer = choices.list.get(pl.col("answer").cast(pl.Int64, strict=False), null_on_oob=True)
    return _benchmark_items(rows, content_id(question, choices.list.join("\x1e")), question, _option_list(*(choices.list.get(i, null_on_oob=True) for i in range(4))), answer)
