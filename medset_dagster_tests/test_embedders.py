"""Embedders and the embedding cache: the real `cohere` SDK against a loopback server, and the local embedder."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from medset_dagster.retrieval.embedders import (
    COHERE_MAX_BATCH,
    CohereEmbedder,
    Embedder,
    EmbeddingBackendError,
    LocalTfidfEmbedder,
)
from medset_dagster.retrieval.embedding_cache import EmbeddingCache, embed_with_cache
from medset_dagster_tests.servers.cohere_server import (
    CohereTestServer,
    Fault,
    fake_embedding,
)

API_KEY = "sk-test-5ecret-d0-not-leak"
TEXTS = [f"Chunk {i}: apply pressure to the wound and keep the casualty warm." for i in range(200)]


@pytest.fixture
def server():
    with CohereTestServer(dimension=1024) as running:
        yield running


@pytest.fixture
def small_server():
    """128-d vectors: the SDK's per-float parsing makes 1024-d responses slow, and reruns need no realism."""
    with CohereTestServer(dimension=128) as running:
        yield running


def make_embedder(server: CohereTestServer, **overrides) -> CohereEmbedder:
    settings = dict(base_url=server.base_url, timeout_s=5, max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05)
    settings.update(overrides)
    return CohereEmbedder(API_KEY, **settings)


def assert_key_hidden(*texts: str) -> None:
    for text in texts:
        assert API_KEY not in text


# ---- Cohere through the real SDK ---------------------------------------------------------------------


def test_batches_of_96_with_document_input_type(server, tmp_path):
    embedder = make_embedder(server)
    assert isinstance(embedder, Embedder)
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        vectors, stats = embed_with_cache(embedder, TEXTS, "search_document", cache)

    assert [r.texts_count for r in server.requests] == [96, 96, 8]
    assert all(r.input_type == "search_document" and r.model == "embed-english-v3.0" for r in server.requests)
    assert all(r.auth_present for r in server.requests)
    assert embedder.calls == 3 and stats.api_calls == 3 and stats.embedded == 200 and stats.cache_hits == 0
    assert vectors.shape == (200, 1024) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[7], fake_embedding("embed-english-v3.0", TEXTS[7], 1024), atol=1e-5)


def test_embed_splits_long_input_and_queries_use_search_query(server):
    embedder = make_embedder(server)
    embedder.embed(TEXTS[:100], "search_query")
    assert [(r.texts_count, r.input_type) for r in server.requests] == [(96, "search_query"), (4, "search_query")]


def test_batch_size_is_capped_at_the_api_limit(server):
    with pytest.raises(ValueError):
        make_embedder(server, max_batch=COHERE_MAX_BATCH + 1)
    embedder = make_embedder(server, max_batch=32)  # the published batch size still works
    embed_with_cache(embedder, TEXTS[:70], "search_document", None, batch_size=500)
    assert [r.texts_count for r in server.requests] == [32, 32, 6]


def test_rate_limit_waits_for_retry_after(server):
    embedder = make_embedder(server)
    server.inject(Fault.rate_limited(retry_after=1))
    started = time.monotonic()
    vectors = embedder.embed(TEXTS[:5], "search_document")
    elapsed = time.monotonic() - started

    assert vectors.shape == (5, 1024)
    assert [r.status for r in server.requests] == [429, 200]
    assert embedder.calls == 2
    assert elapsed >= 0.95  # Retry-After honoured, not the 10 ms backoff
    gap = server.requests[1].at - server.requests[0].at
    assert gap >= 0.95


def test_repeated_server_errors_end_in_clear_error(server, caplog):
    embedder = make_embedder(server)
    server.inject(*[Fault.server_error(503)] * 5)
    with caplog.at_level(logging.DEBUG), pytest.raises(EmbeddingBackendError) as raised:
        embedder.embed(TEXTS[:3], "search_document")

    message = str(raised.value)
    assert "3 attempts" in message and "503" in message and "Cohere embed" in message
    assert raised.value.status == 503 and raised.value.attempts == 3
    assert embedder.calls == 3 and len(server.requests) == 3  # our bound, SDK retries off
    assert_key_hidden(message, repr(raised.value), repr(embedder), caplog.text)


def test_timeout_is_retried(server):
    embedder = make_embedder(server, timeout_s=0.3)
    server.inject(Fault.slow(1.0))
    vectors = embedder.embed(TEXTS[:2], "search_document")
    assert vectors.shape == (2, 1024) and embedder.calls == 2


def test_timeouts_exhaust_attempts(server):
    embedder = make_embedder(server, timeout_s=0.2, max_attempts=2)
    server.inject(Fault.slow(0.6), Fault.slow(0.6))
    with pytest.raises(EmbeddingBackendError, match=r"2 attempts.*timed out"):
        embedder.embed(TEXTS[:2], "search_document")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("not_json", "not JSON"), ("missing_embeddings", "no 'embeddings.float'"), ("wrong_count", "9 embeddings for 10")],
)
def test_malformed_body_is_a_clear_error(server, kind, expected):
    embedder = make_embedder(server)
    server.inject(Fault.malformed_body(kind))
    with pytest.raises(EmbeddingBackendError, match="malformed") as raised:
        embedder.embed(TEXTS[:10], "search_document")
    assert expected in str(raised.value)
    assert embedder.calls == 1  # a contract violation is not retried
    assert_key_hidden(str(raised.value))


