"""The FAISS index over chunk embeddings, its files on disk, and the retriever that queries it.

The published build used `IndexFlatL2` on unit vectors. For unit vectors |a-b|^2 = 2 - 2<a,b>, so an
inner-product index (`IndexFlatIP`) returns the same ranking and its scores are cosine similarities.

Exact search costs O(n * d) per query; it stays fast well past the few thousand chunks of the two source
PDFs. Above `approximate_above` vectors (200,000 by default) `kind="auto"` switches to HNSW
(`IndexHNSWFlat`, inner-product metric): sub-linear search at the price of recall slightly below 1 and a
slower build. `self_test` measures that price on the built index.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import polars as pl

from medset_dagster.common.hashing import sha256_file
from medset_dagster.retrieval.embedders import Embedder, LocalTfidfEmbedder
from medset_dagster.retrieval.embedding_cache import EmbeddingCache, embed_with_cache

IndexKind = Literal["auto", "flat", "hnsw"]

INDEX_FILE = "index.faiss"
CHUNKS_FILE = "chunks.parquet"
MANIFEST_FILE = "index.json"
LOCAL_EMBEDDER_FILE = "local_embedder.joblib"
CHUNK_COLUMNS: tuple[str, ...] = ("chunk_id", "doc_id", "page_start", "page_end", "text")
MANIFEST_FORMAT = 1

_NORM_TOLERANCE = 1e-3
# Query vectors shorter than this are "no signal" (embedders return unit rows, or zero rows for text
# with nothing they know): such a query retrieves nothing rather than whichever chunks come first.
MIN_QUERY_NORM = 0.5


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


def _as_unit_rows(vectors: np.ndarray) -> np.ndarray:
    """C-contiguous float32 (n, d), checked to be unit length (zero rows allowed: text with no signal)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise ValueError(f"vectors must be a 2-D array (n, d), got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinity")
    norms = np.linalg.norm(vectors, axis=1)
    bad = np.flatnonzero((np.abs(norms - 1.0) > _NORM_TOLERANCE) & (norms != 0.0))
    if bad.size:
        # Inner product is cosine only on unit vectors; normalising here would hide an embedder bug.
        raise ValueError(f"{bad.size} vectors are not L2-normalised (first: row {bad[0]}, norm {norms[bad[0]]:.4f})")
    return vectors


def build_index(
    vectors: np.ndarray,
    chunk_ids: Sequence[str],
    *,
    kind: IndexKind = "auto",
    approximate_above: int = 200_000,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ef_search: int = 128,
) -> faiss.Index:
    """An inner-product index whose vector id i is row i of `vectors` (and of the chunks frame).

    `kind="auto"` is exact `IndexFlatIP` up to `approximate_above` vectors and `IndexHNSWFlat` above;
    "flat" and "hnsw" force one or the other. `chunk_ids` is checked (same length, unique) because the row
    order is the only link between vector ids and chunks.
    """
    vectors = _as_unit_rows(vectors)
    count, dimension = vectors.shape
    if len(chunk_ids) != count:
        raise ValueError(f"{count} vectors but {len(chunk_ids)} chunk ids")
    if len(set(chunk_ids)) != count:
        raise ValueError("chunk ids are not unique")
    if kind == "auto":
        kind = "hnsw" if count > approximate_above else "flat"
    if kind == "flat":
        index: faiss.Index = faiss.IndexFlatIP(dimension)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search  # stored in the index file, so a loaded index searches the same way
    else:
        raise ValueError(f"unknown index kind {kind!r}")
    index.add(vectors)
    return index


def index_kind(index: faiss.Index) -> str:
    """The name recorded in index.json."""
    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw_ip"
    if isinstance(index, faiss.IndexFlatIP):
        return "flat_ip"
    return type(index).__name__


def embedder_settings(embedder: Embedder, local_embedder_file: str | None = None) -> dict[str, Any]:
    """What index.json records about the embedder, so queries are embedded the way chunks were."""
    settings: dict[str, Any] = {
        "backend": embedder.backend,
        "model": embedder.model,
        "fingerprint": embedder.fingerprint,
        "dimension": embedder.dimension,
    }
    if local_embedder_file is not None:
        settings["local_embedder_file"] = local_embedder_file
    return settings


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedIndex:
    """A folder written by `save_index`: the FAISS `index` (n vectors of d float32 dims), `chunks` (row i =
    vector id i; CHUNK_COLUMNS), `manifest` (index.json: format, dimension, count, kind, metric,
    embedder, files -> sha256) and the `folder` itself."""

    index: faiss.Index
    chunks: pl.DataFrame
    manifest: dict[str, Any]
    folder: Path


