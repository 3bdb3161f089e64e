"""Word tokens and word n-gram hashes of text columns, vectorised over whole columns.

Shared by near-duplicate removal (`near_duplicates.py`, 5-gram shingles for MinHash) and benchmark
decontamination (`decontamination.py`, 13-gram overlap). Nothing here loops over rows in Python:
the text of a polars String column is taken as its Arrow byte buffer and processed with numpy, a
bounded number of bytes at a time.

Normalisation (the same for every caller, so equal text always gives equal tokens):
1. Unicode lower case (polars `str.to_lowercase`);
2. ASCII characters other than letters and digits, Latin-1 punctuation and symbols (U+00A0-U+00BF,
   U+00D7, U+00F7) and the General Punctuation block (U+2000-U+207F: typographic quotes, dashes,
   ellipsis, special spaces) become spaces;
3. a token is a maximal run of the remaining characters (letters, digits, other non-ASCII letters).
"The patient’s BP—120/80 mmHg." gives `the patient s bp 120 80 mmhg`.

Hashes are defined here rather than borrowed from a library whose hash may change between versions:
- token hash: the polynomial sum(byte_i * TOKEN_BASE^i) mod 2^64 over the token's UTF-8 bytes,
  finalised with splitmix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators",
  OOPSLA 2014);
- n-gram hash: the polynomial sum(token_hash_i * NGRAM_BASE^i) mod 2^64 over its tokens, plus the
  token count times a constant, finalised with splitmix64.
Equal token sequences always hash equally; distinct ones collide with probability about 2^-64 per
pair. Callers that must be exact verify a match on the text (`tokens_expr`).
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
import polars as pl

T = TypeVar("T")
TOKEN_BASE = 0x100000001B3_5A5B  # odd, so invertible modulo 2^64
NGRAM_BASE = 0x9E3779B97F4A7C15 | 1
LENGTH_SALT = 0xD6E8FEB86659FD93
SPACE = 32
# Bytes of text per numpy batch: 2 MB keeps every temporary under glibc's 32 MB mmap threshold, so
# freed buffers are reused instead of page-faulted in afresh for every batch.
CHUNK_BYTES = 2 << 20

# Characters that become spaces, as one Rust-regex class (used by `tokens_expr`); the numpy path
# applies the same rule to UTF-8 bytes.
_SEPARATORS = r"[\x00-\x2F\x3A-\x40\x5B-\x60\x7B-\x7F\x{A0}-\x{BF}\x{D7}\x{F7}\x{2000}-\x{207F}]+"
_PY_SEPARATORS = re.compile("[\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f\u00a0-\u00bf\u00d7\u00f7\u2000-\u207f]+")


def _ascii_lut() -> np.ndarray:
    lut = np.arange(256, dtype=np.uint8)
    for byte in range(128):
        char = chr(byte)
        if "A" <= char <= "Z":
            lut[byte] = ord(char.lower())
        elif not ("a" <= char <= "z" or "0" <= char <= "9"):
            lut[byte] = SPACE
    return lut


_LUT = _ascii_lut()
_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (in place on a copy)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        shifted = z >> np.uint64(30)
        z ^= shifted
        z *= np.uint64(0xBF58476D1CE4E5B9)
        np.right_shift(z, np.uint64(27), out=shifted)
        z ^= shifted
        z *= np.uint64(0x94D049BB133111EB)
        np.right_shift(z, np.uint64(31), out=shifted)
        z ^= shifted
    return z


def _splitmix64_int(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class _Powers:
    """base^i and base^-i modulo 2^64 for i < size, grown on demand (shared, thread-safe)."""

    def __init__(self, base: int):
        self.base = base
        self.inverse = pow(base, -1, 1 << 64)
        self.forward = np.ones(0, dtype=np.uint64)
        self.backward = np.ones(0, dtype=np.uint64)
        self._lock = threading.Lock()

    def get(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        if self.forward.size < size:
            with self._lock:
                if self.forward.size < size:
                    grown = max(size, 2 * self.forward.size, 1 << 16)
                    forward = np.full(grown, self.base, dtype=np.uint64)
                    backward = np.full(grown, self.inverse, dtype=np.uint64)
                    forward[0] = backward[0] = 1
                    with np.errstate(over="ignore"):
                        np.cumprod(forward, out=forward)
                        np.cumprod(backward, out=backward)
                    self.forward, self.backward = forward, backward
        return self.forward[:size], self.backward[:size]


_TOKEN_POWERS = _Powers(TOKEN_BASE)
_NGRAM_POWERS = _Powers(NGRAM_BASE)


# --------------------------------------------------------------------------------------------------
# Reference implementation on Python strings (tests, tiny inputs)


def tokens(text: str) -> list[str]:
    """The normalised tokens of one string (the rule in the module docstring)."""
    return [token for token in _PY_SEPARATORS.split(text.lower()) if token]


def hash_token(token: str) -> int:
    """A token's hash as an int in [0, 2^64)."""
    raw = 0
    power = 1
    for byte in token.encode("utf-8"):
        raw = (raw + byte * power) & _MASK64
        power = (power * TOKEN_BASE) & _MASK64
    return _splitmix64_int(raw)


