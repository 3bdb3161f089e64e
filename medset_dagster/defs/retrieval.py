"""Retrieval (group `retrieval`): emergency-care PDFs -> chunks -> embeddings -> FAISS index."""


import shutil
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetIn,
    Config,
    ConfigurableResource,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from medset_dagster.common import markdown, text
from medset_dagster.common.files import NoSpaceLeftError, atomic_write
from medset_dagster.common.hashing import sha256_bytes, sha256_file, sha256_json
from medset_dagster.defs.automation import REBUILD_WHEN_STALE
from medset_dagster.defs.metadata import table_metadata
from medset_dagster.defs.resources import PipelineStorage
from medset_dagster.defs.sources import NETWORK_RETRY, frame_version
from medset_dagster.defs.versions import code_version
from medset_dagster.retrieval import (
    chunking,
    documents,
    embedding_cache,
    pdf_checks,
    pdf_text,
    vector_index,
)
from medset_dagster.retrieval.chunking import chunk_document
from medset_dagster.retrieval.documents import (
    FULL_DOCUMENTS,
    SAMPLE_DOCUMENTS,
    SAMPLE_PDF_DIR,
    DocumentError,
    fetch_corpus,
)
from medset_dagster.retrieval.embedders import (
    CohereEmbedder,
    EmbeddingBackendError,
    LocalTfidfEmbedder,
)
from medset_dagster.retrieval.embedding_cache import EmbeddingCache, embed_with_cache
from medset_dagster.retrieval.pdf_text import (
    PdfExtractionError,
    clean_pages,
    extract_pages,
)
from medset_dagster.retrieval.vector_index import (
    LOCAL_EMBEDDER_FILE,
    build_index,
    embedder_settings,
    load_index,
    load_local_embedder,
    save_index,
    self_test,
)

DOCUMENT_SCHEMA = {
    "doc_id": pl.String,
    "title": pl.String,
    "filename": pl.String,
    "path": pl.String,
    "sha256": pl.String,
    "bytes": pl.Int64,
    "licence": pl.String,
}


class DocumentCorpus(ConfigurableResource):
    """Which PDFs: the generated sample documents, or the WHO/IFRC books (downloaded, hash-pinned)."""

    documents: Literal["sample", "full"] = "sample"
    include_optional: bool = False

    def fetch(self, storage: PipelineStorage, log=None) -> pl.DataFrame:
        """The documents (DOCUMENT_SCHEMA), each present and verified; raises `DocumentError`.
        `log(message)` receives pins, re-downloads and retries (the run's events)."""
        specs = SAMPLE_DOCUMENTS if self.documents == "sample" else FULL_DOCUMENTS
        folder = SAMPLE_PDF_DIR if self.documents == "sample" else storage.pdf_dir
        paths = fetch_corpus(specs, folder, include_optional=self.include_optional, log=log)
        rows = [
            {
                "doc_id": spec.doc_id,
                "title": spec.title,
                "filename": spec.filename,
                "path": str(paths[spec.doc_id]),
                "sha256": sha256_file(paths[spec.doc_id]),
                "bytes": paths[spec.doc_id].stat().st_size,
                "licence": spec.licence,
            }
            for spec in specs
            if spec.doc_id in paths
        ]
        return pl.DataFrame(rows, schema=DOCUMENT_SCHEMA)


