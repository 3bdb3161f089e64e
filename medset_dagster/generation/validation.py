"""Validation of LLM outputs: repairs first, then at most one named drop reason per output.

Everything runs as polars expressions over a frame of outputs, so a task validates all its items in
one pass (benchmarks/hygiene.py measures a million). Only language identification calls a library
per text, and only for the few texts that do not already read as English (see `not_english`).

Repairs (each counted in `REPAIR_RULES` order, the output kept):
- `chat_markup_removed`: chat-template tokens (<end_of_turn>, <|im_end|>, <eos>, ...), and whatever a
  model wrote after an end-of-turn token (a continuation into the next turn is not the answer).
- `reasoning_removed`: a <think>...</think> block, or an unclosed one (everything after an opening tag,
  or everything before a closing tag without an opening one, as DeepSeek-R1-style templates emit).
- `preamble_removed`: a chat opener as a whole ("Sure! Here is the explanation:", "Certainly, here's
  the answer:"). An interjection is an opener only when punctuation follows it, so real first words
  ("Great saphenous vein ...", "Of course not every burn ...") stay.

Drop reasons, in the order they are tested (the first that applies is recorded): see `DROP_RULES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

from medset_dagster.generation.prompts import NULL_ANSWER

MIN_OUTPUT_CHARS = 10
MAX_OUTPUT_CHARS = 6000
MIN_WORDS = 3
# Repetition: word n-grams of this length; dropped when repeats cover more than this share of words.
REPETITION_NGRAM = 4
REPETITION_MAX_SHARE = 0.5
# Language: texts where distinctly English function words make up at least this share of the words
# (and at least ENGLISH_MIN_STOPWORDS of them) are English without asking the detector.
ENGLISH_STOPWORD_SHARE = 0.08
ENGLISH_MIN_STOPWORDS = 2

ReferenceKind = Literal["medqa_option", "label"]

# --- repairs --------------------------------------------------------------------------------------

# Tokens after which a chat turn is over (Gemma, ChatML/Qwen, Llama 3, GPT-2 family, Phi, SentencePiece).
_TURN_END = r"<end_of_turn>|<\|im_end\|>|<\|eot_id\|>|<\|endoftext\|>|<\|end\|>|<eos>|</s>"
_TEMPLATE_TOKENS = (
    r"<\|start_header_id\|>\s*[a-z]*\s*<\|end_header_id\|>"  # Llama 3 role header
    r"|(?:<\|im_start\|>|<start_of_turn>)\s*(?:assistant|model|user|system)?"  # ChatML / Gemma turn start
    r"|<\|[a-z_]{1,30}\|>|</?(?:bos|pad|unk|s)>|\[/?INST\]|<</?SYS>>"
)
_MARKUP = rf"(?:{_TURN_END}|{_TEMPLATE_TOKENS})"
_THINK_BLOCK = r"(?is)<think(?:ing)?>.*?</think(?:ing)?>"
_THINK_UNOPENED = r"(?is)^.*</think(?:ing)?>"  # the template opened it, the model only closed it
_THINK_UNCLOSED = r"(?is)<think(?:ing)?>.*$"  # the model never got out of its reasoning
_THINK_TAG = r"(?i)</?think(?:ing)?>"
_FENCE = r"^```[\w-]*\s*\n?|\n?```\s*$"
_INTERJECTION = r"(?:sure(?: thing)?|certainly|of course|absolutely|okay|ok|great|alright|no problem)"
# "Here is the explanation:", "Here's a concise answer for you:" - a meta noun before the colon, so
# "Here are the main signs: fever, ..." is content and stays.
_HERE = (
    r"here(?:'s|’s|\s+is|\s+are)\s+(?:[\w-]+\s+){0,4}?"
    r"(?:explanation|answer|question|response|sentence|diagnosis|summary|reply|breakdown|version)s?\b[^:\n]{0,60}:"
)
_PREAMBLE = (
    rf"(?i)^(?:{_INTERJECTION}\s*[,!.]*\s*{_HERE}\s*"  # "Sure thing! Here's the explanation:"
    rf"|{_INTERJECTION}\s*[!.]+\s+"  # "Sure! ..." - never "Great care ..." (no punctuation)
    rf"|{_HERE}\s*"
    r"|(?:question|answer|explanation|sentence|diagnosis)\s*:\s*)"  # a label echoed from the prompt
)
# C0/C1 controls except tab, newline and carriage return; format characters that render as nothing.
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b\u2060\ufeff]"

# --- drop rules -----------------------------------------------------------------------------------

_NULL_SENTINEL = rf"(?i)\b{NULL_ANSWER}\b"
_CONTEXT_NOUN = r"(?:text|context|passage|document|reference|article|information|excerpt|source|material)s?"
_NON_ANSWER = (
    r"(?i)"
    rf"\b{_CONTEXT_NOUN}\s+(?:provided\s+|given\s+)?(?:does\s+not|doesn't|doesn’t|do\s+not|don't|don’t|did\s+not)\s+"
    r"(?:\w+\s+){0,2}?(?:contain|provide|mention|include|cover|address|say|specify|discuss|describe|give|offer|state|explain|answer)"
    r"|\b(?:no|not\s+enough|insufficient)\s+(?:relevant\s+|specific\s+)?(?:information|details?|context)\s+(?:is\s+|was\s+)?"
    r"(?:provided|given|available|about|on|regarding|to\s+answer)"
    rf"|\bnot\s+(?:mentioned|covered|addressed|discussed|provided|described|specified)\s+in\s+the\s+(?:\w+\s+)?{_CONTEXT_NOUN}"
    rf"|\bI\s+(?:cannot|can't|can’t|am\s+unable\s+to|am\s+not\s+able\s+to)\s+(?:answer|provide|determine|find|tell)\b"
    rf"[^.]{{0,60}}\b(?:from|based\s+on|with|in)\s+(?:the|this)\s+(?:\w+\s+)?{_CONTEXT_NOUN}"
)
_REFUSAL = r"(?i)^(?:i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|i'm unable|i am unable|as an ai|i am an ai|i'm an ai)"
_DISCLAIMER = (
    r"(?i)(?:consult|see|contact|speak (?:to|with))\s+(?:a|your)\s+(?:qualified\s+)?"
    r"(?:doctor|physician|healthcare (?:professional|provider)|medical professional)"
)
_LETTER_RUN = r"[^\W\d_]{2,}"  # "2022-03-29T11:24" has none
_WORD = r"[\w'’]+"
# Function words that are English and not also common words of French, Spanish, German, Italian,
# Portuguese or Dutch ("a", "in", "is", "on" are left out for that reason).
_ENGLISH_STOPWORDS = (
    r"(?i)\b(?:the|and|of|to|with|for|are|be|this|that|it|not|by|from|should|can|may|your|you|if|which|"
    r"these|have|has|was|were|will|their|there|when|what|who|than|then|into|because|but|also|only|"
    r"most|more|other|does|do|or|at|its|they|them|been|being|after|before|such|each)\b"
)

# One sentence per rule, for the dataset card and the asset metadata (reason -> sentence).
REPAIR_RULES: dict[str, str] = {
    "chat_markup_removed": (
        "Chat-template tokens (<end_of_turn>, <start_of_turn>, <eos>, <|im_end|> and the like) were removed "
        "from the output, with anything written after an end-of-turn token."
    ),
    "reasoning_removed": (
        "A reasoning block (<think>…</think>, or one left unclosed) was removed from the output, keeping "
        "only the answer."
    ),
    "preamble_removed": (
        "A chat opener such as \"Sure! Here is the explanation:\" was removed as a whole; an opening word "
        "without following punctuation (\"Great saphenous vein…\") is kept."
    ),
}
DROP_RULES: dict[str, str] = {
    "empty_output": "The model returned no output text.",
    "reasoning_only": "The output was only a reasoning block (<think>…), with no answer after it.",
    "insufficient_context": (
        f"The answer was the {NULL_ANSWER} sentinel (in any case, with or without punctuation, anywhere in "
        "the text) or said in prose that the given text does not contain the answer."
    ),
    "refusal": "The output was a refusal (\"I'm sorry\", \"I cannot\", \"As an AI\").",
    "disclaimer_only": "The output was little more than advice to consult a doctor.",
    "too_short": f"The output had fewer than {MIN_OUTPUT_CHARS} characters.",
    "not_prose": f"The output had fewer than {MIN_WORDS} words of letters.",
    "too_long": f"The output had more than {MAX_OUTPUT_CHARS} characters.",
    "too_many_words": "The output had more words than the prompt allowed.",
    "repetitive": (
        f"The output was a repetition loop: word {REPETITION_NGRAM}-grams repeating earlier ones covered more "
        f"than {REPETITION_MAX_SHARE:.0%} of its words (after Gopher's duplicate n-gram filter, Rae et al. 2021, "
        "appendix A)."
    ),
    "not_english": (
        "The output was not in English: few English function words, and CLD2 reliably identified another "
        "language."
    ),
    "contradicts_reference": (
        "The output disagreed with its reference: a MedQA explanation that did not name the correct option "
        "(letter or text) or named another option as correct, or a diagnosis sentence that did not name "
        "the given label."
    ),
}


@dataclass(frozen=True)
class OutputRules:
    """What one prompt's outputs must satisfy.

    `max_words`: a word limit the prompt sets (None: no limit). `null_sentinel`: the prompt lets the
    model answer NULL for "cannot answer". `grounded`: the answer must come from a given text, so a
    prose "the text does not say" is a non-answer. `reference`: "medqa_option" compares with the
    correct option ("C) Heparin") and the other options in `options`; "label" requires the label.
    """

    max_words: int | None = None
    null_sentinel: bool = False
    grounded: bool = False
    english: bool = True
    reference: ReferenceKind | None = None


# --------------------------------------------------------------------------------------------------
# Repairs


def _strip_wrapping(expr: pl.Expr) -> pl.Expr:
    return expr.str.strip_chars().str.strip_chars('"“”').str.strip_chars()


def _repaired(raw: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]:
    """(cleaned text, had chat markup, had reasoning, had a preamble) for a String expression."""
    text = raw.str.replace_all(_CONTROL, "")
    had_markup = text.str.contains(_MARKUP)
    had_reasoning = text.str.contains(_THINK_TAG)
    text = (
        text.str.replace_all(_THINK_BLOCK, " ")
        .str.replace(_THINK_UNOPENED, "")
        .str.replace(_THINK_UNCLOSED, "")
        .str.replace(rf"(?s)(?:{_TURN_END}).*$", "")
        .str.replace_all(_TEMPLATE_TOKENS, "")
    )
    text = _strip_wrapping(text.str.strip_chars().str.replace_all(_FENCE, ""))
    before_preamble = text
    for _ in range(2):  # "Sure! Here is the answer: Answer: ..." takes two passes
        text = _strip_wrapping(text.str.replace(_PREAMBLE, ""))
    return text, had_markup, had_reasoning, text != before_preamble


# --------------------------------------------------------------------------------------------------
# Degenerate outputs


def repeated_word_share(text: pl.Expr, n: int = REPETITION_NGRAM) -> pl.Expr:
    """Share (0..1, Float64) of a text's words that lie inside a word n-gram seen earlier in the text.

    A loop of one sentence twelve times gives 11/12; normal prose gives 0 or a few percent. Words are
    runs of word characters, compared in lower case; a text of fewer than n words gives 0.
    """
    words = text.str.to_lowercase().str.extract_all(_WORD)
    element = pl.element()
    grams = pl.concat_str([element.shift(-i) for i in range(n)], separator=" ")
    repeats = grams.is_not_null() & ~grams.is_first_distinct()
    covered = pl.any_horizontal([repeats.shift(i, fill_value=False) for i in range(n)])
    share = words.list.eval(covered.cast(pl.Float64).mean()).list.first().fill_null(0.0)
    # A covered word repeats an earlier word, so the share is at most 1 - distinct/total: the exact
    # computation (a per-row list program) only runs where that bound allows a loop.
    bound = 1.0 - words.list.n_unique() / words.list.len()
    return pl.when(bound > REPETITION_MAX_SHARE).then(share).otherwise(pl.lit(0.0))


def english_stopword_counts(text: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(English function words, all words) per text, as UInt32 counts."""
    return text.str.count_matches(_ENGLISH_STOPWORDS), text.str.count_matches(_WORD)