def hash_ngram(token_sequence: Sequence[str]) -> int:
    """The hash of a sequence of tokens (an n-gram, or a whole short text), in [0, 2^64)."""
    raw = 0
    power = 1
    for token in token_sequence:
        raw = (raw + hash_token(token) * power) & _MASK64
        power = (power * NGRAM_BASE) & _MASK64
    return _splitmix64_int((raw + len(token_sequence) * LENGTH_SALT) & _MASK64)


def tokens_expr(expr: pl.Expr) -> pl.Expr:
    """`List[String]` of the normalised tokens of a String expression (null -> empty list).

    Regex-based, for the few rows whose matched spans are shown; bulk work uses `segment_tokens`.
    """
    return (
        expr.fill_null("")
        .str.to_lowercase()
        .str.replace_all(_SEPARATORS, " ")
        .str.extract_all(r"[^ ]+")
    )


# --------------------------------------------------------------------------------------------------
# Vectorised path


@dataclass
class SegmentTokens:
    """Tokens of a batch of text segments (a segment: one field of one row), all numpy arrays.

    - `hashes`: uint64 (T,), token hashes in text order, segment after segment;
    - `segment`: int64 (T,), the segment (0-based, within the batch) each token belongs to;
    - `offsets`: int64 (S + 1,), tokens of segment s are `hashes[offsets[s]:offsets[s + 1]]`.
    """

    hashes: np.ndarray
    segment: np.ndarray
    offsets: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        """int64 (S,): tokens per segment."""
        return np.diff(self.offsets)


