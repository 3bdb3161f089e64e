"""A tiny loopback HTTP file server for download tests: counts requests and fails on demand.

    with FileServer({"/doc.pdf": data}) as server:
        server.fail_next(2, status=503)      # then serve normally
        fetch(server.url("/doc.pdf"))
        assert server.request_count == 3

`redirects` maps a path to another (answered with 302, as a publisher sends a login page), and
`content_types` overrides the default `application/pdf` per path.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRUNCATE = "truncate"  # failure action: announce the full length, send half the body, close
SLOW = "slow"  # failure action: wait SLOW_SECONDS before answering normally (client timeouts)
SLOW_SECONDS = 0.5
TRICKLE = "trickle"  # failure action: announce the full length, then send one byte every TRICKLE_SECONDS
TRICKLE_SECONDS = 0.05


class FileServer:
    def __init__(
        self,
        files: dict[str, bytes] | None = None,
        *,
        redirects: dict[str, str] | None = None,
        content_types: dict[str, str] | None = None,
    ) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.redirects: dict[str, str] = dict(redirects or {})
        self.content_types: dict[str, str] = dict(content_types or {})
        self.requests: list[str] = []
        self._failures: deque[int | str] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    # -- control ------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def fail_next(self, times: int, status: int | str = 503) -> None:
        """The next `times` requests fail with HTTP `status`, or TRUNCATE the body, are SLOW, or TRICKLE."""
        with self._lock:
            self._failures.extend([status] * times)

    def start(self) -> FileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving ------------------------------------------------------------------------------------

    def _next_action(self, path: str) -> int | str | None:
        with self._lock:
            self.requests.append(path)
            return self._failures.popleft() if self._failures else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (stdlib name)
                try:
                    self._answer(server._next_action(self.path))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (timeout tests): expected

            def _answer(self, action: int | str | None) -> None:
                body = server.files.get(self.path)
                if action == SLOW:
                    time.sleep(SLOW_SECONDS)
                if isinstance(action, int):
                    self._send(action, b"injected failure")
                elif self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif body is None:
                    self._send(404, b"not found")
                elif action == TRUNCATE:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                elif action == TRICKLE:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/pdf")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.close_connection = True
                    for offset in range(len(body)):  # until the client hangs up (BrokenPipeError)
                        self.wfile.write(body[offset : offset + 1])
                        self.wfile.flush()
                        time.sleep(TRICKLE_SECONDS)
                else:
                    self._send(200, body, server.content_types.get(self.path, "application/pdf"))

            def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        return Handler
