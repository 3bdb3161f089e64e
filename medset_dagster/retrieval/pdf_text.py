"""Page text out of a PDF, and the cleaning that turns pages into one document for chunking.

The published build concatenated the raw page texts with no separator (`raw_document(pages, "")`).
`clean_pages` is the card's intent: Unicode repaired (ligatures expanded, control characters removed,
lost ligature glyphs restored where the word is clear, other lost glyphs counted), running headers and footers dropped, words hyphenated across line breaks joined
while typed compounds keep their hyphen, whitespace normalised, pages joined by a paragraph break. Both
keep a map from character offsets back to page numbers, so every chunk can cite its pages.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pypdf import PdfReader
from pypdf.errors import DependencyError, PdfReadError, PdfStreamError

from medset_dagster.common.text import FORMAT_CHARACTERS, repair_unicode

# Lines this close to the top or bottom of a page are candidates for running headers/footers.
EDGE_LINES = 3
# A candidate line is "running" when it recurs on at least this share of the pages that have text.
RUNNING_LINE_SHARE = 0.5
PUBLISHED_PAGE_SEPARATOR = ""
PARAGRAPH_BREAK = "\n\n"

_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_RUN = re.compile(r"\n{3,}")
# Every hyphen a typesetter breaks a line with: ASCII hyphen-minus, soft hyphen, U+2010 HYPHEN,
# U+2011 NON-BREAKING HYPHEN.
HYPHENS = "-\u00ad\u2010\u2011"
_LETTERS = r"[^\W\d_]+"
# A word fragment, a hyphen ending the line, a word fragment starting the next line: "haemor-\nrhage".
# Only a lower-case continuation is a candidate: "X-\nRay" or "Guillain-\nBarré" stay as they are.
_HYPHEN_BREAK = re.compile(rf"({_LETTERS})([{HYPHENS}])\n[ \t]*({_LETTERS})")
_COMPOUND = re.compile(rf"{_LETTERS}(?:[-\u2010\u2011]{_LETTERS})+")
_WORDS = re.compile(_LETTERS)
# Prefixes that English style guides hyphenate before any word (self-, ex-, all-, non- ...), and
# those hyphenated before a vowel they would otherwise double or blur (anti-inflammatory,
# pre-eclampsia, intra-abdominal, co-operate). Used only when the document itself shows neither form.
HYPHENATED_PREFIXES = frozenset({"self", "ex", "all", "non", "half", "quasi", "cross", "well"})
VOWEL_HYPHENATED_PREFIXES = frozenset(
    {"anti", "semi", "multi", "pre", "re", "co", "de", "intra", "extra", "ultra", "infra", "supra", "micro", "macro", "neo", "pseudo"}
)
# NUL next to a letter stands for a glyph that had no Unicode value (a ligature, most often: pypdf#1351):
# it becomes U+FFFD, counted as a lost glyph, instead of vanishing and leaving "o" for "off".
_LOST_GLYPH_NUL = re.compile(r"(?<=[^\W\d_])\x00|\x00(?=[^\W\d_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_COMPATIBILITY = re.compile(r"[\ufb00-\ufb4f\uff00-\uffef]")  # presentation forms, full/half width
_FORMAT = re.compile(f"[{FORMAT_CHARACTERS}]")
REPLACEMENT = "\ufffd"
# A page is flagged when U+FFFD makes up at least this share of its non-space characters.
REPLACEMENT_HEAVY_SHARE = 0.5
# The letters a ligature glyph stands for (the Latin ligatures of Unicode's Alphabetic Presentation
# Forms, U+FB00-U+FB06), tried in place of a lost glyph (U+FFFD) inside a word.
LIGATURES = ("ff", "fi", "fl", "ffi", "ffl", "ft", "st")
# A restored word must be at least this common in English (wordfreq's Zipf scale: 3 is about once per
# million words) and this much more common than the next candidate, unless the document spells it.
MIN_ZIPF = 3.0
MIN_ZIPF_MARGIN = 1.0
# A word with a lost glyph: a run of letters and U+FFFD holding at least one U+FFFD (a word with
# two is left alone: too unclear to restore).
_LOST_GLYPH_WORD = re.compile(r"(?:[^\W\d_]|\ufffd)*\ufffd(?:[^\W\d_]|\ufffd)*")


class PdfExtractionError(Exception):
    """A PDF could not be read (corrupt, truncated, encrypted)."""


@dataclass(frozen=True)
class PageText:
    """One page as pypdf extracts it: `page_number` and its raw `text` ("" for a page without text)."""

    page_number: int  # 1-based, as printed by PDF viewers
    text: str


@dataclass(frozen=True)
class CleaningStats:
    """What cleaning did to one document; counts of pages, lines, characters (not tokens).

    `hyphenations_joined`: line-end hyphens removed to mend a word ("haemor-/rhage"); `hyphens_kept`:
    line-end hyphens kept because the word is a typed compound ("anti-/inflammatory").
    `control_characters_removed`: C0 controls (NUL included) and DEL dropped; `compatibility_characters`:
    ligatures and full-/half-width forms rewritten as ordinary letters; `replacement_characters`: U+FFFD
    in the cleaned text (glyphs without a Unicode value, NUL-for-glyph included); `replacement_pages`:
    pages with at least one; `replacement_heavy_pages`: pages where they are at least
    REPLACEMENT_HEAVY_SHARE of the non-space characters; `replacement_characters_restored`: lost
    ligature glyphs put back as their letters (`restore_lost_ligatures`), not counted in the others.
    """

    pages: int
    textless_pages: int
    header_footer_lines_removed: int
    hyphenations_joined: int
    characters: int
    hyphens_kept: int = 0
    control_characters_removed: int = 0
    compatibility_characters: int = 0
    replacement_characters: int = 0
    replacement_pages: int = 0
    replacement_heavy_pages: int = 0
    replacement_characters_restored: int = 0


@dataclass(frozen=True)
class CleanedDocument:
    """One document's text plus, for each page that contributed text, where its text starts.

    `replacement_characters_by_page`: (page number, U+FFFD count) for every page that has any;
    `replacement_heavy_page_numbers`: the pages flagged as mostly U+FFFD.
    """

    text: str
    page_starts: tuple[int, ...]
    page_numbers: tuple[int, ...]
    stats: CleaningStats
    textless_page_numbers: tuple[int, ...] = ()
    running_lines: tuple[str, ...] = ()  # normalised forms of the header/footer lines removed
    replacement_characters_by_page: tuple[tuple[int, int], ...] = ()
    replacement_heavy_page_numbers: tuple[int, ...] = ()

    def page_at(self, offset: int) -> int:
        """Page number of the character at `offset` (separators count toward the page before)."""
        if not self.page_numbers:
            raise ValueError("document has no text")
        if not 0 <= offset < max(len(self.text), 1):
            raise IndexError(f"offset {offset} outside document of {len(self.text)} characters")
        index = bisect.bisect_right(self.page_starts, offset) - 1
        return self.page_numbers[max(index, 0)]

    def page_range(self, start: int, end: int) -> tuple[int, int]:
        """First and last page of the half-open character range [start, end)."""
        return self.page_at(start), self.page_at(max(start, end - 1))


# ---------------------------------------------------------------------------------------------------
# Extraction


def extract_pages(path: str | Path) -> list[PageText]:
    """Text of every page, in order. Pages without text come back with "" (image-only pages)."""
    path = Path(path)
    try:
        reader = PdfReader(path)
        _ensure_readable(reader, path)
        return [PageText(number, page.extract_text() or "") for number, page in enumerate(reader.pages, 1)]
    except PdfExtractionError:
        raise
    except (PdfReadError, PdfStreamError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # pypdf reports damage through many exception types; all mean "this file cannot be trusted".
        raise PdfExtractionError(f"{path}: unreadable PDF ({type(exc).__name__}: {exc})") from exc


def _ensure_readable(reader: PdfReader, path: Path) -> None:
    """Open files with an empty user password (permission-only encryption); refuse the rest."""
    if not reader.is_encrypted:
        return
    try:
        opened = reader.decrypt("")
    except (DependencyError, NotImplementedError) as exc:
        raise PdfExtractionError(f"{path}: encrypted PDF that cannot be decrypted here ({exc})") from exc
    if not opened:
        raise PdfExtractionError(f"{path}: encrypted PDF (a password is required)")


# ---------------------------------------------------------------------------------------------------
# Cleaning


def normalise_line(line: str) -> str:
    """Key for recognising a running line: case, spacing and numbers ignored ("Page 3 of 9")."""
    return _DIGITS.sub("#", _SPACES.sub(" ", line).strip().lower())


def _lines(text: str) -> list[str]:
    return [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]


def _edge_indices(lines: list[str]) -> list[int]:
    """Indices of the first and last EDGE_LINES non-blank lines of a page."""
    filled = [i for i, line in enumerate(lines) if line]
    return sorted(set(filled[:EDGE_LINES] + filled[-EDGE_LINES:]))


def find_running_lines(pages: list[list[str]]) -> set[str]:
    """Normalised edge lines that recur on at least RUNNING_LINE_SHARE of the pages with text."""
    with_text = [lines for lines in pages if any(lines)]
    threshold = max(2, math.ceil(RUNNING_LINE_SHARE * len(with_text)))
    counts: Counter[str] = Counter()
    for lines in with_text:
        counts.update({normalise_line(lines[i]) for i in _edge_indices(lines)})
    return {key for key, count in counts.items() if count >= threshold and key}


def _drop_running_lines(lines: list[str], running: set[str]) -> tuple[list[str], int]:
    edges = set(_edge_indices(lines))
    kept = [line for i, line in enumerate(lines) if i not in edges or normalise_line(line) not in running]
    return kept, len(lines) - len(kept)


def _tidy(lines: list[str]) -> str:
    """Lines back to text: blank runs become one paragraph break, no blank edges."""
    return _BLANK_RUN.sub(PARAGRAPH_BREAK, "\n".join(lines)).strip()


@dataclass(frozen=True)
class _RepairedPage:
    text: str
    control_characters: int
    compatibility_characters: int


def repair_page_text(text: str) -> _RepairedPage:
    """Unicode repair of one page's extracted text (`common.text.repair_unicode`), counting what it
    fixed. A NUL next to a letter is a glyph without a Unicode value and becomes U+FFFD first."""
    text = _LOST_GLYPH_NUL.sub(REPLACEMENT, text)
    controls = len(_CONTROL.findall(text))
    compatibility = len(_COMPATIBILITY.findall(text))
    return _RepairedPage(repair_unicode(text), controls, compatibility)


class HyphenVocabulary:
    """How a document spells its words: counts of plain words and of hyphenated compounds (hyphen
    variants unified as "-"), lower case, from text where line-end breaks are not yet mended."""

    def __init__(self, texts: list[str]):
        self.words: Counter[str] = Counter()
        self.compounds: Counter[str] = Counter()
        for text in texts:
            self.words.update(word.lower() for word in _WORDS.findall(text))
            self.compounds.update(_unified(compound.lower()) for compound in _COMPOUND.findall(text))

    def decide(self, left: str, hyphen: str, right: str) -> Literal["join", "keep"]:
        """Whether "left<hyphen>\nright" is one word broken by hyphenation ("join") or a typed compound
        ("keep"). A soft hyphen always joins. Otherwise the document decides (which of "leftright"
        and "left-right" it uses more often elsewhere), then the prefix lists, else "join"."""
        if hyphen == "\u00ad":
            return "join"
        joined = self.words[(left + right).lower()]
        compound = self.compounds[f"{left}-{right}".lower()]
        if joined or compound:
            return "keep" if compound > joined else "join"
        prefix = left.lower()
        if prefix in HYPHENATED_PREFIXES:
            return "keep"
        if prefix in VOWEL_HYPHENATED_PREFIXES and right[:1].lower() in "aeiou" and (
            prefix == "anti" or prefix[-1] == right[:1].lower()
        ):
            return "keep"
        return "join"


def _unified(compound: str) -> str:
    return compound.replace("\u2010", "-").replace("\u2011", "-")


def _join_hyphenations(text: str, vocabulary: HyphenVocabulary) -> tuple[str, int, int]:
    """Mend line-end hyphenation in one page's text; returns (text, joined, kept)."""
    joined = kept = 0

    def mend(match: re.Match) -> str:
        nonlocal joined, kept
        left, hyphen, right = match.groups()
        if not right[0].islower():
            return match.group(0)
        if vocabulary.decide(left, hyphen, right) == "join":
            joined += 1
            return left + right
        kept += 1
        return left + ("-" if hyphen == "\u00ad" else hyphen) + right

    return _HYPHEN_BREAK.sub(mend, text), joined, kept


