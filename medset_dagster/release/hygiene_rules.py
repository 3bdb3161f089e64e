"""One sentence per text-hygiene rule, for the dataset card and the asset metadata.

Keys are the names the plain functions report: drop reasons (`TaskOutcome.dropped`), repairs
(`TaskOutcome.repaired`), PDF cleaning counts (`CleaningStats`, `ChunkStats`), and the load and
dedup rules. Values are sentences the card can print as they are.
"""

from __future__ import annotations

from medset_dagster.generation.tasks import DEFAULT_MIN_SIMILARITY, task_drop_rules
from medset_dagster.generation.validation import REPAIR_RULES
from medset_dagster.retrieval.pdf_text import REPLACEMENT_HEAVY_SHARE

PDF_RULES: dict[str, str] = {
    "compatibility_characters": (
        "Ligature and full-width characters in the PDF text (ﬁ, ﬂ, ﬃ, Ｆ) were rewritten as ordinary letters "
        "(ftfy); superscripts and units such as 10⁹/L are left as printed."
    ),
    "control_characters_removed": (
        "Control characters were removed from the PDF text; a NUL inside a word stands for a glyph the PDF gives "
        "no Unicode value for, and is treated as one (below)."
    ),
    "replacement_characters_restored": (
        "A glyph without a Unicode value inside a word (most often a ligature: o\ufffd for off) was restored as "
        "the letters of the one ligature (ff, fi, fl, ffi, ffl, ft, st) that makes a word the document spells, or "
        "a clearly common English word (wordfreq)."
    ),
    "replacement_characters": (
        "Any other glyph without a Unicode value is kept as U+FFFD and counted per page; a page where they make up "
        f"at least {REPLACEMENT_HEAVY_SHARE:.0%} of the characters is flagged."
    ),
    "hyphenations_joined": (
        "A word broken at a line or page end with any hyphen (-, soft hyphen, U+2010, U+2011) was joined, unless "
        "the document itself spells it hyphenated or it starts with a prefix that takes a hyphen "
        "(those are counted as hyphens_kept: anti-inflammatory, non-steroidal)."
    ),
}
RECORD_RULES: dict[str, str] = {
    "text_columns": (
        "Text columns were loaded as text whatever the file's first rows suggested (a number in a text column "
        "becomes its text; a value that cannot be text fails the source, naming the column and the file)."
    ),
    "normalised_dedup": (
        "Exact dedup compares text after NFKC normalisation, with zero-width characters, soft hyphens and BOMs "
        "removed, case folded and every kind of whitespace collapsed."
    ),
}


def hygiene_rules(min_similarity: float = DEFAULT_MIN_SIMILARITY) -> dict[str, str]:
    """Every rule name -> its sentence: task drop reasons (with the retrieval threshold used),
    output repairs, PDF cleaning and record loading/dedup rules."""
    return {**task_drop_rules(min_similarity), **REPAIR_RULES, **PDF_RULES, **RECORD_RULES}