def _normalised_bytes(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of the lower-cased texts, each followed by a space, and int64 offsets (S + 1,)."""
    lowered = texts.fill_null("").str.to_lowercase() + " "
    array = lowered.to_arrow(compat_level=pl.CompatLevel.oldest())
    if hasattr(array, "combine_chunks"):
        array = array.combine_chunks()
    _, offset_buffer, data_buffer = array.buffers()[:3]
    offsets = np.frombuffer(offset_buffer, dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    raw = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    data = _LUT[raw]  # a copy: ASCII punctuation -> space
    _blank_unicode_punctuation(data)
    return data, offsets - offsets[0]


def _blank_unicode_punctuation(data: np.ndarray) -> None:
    """In place: U+00A0-U+00BF, U+00D7, U+00F7 (C2 A0-BF, C3 97, C3 B7) and U+2000-U+207F
    (E2 80 xx, E2 81 xx) become spaces, byte for byte. Only lead bytes C2, C3 and E2 are examined."""
    lead = np.flatnonzero(data >= 0xC2)
    lead = lead[lead + 1 < data.size]
    if lead.size == 0:
        return
    first, second = data[lead], data[lead + 1]
    two = lead[((first == 0xC2) & (second >= 0xA0) & (second <= 0xBF)) | ((first == 0xC3) & ((second == 0x97) | (second == 0xB7)))]
    three = lead[(first == 0xE2) & ((second == 0x80) | (second == 0x81)) & (lead + 2 < data.size)]
    for shift in (0, 1):
        data[two + shift] = SPACE
    for shift in (0, 1, 2):
        data[three + shift] = SPACE


def segment_tokens(texts: pl.Series) -> SegmentTokens:
    """Tokenise and hash every segment of `texts` (a String Series; nulls are empty segments).

    Equal to `[hash_token(t) for t in tokens(text)]` per segment, computed without a Python loop.
    Memory: about 30 bytes per byte of text; call it on batches (`iter_batches`).
    """
    data, byte_offsets = _normalised_bytes(texts)
    n_segments = len(texts)
    if data.size == 0:
        return SegmentTokens(np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(n_segments + 1, np.int64))
    in_token = (data != SPACE).view(np.int8)
    edges = np.diff(in_token, prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    del edges, in_token
    forward, backward = _TOKEN_POWERS.get(data.size + 1)
    with np.errstate(over="ignore"):
        prefix = np.empty(data.size + 1, dtype=np.uint64)
        prefix[0] = 0
        np.multiply(data, forward[: data.size], out=prefix[1:], dtype=np.uint64)
        np.cumsum(prefix[1:], out=prefix[1:])
        raw = prefix[ends]
        raw -= prefix[starts]
        raw *= backward[starts]
    del prefix
    hashes = _splitmix64(raw)
    # Every segment ends with a space, so no token straddles two segments.
    offsets = np.searchsorted(starts, byte_offsets).astype(np.int64, copy=False)
    segment = np.repeat(np.arange(n_segments, dtype=np.int64), np.diff(offsets))
    return SegmentTokens(hashes, segment, offsets)


@dataclass
class SegmentNgrams:
    """Word n-gram hashes of a batch of segments, in text order.

    - `hashes`: uint64 (G,);
    - `segment`: int64 (G,), the segment of each n-gram;
    - `position`: int64 (G,), the index of the n-gram's first token within its segment;
    - `length`: int64 (G,), tokens in the n-gram (n, or fewer for a whole short segment).
    """

    hashes: np.ndarray
    segment: np.ndarray
    position: np.ndarray
    length: np.ndarray

    def offsets(self, n_segments: int) -> np.ndarray:
        """int64 (S + 1,): n-grams of segment s are `[offsets[s], offsets[s + 1])`."""
        out = np.zeros(n_segments + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.segment, minlength=n_segments), out=out[1:])
        return out


def ngram_hashes(tokenised: SegmentTokens, n: int, *, short_segments: bool) -> SegmentNgrams:
    """Hashes of every run of `n` consecutive tokens inside one segment (never across segments).

    `short_segments`: a segment with 1 to n - 1 tokens also yields one hash of all its tokens
    (MinHash shingling keeps short texts comparable); otherwise it yields nothing (decontamination:
    only full n-grams count). Equal to `hash_ngram(tokens[p:p + n])` for each position p.
    """
    if n < 1:
        raise ValueError(f"n-gram length must be at least 1, got {n}")
    hashes, segment, offsets = tokenised.hashes, tokenised.segment, tokenised.offsets
    total = hashes.size
    forward, backward = _NGRAM_POWERS.get(total + 1)
    with np.errstate(over="ignore"):
        weighted = hashes * forward[:total]
        prefix = np.empty(total + 1, dtype=np.uint64)
        prefix[0] = 0
        np.cumsum(weighted, out=prefix[1:])
        del weighted
        if total >= n:
            first = np.arange(total - n + 1, dtype=np.int64)
            keep = segment[: total - n + 1] == segment[n - 1 :]
            first = first[keep]
            full = prefix[first + n] - prefix[first]
            full *= backward[first]
            full += np.uint64((n * LENGTH_SALT) & _MASK64)
        else:
            first = np.zeros(0, dtype=np.int64)
            full = np.zeros(0, dtype=np.uint64)
        full_segment = segment[first]
        full_position = first - offsets[full_segment]
        full_length = np.full(first.size, n, dtype=np.int64)
        if short_segments:
            counts = np.diff(offsets)
            short = np.flatnonzero((counts > 0) & (counts < n))
            if short.size:
                start = offsets[short]
                whole = prefix[start + counts[short]] - prefix[start]
                whole *= backward[start]
                whole += counts[short].astype(np.uint64) * np.uint64(LENGTH_SALT)
                full = np.concatenate([full, whole])
                full_segment = np.concatenate([full_segment, short])
                full_position = np.concatenate([full_position, np.zeros(short.size, np.int64)])
                full_length = np.concatenate([full_length, counts[short]])
                order = np.argsort(full_segment, kind="stable")
                full, full_segment = full[order], full_segment[order]
                full_position, full_length = full_position[order], full_length[order]
    return SegmentNgrams(_splitmix64(full), full_segment, full_position, full_length)


def iter_batches(frame: pl.DataFrame, max_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, pl.DataFrame]]:
    """(first row index, slice) of `frame` in consecutive slices of at most about `max_bytes` bytes
    of String data (at least one row per slice)."""
    if frame.height == 0:
        return
    string_columns = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    if string_columns:
        sizes = frame.select(pl.sum_horizontal(pl.col(string_columns).str.len_bytes().fill_null(0)).alias("b"))["b"].to_numpy()
        cumulative = np.cumsum(sizes, dtype=np.int64)
    else:
        cumulative = np.arange(1, frame.height + 1, dtype=np.int64)
    start = 0
    while start < frame.height:
        base = cumulative[start - 1] if start else 0
        stop = int(np.searchsorted(cumulative, base + max_bytes, side="right"))
        stop = max(stop, start + 1)
        yield start, frame.slice(start, stop - start)
        start = stop


def map_batches(frame: pl.DataFrame, work: Callable[[pl.DataFrame], T], *, max_bytes: int = CHUNK_BYTES,
                workers: int | None = None) -> Iterator[tuple[int, pl.DataFrame, T]]:
    """(first row, slice, `work(slice)`) for the slices of `iter_batches`, in order.

    `work` runs on up to `workers` threads (default: the CPU count, at most 4): numpy and polars
    release the GIL, so batches proceed in parallel; results are yielded in slice order.
    """
    workers = workers or min(4, os.cpu_count() or 1)
    batches = iter_batches(frame, max_bytes)
    if workers <= 1:
        for start, batch in batches:
            yield start, batch, work(batch)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        for start, batch in batches:
            pending.append((start, batch, pool.submit(work, batch)))
            if len(pending) >= 2 * workers:
                first, sliced, future = pending.pop(0)
                yield first, sliced, future.result()
        for first, sliced, future in pending:
            yield first, sliced, future.result()