def _check_chunks(chunks_frame: pl.DataFrame, count: int) -> None:
    missing = [column for column in CHUNK_COLUMNS if column not in chunks_frame.columns]
    if missing:
        raise ValueError(f"chunks frame lacks columns {missing}")
    if chunks_frame.height != count:
        raise ValueError(f"chunks frame has {chunks_frame.height} rows but the index holds {count} vectors")


def save_index(
    folder: str | Path,
    index: faiss.Index,
    chunks_frame: pl.DataFrame,
    embedder_settings: dict[str, Any],
) -> Path:
    """Write index.faiss, chunks.parquet (row i = vector id i) and index.json; returns the manifest path.

    Each file is written under a temporary name and renamed; index.json goes last, so a folder with an
    index.json is complete. Put the local embedder's file in the same folder and name it in
    `embedder_settings["local_embedder_file"]`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _check_chunks(chunks_frame, index.ntotal)
    for key in ("backend", "model", "fingerprint"):
        if key not in embedder_settings:
            raise ValueError(f"embedder_settings lacks {key!r}")
    local_file = embedder_settings.get("local_embedder_file")
    if local_file is not None and not (folder / local_file).is_file():
        raise ValueError(f"local embedder file {local_file!r} is not in {folder}")

    index_path, chunks_path = folder / INDEX_FILE, folder / CHUNKS_FILE
    faiss.write_index(index, str(index_path) + ".tmp")
    os.replace(str(index_path) + ".tmp", index_path)
    chunks_frame.write_parquet(str(chunks_path) + ".tmp")
    os.replace(str(chunks_path) + ".tmp", chunks_path)

    manifest = {
        "format": MANIFEST_FORMAT,
        "dimension": index.d,
        "count": index.ntotal,
        "kind": index_kind(index),
        "metric": "inner_product",
        "embedder": dict(embedder_settings),
        "files": {
            INDEX_FILE: sha256_file(index_path),
            CHUNKS_FILE: sha256_file(chunks_path),
            **({local_file: sha256_file(folder / local_file)} if local_file else {}),
        },
    }
    manifest_path = folder / MANIFEST_FILE
    manifest_path.with_suffix(".json.tmp").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(manifest_path.with_suffix(".json.tmp"), manifest_path)
    return manifest_path


def load_index(folder: str | Path) -> LoadedIndex:
    """Read a folder written by save_index, checking that its parts agree."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{folder}: unsupported index.json format {manifest.get('format')!r}")
    index = faiss.read_index(str(folder / INDEX_FILE))
    chunks = pl.read_parquet(folder / CHUNKS_FILE)
    _check_chunks(chunks, index.ntotal)
    if (index.d, index.ntotal) != (manifest["dimension"], manifest["count"]):
        raise ValueError(f"{folder}: index.faiss ({index.d}d, {index.ntotal}) disagrees with index.json")
    return LoadedIndex(index=index, chunks=chunks, manifest=manifest, folder=folder)


def load_local_embedder(loaded: LoadedIndex) -> LocalTfidfEmbedder:
    """The local embedder saved with the index, verified against the fingerprint in index.json."""
    settings = loaded.manifest["embedder"]
    if "local_embedder_file" not in settings:
        raise ValueError(f"{loaded.folder}: index was built with backend {settings['backend']!r}, not a local embedder")
    embedder = LocalTfidfEmbedder.load(loaded.folder / settings["local_embedder_file"])
    if embedder.fingerprint != settings["fingerprint"]:
        raise ValueError(f"{loaded.folder}: local embedder file does not match the index's fingerprint")
    return embedder


# --------------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievedChunk:
    """One hit: `chunk_id`, `score`, `doc_id`, the first and last page the chunk spans (`page_start`,
    `page_end`, 1-based, inclusive) and its `text`."""

    chunk_id: str
    score: float  # inner product of unit vectors = cosine similarity
    doc_id: str
    page_start: int
    page_end: int
    text: str


