"""FAISS index, its files and the retriever, on a small corpus of distinct first-aid topics."""

from __future__ import annotations

import json

import faiss
import numpy as np
import polars as pl
import pytest

from medset_dagster.retrieval.embedders import (
    CohereEmbedder,
    LocalTfidfEmbedder,
    l2_normalise,
)
from medset_dagster.retrieval.vector_index import (
    LOCAL_EMBEDDER_FILE,
    Retriever,
    build_index,
    embedder_settings,
    load_index,
    load_local_embedder,
    save_index,
    self_test,
)
from medset_dagster_tests.servers.cohere_server import CohereTestServer

TOPICS = {
    "burns": [
        "Burns and scalds: cool the burn under cool running water for at least twenty minutes. Remove rings "
        "and tight clothing near the burned skin before swelling starts.",
        "Cover a burn loosely with cling film or a clean non-fluffy dressing. Do not apply ice, butter or "
        "creams, and do not burst blisters. Large or deep burns need hospital care.",
    ],
    "fractures": [
        "Fractures: a broken bone may show deformity, swelling and pain on movement. Immobilise the injured "
        "limb with a splint that holds the joints above and below the fracture.",
        "With an open fracture, control bleeding around the wound without pressing on the protruding bone, "
        "cover it with a sterile dressing and keep the limb still until help arrives.",
    ],
    "snake_bites": [
        "Snake bites: keep the bitten person calm and still, because movement spreads venom. Apply a pressure "
        "immobilisation bandage over the bitten limb and splint it.",
        "Never cut, suck or apply a tourniquet to a snake bite. Note the time of the bite and the snake's "
        "appearance, and transport the victim to hospital for antivenom.",
    ],
    "choking": [
        "Choking: encourage the person to cough. If coughing fails, give up to five back blows between the "
        "shoulder blades, then up to five abdominal thrusts.",
    ],
    "hypothermia": [
        "Hypothermia: move the person out of the cold, replace wet clothing with dry blankets and warm the "
        "trunk gradually. Give warm sweet drinks only if the person is fully alert.",
    ],
}


def chunks_frame() -> pl.DataFrame:
    rows = []
    for topic, paragraphs in TOPICS.items():
        for number, text in enumerate(paragraphs):
            rows.append(
                {"chunk_id": f"{topic}-{number}", "doc_id": f"{topic}.pdf", "page_start": number + 1, "page_end": number + 2, "text": text}
            )
    return pl.DataFrame(rows)


@pytest.fixture
def corpus():
    chunks = chunks_frame()
    texts = chunks["text"].to_list()
    embedder = LocalTfidfEmbedder().fit(texts)
    vectors = embedder.embed(texts, "search_document")
    return chunks, embedder, vectors


def test_exact_index_and_self_test(corpus):
    chunks, _, vectors = corpus
    index = build_index(vectors, chunks["chunk_id"].to_list())
    assert isinstance(index, faiss.IndexFlatIP) and index.ntotal == chunks.height
    passed, failures = self_test(index, vectors, sample=50, texts=chunks["text"].to_list())
    assert passed and failures == []


@pytest.mark.parametrize(
    ("question", "topic"),
    [
        ("How long should I cool a scald from boiling water?", "burns"),
        ("How do I splint a broken bone in the leg?", "fractures"),
        ("A hiker was bitten by a snake on the ankle, what should we do?", "snake_bites"),
        ("A child is choking on food and cannot cough", "choking"),
        ("How to warm someone with hypothermia in wet clothing?", "hypothermia"),
    ],
)
def test_question_retrieves_its_topic_first(corpus, question, topic):
    chunks, embedder, vectors = corpus
    retriever = Retriever(build_index(vectors, chunks["chunk_id"].to_list()), chunks, embedder)
    hits = retriever.retrieve(question, k=3)
    assert hits[0].chunk_id.startswith(topic)
    assert hits[0].doc_id == f"{topic}.pdf" and hits[0].text in TOPICS[topic]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_retrieve_many_matches_retrieve_and_caps_k(corpus):
    chunks, embedder, vectors = corpus
    retriever = Retriever(build_index(vectors, chunks["chunk_id"].to_list()), chunks, embedder)
    questions = ["treating a burn", "snake bite bandage"]
    many = retriever.retrieve_many(questions, k=50)
    assert [len(hits) for hits in many] == [chunks.height, chunks.height]  # k above the corpus size
    assert many[0][:5] == retriever.retrieve(questions[0], k=5)


