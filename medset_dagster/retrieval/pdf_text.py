"""Page text out of a PDF, and the cleaning that turns pages into one document for chunking.

The published build concatenated the raw page texts with no separator (`raw_document(pages, "")`).
`clean_pages` is the card's intent: running headers and footers dropped, words hyphenated across line
breaks joined, whitespace normalised, pages joined by a paragraph break. Both keep a map from character
offsets back to page numbers, so every chunk can cite its pages.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import DependencyError, PdfReadError, PdfStreamError

# Lines this close to the top or bottom of a page are candidates for running headers/footers.
EDGE_LINES = 3
# A candidate line is "running" when it recurs on at least this share of the pages that have text.
RUNNING_LINE_SHARE = 0.5
PUBLISHED_PAGE_SEPARATOR = ""
PARAGRAPH_BREAK = "\n\n"

_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_RUN = re.compile(r"\n{3,}")
# A letter, a hyphen (or soft hyphen) ending the line, a lower-case letter starting the next line:
# "haemor-\nrhage". Upper case after the break usually means a real hyphen in a name, so it is kept.
_HYPHEN_BREAK = re.compile(r"([A-Za-z])[-\u00ad]\n[ \t]*([a-z])")


class PdfExtractionError(Exception):
    """A PDF could not be read (corrupt, truncated, encrypted)."""


@dataclass(frozen=True)
class PageText:
    page_number: int  # 1-based, as printed by PDF viewers
    text: str


@dataclass(frozen=True)
class CleaningStats:
    pages: int
    textless_pages: int
    header_footer_lines_removed: int
    hyphenations_joined: int
    characters: int


@dataclass(frozen=True)
class CleanedDocument:
    """One document's text plus, for each page that contributed text, where its text starts."""

    text: str
    page_starts: tuple[int, ...]
    page_numbers: tuple[int, ...]
    stats: CleaningStats
    textless_page_numbers: tuple[int, ...] = ()
    running_lines: tuple[str, ...] = ()  # normalised forms of the header/footer lines removed

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


def _join_hyphenations(text: str) -> tuple[str, int]:
    return _HYPHEN_BREAK.subn(r"\1\2", text)


def clean_pages(pages: list[PageText], *, page_separator: str = PARAGRAPH_BREAK) -> CleanedDocument:
    """Drop running headers/footers, join hyphenated words, normalise whitespace, join the pages."""
    page_lines = [_lines(page.text) for page in pages]
    running = find_running_lines(page_lines)
    removed = joined = 0
    bodies: list[tuple[int, str]] = []
    textless: list[int] = []
    for page, lines in zip(pages, page_lines):
        if not any(lines):
            textless.append(page.page_number)
            continue
        kept, dropped = _drop_running_lines(lines, running)
        removed += dropped
        body, count = _join_hyphenations(_tidy(kept))
        joined += count
        if body:
            bodies.append((page.page_number, body))
    text, starts, numbers, cross_page = _concatenate(bodies, page_separator)
    stats = CleaningStats(len(pages), len(textless), removed, joined + cross_page, len(text))
    return CleanedDocument(text, starts, numbers, stats, tuple(textless), tuple(sorted(running)))


def _concatenate(bodies: list[tuple[int, str]], separator: str) -> tuple[str, tuple[int, ...], tuple[int, ...], int]:
    """Join page bodies, mending a word hyphenated across a page break; returns text, map, joins."""
    parts: list[str] = []
    starts: list[int] = []
    numbers: list[int] = []
    length = joined = 0
    for number, body in bodies:
        if parts and re.search(r"[A-Za-z][-\u00ad]$", parts[-1]) and body[:1].islower():
            parts[-1] = parts[-1][:-1]  # "haemor-" | "rhage" -> "haemorrhage"
            length -= 1
            joined += 1
        elif parts:
            parts.append(separator)
            length += len(separator)
        starts.append(length)
        numbers.append(number)
        parts.append(body)
        length += len(body)
    return "".join(parts), tuple(starts), tuple(numbers), joined


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
