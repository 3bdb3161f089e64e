"""Retrieval on the sample corpus: real pypdf, cleaning, chunking, local embedder and FAISS."""

import polars as pl
import pytest

from medset_dagster.retrieval.chunking import chunk_document
from medset_dagster.retrieval.documents import SAMPLE_DOCUMENTS, SAMPLE_PDF_DIR
from medset_dagster.retrieval.embedders import LocalTfidfEmbedder
from medset_dagster.retrieval.pdf_text import clean_pages, extract_pages
from medset_dagster.retrieval.vector_index import Retriever, build_index


@pytest.fixture(scope="module")
def retriever():
    frames = []
    for spec in SAMPLE_DOCUMENTS:
        document = clean_pages(extract_pages(SAMPLE_PDF_DIR / spec.filename))
        chunks, _ = chunk_document(document, doc_id=spec.doc_id, doc_sha256=spec.sha256)
        frames.append(chunks)
    chunks = pl.concat(frames)
    embedder = LocalTfidfEmbedder(dimension=64).fit(chunks["text"].to_list())
    vectors = embedder.embed(chunks["text"].to_list(), "search_document")
    return Retriever(build_index(vectors, chunks["chunk_id"].to_list()), chunks, embedder)


@pytest.mark.parametrize(
    ("question", "doc_id", "words"),
    [
        ("How do I stop severe bleeding from a deep wound on the leg?", "sample_field_injuries", ("bleeding", "pressure")),
        ("What should I do for a serious burn?", "sample_field_environment", ("burn",)),
        ("Someone ate a wild mushroom and is vomiting, what now?", "sample_field_environment", ("mushroom",)),
        ("How do I splint a broken arm?", "sample_field_injuries", ("splint", "fracture")),
    ],
)
def test_a_question_about_one_section_retrieves_that_section_first(retriever, question, doc_id, words):
    top = retriever.retrieve(question, k=5)
    assert top[0].doc_id == doc_id
    assert any(word in top[0].text.lower() for word in words), top[0].text[:200]
    assert [hit.score for hit in top] == sorted((hit.score for hit in top), reverse=True)
