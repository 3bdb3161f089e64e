"""A loopback stand-in for Cohere's `POST /v2/embed`, good enough for the real `cohere` SDK.

Vectors are deterministic (seeded by model and text), so equal texts get equal vectors across calls and
runs. Every request is recorded; faults (429 with Retry-After, 5xx, slow answers, malformed bodies) are
served from a queue, or from a given request on, to exercise the client's retries and errors.

For rehearsals and benchmarks the server can behave like the real API under load: `latency_s` is the
service time of one embed request (the answer leaves that long after the request took its slot) and
`max_concurrent` caps the requests served at once (extra ones wait for a slot, as behind a rate
limiter); `calls` and `peak_in_flight` report what it saw.

    with CohereTestServer() as server:
        embedder = CohereEmbedder("test-key", base_url=server.base_url)
        server.inject(Fault.rate_limited(retry_after=1))

    with CohereTestServer(latency_s=0.3, max_concurrent=2) as server: ...
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import numpy as np

EMBED_PATH = "/v2/embed"  # what cohere 7.x ClientV2.embed calls: base_url + "/v2/embed"

MalformedKind = Literal["not_json", "missing_embeddings", "wrong_count"]
# `random`: every text its own random direction (unrelated texts are orthogonal); `lexical`: texts that
# share content words point alike, as real embeddings of a question and a passage on its topic do.
VectorKind = Literal["random", "lexical"]


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour. `status=None` answers normally (after `delay_s`)."""

    status: int | None = None
    retry_after: float | None = None
    delay_s: float = 0.0
    malformed: MalformedKind | None = None

    @classmethod
    def rate_limited(cls, retry_after: float = 1) -> Fault:
        return cls(status=429, retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls(status=status)

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        return cls(delay_s=delay_s)

    @classmethod
    def malformed_body(cls, kind: MalformedKind = "not_json") -> Fault:
        return cls(malformed=kind)


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    model: str | None
    input_type: str | None
    texts: list[str]
    auth_present: bool
    status: int  # what the server answered
    at: float = field(default_factory=time.monotonic)

    @property
    def texts_count(self) -> int:
        return len(self.texts)


def fake_embedding(model: str, text: str, dimension: int) -> list[float]:
    """Deterministic unit vector for (model, text)."""
    seed = int.from_bytes(hashlib.sha256(f"{model}\0{text}".encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimension)
    vector /= np.linalg.norm(vector)
    return [round(float(x), 6) for x in vector]


_STOPWORDS = frozenset(
    "the and for with that this from are was were has have had not but any all can may its into than then them they "
    "their there what when where which who whom how why you your our out off one two per some such also been being "
    "should would could must will shall does did done very more most less only over under above below after before".split()
)
# Weight of the direction every text shares (real embedding spaces are anisotropic: unrelated English
# texts score about 0.2 with Cohere v3), relative to the text's own unit bag of words.
_COMMON_WEIGHT = 0.5


def content_words(text: str) -> list[str]:
    """Lower-case words of three letters or more, stop words left out, a plural `s` stripped."""
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) >= 3 and w not in _STOPWORDS]
    return [w[:-1] if len(w) > 4 and w.endswith("s") and not w.endswith("ss") else w for w in words]


