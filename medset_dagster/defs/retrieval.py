"""Retrieval: emergency-care PDFs -> chunks -> embeddings -> FAISS index (group `retrieval`)."""

import inspect
import json
import shutil
import time
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    Config,
    ConfigurableResource,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from medset_dagster.common.hashing import sha256_file, sha256_json, sha256_text
from medset_dagster.common import markdown
from medset_dagster.retrieval import chunking, embedding_cache, pdf_text, vector_index
from medset_dagster.retrieval import documents as pdf_corpus
from medset_dagster.defs.backends import EmbedderResource
from medset_dagster.defs.metadata import table_metadata
from medset_dagster.defs.sources import NETWORK_RETRY
from medset_dagster.defs.storage import PipelineStorage
from medset_dagster.retrieval.chunking import chunk_document
from medset_dagster.retrieval.documents import (
    FULL_DOCUMENTS,
    SAMPLE_DOCUMENTS,
    DocumentError,
    fetch_corpus,
)
from medset_dagster.retrieval.embedders import EmbeddingBackendError
from medset_dagster.retrieval.embedding_cache import EmbeddingCache, embed_with_cache
from medset_dagster.retrieval.pdf_text import (
    PdfExtractionError,
    clean_pages,
    extract_pages,
)
from medset_dagster.retrieval.vector_index import (
    build_index,
    embedder_settings,
    load_index,
    save_index,
    self_test,
)

LOCAL_EMBEDDER_FILE = "local_embedder.pkl"


class DocumentCorpus(ConfigurableResource):
    """Which PDFs: the generated sample documents, or the WHO/IFRC books (downloaded, hash-pinned)."""

    documents: Literal["sample", "full"] = "sample"
    include_optional: bool = False

    def fetch(self, storage: PipelineStorage) -> list[tuple[object, Path]]:
        specs = SAMPLE_DOCUMENTS if self.documents == "sample" else FULL_DOCUMENTS
        folder = (
            Path(inspect.getfile(pdf_text)).parents[1] / "sample_data" / "pdfs"
            if self.documents == "sample"
            else storage.path("pdfs", ".keep").parent
        )
        paths = fetch_corpus(specs, folder, include_optional=self.include_optional)
        return [(spec, paths[spec.doc_id]) for spec in specs if spec.doc_id in paths]


class ChunkingConfig(Config):
    """The published settings: 512 characters with 128 overlap."""

    chunk_size: int = 512
    chunk_overlap: int = 128
    min_chars: int = 50


class IndexConfig(Config):
    """Exact inner-product search up to `approximate_above` vectors, HNSW beyond."""

    approximate_above: int = 200_000


def _documents_file(storage: PipelineStorage) -> Path:
    return storage.path("retrieval", "documents.json")


def _embeddings_dir(storage: PipelineStorage) -> Path:
    return storage.path("retrieval", "embeddings", ".keep").parent


def _index_dir(storage: PipelineStorage) -> Path:
    return storage.path("retrieval", "index", ".keep").parent


@asset(
    group_name="retrieval",
    kinds={"pdf"},
    description="The emergency-care PDFs, each verified against its pinned SHA-256.",
    code_version=sha256_text(inspect.getsource(pdf_corpus))[:16],
    retry_policy=NETWORK_RETRY,
)
def emergency_care_documents(context: AssetExecutionContext, document_corpus: DocumentCorpus, storage: PipelineStorage) -> MaterializeResult:
    try:
        fetched = document_corpus.fetch(storage)
    except DocumentError as error:
        raise Failure(description=str(error), allow_retries=False) from error
    documents = [
        {"doc_id": spec.doc_id, "title": spec.title, "filename": spec.filename, "path": str(path),
         "sha256": sha256_file(path), "bytes": path.stat().st_size, "licence": spec.licence}
        for spec, path in fetched
    ]
    _documents_file(storage).write_text(json.dumps(documents, indent=2))
    table = markdown.table(
        ["document", "file", "sha256", "licence"],
        [(d["title"], d["filename"], markdown.Raw(f"`{d['sha256'][:16]}`"), d["licence"]) for d in documents],
    )
    return MaterializeResult(
        metadata={"documents": len(documents), "dagster/row_count": len(documents), "files": MetadataValue.md(table)},
        data_version=DataVersion(sha256_json([d["sha256"] for d in documents])),
    )