def test_rejected_key_names_the_variable_and_hides_the_key():
    with CohereTestServer(api_key="the-right-key") as server:
        embedder = make_embedder(server)
        with pytest.raises(EmbeddingBackendError, match="COHERE_API_KEY") as raised:
            embedder.embed(["x"], "search_query")
    assert raised.value.status == 401 and embedder.calls == 1
    assert_key_hidden(str(raised.value), repr(embedder))


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    embedder = CohereEmbedder(API_KEY, base_url=f"http://127.0.0.1:{port}", max_attempts=2, backoff_initial_s=0.01)
    with pytest.raises(EmbeddingBackendError, match="2 attempts.*connection error"):
        embedder.embed(["x"], "search_document")
    assert embedder.calls == 2


def test_rerun_through_cache_makes_no_calls(small_server, tmp_path):
    server = small_server
    cache_path = tmp_path / "cache.sqlite"
    with EmbeddingCache(cache_path) as cache:
        first, _ = embed_with_cache(make_embedder(server, dimension=128), TEXTS, "search_document", cache)
    with EmbeddingCache(cache_path) as cache:  # a new process would reopen the file like this
        embedder = make_embedder(server, dimension=128)
        second, stats = embed_with_cache(embedder, TEXTS, "search_document", cache)
        # Same texts as queries are a different key: they must be embedded.
        _, query_stats = embed_with_cache(embedder, TEXTS[:5], "search_query", cache)

    assert embedder.calls == 1 and stats.api_calls == 0 and stats.cache_hits == 200 and stats.embedded == 0
    assert query_stats.embedded == 5 and query_stats.cache_hits == 0
    np.testing.assert_array_equal(first, second)


def test_identical_texts_are_embedded_once(server, tmp_path):
    texts = ["burns", "fractures", "burns", "burns", "snake bites"]
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        vectors, stats = embed_with_cache(make_embedder(server), texts, "search_document", cache)
    assert server.requests[0].texts == ["burns", "fractures", "snake bites"]
    assert stats.embedded == 3 and stats.vectors == 5
    np.testing.assert_array_equal(vectors[0], vectors[3])


def test_interrupted_run_resumes_with_the_remaining_texts(small_server, tmp_path):
    server = small_server
    cache_path = tmp_path / "cache.sqlite"
    server.fail_after(1, Fault.server_error(500))
    progress: list[tuple[int, int]] = []
    with EmbeddingCache(cache_path) as cache, pytest.raises(EmbeddingBackendError):
        embed_with_cache(make_embedder(server, max_attempts=2, dimension=128), TEXTS, "search_document", cache, on_batch=lambda *p: progress.append(p))
    assert progress == [(96, 200)]

    server.clear_faults()
    server.reset_requests()
    with EmbeddingCache(cache_path) as cache:
        assert cache.count() == 96  # the first batch was committed before the failure
        embedder = make_embedder(server, dimension=128)
        vectors, stats = embed_with_cache(embedder, TEXTS, "search_document", cache)

    sent = [text for request in server.requests for text in request.texts]
    assert sent == TEXTS[96:]
    assert stats.cache_hits == 96 and stats.embedded == 104 and stats.api_calls == 2 == embedder.calls
    np.testing.assert_allclose(vectors[150], fake_embedding("embed-english-v3.0", TEXTS[150], 128), atol=1e-5)


# ---- local TF-IDF + SVD ----------------------------------------------------------------------------

CORPUS = [
    "Cool a burn under cool running water for twenty minutes and cover it with cling film.",
    "Do not burst blisters on a burn and do not apply ice or butter.",
    "Immobilise a suspected fracture with a splint above and below the injured joint.",
    "An open fracture needs the bleeding controlled and the bone covered with a sterile dressing.",
    "After a snake bite keep the casualty still and apply a pressure immobilisation bandage.",
    "Do not cut or suck a snake bite wound; note the time of the bite and the snake's appearance.",
    "Check the airway, breathing and circulation of an unresponsive casualty.",
    "Give chest compressions at a rate of 100 to 120 per minute during cardiopulmonary resuscitation.",
]


def test_local_embedder_is_deterministic_and_normalised():
    first = LocalTfidfEmbedder(dimension=256).fit(CORPUS)
    second = LocalTfidfEmbedder(dimension=256).fit(CORPUS)
    assert isinstance(first, Embedder)
    assert first.dimension == len(CORPUS) - 1  # capped below the document count
    assert first.fingerprint == second.fingerprint and len(first.fingerprint) == 64
    a, b = first.embed(CORPUS, "search_document"), second.embed(CORPUS, "search_document")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, first.embed(CORPUS, "search_query"))  # input_type does not matter locally
    assert a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert LocalTfidfEmbedder().fit(CORPUS[:-1]).fingerprint != first.fingerprint


def test_local_embedder_save_load_round_trip(tmp_path: Path):
    embedder = LocalTfidfEmbedder().fit(CORPUS)
    path = embedder.save(tmp_path / "index" / "local_embedder.joblib")
    loaded = LocalTfidfEmbedder.load(path)
    assert (loaded.fingerprint, loaded.dimension, loaded.model) == (embedder.fingerprint, embedder.dimension, embedder.model)
    queries = ["how to treat a burn", "what to do after a snake bite"]
    np.testing.assert_array_equal(loaded.embed(queries, "search_query"), embedder.embed(queries, "search_query"))


def test_local_embedder_through_the_cache(tmp_path):
    embedder = LocalTfidfEmbedder().fit(CORPUS)
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        first, stats = embed_with_cache(embedder, CORPUS, "search_document", cache)
        again, rerun = embed_with_cache(embedder, CORPUS, "search_document", cache)
    assert stats.api_calls == 1 and rerun.api_calls == 0 and rerun.cache_hits == len(CORPUS)
    np.testing.assert_array_equal(first, again)


def test_unfitted_local_embedder_refuses_to_embed():
    with pytest.raises(RuntimeError, match="not fitted"):
        LocalTfidfEmbedder().embed(["x"], "search_query")