@lru_cache(maxsize=8)
def _common_direction(model: str, dimension: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(f"common\0{model}".encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimension)
    return vector / np.linalg.norm(vector)


def lexical_embedding(model: str, text: str, dimension: int) -> list[float]:
    """Deterministic unit vector for (model, text) that keeps lexical overlap: the text's distinct
    content words hashed into `dimension` signed buckets (a unit bag of words), plus a direction
    shared by every text. Texts with no word in common score 0.2; a question sharing a few content
    words with a passage scores 0.3-0.5; a text with itself 1."""
    words = sorted(set(content_words(text)))
    bag = np.zeros(dimension)
    for word in words:
        digest = hashlib.sha256(f"{model}\0{word}".encode()).digest()
        bag[int.from_bytes(digest[:4], "little") % dimension] += 1.0 if digest[4] & 1 else -1.0
    norm = np.linalg.norm(bag)
    if norm == 0:  # no content word: fall back to the text's own direction
        bag, norm = np.asarray(fake_embedding(model, text, dimension)), 1.0
    vector = bag / norm + _COMMON_WEIGHT * _common_direction(model, dimension)
    vector /= np.linalg.norm(vector)
    return [round(float(x), 6) for x in vector]


class CohereTestServer:
    """ThreadingHTTPServer on 127.0.0.1:0 in a daemon thread; use as a context manager.

    `api_key`, when given, is required as `Authorization: Bearer <key>` (else 401), to test key errors.
    `vectors`: `random` (default; `fake_embedding`) or `lexical` (`lexical_embedding`: retrieval over
    the answers finds passages that share words with the query, as with the real model).
    """

    def __init__(
        self,
        dimension: int = 1024,
        *,
        api_key: str | None = None,
        latency_s: float = 0.0,
        max_concurrent: int | None = None,
        vectors: VectorKind = "random",
    ):
        if vectors not in ("random", "lexical"):
            raise ValueError(f"vectors must be 'random' or 'lexical', got {vectors!r}")
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.dimension = dimension
        self.api_key = api_key
        self.latency_s = latency_s
        self.max_concurrent = max_concurrent
        self.embedding = lexical_embedding if vectors == "lexical" else fake_embedding
        self._slots = threading.BoundedSemaphore(max_concurrent) if max_concurrent else None
        self._in_flight = 0
        self._peak_in_flight = 0
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: deque[Fault] = deque()
        self._fail_after: tuple[int, Fault] | None = None
        self._successes = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> CohereTestServer:
        handler = type("_Handler", (_EmbedHandler,), {"owner": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a handler still sleeping in a slow fault must not block shutdown
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="cohere-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> CohereTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ---- faults and records ------------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Serve these faults to the next requests, one each, in order."""
        with self._lock:
            self._faults.extend(faults)

    def fail_after(self, successes: int, fault: Fault) -> None:
        """Once `successes` requests have succeeded, answer every later request with `fault`."""
        with self._lock:
            self._fail_after = (successes, fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._fail_after = None

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._peak_in_flight = 0

    @property
    def calls(self) -> int:
        """Embed requests received (every attempt counts, whatever the answer)."""
        with self._lock:
            return sum(1 for request in self._requests if request.path.split("?")[0] == EMBED_PATH)

    @property
    def texts_embedded(self) -> int:
        """Texts in the requests answered with vectors."""
        with self._lock:
            return sum(request.texts_count for request in self._requests if request.status == 200)

    @property
    def peak_in_flight(self) -> int:
        """Most embed requests being served at the same moment."""
        with self._lock:
            return self._peak_in_flight

    def _take_slot(self) -> float:
        """Wait for a slot (if capped); return when the answer may leave (`latency_s` from now)."""
        if self._slots is not None:
            self._slots.acquire()
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        return time.perf_counter() + self.latency_s

    def _free_slot(self, deadline: float) -> None:
        """Sleep out the rest of the service time, then free the slot."""
        remaining = deadline - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)
        with self._lock:
            self._in_flight -= 1
        if self._slots is not None:
            self._slots.release()

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            if self._fail_after is not None and self._successes >= self._fail_after[0]:
                return self._fail_after[1]
            return None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            if request.status == 200:
                self._successes += 1


class _EmbedHandler(BaseHTTPRequestHandler):
    owner: CohereTestServer
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API behind httpx

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output clean

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        owner = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {}
        texts = list(body.get("texts") or [])
        model = body.get("model")
        authorization = self.headers.get("Authorization") or ""
        auth_present = authorization.startswith("Bearer ") and len(authorization) > len("Bearer ")

        def record(status: int) -> None:
            owner._record(RecordedRequest(self.path, model, body.get("input_type"), texts, auth_present, status))

        if self.path.split("?")[0] != EMBED_PATH:
            record(404)
            return self._send_json(404, {"message": f"no route for {self.path}"})
        if owner.api_key is not None and authorization != f"Bearer {owner.api_key}":
            record(401)
            return self._send_json(401, {"message": "invalid api token"})

        fault = owner._next_fault()
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)  # the client has usually given up by now
        if fault is not None and fault.status is not None:
            record(fault.status)
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            return self._send_json(fault.status, {"message": f"injected HTTP {fault.status}"}, headers)
        if not texts or not model or body.get("input_type") is None:
            record(400)
            return self._send_json(400, {"message": "texts, model and input_type are required"})

        deadline = owner._take_slot()
        try:
            vectors = [owner.embedding(model, text, owner.dimension) for text in texts]
        finally:
            owner._free_slot(deadline)
        payload: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "response_type": "embeddings_by_type",
            "embeddings": {"float": vectors},
            "texts": texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": sum(len(t.split()) for t in texts)}},
        }
        malformed = fault.malformed if fault is not None else None
        record(200)
        if malformed == "not_json":
            return self._send_raw(200, b"<html><body>502 Bad Gateway</body></html>", "application/json")
        if malformed == "missing_embeddings":
            del payload["embeddings"]
        elif malformed == "wrong_count":
            payload["embeddings"]["float"] = vectors[:-1]
        self._send_json(200, payload)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left
