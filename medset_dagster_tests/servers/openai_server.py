"""A loopback stand-in for an OpenAI-compatible server (vLLM, llama.cpp's server, TGI), good enough
for the real `openai` client.

Speaks non-streaming `/v1/chat/completions`, `/v1/models` and `/health` on 127.0.0.1 (port 0, or a
given one). Answers are the Ollama stand-in's (`expected_content`): JSON objects valid for the
request's `response_format` schema, each required string filled from a hash of the messages, so
both stand-ins answer a request identically. Usage tokens and `finish_reason` are reported.

Slots, as a real server has them: `max_concurrent` requests are served at once (each takes
`latency_s` seconds from the moment it gets a slot); up to `max_queue` more wait for a slot; one
beyond that is refused at once with `overload_status` (503 as vLLM/llama.cpp behind a queue limit,
or 429 as TGI), with a `Retry-After` header when `retry_after_s` is set. `max_queue=None` queues
without limit.

Faults (one per chat request, taken from a FIFO queue, else from a predicate, else from
`fail_after`): "slow" (answer after `slow_s` more), "server_error" (500), "overloaded" (503),
"rate_limited" (429), "malformed_json", "empty_content", "empty_field" (a required string is ""),
"truncated" (cut output, finish_reason "length"), "missing_model" (404), "disconnect" (close the
connection without answering). `kill()` drops the listener and every open connection mid-request,
as a crashed server would; `restart()` serves again on the same port. Every chat request is
recorded (body, start, end, status, fault).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from medset_dagster_tests.servers.ollama_server import RecordedRequest, expected_content

FAULTS = (
    "slow",
    "server_error",
    "overloaded",
    "rate_limited",
    "malformed_json",
    "empty_content",
    "empty_field",
    "truncated",
    "missing_model",
    "disconnect",
)

FaultPredicate = Callable[[int, dict[str, Any]], "str | None"]


@dataclass
class _State:
    models: set[str]
    latency_s: float
    slow_s: float
    max_concurrent: int | None
    max_queue: int | None
    overload_status: int
    retry_after_s: float | None
    api_key: str | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    slot_free: threading.Condition = field(init=False)
    killed: threading.Event = field(default_factory=threading.Event)
    faults: deque[str] = field(default_factory=deque)
    predicate: FaultPredicate | None = None
    fail_after_n: int | None = None
    fail_after_kind: str = "server_error"
    chat_calls: int = 0
    answered: int = 0
    refused: int = 0
    open: int = 0  # received and not yet answered: queued + served
    in_flight: int = 0  # holding a slot
    peak_open: int = 0
    peak_in_flight: int = 0
    served: int = 0  # requests that held a slot
    slot_seconds: float = 0.0  # time slots were held, summed: served * latency plus the server's overhead
    requests: list[RecordedRequest] = field(default_factory=list)
    connections: set[socket.socket] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.slot_free = threading.Condition(self.lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    disable_nagle_algorithm = True  # see ollama_server: Nagle + delayed ACK would add ~40 ms
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.state.lock:
            self.server.state.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.state.lock:
            self.server.state.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        if self.server.state.killed.is_set():
            self.close_connection = True  # a dead server answers nothing
            return
        body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up, or kill() closed the socket
            self.close_connection = True

    def _error(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            value = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            value = {}
        return value if isinstance(value, dict) else {}

    def _authorised(self) -> bool:
        key = self.server.state.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._error(401, "Incorrect API key provided.", "authentication_error")
        return False

    def do_GET(self) -> None:  # noqa: N802
        state = self.server.state
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/v1/models":
            if not self._authorised():
                return
            with state.lock:
                models = sorted(state.models)
            self._send(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "created": 1735689600, "owned_by": "fake-openai", "root": m}
                        for m in models
                    ],
                },
            )
        elif path == "/health":
            self._send(200, {"status": "ok"})
        elif path == "/_stats":  # not OpenAI's: lets a benchmark read counters across processes
            self._send(200, self.server.owner.stats())
        else:
            self._error(404, f"unknown path {self.path}", "not_found")

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        if self.path.rstrip("/") == "/v1/chat/completions":
            if self._authorised():
                self._chat(body)
        else:
            self._error(404, f"unknown path {self.path}", "not_found")

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

    def _overload_headers(self) -> dict[str, str]:
        wait = self.server.state.retry_after_s
        return {"Retry-After": f"{wait:g}"} if wait is not None else {}

    def _chat(self, body: dict[str, Any]) -> None:
        state = self.server.state
        record = RecordedRequest("POST", self.path, body, time.perf_counter())
        with state.lock:
            state.chat_calls += 1
            index = state.chat_calls  # 1-based: "fail after the Nth" fails call N+1 on
            state.requests.append(record)
            room = (
                state.max_concurrent is None
                or state.max_queue is None
                or state.open < state.max_concurrent + state.max_queue
            )
            if room:
                state.open += 1
                state.peak_open = max(state.peak_open, state.open)
            else:
                state.refused += 1
        if not room:
            self._error(state.overload_status, "server busy: every slot and queue place is taken",
                        "overloaded", self._overload_headers())
            record.status, record.finished = state.overload_status, time.perf_counter()
            return
        status = 0
        try:
            if self._take_slot():
                held_from = time.perf_counter()
                try:
                    status = self._answer_chat(body, index, record)
                finally:
                    with state.lock:
                        state.in_flight -= 1
                        state.slot_seconds += time.perf_counter() - held_from
                        state.served += 1
                        state.slot_free.notify()
        finally:
            with state.lock:
                state.open -= 1
                if status == 200:
                    state.answered += 1
            record.finished = time.perf_counter()
            record.status = status

    def _take_slot(self) -> bool:
        """Wait for a free slot; False if the server is killed meanwhile."""
        state = self.server.state
        with state.lock:
            while state.max_concurrent is not None and state.in_flight >= state.max_concurrent:
                if state.killed.is_set():
                    return False
                state.slot_free.wait(timeout=0.05)
            if state.killed.is_set():
                return False
            state.in_flight += 1
            state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
            return True

    def _wait_until(self, deadline: float) -> bool:
        """Sleep until `deadline`; False if the server was killed meanwhile."""
        remaining = deadline - time.perf_counter()
        if remaining > 0:
            return not self.server.state.killed.wait(remaining)
        return not self.server.state.killed.is_set()

    def _answer_chat(self, body: dict[str, Any], index: int, record: RecordedRequest) -> int:
        state = self.server.state
        # The latency is the service time of a slot: the response is built inside it, not after it.
        deadline = time.perf_counter() + state.latency_s
        model = str(body.get("model") or "")
        fault = self._pick_fault(index, body)
        record.fault = fault
        with state.lock:
            known = model in state.models
        if fault == "disconnect":
            if self._wait_until(deadline):
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return 0
        error: tuple[int, str, str, dict[str, str]] | None = None
        if fault == "missing_model" or not known:
            error = (404, f"The model `{model}` does not exist.", "NotFoundError", {})
        elif fault == "server_error":
            error = (500, "injected server error", "server_error", {})
        elif fault == "overloaded":
            error = (503, "server busy", "overloaded", self._overload_headers())
        elif fault == "rate_limited":
            error = (429, "rate limit reached", "rate_limited", self._overload_headers())
        if error is not None:
            status, message, kind, headers = error
            if not self._wait_until(deadline):
                return 0
            self._error(status, message, kind, headers)
            return status
        if fault == "slow":
            deadline += state.slow_s
        messages = body.get("messages") or []
        response_format = body.get("response_format") or {}
        schema: Any = None
        if response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
        elif response_format.get("type") == "json_object":
            schema = response_format.get("schema") or "json"
        value = expected_content(messages, schema)
        if fault == "empty_field" and isinstance(value, dict):
            value = {k: ("" if isinstance(v, str) else v) for k, v in value.items()}
        finish = "stop"
        if fault == "malformed_json":
            content = '{"truncated": "this is not valid JSON'
        elif fault == "empty_content":
            content = ""
        else:
            content = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if fault == "truncated":
            content, finish = content[: max(1, len(content) // 2)], "length"
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = max(1, len(content.split())) if content else 0
        # Encoded before the wait, so the slot is held for the latency and not a moment more.
        payload = json.dumps(
            {
                "id": f"chatcmpl-{index}",
                "object": "chat.completion",
                "created": 1735689600,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": finish,
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        ).encode()
        if not self._wait_until(deadline):
            return 0
        self._send(200, payload)
        return 0 if state.killed.is_set() else 200


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, owner: "FakeOpenAIServer", port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.owner = owner
        self.state = owner._state

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a connection cut by kill() or by the client is not a test failure


class FakeOpenAIServer:
    """Context manager: `with FakeOpenAIServer(["m"], latency_s=0.05, max_concurrent=4) as s: s.url`.

    `url` is the server root; the API lives under `url + "/v1"`. Latencies are seconds.
    """

    def __init__(
        self,
        models: Iterable[str] = ("gemma-3n-e4b",),
        *,
        latency_s: float = 0.0,
        max_concurrent: int | None = None,
        max_queue: int | None = None,
        overload_status: int = 503,
        retry_after_s: float | None = None,
        slow_s: float = 1.0,
        api_key: str | None = None,
        port: int = 0,
    ) -> None:
        if overload_status not in (429, 503):
            raise ValueError(f"overload_status must be 429 or 503, got {overload_status}")
        self._state = _State(
            models=set(models),
            latency_s=latency_s,
            slow_s=slow_s,
            max_concurrent=max_concurrent,
            max_queue=max_queue,
            overload_status=overload_status,
            retry_after_s=retry_after_s,
            api_key=api_key,
        )
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> "FakeOpenAIServer":
        self._state.killed.clear()
        self._server = _Server(self, self._port)
        self._port = self._server.server_address[1]  # a restart reuses it
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting; requests already received are still answered."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def kill(self) -> None:
        """Die as a crashed server does: stop listening and cut every open connection, so requests
        in flight get no answer (their clients see a connection error)."""
        self._state.killed.set()
        self.stop()
        with self._state.lock:
            sockets = list(self._state.connections)
            self._state.slot_free.notify_all()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restart(self) -> "FakeOpenAIServer":
        """Serve again on the same port (after `kill` or `stop`); counters and the log are kept."""
        if self._server is not None:
            self.stop()
        return self.start()

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self._state.killed.set()  # release handlers still waiting, then close
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port (chosen at the first start, kept by restarts)."""
        assert self._port, "server not started"
        return self._port

    @property
    def url(self) -> str:
        """The server root, e.g. `http://127.0.0.1:PORT` (the API is under `/v1`)."""
        return f"http://127.0.0.1:{self.port}"

    # observation -------------------------------------------------------------------------
    @property
    def calls(self) -> int:
        """Chat requests received (every attempt counts, refused ones too)."""
        with self._state.lock:
            return self._state.chat_calls

    @property
    def answered(self) -> int:
        """Chat requests answered 200."""
        with self._state.lock:
            return self._state.answered

    @property
    def refused(self) -> int:
        """Chat requests refused at once because every slot and queue place was taken."""
        with self._state.lock:
            return self._state.refused

    @property
    def peak_in_flight(self) -> int:
        """Most chat requests holding a slot at the same moment (never above `max_concurrent`)."""
        with self._state.lock:
            return self._state.peak_in_flight

    @property
    def peak_open(self) -> int:
        """Most chat requests received and unanswered at the same moment (slots + queue)."""
        with self._state.lock:
            return self._state.peak_open

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every chat request received, in arrival order (body, start, end, status, fault)."""
        with self._state.lock:
            return list(self._state.requests)

    def stats(self) -> dict[str, float]:
        """The counters above in one dict (what `GET /_stats` answers), plus `served` (requests
        that held a slot) and `slot_seconds` (seconds slots were held, summed): their ratio is the
        real service time per request, the latency plus this stand-in's own overhead."""
        with self._state.lock:
            s = self._state
            return {
                "chat_calls": s.chat_calls,
                "answered": s.answered,
                "refused": s.refused,
                "peak_in_flight": s.peak_in_flight,
                "peak_open": s.peak_open,
                "served": s.served,
                "slot_seconds": round(s.slot_seconds, 6),
            }

    def reset_counters(self) -> None:
        """Zero the counters and clear the request log."""
        with self._state.lock:
            s = self._state
            s.chat_calls = s.answered = s.refused = s.peak_in_flight = s.peak_open = s.served = 0
            s.slot_seconds = 0.0
            s.requests.clear()

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
        """Stop serving `name`: absent from /v1/models, 404 on chat."""
        with self._state.lock:
            self._state.models.discard(name)

    def add_model(self, name: str) -> None:
        """Serve `name` (again)."""
        with self._state.lock:
            self._state.models.add(name)


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground (for benchmarks): prints the URL, runs until killed or stdin closes."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per chat request")
    parser.add_argument("--max-concurrent", type=int, default=None, help="chat requests served at once")
    parser.add_argument("--max-queue", type=int, default=None, help="requests waiting for a slot before refusals")
    parser.add_argument("--overload-status", type=int, default=503, choices=(429, 503))
    args = parser.parse_args(argv)
    with FakeOpenAIServer(args.model or ["gemma-3n-e4b"], latency_s=args.latency,
                          max_concurrent=args.max_concurrent, max_queue=args.max_queue,
                          overload_status=args.overload_status) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # the parent closes our stdin (or kills us) to stop


if __name__ == "__main__":
    main()
