"""Recursive character splitting of a document into overlapping chunks, as the published build did.

Same algorithm as LangChain's RecursiveCharacterTextSplitter (separators paragraph, line, sentence,
word, character; 512 characters with 128 overlap), written here over character offsets so every chunk
knows exactly where it came from. A span is split on the first separator that occurs in it; pieces
that fit are merged greedily up to `chunk_size`, each new chunk re-using whole pieces from the end of
the previous one up to `chunk_overlap` characters; pieces that do not fit are split again with the
next separator. The separator stays at the end of the piece before it, and chunks are stripped of
surrounding whitespace.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from medset_dagster.common.hashing import sha256_text
from medset_dagster.retrieval.pdf_text import CleanedDocument

DEFAULT_SEPARATORS: tuple[str, ...] = ("\n\n", "\n", ". ", " ", "")
DEFAULT_CHUNK_SIZE = 512
DEFAULT_CHUNK_OVERLAP = 128
DEFAULT_MIN_CHARS = 50

CHUNK_SCHEMA = pl.Schema(
    {
        "chunk_id": pl.String,
        "doc_id": pl.String,
        "start": pl.Int64,
        "end": pl.Int64,
        "page_start": pl.Int64,
        "page_end": pl.Int64,
        "text": pl.String,
    }
)

Span = tuple[int, int]  # half-open [start, end) character offsets


@dataclass(frozen=True)
class ChunkStats:
    """Chunk count, short chunks dropped, length distribution in characters, and lossy extraction:
    `replacement_characters` (U+FFFD in the kept chunks, overlaps counted in each chunk) and
    `chunks_with_replacement_characters`."""

    chunks: int
    dropped_short: int
    length_min: int
    length_p50: int
    length_p95: int
    length_max: int
    replacement_characters: int = 0
    chunks_with_replacement_characters: int = 0


# ---------------------------------------------------------------------------------------------------
# Splitting


def split_spans(
    text: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
    separators: tuple[str, ...] = DEFAULT_SEPARATORS,
) -> list[Span]:
    """Chunk spans of `text`, stripped of surrounding whitespace; empty spans are left out."""
    if chunk_size <= 0 or not 0 <= chunk_overlap < chunk_size:
        raise ValueError(f"need 0 <= chunk_overlap < chunk_size, got {chunk_overlap}, {chunk_size}")
    raw = _split(text, 0, len(text), chunk_size, chunk_overlap, separators)
    return [span for span in (_strip(text, s, e) for s, e in raw) if span[1] > span[0]]


def _split(text: str, start: int, end: int, size: int, overlap: int, separators: tuple[str, ...]) -> list[Span]:
    separator, rest = _pick_separator(text, start, end, separators)
    chunks: list[Span] = []
    fitting: list[Span] = []
    for piece in _pieces(text, start, end, separator):
        if piece[1] - piece[0] <= size:
            fitting.append(piece)
            continue
        chunks += _merge(fitting, size, overlap)
        fitting = []
        chunks += _split(text, piece[0], piece[1], size, overlap, rest) if rest else [piece]
    return chunks + _merge(fitting, size, overlap)


def _pick_separator(text: str, start: int, end: int, separators: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The first separator present in the span, and the finer ones left for oversized pieces."""
    for index, separator in enumerate(separators):
        if separator == "" or text.find(separator, start, end) != -1:
            return separator, separators[index + 1 :]
    return "", ()


def _pieces(text: str, start: int, end: int, separator: str) -> list[Span]:
    """Split [start, end) after each occurrence of `separator` ("" = every character)."""
    if separator == "":
        return [(i, i + 1) for i in range(start, end)]
    pieces: list[Span] = []
    cursor = start
    while (found := text.find(separator, cursor, end)) != -1:
        pieces.append((cursor, found + len(separator)))
        cursor = found + len(separator)
    if cursor < end:
        pieces.append((cursor, end))
    return pieces


def _merge(pieces: list[Span], size: int, overlap: int) -> list[Span]:
    """Greedy merge of contiguous pieces (each <= size) into chunks <= size, overlapping <= overlap."""
    chunks: list[Span] = []
    window: list[Span] = []
    total = 0
    for piece in pieces:
        length = piece[1] - piece[0]
        if window and total + length > size:
            chunks.append((window[0][0], window[-1][1]))
            # Keep at most `overlap` characters of trailing pieces, and only as much as lets this piece fit.
            while window and (total > overlap or total + length > size):
                total -= window[0][1] - window[0][0]
                window.pop(0)
        window.append(piece)
        total += length
    if window:
        chunks.append((window[0][0], window[-1][1]))
    return chunks


def _strip(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


# ---------------------------------------------------------------------------------------------------
# Chunks of a document


def chunk_id(doc_sha256: str, start: int, end: int, text: str) -> str:
    """Stable id: the source file, the offsets and the chunk text itself.

    The text hash is included because the same offsets hold different text under different cleaning
    settings (raw vs cleaned) of the same file, and ids key caches such as embeddings.
    """
    return sha256_text(f"{doc_sha256}:{start}:{end}:{sha256_text(text)}")[:16]


def chunk_document(
    document: CleanedDocument,
    *,
    doc_id: str,
    doc_sha256: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
    min_chars: int = DEFAULT_MIN_CHARS,
    separators: tuple[str, ...] = DEFAULT_SEPARATORS,
) -> tuple[pl.DataFrame, ChunkStats]:
    """Chunks of one cleaned document as a frame (CHUNK_SCHEMA), and their stats.

    Chunks shorter than `min_chars` (stray headings, page numbers) are dropped and counted.
    """
    spans = split_spans(document.text, chunk_size, chunk_overlap, separators)
    kept = [(s, e) for s, e in spans if e - s >= min_chars]
    rows = []
    for start, end in kept:
        text = document.text[start:end]
        page_start, page_end = document.page_range(start, end)
        rows.append((chunk_id(doc_sha256, start, end, text), doc_id, start, end, page_start, page_end, text))
    frame = pl.DataFrame(rows, schema=CHUNK_SCHEMA, orient="row")
    if frame["chunk_id"].n_unique() != frame.height:
        raise AssertionError(f"{doc_id}: duplicate chunk ids")  # would corrupt id-keyed caches
    return frame, chunk_stats(frame, dropped_short=len(spans) - len(kept))


def chunk_stats(frame: pl.DataFrame, dropped_short: int = 0) -> ChunkStats:
    """Count and length distribution (min, median, 95th percentile, max; nearest-rank) of chunks
    (CHUNK_SCHEMA frame), and their U+FFFD counts."""
    if frame.is_empty():
        return ChunkStats(0, dropped_short, 0, 0, 0, 0)
    lengths = frame["text"].str.len_chars()
    quantile = lambda q: int(lengths.quantile(q, interpolation="nearest"))  # noqa: E731
    replacements = frame["text"].str.count_matches("\ufffd", literal=True)
    return ChunkStats(
        chunks=frame.height,
        dropped_short=dropped_short,
        length_min=int(lengths.min()),
        length_p50=quantile(0.5),
        length_p95=quantile(0.95),
        length_max=int(lengths.max()),
        replacement_characters=int(replacements.sum()),
        chunks_with_replacement_characters=int((replacements > 0).sum()),
    )
