"""A loopback stand-in for the Ollama HTTP API, good enough for the real `ollama` client.

Speaks non-streaming `/api/chat`, `/api/tags`, `/api/show`, `/api/version` on 127.0.0.1 (port 0).
Chat answers are JSON objects satisfying the request's `format` schema, each required string filled
from a hash of the messages: reproducible across runs, distinct across prompts. With
`honour_seed=True` a request's `options.seed` (when not 0) joins the hash, as a model sampling with
another seed answers the same prompt differently (the RAG scenarios seed each draw). A prompt that hands
over its reference ("Correct answer: ...", "The diagnosis is: ...") gets an answer naming it, as a
model following the prompt would (output validation drops answers that contradict the reference). Knobs for tests and
benchmarks: a fixed latency per request, a cap on requests served at once (extra ones wait), a call
counter, a record of requests, and injected faults.

Faults (one per chat request, taken from a FIFO queue, else from a predicate, else from
`fail_after`): "slow" (answer after `slow_s`, past the client's timeout), "server_error" (500),
"overloaded" (503, as Ollama answers when its queue is full), "malformed_json", "empty_content",
"empty_field" (a required string is ""), "missing_model" (404).
A model absent from `models` always gets a 404 on chat and show, and is absent from tags.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("slow", "server_error", "overloaded", "malformed_json", "empty_content", "empty_field", "missing_model")

FaultPredicate = Callable[[int, dict[str, Any]], "str | None"]


def model_digest(name: str) -> str:
    """A stable fake digest per model name (what `/api/tags` reports)."""
    return hashlib.sha256(f"fake-ollama:{name}".encode()).hexdigest()


def _normalise(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


_WORDS = (
    "patient bleeding pressure wound dressing fracture splint burn water cool airway breathing shock "
    "fever infection dose pain swelling clinic bandage pulse warmth rest fluids antibiotic"
).split()


def _prose(seed: str, name: str) -> str:
    """A deterministic sentence of 7-12 words (questions end with '?'), unique to `seed`."""
    count = 7 + int(seed[:2], 16) % 6
    words = [_WORDS[int(seed[2 + 2 * i : 4 + 2 * i], 16) % len(_WORDS)] for i in range(count - 1)]
    sentence = " ".join([words[0].capitalize(), *words[1:], f"case{seed[:8]}"])
    return sentence + ("?" if name == "question" else ".")


def _fill(schema: Any, seed: str, name: str = "value") -> Any:
    """A value for `schema`, deterministic in `seed`."""
    if not isinstance(schema, dict):
        return f"{name} {seed[:12]}"
    kind = schema.get("type", "string")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {p: _fill(props.get(p, {}), hashlib.sha256(f"{seed}:{p}".encode()).hexdigest(), p) for p in required}
    if kind == "integer":
        return int(seed[:6], 16) % 1000
    if kind == "number":
        return (int(seed[:6], 16) % 1000) / 10
    if kind == "boolean":
        return int(seed[0], 16) % 2 == 0
    if kind == "array":
        return [_fill(schema.get("items", {}), seed, name)]
    return _prose(seed, name)


# Prompts that hand the model its reference (MedQA's correct option, the diagnosis label): a model
# that follows the prompt names it, as validation requires.
_REFERENCE_LINES = (
    (re.compile(r"^Correct answer: (.+)$", re.M), "{} is correct. "),
    (re.compile(r"^The diagnosis is: (.+)$", re.M), "Based on these symptoms, the most likely diagnosis is {}. "),
)


def _follow_reference(value: Any, messages: list[dict[str, Any]]) -> Any:
    """A one-string-field answer prefixed with the reference the prompt gives, if it gives one."""
    prompt = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
    if not isinstance(value, dict) or len(value) != 1:
        return value
    (name, text), = value.items()
    for pattern, sentence in _REFERENCE_LINES:
        found = pattern.search(prompt)
        if found and isinstance(text, str):
            return {name: sentence.format(found.group(1).strip()) + text}
    return value


def expected_content(messages: list[dict[str, Any]], schema: Any, seed: int | None = None) -> dict[str, Any] | str:
    """What the stand-in answers for these messages (tests use it to check outputs); a sampling
    `seed` other than 0 or None gives another answer to the same messages."""
    hashed: Any = messages if not seed else {"messages": messages, "seed": seed}
    digest = hashlib.sha256(json.dumps(hashed, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    if isinstance(schema, dict):
        return _follow_reference(_fill(schema, digest), messages)
    return {"text": f"text {digest[:12]}"} if schema == "json" else f"text {digest[:12]}"


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: dict[str, Any]
    started: float
    finished: float = 0.0
    status: int = 0
    fault: str | None = None


@dataclass
class _State:
    models: set[str]
    latency_s: float
    slow_s: float
    cap: threading.BoundedSemaphore | None
    honour_seed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: deque[str] = field(default_factory=deque)
    predicate: FaultPredicate | None = None
    fail_after_n: int | None = None
    fail_after_kind: str = "server_error"
    chat_calls: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses connections, as with real Ollama
    # Headers and body go out in separate writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms), which would swamp the latency we mean to simulate.
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout): nothing to answer.
            self.close_connection = True

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            value = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            value = {}
        return value if isinstance(value, dict) else {}

    def do_GET(self) -> None:  # noqa: N802
        state = self.server.state
        if self.path == "/api/tags":
            with state.lock:
                models = sorted(state.models)
            self._send(
                200,
                {
                    "models": [
                        {
                            "name": m,
                            "model": m,
                            "modified_at": "2025-01-01T00:00:00Z",
                            "size": 1_000_000,
                            "digest": model_digest(m),
                            "details": {"format": "gguf", "family": "fake", "parameter_size": "1B"},
                        }
                        for m in models
                    ]
                },
            )
        elif self.path == "/_stats":  # not Ollama's: lets a benchmark read counters across processes
            with state.lock:
                self._send(200, {"chat_calls": state.chat_calls, "peak_in_flight": state.peak_in_flight})
        elif self.path == "/api/version":
            self._send(200, {"version": "0.12.0"})
        elif self.path in ("/", ""):
            self._send(200, b"Ollama is running")
        else:
            self._send(404, {"error": f"unknown path {self.path}"})

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(200, b"")

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        if self.path == "/api/chat":
            self._chat(body)
        elif self.path == "/api/show":
            self._show(body)
        else:
            self._send(404, {"error": f"unknown path {self.path}"})

    def _has_model(self, name: str) -> bool:
        with self.server.state.lock:
            return _normalise(name) in self.server.state.models

    def _show(self, body: dict[str, Any]) -> None:
        name = str(body.get("model") or body.get("name") or "")
        if not self._has_model(name):
            self._send(404, {"error": f"model '{name}' not found"})
            return
        self._send(
            200,
            {
                "modelfile": f"FROM {name}",
                "parameters": "temperature 1",
                "template": "{{ .Prompt }}",
                "details": {"format": "gguf", "family": "fake", "parameter_size": "1B"},
                "model_info": {"general.architecture": "fake"},
                "capabilities": ["completion"],
            },
        )

    def _pick_fault(self, index: int, body: dict[str, Any]) -> str | None:
        state = self.server.state
        with state.lock:
            if state.faults:
                return state.faults.popleft()
            predicate = state.predicate
            fail_after_n, kind = state.fail_after_n, state.fail_after_kind
        if predicate is not None:
            fault = predicate(index, body)
            if fault:
                return fault
        if fail_after_n is not None and index > fail_after_n:
            return kind
        return None

    def _chat(self, body: dict[str, Any]) -> None:
        state = self.server.state
        record = RecordedRequest("POST", self.path, body, time.perf_counter())
        with state.lock:
            state.chat_calls += 1
            index = state.chat_calls  # 1-based: "fail after the Nth" fails call N+1 on
            state.requests.append(record)
        if state.cap is not None:
            state.cap.acquire()
        try:
            with state.lock:
                state.in_flight += 1
                state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
            status = self._answer_chat(body, index, record)
        finally:
            with state.lock:
                state.in_flight -= 1
            if state.cap is not None:
                state.cap.release()
        record.finished = time.perf_counter()
        record.status = status

    @staticmethod
    def _wait_until(deadline: float) -> None:
        remaining = deadline - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)

    def _answer_chat(self, body: dict[str, Any], index: int, record: RecordedRequest) -> int:
        state = self.server.state
        # The latency is the service time of a slot: the response is built inside it, not after it.
        deadline = time.perf_counter() + state.latency_s
        model = str(body.get("model") or "")
        fault = self._pick_fault(index, body)
        record.fault = fault
        if fault == "missing_model" or not self._has_model(model):
            self._wait_until(deadline)
            self._send(404, {"error": f"model '{model}' not found"})
            return 404
        if fault == "server_error":
            self._wait_until(deadline)
            self._send(500, {"error": "injected server error"})
            return 500
        if fault == "overloaded":
            self._send(503, {"error": "server busy, please try again.  maximum pending requests exceeded"})
            return 503
        if fault == "slow":
            deadline += state.slow_s
        messages = body.get("messages") or []
        schema = body.get("format")
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        value = expected_content(messages, schema, options.get("seed") if state.honour_seed else None)
        if fault == "empty_field" and isinstance(value, dict):
            value = {k: ("" if isinstance(v, str) else v) for k, v in value.items()}
        if fault == "malformed_json":
            content = '{"truncated": "this is not valid JSON'
        elif fault == "empty_content":
            content = ""
        else:
            content = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        self._wait_until(deadline)
        self._send(
            200,
            {
                "model": model,
                "created_at": "2025-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": content},
                "done": True,
                "done_reason": "stop",
                "total_duration": int(state.latency_s * 1e9),
                "load_duration": 0,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": 0,
                "eval_count": max(1, len(content.split())) if content else 0,
                "eval_duration": int(state.latency_s * 1e9),
            },
        )
        return 200


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class FakeOllamaServer:
    """Context manager: `with FakeOllamaServer(latency_s=0.05, max_concurrent=4) as server: server.url`.

    `honour_seed`: answer by messages and sampling seed (see the module docstring), not messages alone.
    """

    def __init__(
        self,
        models: Iterable[str] = ("gemma3n:e4b",),
        *,
        latency_s: float = 0.0,
        max_concurrent: int | None = None,
        slow_s: float = 1.0,
        honour_seed: bool = False,
    ) -> None:
        self._state = _State(
            models={_normalise(m) for m in models},
            latency_s=latency_s,
            slow_s=slow_s,
            cap=threading.BoundedSemaphore(max_concurrent) if max_concurrent else None,
            honour_seed=honour_seed,
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> "FakeOllamaServer":
        self._server = _Server(self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-ollama", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeOllamaServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # observation -------------------------------------------------------------------------
    @property
    def calls(self) -> int:
        """Chat requests received (every attempt counts)."""
        with self._state.lock:
            return self._state.chat_calls

    @property
    def peak_in_flight(self) -> int:
        """Most chat requests being served at the same moment."""
        with self._state.lock:
            return self._state.peak_in_flight

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def reset_counters(self) -> None:
        with self._state.lock:
            self._state.chat_calls = 0
            self._state.peak_in_flight = 0
            self._state.requests.clear()

    # faults ------------------------------------------------------------------------------
    def queue_faults(self, *faults: str) -> None:
        """The next chat requests get these faults, one each, in order."""
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
        with self._state.lock:
            self._state.faults.extend(faults)

    def set_fault_predicate(self, predicate: FaultPredicate | None) -> None:
        """`predicate(call_index, body)` returns a fault name or None for each chat request."""
        with self._state.lock:
            self._state.predicate = predicate

    def fail_after(self, n: int | None, kind: str = "server_error") -> None:
        """Every chat request after the `n`th (counting from now-or-reset) gets `kind`; None heals."""
        with self._state.lock:
            self._state.fail_after_n = None if n is None else self._state.chat_calls + n
            self._state.fail_after_kind = kind

    def heal(self) -> None:
        """Drop every injected fault."""
        with self._state.lock:
            self._state.faults.clear()
            self._state.predicate = None
            self._state.fail_after_n = None

    def remove_model(self, name: str) -> None:
        with self._state.lock:
            self._state.models.discard(_normalise(name))

    def add_model(self, name: str) -> None:
        with self._state.lock:
            self._state.models.add(_normalise(name))


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground (for benchmarks): prints the URL, runs until killed or stdin closes."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per chat request")
    parser.add_argument("--max-concurrent", type=int, default=None, help="chat requests served at once")
    args = parser.parse_args(argv)
    with FakeOllamaServer(args.model or ["gemma3n:e4b"], latency_s=args.latency,
                          max_concurrent=args.max_concurrent) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # the parent closes our stdin (or kills us) to stop


if __name__ == "__main__":
    main()