@asset(
    deps=[emergency_care_documents],
    group_name="retrieval",
    kinds={"pypdf", "polars", "parquet"},
    description="Text of every page (running headers/footers dropped, hyphenation joined) split into overlapping chunks.",
    code_version=sha256_text(inspect.getsource(pdf_text) + inspect.getsource(chunking))[:16],
)
def pdf_chunks(context: AssetExecutionContext, config: ChunkingConfig, storage: PipelineStorage) -> MaterializeResult:
    started = time.perf_counter()
    documents = json.loads(_documents_file(storage).read_text())
    frames, pages, textless, characters, removed, joined = [], 0, 0, 0, 0, 0
    for document in documents:
        try:
            cleaned = clean_pages(extract_pages(document["path"]))
        except PdfExtractionError as error:
            raise Failure(description=f"{document['doc_id']}: {error}", allow_retries=False) from error
        chunks, stats = chunk_document(
            cleaned,
            doc_id=document["doc_id"],
            doc_sha256=document["sha256"],
            chunk_size=config.chunk_size,
            chunk_overlap=config.chunk_overlap,
            min_chars=config.min_chars,
        )
        context.log.info(f"{document['filename']}: {cleaned.stats.pages} pages, {stats.chunks} chunks ({stats.dropped_short} too short)")
        frames.append(chunks)
        pages += cleaned.stats.pages
        textless += cleaned.stats.textless_pages
        characters += cleaned.stats.characters
        removed += cleaned.stats.header_footer_lines_removed
        joined += cleaned.stats.hyphenations_joined
    chunks = pl.concat(frames)
    path = storage.path("retrieval", "chunks.parquet")
    storage.path("retrieval", "chunking.json").write_text(json.dumps(config.model_dump()))
    chunks.write_parquet(path)
    lengths = chunks["text"].str.len_chars()
    return MaterializeResult(
        metadata={
            **table_metadata(chunks.select("chunk_id", "doc_id", "page_start", "page_end", "text"), path),
            "documents": len(documents),
            "pages": pages,
            "textless_pages": textless,
            "characters": characters,
            "header_footer_lines_removed": removed,
            "hyphenations_joined": joined,
            "chunks": chunks.height,
            "chunk_length": MetadataValue.json(
                {"min": int(lengths.min() or 0), "p50": int(lengths.median() or 0),
                 "p95": int(lengths.quantile(0.95) or 0), "max": int(lengths.max() or 0)}
            ),
            "seconds": round(time.perf_counter() - started, 3),
        },
        data_version=DataVersion(sha256_file(path)),
    )


@asset(
    deps=[pdf_chunks],
    group_name="retrieval",
    kinds={"numpy"},
    description="One unit vector per chunk (input_type search_document), cached by text hash.",
    code_version=sha256_text(inspect.getsource(embedding_cache))[:16],
    retry_policy=NETWORK_RETRY,
)
def chunk_embeddings(context: AssetExecutionContext, embedder: EmbedderResource, storage: PipelineStorage) -> MaterializeResult:
    chunks = pl.read_parquet(storage.path("retrieval", "chunks.parquet"))
    texts = chunks["text"].to_list()
    folder = _embeddings_dir(storage)
    try:
        model = embedder.for_documents(texts)
        with EmbeddingCache(storage.path("cache", "embeddings.sqlite")) as cache:
            vectors, stats = embed_with_cache(model, texts, "search_document", cache)
    except EmbeddingBackendError as error:
        raise Failure(description=f"embedding the chunks failed: {error}") from error
    local_file = None
    if embedder.backend == "local":
        model.save(folder / LOCAL_EMBEDDER_FILE)
        local_file = LOCAL_EMBEDDER_FILE
    np.save(folder / "vectors.npy", vectors)
    (folder / "embedder.json").write_text(json.dumps(embedder_settings(model, local_file), indent=2))
    context.log.info(f"{stats.vectors} vectors: {stats.cache_hits} from cache, {stats.api_calls} API calls")
    return MaterializeResult(
        metadata={
            "vectors": stats.vectors,
            "dimension": model.dimension,
            "backend": model.backend,
            "model": model.model,
            **{key: value for key, value in stats.as_metadata().items() if key != "vectors"},
        },
        data_version=DataVersion(sha256_file(folder / "vectors.npy")),
    )