def restore_lost_ligatures(text: str, vocabulary: Counter) -> tuple[str, int]:
    """`text` with each word that holds one U+FFFD restored when one ligature's letters (`LIGATURES`)
    make a clear word, and the number restored.

    A lost glyph inside a word is, in most PDFs, a ligature whose font has no Unicode value for it
    (pypdf#1351, pdfplumber#1280): "o\ufffd" for "off", "\ufffdre" for "fire". A candidate the
    document itself spells (`vocabulary`: lower-case word counts) wins if it is the only one; else the
    most common English candidate (wordfreq's Zipf frequency) wins when it is at least `MIN_ZIPF` and
    `MIN_ZIPF_MARGIN` above the next. Anything less clear stays U+FFFD (and counted). Case follows the
    word: an all-capitals word gets capital letters.
    """
    if REPLACEMENT not in text:
        return text, 0
    from wordfreq import zipf_frequency  # its word lists load only when a glyph was lost

    restored = 0

    def restore(match: re.Match) -> str:
        nonlocal restored
        word = match.group(0)
        letters = word.replace(REPLACEMENT, "")
        if not letters or word.count(REPLACEMENT) != 1:
            return word
        upper = len(letters) > 1 and letters.isupper()
        candidates = [word.replace(REPLACEMENT, ligature.upper() if upper else ligature) for ligature in LIGATURES]
        spelled = [c for c in candidates if vocabulary.get(c.lower(), 0)]
        if len(spelled) == 1:
            choice = spelled[0]
        else:
            scored = sorted(((zipf_frequency(c.lower(), "en"), c) for c in candidates), reverse=True)
            (best, choice), (second, _) = scored[0], scored[1]
            if best < MIN_ZIPF or best - second < MIN_ZIPF_MARGIN:
                return word
        restored += 1
        return choice

    return _LOST_GLYPH_WORD.sub(restore, text), restored