class EmbedderResource(ConfigurableResource):
    """`local` (TF-IDF + SVD fitted on the chunks, no weights) or `cohere` (embed-english-v3.0)."""

    backend: Literal["local", "cohere"] = "local"
    model: str = "embed-english-v3.0"
    api_key: Optional[str] = None
    base_url: Optional[str] = None
    local_dimension: int = 256
    timeout_s: float = 30.0
    max_attempts: int = 5

    def for_documents(self, corpus: list[str]):
        """The embedder for chunks; the local one is fitted on `corpus` here."""
        if self.backend == "local":
            return LocalTfidfEmbedder(dimension=self.local_dimension).fit(corpus)
        return self._cohere()

    def for_queries(self, index_folder: Path):
        """The embedder for questions: the same one the index was built with."""
        if self.backend == "local":
            return load_local_embedder(load_index(index_folder))
        return self._cohere()

    def _cohere(self) -> CohereEmbedder:
        if not self.api_key:
            raise EmbeddingBackendError(
                "The cohere embedder needs an API key: set COHERE_API_KEY (or use the sample profile's local embedder)."
            )
        return CohereEmbedder(
            api_key=self.api_key, model=self.model, base_url=self.base_url, timeout_s=self.timeout_s, max_attempts=self.max_attempts
        )


class ChunkingConfig(Config):
    """The published settings: 512 characters with 128 overlap; shorter chunks than `min_chars` dropped."""

    chunk_size: int = 512
    chunk_overlap: int = 128
    min_chars: int = 50


class IndexConfig(Config):
    """Exact inner-product search up to `approximate_above` vectors, HNSW beyond."""

    approximate_above: int = 200_000


@asset(
    group_name="retrieval",
    kinds={"pdf", "polars"},
    description="The emergency-care PDFs, each verified against its pinned SHA-256 (one row per document).",
    code_version=code_version(documents, pdf_checks),
    retry_policy=NETWORK_RETRY,
    automation_condition=REBUILD_WHEN_STALE,
)
def emergency_care_documents(context: AssetExecutionContext, document_corpus: DocumentCorpus, storage: PipelineStorage):
    """Fetches the profile's PDFs (`DocumentCorpus`: the sample files, or the books downloaded to the PDF
    folder), each checked against its pinned SHA-256; writes one row per document (DOCUMENT_SCHEMA)."""
    try:
        corpus = document_corpus.fetch(storage, log=context.log.warning)
    except DocumentError as error:
        raise Failure(description=str(error), allow_retries=False) from error
    table = markdown.table(
        ["document", "file", "sha256", "licence"],
        [(row["title"], row["filename"], markdown.Raw(f"`{row['sha256'][:16]}`"), row["licence"]) for row in corpus.iter_rows(named=True)],
    )
    return MaterializeResult(
        value=corpus,
        metadata={"dagster/row_count": corpus.height, "documents": MetadataValue.md(table)},
        data_version=DataVersion(sha256_json(corpus["sha256"].to_list())),
    )


