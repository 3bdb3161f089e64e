"""A SQLite cache of embeddings, so reruns pay only for texts never embedded before.

Keyed by (backend, model fingerprint, input_type, sha256(text)): a changed model or a different input type
is a miss, never a stale hit. Each batch is committed as soon as the backend returns it, so an interrupted
run loses at most the batch in flight.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medset_dagster.common.hashing import sha256_text
from medset_dagster.retrieval.embedders import Embedder, InputType

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    backend      TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL,
    input_type   TEXT    NOT NULL,
    text_sha256  TEXT    NOT NULL,
    dimension    INTEGER NOT NULL,
    vector       BLOB    NOT NULL,  -- float32, little-endian
    created_at   REAL    NOT NULL,
    PRIMARY KEY (backend, fingerprint, input_type, text_sha256)
) WITHOUT ROWID
"""

_LOOKUP_CHUNK = 500  # stays far below SQLite's bound-parameter limit


@dataclass(frozen=True)
class EmbedStats:
    """What one embed_with_cache call did; `as_metadata()` suits Dagster materialization metadata."""

    vectors: int  # rows returned
    cache_hits: int  # rows answered from the cache
    api_calls: int  # backend requests made, retries included
    embedded: int  # distinct texts sent to the backend
    seconds: float

    def as_metadata(self) -> dict[str, float | int]:
        return asdict(self)


class EmbeddingCache:
    """SQLite (WAL) store of float32 vectors. Use one instance per thread; WAL lets processes share the file."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=30)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives process crashes
        self._connection.execute(_SCHEMA)
        self._connection.commit()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddingCache({self.path!r})"

    def close(self) -> None:
        self._connection.close()

    def get_many(
        self, backend: str, fingerprint: str, input_type: str, text_hashes: Iterable[str], dimension: int
    ) -> dict[str, np.ndarray]:
        """Cached vectors by text hash; rows of another dimension are treated as misses."""
        wanted = list(dict.fromkeys(text_hashes))
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._connection.execute(
                f"SELECT text_sha256, dimension, vector FROM embeddings "
                f"WHERE backend=? AND fingerprint=? AND input_type=? AND text_sha256 IN ({marks})",
                (backend, fingerprint, input_type, *chunk),
            )
            for text_hash, row_dimension, blob in rows:
                if row_dimension == dimension and len(blob) == 4 * dimension:
                    found[text_hash] = np.frombuffer(blob, dtype="<f4")
        return found

    def put_many(
        self, backend: str, fingerprint: str, input_type: str, text_hashes: Sequence[str], vectors: np.ndarray
    ) -> None:
        """Store one batch in a single transaction."""
        vectors = np.asarray(vectors, dtype="<f4")
        if vectors.ndim != 2 or len(vectors) != len(text_hashes):
            raise ValueError(f"{len(text_hashes)} hashes but vectors of shape {vectors.shape}")
        now = time.time()
        dimension = vectors.shape[1]
        with self._connection:  # commits on success, rolls back on error
            self._connection.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (backend, fingerprint, input_type, text_hash, dimension, vector.tobytes(), now)
                    for text_hash, vector in zip(text_hashes, vectors)
                ],
            )

    def count(self, backend: str | None = None, fingerprint: str | None = None, input_type: str | None = None) -> int:
        clauses, params = [], []
        for column, value in (("backend", backend), ("fingerprint", fingerprint), ("input_type", input_type)):
            if value is not None:
                clauses.append(f"{column}=?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._connection.execute(f"SELECT COUNT(*) FROM embeddings{where}", params).fetchone()[0]


def embed_with_cache(
    embedder: Embedder,
    texts: Sequence[str],
    input_type: InputType,
    cache: EmbeddingCache | None,
    batch_size: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, EmbedStats]:
    """Vectors for `texts` in order, embedding only cache misses (each distinct text once).

    Misses go to the backend in batches of at most `embedder.max_batch` (or `batch_size` if smaller); each
    batch is committed before the next is sent. `on_batch(embedded_so_far, to_embed)` reports progress.
    With `cache=None` everything is embedded (still deduplicated and batched).
    """
    started = time.perf_counter()
    texts = list(texts)
    size = min(batch_size or embedder.max_batch, embedder.max_batch)
    if size < 1:
        raise ValueError("batch_size must be positive")
    key = (embedder.backend, embedder.fingerprint, input_type)
    hashes = [sha256_text(text) for text in texts]
    text_by_hash = dict(zip(hashes, texts))

    known = cache.get_many(*key, text_by_hash.keys(), embedder.dimension) if cache is not None else {}
    misses = [text_hash for text_hash in text_by_hash if text_hash not in known]
    cache_hits = sum(1 for text_hash in hashes if text_hash in known)
    calls_before = getattr(embedder, "calls", None)
    batches = 0
    for start in range(0, len(misses), size):
        batch_hashes = misses[start : start + size]
        vectors = embedder.embed([text_by_hash[h] for h in batch_hashes], input_type)
        if vectors.shape != (len(batch_hashes), embedder.dimension):
            raise ValueError(f"{embedder!r} returned shape {vectors.shape} for {len(batch_hashes)} texts")
        batches += 1
        if cache is not None:
            cache.put_many(*key, batch_hashes, vectors)
        known.update(zip(batch_hashes, vectors))
        if on_batch is not None:
            on_batch(start + len(batch_hashes), len(misses))

    result = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    for row, text_hash in enumerate(hashes):
        result[row] = known[text_hash]
    api_calls = embedder.calls - calls_before if calls_before is not None else batches  # type: ignore[attr-defined]
    stats = EmbedStats(
        vectors=len(texts),
        cache_hits=cache_hits,
        api_calls=api_calls,
        embedded=len(misses),
        seconds=round(time.perf_counter() - started, 4),
    )
    return result, stats