@asset(
    deps=[chunk_embeddings],
    group_name="retrieval",
    kinds={"faiss"},
    description="Exact inner-product FAISS index over the chunk vectors, saved with the chunk mapping and embedder settings.",
    code_version=sha256_text(inspect.getsource(vector_index))[:16],
)
def faiss_index(context: AssetExecutionContext, config: IndexConfig, storage: PipelineStorage) -> MaterializeResult:
    started = time.perf_counter()
    source, folder = _embeddings_dir(storage), _index_dir(storage)
    vectors = np.load(source / "vectors.npy")
    chunks = pl.read_parquet(storage.path("retrieval", "chunks.parquet"))
    settings = json.loads((source / "embedder.json").read_text())
    if settings.get("local_embedder_file"):
        shutil.copyfile(source / settings["local_embedder_file"], folder / settings["local_embedder_file"])
    index = build_index(vectors, chunks["chunk_id"].to_list(), approximate_above=config.approximate_above)
    manifest_path = save_index(folder, index, chunks, settings)
    manifest = json.loads(manifest_path.read_text())
    return MaterializeResult(
        metadata={
            "vectors": index.ntotal,
            "dimension": index.d,
            "kind": manifest["kind"],
            "embedder": MetadataValue.json(settings),
            "index_dir": MetadataValue.path(str(folder)),
            "seconds": round(time.perf_counter() - started, 3),
        },
        data_version=DataVersion(manifest["files"]["index.faiss"]),
    )


@asset_check(asset=faiss_index, blocking=True, description="One vector per chunk, with the embedder's dimension.")
def index_matches_chunks(storage: PipelineStorage) -> AssetCheckResult:
    loaded = load_index(_index_dir(storage))
    chunks = pl.read_parquet(storage.path("retrieval", "chunks.parquet"))
    expected_dimension = loaded.manifest["embedder"]["dimension"]
    passed = loaded.index.ntotal == chunks.height and loaded.index.d == expected_dimension
    return AssetCheckResult(
        passed=passed,
        description=f"{loaded.index.ntotal} vectors of {loaded.index.d} dims for {chunks.height} chunks (expected {expected_dimension} dims)",
    )


@asset_check(asset=faiss_index, blocking=True, description="Sampled chunks each retrieve themselves first.")
def retrieval_self_test(storage: PipelineStorage) -> AssetCheckResult:
    loaded = load_index(_index_dir(storage))
    vectors = np.load(_embeddings_dir(storage) / "vectors.npy")
    texts = loaded.chunks["text"].to_list()
    passed, failures = self_test(loaded.index, vectors, sample=min(50, loaded.index.ntotal), texts=texts)
    return AssetCheckResult(
        passed=passed,
        description="every sampled chunk returned itself first" if passed else f"{len(failures)} sampled chunks did not return themselves first",
        metadata={"failures": MetadataValue.json([f.__dict__ for f in failures[:10]])},
    )


def index_folder(storage: PipelineStorage) -> Path:
    return _index_dir(storage)


RETRIEVAL_ASSETS = [emergency_care_documents, pdf_chunks, chunk_embeddings, faiss_index]
RETRIEVAL_CHECKS = [index_matches_chunks, retrieval_self_test]
FAISS_INDEX = AssetKey("faiss_index")