def test_save_load_round_trip(corpus, tmp_path):
    chunks, embedder, vectors = corpus
    folder = tmp_path / "index"
    embedder.save(folder / LOCAL_EMBEDDER_FILE)
    index = build_index(vectors, chunks["chunk_id"].to_list())
    save_index(folder, index, chunks, embedder_settings(embedder, LOCAL_EMBEDDER_FILE))

    manifest = json.loads((folder / "index.json").read_text())
    assert manifest["dimension"] == embedder.dimension and manifest["count"] == chunks.height
    assert manifest["kind"] == "flat_ip"
    assert manifest["embedder"] == {
        "backend": "local-tfidf-svd",
        "model": embedder.model,
        "fingerprint": embedder.fingerprint,
        "dimension": embedder.dimension,
        "local_embedder_file": LOCAL_EMBEDDER_FILE,
    }
    loaded = load_index(folder)
    assert loaded.chunks.equals(chunks)
    assert load_local_embedder(loaded).fingerprint == embedder.fingerprint
    question = "what to do about blisters on a burn"
    original = Retriever(index, chunks, embedder).retrieve(question)
    assert Retriever.from_folder(folder).retrieve(question) == original
    assert self_test(loaded.index, vectors)[0]


def test_from_folder_rejects_another_embedder(corpus, tmp_path):
    chunks, embedder, vectors = corpus
    embedder.save(tmp_path / LOCAL_EMBEDDER_FILE)
    save_index(tmp_path, build_index(vectors, chunks["chunk_id"].to_list()), chunks, embedder_settings(embedder, LOCAL_EMBEDDER_FILE))
    other = LocalTfidfEmbedder().fit(chunks["text"].to_list()[::-1][:-1] + ["extra text about bandages"])
    with pytest.raises(ValueError):
        Retriever.from_folder(tmp_path, other)


def test_auto_switches_to_hnsw_above_the_threshold():
    rng = np.random.default_rng(0)
    vectors = l2_normalise(rng.standard_normal((300, 32)))
    ids = [f"c{i}" for i in range(300)]
    assert isinstance(build_index(vectors, ids, approximate_above=1000), faiss.IndexFlatIP)
    index = build_index(vectors, ids, approximate_above=100)
    assert isinstance(index, faiss.IndexHNSWFlat) and index.metric_type == faiss.METRIC_INNER_PRODUCT
    passed, failures = self_test(index, vectors, sample=100)
    assert passed, failures


def test_self_test_accepts_duplicates_and_catches_misalignment():
    rng = np.random.default_rng(1)
    vectors = l2_normalise(rng.standard_normal((20, 16)))
    vectors[5] = vectors[4]  # a duplicated chunk
    texts = [f"t{i}" for i in range(20)]
    texts[5] = texts[4]
    index = build_index(vectors, [f"c{i}" for i in range(20)])
    assert self_test(index, vectors, sample=20, texts=texts) == (True, [])
    texts[5] = "different text, same vector"  # e.g. a degenerate embedder
    passed, failures = self_test(index, vectors, sample=20, texts=texts)
    assert not passed and {f.vector_id for f in failures} <= {4, 5}
    shuffled = vectors[::-1].copy()  # rows no longer line up with vector ids
    assert not self_test(index, shuffled, sample=20)[0]


def test_build_index_validates_its_input():
    vectors = l2_normalise(np.random.default_rng(2).standard_normal((4, 8)))
    with pytest.raises(ValueError, match="normalised"):
        build_index(vectors * 3, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="chunk ids"):
        build_index(vectors, ["a", "b", "c"])
    with pytest.raises(ValueError, match="unique"):
        build_index(vectors, ["a", "a", "c", "d"])


def test_retriever_with_cohere_uses_search_query(tmp_path):
    chunks = chunks_frame()
    texts = chunks["text"].to_list()
    with CohereTestServer(dimension=64) as server:
        embedder = CohereEmbedder("test-key", base_url=server.base_url, dimension=64, timeout_s=5)
        vectors = embedder.embed(texts, "search_document")
        retriever = Retriever(build_index(vectors, chunks["chunk_id"].to_list()), chunks, embedder)
        # The fake server's vectors depend on the text only, so a chunk's own text finds it.
        hits = retriever.retrieve_many([texts[3], texts[0]], k=2)
    assert [h[0].chunk_id for h in hits] == [chunks["chunk_id"][3], chunks["chunk_id"][0]]
    assert [(r.input_type, r.texts_count) for r in server.requests] == [("search_document", 8), ("search_query", 2)]