@asset(
    group_name="retrieval",
    kinds={"pypdf", "polars", "parquet"},
    description="Text of every page (running headers/footers dropped, hyphenation joined) split into overlapping chunks.",
    code_version=code_version(text, pdf_text, chunking),
    automation_condition=REBUILD_WHEN_STALE,
)
def pdf_chunks(context: AssetExecutionContext, config: ChunkingConfig, emergency_care_documents: pl.DataFrame):
    """Reads each document's PDF, cleans its pages and splits them (ChunkingConfig, characters); writes
    the chunks (chunking.CHUNK_SCHEMA: chunk_id, doc_id, offsets, pages, text), one row per chunk."""
    started = time.perf_counter()
    frames, totals, replacement_pages = [], Counter(), []
    for document in emergency_care_documents.iter_rows(named=True):
        try:
            cleaned = clean_pages(extract_pages(document["path"]))
        except PdfExtractionError as error:
            raise Failure(description=f"{document['doc_id']} ({document['path']}): {error}", allow_retries=False) from error
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
        totals.update({k: v for k, v in asdict(cleaned.stats).items() if isinstance(v, int)})
        totals.update({k: v for k, v in asdict(stats).items() if k.startswith(("replacement", "chunks_with"))})
        replacement_pages += [
            (document["doc_id"], page, count, page in cleaned.replacement_heavy_page_numbers)
            for page, count in cleaned.replacement_characters_by_page
        ]
        if cleaned.replacement_heavy_page_numbers:
            context.log.warning(
                f"{document['filename']}: pages {list(cleaned.replacement_heavy_page_numbers)} are mostly U+FFFD "
                "(glyphs without Unicode values): their text is lost; check the PDF's fonts."
            )
    chunks = pl.concat(frames)
    lengths = chunks["text"].str.len_chars()
    metadata = {
        **table_metadata(chunks.select("chunk_id", "doc_id", "page_start", "page_end", "text")),
        "chunk_size": config.chunk_size,
        "chunk_overlap": config.chunk_overlap,
        "chunk_min_chars": config.min_chars,
        "documents": emergency_care_documents.height,
        **{name: int(count) for name, count in sorted(totals.items())},
        "replacement_characters_by_page": MetadataValue.md(
            markdown.table(["document", "page", "U+FFFD", "mostly lost"], replacement_pages) if replacement_pages else "_none_"
        ),
        "chunk_length": MetadataValue.json(
            {"min": int(lengths.min() or 0), "p50": int(lengths.median() or 0), "p95": int(lengths.quantile(0.95) or 0), "max": int(lengths.max() or 0)}
        ),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return MaterializeResult(value=chunks, metadata=metadata, data_version=DataVersion(frame_version(chunks)))


@asset(
    group_name="retrieval",
    kinds={"numpy", "parquet"},
    description="One unit vector per chunk (input_type search_document), cached by text hash.",
    code_version=code_version(embedding_cache),
    retry_policy=NETWORK_RETRY,
    automation_condition=REBUILD_WHEN_STALE,
)
def chunk_embeddings(context: AssetExecutionContext, embedder: EmbedderResource, storage: PipelineStorage, pdf_chunks: pl.DataFrame):
    """Reads `pdf_chunks` and embeds each text through the embedding cache; writes `chunk_id` and
    `vector` (Array[Float32, dimension]), row for row; a local embedder's file goes to the embedder folder."""
    texts = pdf_chunks["text"].to_list()
    try:
        model = embedder.for_documents(texts)
        with EmbeddingCache(storage.embedding_cache_path) as cache:
            vectors, stats = embed_with_cache(model, texts, "search_document", cache)
    except EmbeddingBackendError as error:
        raise Failure(description=f"embedding the chunks failed: {error}", allow_retries=error.status not in (401, 403, 498)) from error
    settings = embedder_settings(model)
    if embedder.backend == "local":
        # The fitted vectoriser is a file by nature; the index keeps a copy so queries embed alike.
        path = storage.embedder_dir / f"{model.fingerprint[:16]}.joblib"
        try:
            atomic_write(path, model.save, folder=storage.root)
        except NoSpaceLeftError as error:
            raise Failure(str(error), allow_retries=False) from error
        settings["local_embedder_path"] = str(path)
    frame = pl.DataFrame({"chunk_id": pdf_chunks["chunk_id"], "vector": pl.Series(vectors, dtype=pl.Array(pl.Float32, model.dimension))})
    context.log.info(f"{stats.vectors} vectors: {stats.cache_hits} from cache, {stats.api_calls} API calls")
    return MaterializeResult(
        value=frame,
        metadata={
            "dagster/row_count": frame.height,
            "dimension": model.dimension,
            "embedder": MetadataValue.json(settings),
            **{key: value for key, value in stats.as_metadata().items() if key != "vectors"},
        },
        data_version=DataVersion(sha256_bytes(vectors.tobytes() + "".join(pdf_chunks["chunk_id"]).encode())[:24]),
    )


@asset(
    group_name="retrieval",
    kinds={"faiss"},
    description="Inner-product FAISS index over the chunk vectors (exact up to IndexConfig.approximate_above vectors, HNSW beyond), saved with the chunk mapping and embedder settings.",
    code_version=code_version(vector_index),
    automation_condition=REBUILD_WHEN_STALE,
    ins={"pdf_chunks": AssetIn(), "chunk_embeddings": AssetIn()},
)
def faiss_index(context: AssetExecutionContext, config: IndexConfig, storage: PipelineStorage, pdf_chunks: pl.DataFrame, chunk_embeddings: pl.DataFrame):
    """Reads `pdf_chunks` and `chunk_embeddings` (row i = vector id i); writes index.faiss, chunks.parquet and
    index.json to the index folder (exact search; HNSW only above `IndexConfig.approximate_above` vectors)."""
    started = time.perf_counter()
    upstream = context.instance.get_latest_materialization_event(context.asset_key_for_input("chunk_embeddings"))
    settings = dict(upstream.asset_materialization.metadata["embedder"].value)
    folder = storage.index_dir
    local_path = settings.pop("local_embedder_path", None)
    if local_path:
        shutil.copyfile(local_path, folder / LOCAL_EMBEDDER_FILE)
        settings["local_embedder_file"] = LOCAL_EMBEDDER_FILE
    vectors = chunk_embeddings["vector"].to_numpy().astype(np.float32)
    index = build_index(vectors, pdf_chunks["chunk_id"].to_list(), approximate_above=config.approximate_above)
    save_index(folder, index, pdf_chunks, settings)
    loaded = load_index(folder)
    return MaterializeResult(
        metadata={
            "vectors": index.ntotal,
            "dimension": index.d,
            "kind": loaded.manifest["kind"],
            "embedder": MetadataValue.json(settings),
            "index_dir": MetadataValue.path(str(folder)),
            "seconds": round(time.perf_counter() - started, 3),
        },
        data_version=DataVersion(loaded.manifest["files"]["index.faiss"]),
    )


@asset_check(asset=faiss_index, blocking=True, description="One vector per chunk, with the embedder's dimension.", additional_ins={"pdf_chunks": AssetIn()})
def index_matches_chunks(storage: PipelineStorage, pdf_chunks: pl.DataFrame) -> AssetCheckResult:
    """Reads the saved index and `pdf_chunks`; passes when it holds one vector per chunk, of the dimension
    index.json records for the embedder."""
    loaded = load_index(storage.index_dir)
    expected_dimension = loaded.manifest["embedder"]["dimension"]
    passed = loaded.index.ntotal == pdf_chunks.height and loaded.index.d == expected_dimension
    return AssetCheckResult(
        passed=passed,
        description=f"{loaded.index.ntotal} vectors of {loaded.index.d} dims for {pdf_chunks.height} chunks (expected {expected_dimension} dims)",
        metadata={"vectors": loaded.index.ntotal, "chunks": pdf_chunks.height, "dimension": loaded.index.d},
    )


@asset_check(asset=faiss_index, blocking=True, description="Sampled chunks each retrieve themselves first.", additional_ins={"chunk_embeddings": AssetIn()})
def retrieval_self_test(storage: PipelineStorage, chunk_embeddings: pl.DataFrame) -> AssetCheckResult:
    """Reads the saved index and `chunk_embeddings`; passes when each of up to 50 sampled vectors retrieves
    its own chunk first (`vector_index.self_test`)."""
    loaded = load_index(storage.index_dir)
    vectors = chunk_embeddings["vector"].to_numpy().astype(np.float32)
    sample = min(50, loaded.index.ntotal)
    passed, failures = self_test(loaded.index, vectors, sample=sample, texts=loaded.chunks["text"].to_list())
    return AssetCheckResult(
        passed=passed,
        description="every sampled chunk returned itself first" if passed else f"{len(failures)} sampled chunks did not return themselves first",
        metadata={"sampled": sample, "failures": len(failures), "failed_chunks": MetadataValue.json([f.__dict__ for f in failures[:10]])},
    )


RETRIEVAL_ASSETS = [emergency_care_documents, pdf_chunks, chunk_embeddings, faiss_index]
RETRIEVAL_CHECKS = [index_matches_chunks, retrieval_self_test]