class Retriever:
    """Top-k chunks for questions, embedded with `input_type="search_query"` by the index's embedder."""

    def __init__(
        self,
        index: faiss.Index,
        chunks_frame: pl.DataFrame,
        embedder: Embedder,
        *,
        query_cache: EmbeddingCache | None = None,
        expected_fingerprint: str | None = None,
    ):
        _check_chunks(chunks_frame, index.ntotal)
        if embedder.dimension != index.d:
            raise ValueError(f"embedder gives {embedder.dimension}-d vectors but the index holds {index.d}-d")
        if expected_fingerprint is not None and embedder.fingerprint != expected_fingerprint:
            raise ValueError("embedder fingerprint differs from the one the index was built with")
        self.index = index
        self.embedder = embedder
        self.query_cache = query_cache
        # Plain lists: row lookups by vector id without a DataFrame round trip per hit.
        self._rows = {column: chunks_frame.get_column(column).to_list() for column in CHUNK_COLUMNS}

    @classmethod
    def from_folder(
        cls, folder: str | Path, embedder: Embedder | None = None, *, query_cache: EmbeddingCache | None = None
    ) -> Retriever:
        """Open a saved index; without `embedder`, the local embedder saved alongside is used."""
        loaded = load_index(folder)
        if embedder is None:
            embedder = load_local_embedder(loaded)
        return cls(
            loaded.index,
            loaded.chunks,
            embedder,
            query_cache=query_cache,
            expected_fingerprint=loaded.manifest["embedder"]["fingerprint"],
        )

    def retrieve(self, query: str, k: int = 5, *, min_score: float | None = None) -> list[RetrievedChunk]:
        """`retrieve_many` for one query."""
        return self.retrieve_many([query], k, min_score=min_score)[0]

    def retrieve_many(
        self, queries: Sequence[str], k: int = 5, *, min_score: float | None = None
    ) -> list[list[RetrievedChunk]]:
        """Up to `k` chunks per query, best first: one embedding pass and one FAISS search for all.

        A query whose vector has norm below MIN_QUERY_NORM (the embedder found nothing it knows in
        it) gets no chunks: every score would be 0 and the "top" chunks arbitrary. With `min_score`
        (cosine similarity, -1..1), chunks scoring below it are left out, so a query may get none.
        Raises ValueError for k < 1.
        """
        queries = list(queries)
        if not queries:
            return []
        if k < 1:
            raise ValueError("k must be at least 1")
        vectors, _ = embed_with_cache(self.embedder, queries, "search_query", self.query_cache)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        signal = np.linalg.norm(vectors, axis=1) >= MIN_QUERY_NORM
        scores, ids = self.index.search(vectors, min(k, self.index.ntotal))
        floor = -np.inf if min_score is None else min_score
        return [
            [self._chunk(int(i), float(s)) for s, i in zip(row_scores, row_ids) if i >= 0 and s >= floor]  # -1: fewer hits than k
            if has_signal
            else []
            for row_scores, row_ids, has_signal in zip(scores, ids, signal)
        ]

    def _chunk(self, vector_id: int, score: float) -> RetrievedChunk:
        rows = self._rows
        return RetrievedChunk(
            chunk_id=str(rows["chunk_id"][vector_id]),
            score=score,
            doc_id=str(rows["doc_id"][vector_id]),
            page_start=int(rows["page_start"][vector_id]),
            page_end=int(rows["page_end"][vector_id]),
            text=rows["text"][vector_id],
        )


# --------------------------------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfTestFailure:
    """A sampled vector that did not retrieve itself first: `vector_id` (its row), `top_id` (the index's
    first hit), `top_score` and `own_score` (inner products: cosine similarities for unit vectors)."""

    vector_id: int
    top_id: int  # what the index returned first (-1: nothing)
    top_score: float
    own_score: float  # the vector's inner product with itself (1.0 for unit vectors)


def self_test(
    index: faiss.Index,
    vectors: np.ndarray,
    sample: int = 50,
    seed: int = 0,
    *,
    texts: Sequence[str] | None = None,
) -> tuple[bool, list[SelfTestFailure]]:
    """Each sampled chunk's own vector must come back first.

    A different top hit still passes when its vector is identical (a duplicate chunk) and, if `texts` are
    given, its text is identical too. Catches a vector/row misalignment, a broken embedder (zero or
    repeated vectors) and, for HNSW, poor recall.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors) != index.ntotal:
        raise ValueError(f"{len(vectors)} vectors but the index holds {index.ntotal}")
    if len(vectors) == 0:
        return True, []
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False))
    scores, ids = index.search(vectors[picked], 1)
    failures = []
    for vector_id, top_score, top_id in zip(picked.tolist(), scores[:, 0].tolist(), ids[:, 0].tolist()):
        if top_id == vector_id:
            continue
        duplicate = top_id >= 0 and np.array_equal(vectors[top_id], vectors[vector_id])
        if duplicate and (texts is None or texts[top_id] == texts[vector_id]):
            continue
        own = float(vectors[vector_id] @ vectors[vector_id])
        failures.append(SelfTestFailure(vector_id=vector_id, top_id=top_id, top_score=top_score, own_score=own))
    return not failures, failures
