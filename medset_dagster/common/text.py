"""Text normalisation shared by the stages: the Unicode repair of extracted text and the dedup key.

Two different jobs, two different strengths:
- `repair_unicode` changes text that goes into the dataset, so it only undoes what extraction broke
  (ftfy: ligatures, full-width letters, control characters, mojibake) and keeps meaningful
  compatibility characters: blanket NFKC would turn "10⁹/L" into "109/L" and "m²" into "m2".
- `normalised_text` only builds comparison keys, so it may fold as much as helps matching: NFKC,
  format characters removed, case folded, every kind of whitespace collapsed.
"""

from __future__ import annotations

import polars as pl

# Characters that render as nothing but make two equal-looking texts differ: soft hyphen, zero-width
# space / non-joiner / joiner, word joiner, byte-order mark (zero-width no-break space).
FORMAT_CHARACTERS = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
_FORMAT = f"[{FORMAT_CHARACTERS}]"


def normalised_text(expr: pl.Expr) -> pl.Expr:
    """Comparison key of a String expression: NFKC, format characters removed, lower case, every run
    of Unicode whitespace (a single no-break space, thin space, ideographic space, CR LF, tab) made
    one space, ends trimmed.

    Equal to Python's `" ".join(unicodedata.normalize("NFKC", s).translate(<drop FORMAT_CHARACTERS>)
    .lower().split())` for text without control separators; null stays null.
    """
    return (
        expr.map_batches(_nfkc, return_dtype=pl.String, is_elementwise=True)
        .str.replace_all(_FORMAT, "")
        .str.to_lowercase()
        # The same result as replacing r"\s+" with " " (Unicode whitespace), about 3x faster: a
        # single plain space, by far the commonest case, is left where it is.
        .str.replace_all(r"\s{2,}|[^\S ]", " ")
        .str.strip_chars()
    )


def _nfkc(values: pl.Series) -> pl.Series:
    """NFKC of the values that are not pure ASCII (NFKC leaves ASCII as it is): most text is ASCII,
    and polars' normalisation costs as much per string whatever it holds."""
    needs = values.str.contains(r"[^\x00-\x7f]").fill_null(False)
    if not needs.any():
        return values
    rows = needs.arg_true()
    return values.scatter(rows, values.gather(rows).str.normalize("NFKC"))


def _fixer_config():
    from ftfy import TextFixerConfig

    # NFC, not NFKC (see the module docstring); curly quotes and HTML entities are left as written.
    return TextFixerConfig(normalization="NFC", uncurl_quotes=False, unescape_html=False, explain=False)


_CONFIG = None


def repair_unicode(text: str) -> str:
    """`text` with what extraction breaks repaired by ftfy: Latin ligatures expanded (U+FB00-FB06,
    "ﬁ" -> "fi"), full-width and half-width forms made ordinary, C0/C1 control characters other than
    tab, newline and form feed removed (NUL included), line separators made "\\n", mojibake undone,
    NFC composition. U+FFFD is kept: it marks a glyph whose character is unknown.
    """
    global _CONFIG
    if _CONFIG is None:
        _CONFIG = _fixer_config()
    import ftfy

    return ftfy.fix_text(text, _CONFIG)