def detected_language(texts: pl.Series) -> pl.Series:
    """CLD2's language code per text when it is reliable ("fr", "zh", ...), else null (String).

    CLD2 (pycld2) has its tables compiled in: no model is downloaded. It is called once per text, so
    callers pass only the texts the cheap stop-word test could not settle.
    """
    import pycld2

    def one(text: str | None) -> str | None:
        if not text:
            return None
        try:
            reliable, _, languages = pycld2.detect(text)
        except pycld2.error:  # invalid UTF-8 or similar: no verdict
            return None
        return languages[0][1] if reliable and languages[0][1] != "un" else None

    return pl.Series(texts.name, [one(text) for text in texts.to_list()], dtype=pl.String)


def looks_english(text: pl.Expr) -> pl.Expr:
    """True where enough distinctly English function words settle the language without a detector."""
    stopwords, words = english_stopword_counts(text)
    return (stopwords >= ENGLISH_MIN_STOPWORDS) & (stopwords >= ENGLISH_STOPWORD_SHARE * words)


# --------------------------------------------------------------------------------------------------
# Agreement with the reference


def _squashed(expr: pl.Expr) -> pl.Expr:
    """Lower case, letters and digits only: "Chicken pox" and "chickenpox" compare equal."""
    return expr.str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", "")