def clean_pages(pages: list[PageText], *, page_separator: str = PARAGRAPH_BREAK) -> CleanedDocument:
    """Repair Unicode, drop running headers/footers, mend hyphenation, normalise whitespace, join pages.

    Per page: `repair_page_text` (ligatures and full-width forms expanded, control characters removed,
    NUL-for-glyph made U+FFFD), header/footer removal (`find_running_lines`), then line-end hyphens
    decided by `HyphenVocabulary.decide` over the whole document, across page breaks too. Format
    characters left inside lines (soft hyphen, zero-width space) are removed. A lost ligature glyph
    is restored where the word is clear (`restore_lost_ligatures`); any other U+FFFD is kept and
    counted per page. Raises nothing for odd text; an empty page list gives an empty document.
    """
    repaired = [repair_page_text(page.text) for page in pages]
    page_lines = [_lines(page.text) for page in repaired]
    running = find_running_lines(page_lines)
    removed = 0
    tidied: list[tuple[int, str]] = []
    textless: list[int] = []
    for page, lines in zip(pages, page_lines):
        if not any(lines):
            textless.append(page.page_number)
            continue
        kept_lines, dropped = _drop_running_lines(lines, running)
        removed += dropped
        tidied.append((page.page_number, _tidy(kept_lines)))
    vocabulary = HyphenVocabulary([body for _, body in tidied])
    joined = kept = restored = 0
    bodies: list[tuple[int, str]] = []
    for number, body in tidied:
        body, page_joined, page_kept = _join_hyphenations(body, vocabulary)
        joined, kept = joined + page_joined, kept + page_kept
        body, page_restored = restore_lost_ligatures(body, vocabulary.words)
        restored += page_restored
        # A soft hyphen ending the page may still mend a word across the page break.
        trailing = "\u00ad" if body.endswith("\u00ad") else ""
        body = _FORMAT.sub("", body) + trailing
        if body:
            bodies.append((number, body))
    text, starts, numbers, cross_joined, cross_kept = _concatenate(bodies, page_separator, vocabulary)
    by_page = _replacements_by_page(text, starts, numbers)
    heavy = tuple(number for number, count, share in by_page if share >= REPLACEMENT_HEAVY_SHARE)
    stats = CleaningStats(
        pages=len(pages),
        textless_pages=len(textless),
        header_footer_lines_removed=removed,
        hyphenations_joined=joined + cross_joined,
        characters=len(text),
        hyphens_kept=kept + cross_kept,
        control_characters_removed=sum(page.control_characters for page in repaired),
        compatibility_characters=sum(page.compatibility_characters for page in repaired),
        replacement_characters=text.count(REPLACEMENT),
        replacement_pages=len(by_page),
        replacement_heavy_pages=len(heavy),
        replacement_characters_restored=restored,
    )
    return CleanedDocument(
        text,
        starts,
        numbers,
        stats,
        tuple(textless),
        tuple(sorted(running)),
        tuple((number, count) for number, count, _ in by_page),
        heavy,
    )