def _letter_named(output: pl.Expr, letter: str) -> pl.Expr:
    # "(C)", "C)", "option C", "answer: C" - never a bare "C" ("vitamin C").
    return output.str.contains(rf"\({letter}\)|\b{letter}\)|(?i:option|choice|answer)\s*(?:is\s*)?:?\s*\(?{letter}\b")


def _letter_claimed(output: pl.Expr, letter: str) -> pl.Expr:
    named = rf"(?:\({letter}\)|\b{letter}\)|(?i:option|choice|answer)\s+\(?{letter}\)?)"
    verdict = r"(?i:\s+(?:is|was)\s+(?:the\s+)?(?:correct|right|best|true)\b)"
    stated = rf"(?i:(?:correct|right|best)\s+(?:answer|option|choice)\s+is\s+(?:option\s+)?)\(?{letter}\b"
    return output.str.contains(f"{named}{verdict}|{stated}")


def _text_claimed(lowered: pl.Expr, option_text: pl.Expr) -> pl.Expr:
    phrasings = ("{} is correct", "{} is the correct", "{} is right", "{} is the right", "answer is {}")
    return pl.any_horizontal(
        lowered.str.contains(pl.format(phrasing, option_text), literal=True) for phrasing in phrasings
    ).fill_null(False)


def medqa_agreement(output: pl.Expr, reference: pl.Expr, options: pl.Expr) -> pl.Expr:
    """True where an explanation names the correct option and claims no other one is correct.

    `reference` is the correct option as rendered ("C) Heparin"); `options` all of them, one per line
    ("A) Aspirin\\nC) Heparin"). The correct option is named by its letter in "(C)", "C)", "option C",
    or by its text; another option is claimed by "B) is correct", "option B is the right answer",
    "the correct answer is B", "<text of B> is correct" or "answer is <text of B>".
    """
    lowered = output.str.to_lowercase()
    correct_letter = reference.str.extract(r"^([A-Z])\)", 1)
    correct_text = reference.str.extract(r"^[A-Z]\)\s*(.*)$", 1).str.to_lowercase().str.strip_chars()
    letters = "ABCDEFGH"
    names_letter = pl.any_horizontal(
        (correct_letter == letter) & _letter_named(output, letter) for letter in letters
    ).fill_null(False)
    names_text = lowered.str.contains(correct_text, literal=True).fill_null(False) & (correct_text.str.len_chars() > 0)
    claims_other = []
    for letter in letters:
        other_text = options.str.extract(rf"(?m)^{letter}\)\s*(.*)$", 1).str.to_lowercase().str.strip_chars()
        is_other = (correct_letter != letter).fill_null(False)
        # An option whose text lies inside the correct one ("heparin" in "low molecular weight
        # heparin") cannot be told apart by its text.
        distinct_text = other_text.is_not_null() & ~correct_text.str.contains(other_text, literal=True).fill_null(True)
        claims_other.append(is_other & (_letter_claimed(output, letter) | (distinct_text & _text_claimed(lowered, other_text))))
    return (names_letter | names_text) & ~pl.any_horizontal(claims_other).fill_null(False)