def _replacements_by_page(text: str, starts: tuple[int, ...], numbers: tuple[int, ...]) -> list[tuple[int, int, float]]:
    """(page number, U+FFFD count, its share of the page's non-space characters) for pages with any."""
    found = []
    ends = starts[1:] + (len(text),)
    for number, start, end in zip(numbers, starts, ends):
        page = text[start:end]
        count = page.count(REPLACEMENT)
        if count:
            found.append((number, count, count / max(1, len(page) - sum(ch.isspace() for ch in page))))
    return found


_PAGE_END_HYPHEN = re.compile(rf"({_LETTERS})([{HYPHENS}])$")
_PAGE_START_WORD = re.compile(_LETTERS)


def _concatenate(
    bodies: list[tuple[int, str]], separator: str, vocabulary: HyphenVocabulary
) -> tuple[str, tuple[int, ...], tuple[int, ...], int, int]:
    """Join page bodies, mending a word hyphenated across a page break; returns text, map, joined, kept."""
    parts: list[str] = []
    starts: list[int] = []
    numbers: list[int] = []
    length = joined = kept = 0
    for number, body in bodies:
        broken = _PAGE_END_HYPHEN.search(parts[-1]) if parts else None
        following = _PAGE_START_WORD.match(body)
        if broken and following and body[:1].islower():
            if vocabulary.decide(broken.group(1), broken.group(2), following.group(0)) == "join":
                parts[-1] = parts[-1][:-1]  # "haemor-" | "rhage" -> "haemorrhage"
                length -= 1
                joined += 1
            else:
                kept += 1  # "anti-" | "inflammatory" -> "anti-inflammatory"
        elif parts:
            if parts[-1].endswith("\u00ad"):  # an unused soft hyphen renders as nothing
                parts[-1] = parts[-1][:-1]
                length -= 1
            parts.append(separator)
            length += len(separator)
        starts.append(length)
        numbers.append(number)
        parts.append(body)
        length += len(body)
    return "".join(parts), tuple(starts), tuple(numbers), joined, kept


def raw_document(pages: list[PageText], separator: str = PUBLISHED_PAGE_SEPARATOR) -> CleanedDocument:
    """The published build's text: page texts as extracted, concatenated, with the page map kept."""
    parts: list[str] = []
    starts: list[int] = []
    numbers: list[int] = []
    length = 0
    textless = [page.page_number for page in pages if not page.text.strip()]
    for page in pages:
        if not page.text:
            continue
        if parts:
            parts.append(separator)
            length += len(separator)
        starts.append(length)
        numbers.append(page.page_number)
        parts.append(page.text)
        length += len(page.text)
    text = "".join(parts)
    stats = CleaningStats(len(pages), len(textless), 0, 0, len(text))
    return CleanedDocument(text, tuple(starts), tuple(numbers), stats, tuple(textless))