def label_agreement(output: pl.Expr, label: pl.Expr) -> pl.Expr:
    """True where the sentence names the label, ignoring case, spaces and punctuation."""
    squashed_label = _squashed(label)
    return (squashed_label.str.len_chars() > 0) & _squashed(output).str.contains(squashed_label, literal=True).fill_null(False)


# --------------------------------------------------------------------------------------------------
# The whole validation


def validate_outputs(frame: pl.DataFrame, rules: OutputRules, *, column: str = "output") -> pl.DataFrame:
    """Repair and judge every output of `frame`, keeping its other columns.

    `frame[column]` holds the raw output texts (String, null = none). With `rules.reference` set the
    frame also needs `reference` (String) and, for "medqa_option", `options` (String, one "X) text"
    per line). Returns `frame` with `column` replaced by the cleaned text (null where dropped) plus
    `drop_reason` (String, null = kept; names from `DROP_RULES`) and one Boolean column per repair in
    `REPAIR_RULES` (True where that repair changed the output).
    """
    raw = pl.col(column).cast(pl.String)
    text, had_markup, had_reasoning, had_preamble = _repaired(raw)
    work = frame.with_columns(
        text.alias("_text"),
        had_markup.fill_null(False).alias("chat_markup_removed"),
        had_reasoning.fill_null(False).alias("reasoning_removed"),
        had_preamble.fill_null(False).alias("preamble_removed"),
    )
    out = pl.col("_text")
    checks: list[tuple[str, pl.Expr]] = [
        ("empty_output", raw.is_null() | ((out.str.len_chars() == 0) & ~pl.col("reasoning_removed"))),
        ("reasoning_only", out.str.len_chars() == 0),
    ]
    if rules.null_sentinel:
        checks.append(("insufficient_context", out.str.contains(_NULL_SENTINEL)))
    if rules.grounded:
        checks.append(("insufficient_context", out.str.contains(_NON_ANSWER)))
    disclaimer_rest = out.str.replace_all(_DISCLAIMER, "").str.strip_chars(" .,!").str.len_chars()
    checks += [
        ("refusal", out.str.contains(_REFUSAL)),
        ("disclaimer_only", out.str.contains(_DISCLAIMER) & (disclaimer_rest < 40)),
        ("too_short", out.str.len_chars() < MIN_OUTPUT_CHARS),
        ("not_prose", out.str.count_matches(_LETTER_RUN) < MIN_WORDS),
        ("too_long", out.str.len_chars() > MAX_OUTPUT_CHARS),
    ]
    if rules.max_words is not None:
        checks.append(("too_many_words", out.str.count_matches(r"\S+") > rules.max_words))
    checks.append(("repetitive", repeated_word_share(out) > REPETITION_MAX_SHARE))
    work = work.with_columns(_first_reason(checks))

    if rules.english:
        # Only outputs still kept and not already English by their function words reach the detector.
        work = work.with_row_index("_row")
        candidates = work.filter(pl.col("drop_reason").is_null() & ~looks_english(out)).select("_row", "_text")
        languages = candidates.select("_row", detected_language(candidates["_text"]).alias("_language"))
        foreign = pl.col("_language").is_not_null() & (pl.col("_language") != "en")
        work = (
            work.join(languages, on="_row", how="left", maintain_order="left")
            .with_columns(pl.when(foreign).then(pl.lit("not_english")).otherwise(pl.col("drop_reason")).alias("drop_reason"))
            .drop("_row", "_language")
        )

    if rules.reference is not None:
        if rules.reference == "medqa_option":
            agrees = medqa_agreement(out, pl.col("reference"), pl.col("options"))
        else:
            agrees = label_agreement(out, pl.col("reference"))
        work = work.with_columns(
            pl.when(pl.col("drop_reason").is_null() & ~agrees.fill_null(False))
            .then(pl.lit("contradicts_reference"))
            .otherwise(pl.col("drop_reason"))
            .alias("drop_reason")
        )
    return work.with_columns(
        pl.when(pl.col("drop_reason").is_null()).then(pl.col("_text")).otherwise(None).alias(column)
    ).drop("_text")


def _first_reason(checks: list[tuple[str, pl.Expr]]) -> pl.Expr:
    """The first reason whose check holds (nulls count as not holding), else null."""
    (reason, condition), *rest = checks
    expr = pl.when(condition.fill_null(False)).then(pl.lit(reason))
    for reason, condition in rest:
        expr = expr.when(condition.fill_null(False)).then(pl.lit(reason))
    return expr.otherwise(pl.lit(None, dtype=pl.String)).alias("drop_reason")


def count_outcomes(validated: pl.DataFrame) -> tuple[dict[str, int], dict[str, int]]:
    """(drops by reason, repairs by name) of a `validate_outputs` result; zero counts left out.

    Repairs are counted on kept outputs only, so a repaired-then-dropped output counts once, as a drop.
    """
    from medset_dagster.common.drops import drop_counts

    kept = validated.filter(pl.col("drop_reason").is_null())
    repairs = {name: int(kept[name].sum()) for name in REPAIR_RULES if name in kept.columns}
    return drop_counts(validated), {name: count for name, count in repairs.items() if count}
