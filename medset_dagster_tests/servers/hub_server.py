"""A loopback stand-in for the Hugging Face Hub, for tests of the real `huggingface_hub` and `datasets` clients.

Only the endpoints our code, `hf_hub_download` and `datasets.load_dataset` call are served, with the
response shapes and headers the installed clients parse. Repositories live in memory as a list of
commits, each commit a full snapshot of `{path: bytes}`, so a commit is atomic by construction: it either
becomes the new head or nothing changes. Every request is recorded and faults can be injected per route.

Two listeners run on 127.0.0.1: the Hub itself (`endpoint`) and a CDN-like object store on another port
(`cdn_endpoint`), a different origin as the real CDN is, so the client neither forwards its token there
nor follows the redirect while reading a file's metadata.

With `lfs=True` files are stored the way the Hub stores them: Parquet, images, any binary file and any
file of 10 MiB or more live in LFS (`preupload` answers "lfs", the client uploads through the LFS batch
API to a signed URL on the CDN, then commits an `lfsFile` pointer); tree and paths-info list them with
their `lfs` block, and resolve answers them with a 302 to the CDN carrying `X-Linked-Etag` (the sha256)
and `X-Linked-Size`. huggingface_hub 2.4 uploads LFS content through Xet whenever `hf_xet` is installed,
whatever the server says: wrap uploads in `plain_lfs_uploads()` (or set HF_HUB_DISABLE_XET=1 before
huggingface_hub is imported). The Xet token routes answer 501 naming that fix.

Usage:

    with HubServer(token="hf_test", lfs=True) as hub:
        sha = hub.add_repo("owner/data", {"data/train.parquet": parquet_bytes}, sha="46d5...")
        # datasets.load_dataset("owner/data", revision=sha) in a process with HF_ENDPOINT=hub.endpoint
        api = HfApi(endpoint=hub.endpoint, token="hf_test")
        with plain_lfs_uploads():
            api.upload_file(...)
        hub.fail_next("commit", status=500)
        hub.fail_next("resolve", hang=True)   # accepted, never answered (client timeouts)
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
DEFAULT_NAMESPACE = "tester"
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"
# The Hub refuses regular (non-LFS) files of this size or more, and binary ones of any size.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
LFS_SPEC = "https://git-lfs.github.com/spec/v1"


def git_blob_sha1(content: bytes) -> str:
    """The git OID of a regular file: what the Hub returns as `oid`/ETag and the client compares."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def lfs_pointer(content: bytes) -> bytes:
    """The git-LFS pointer file that stands in git for `content` (its git OID is the tree's `oid`)."""
    return f"version {LFS_SPEC}\noid sha256:{sha256_hex(content)}\nsize {len(content)}\n".encode()


def is_binary(sample: bytes) -> bool:
    """The Hub's test on a file's first 512 bytes (all preupload sees): a NUL byte means binary, so LFS."""
    return b"\0" in sample[:512]


def lfs_patterns(gitattributes: bytes | None) -> list[str]:
    """The path patterns a `.gitattributes` file routes to LFS (`<pattern> filter=lfs ...` lines)."""
    patterns = []
    for line in (gitattributes or b"").decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def matches_any(path: str, patterns: list[str]) -> bool:
    """git-attribute matching, simplified: a pattern without "/" matches the file name at any depth."""
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path if "/" in pattern else name, pattern.lstrip("/")) for pattern in patterns)


@contextlib.contextmanager
def plain_lfs_uploads() -> Iterator[None]:
    """Make huggingface_hub upload LFS files through the LFS batch API instead of Xet, inside the block.

    huggingface_hub 2.4 picks Xet on the client side alone (`is_xet_available()`: `hf_xet` installed and
    `constants.HF_HUB_DISABLE_XET` false, read at each upload); nothing the server answers changes that.
    Outside a test process the equivalent is HF_HUB_DISABLE_XET=1 in the environment before import.
    """
    from huggingface_hub import constants

    previous = constants.HF_HUB_DISABLE_XET
    constants.HF_HUB_DISABLE_XET = True
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET = previous


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    description: str
    files: dict[str, bytes]
    added: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    date: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"))
    # Paths stored as LFS pointers (their bytes live in the repo's LFS store as well).
    lfs: frozenset[str] = frozenset()

    def entry(self, path: str) -> dict[str, Any]:
        """The tree / paths-info entry of a file: git OID and size, plus the `lfs` block for LFS files."""
        data = self.files[path]
        if path not in self.lfs:
            return {"type": "file", "path": path, "oid": git_blob_sha1(data), "size": len(data)}
        pointer = lfs_pointer(data)
        return {
            "type": "file",
            "path": path,
            "oid": git_blob_sha1(pointer),
            "size": len(data),
            "lfs": {"oid": sha256_hex(data), "size": len(data), "pointerSize": len(pointer)},
        }


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # The repo's LFS object store: sha256 hex -> bytes, filled by uploads and by LFS files pushed in tests.
    lfs_objects: dict[str, bytes] = field(default_factory=dict)

    def head(self, branch: str = "main") -> Commit:
        return self.commits[self.branches[branch]]

    def resolve(self, revision: str) -> Commit | None:
        sha = self.branches.get(revision) or self.tags.get(revision)
        if sha is None and re.fullmatch(r"[0-9a-f]{40}", revision):
            sha = revision
        return self.commits.get(sha) if sha else None


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    route: str
    status: int
    # Whether an Authorization header was sent; the value itself is never stored.
    authenticated: bool
    body: bytes
    # Request headers other than Authorization (for Range, Content-Type, User-Agent checks).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    route: str
    status: int | None
    times: int
    message: str
    disconnect: bool
    delay: float
    after: bool
    hang: bool = False


class _Reply:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, body: Any = b"", headers: dict[str, str] | None = None):
        self.status = status
        self.headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            self.headers.setdefault("Content-Type", "application/json")
        self.body = body


def _error(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> _Reply:
    extra = dict(headers or {})
    if code:
        extra["X-Error-Code"] = code
    extra["X-Error-Message"] = message
    return _Reply(status, {"error": message}, extra)


class HubServer:
    """In-memory Hub on 127.0.0.1: use as a context manager, point `HfApi(endpoint=...)` at `.endpoint`.

    `token`: when set, the only accepted token; any other token gets 401 on every route, and writes need it.
    `gitattributes`: new repos start with a `.gitattributes` routing `*.parquet` and `*.png` to LFS.
    `lfs`: store files as the Hub does (see the module docstring); False (the default) keeps every file a
    regular git blob, with `preupload` always answering "regular".
    `tree_page_size`: entries per page of the tree listing; further pages are linked (`Link: rel="next"`).
    """

    def __init__(self, token: str | None = None, *, gitattributes: bool = True, lfs: bool = False, tree_page_size: int = 1000):
        self.token = token
        self.gitattributes = gitattributes
        self.lfs = lfs
        self.tree_page_size = tree_page_size
        self.requests: list[RecordedRequest] = []
        self._repos: dict[tuple[str, str], Repo] = {}
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._counter = 0
        # Signs the CDN URLs handed out (like a pre-signed S3 URL): an unsigned or altered URL gets 403.
        self._secret = os.urandom(16)
        # Set on stop() (or release_hung_requests()): requests held by a `hang` fault are let go, unanswered.
        self._release = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._cdn: ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> HubServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._release.clear()
        servers = []
        for name, base in (("hub", _Handler), ("cdn", _CdnHandler)):
            handler = type(f"_Bound{base.__name__}", (base,), {"hub": self})
            httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            httpd.daemon_threads = True
            thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{name}-server", daemon=True)
            thread.start()
            servers.append(httpd)
        self._httpd, self._cdn = servers

    def stop(self) -> None:
        self._release.set()
        for httpd in (self._httpd, self._cdn):
            if httpd is not None:
                httpd.shutdown()
                httpd.server_close()
        self._httpd = self._cdn = None

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn_endpoint(self) -> str:
        """Base URL of the CDN-like listener (LFS downloads and uploads); another origin than `endpoint`."""
        assert self._cdn is not None, "server not started"
        host, port = self._cdn.server_address[:2]
        return f"http://{host}:{port}"

    # -- test controls ---------------------------------------------------------------------------

    def fail_next(
        self,
        route: str,
        status: int | None = 500,
        *,
        times: int = 1,
        message: str = "injected failure",
        disconnect: bool = False,
        delay: float = 0.0,
        after: bool = False,
        hang: bool = False,
    ) -> None:
        """Make the next `times` requests to `route` fail.

        `route` is a name from `ROUTES` or "*". `disconnect` drops the connection without an answer;
        `delay` sleeps first (for client timeouts); `after` runs the handler (state changes happen) and
        then answers with the failure, like a response lost on the way back; `hang` reads the request,
        records it (status 0) and never answers: the connection stays open until `release_hung_requests()`
        or `stop()`, then closes with no reply.
        """
        with self._lock:
            self._faults.append(Fault(route, status, times, message, disconnect, delay, after, hang))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def release_hung_requests(self) -> None:
        """Let go of every request held by a `hang` fault (closed unanswered); later hangs hold again."""
        self._release.set()
        with self._lock:
            self._release = threading.Event()

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes] | None = None,
        *,
        repo_type: str = "dataset",
        private: bool = False,
        message: str = "initial commit",
        sha: str | None = None,
    ) -> str:
        """Create a repo (optionally with files) as if someone else had; return its head sha.

        `sha`: the 40-hex commit id to give the commit holding `files` (e.g. a registry's pinned revision);
        by default a fresh one. Raises ValueError if the repo exists or `sha` is malformed.
        """
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                raise ValueError(f"{repo_type} repo {repo_id} already exists")
            repo = self._create(repo_id, repo_type, private)
            if files:
                return self._commit_as_outsider(repo, dict(files), (), message, sha)
            if sha is not None:
                self.set_sha(repo_id, sha, repo_type=repo_type)
            return repo.branches["main"]

    def push(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        repo_type: str = "dataset",
        deleted: tuple[str, ...] = (),
        message: str = "update",
        sha: str | None = None,
    ) -> str:
        """Commit on `main` as an outside party (upstream moving on); return the new sha.

        With `lfs=True`, each file is stored as LFS or regular by the same rule `preupload` applies.
        `sha` as in `add_repo`; raises ValueError if that commit id is already in the repo.
        """
        with self._lock:
            return self._commit_as_outsider(self.repo(repo_id, repo_type), dict(files), tuple(deleted), message, sha)

    def set_sha(self, repo_id: str, sha: str, *, repo_type: str = "dataset") -> None:
        """Force `main` to a given sha (same files), for tests that only care about the revision."""
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            head = repo.head()
            repo.commits[sha] = Commit(sha, head.sha, "set_sha", "", dict(head.files), lfs=head.lfs)
            repo.branches["main"] = sha

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        with self._lock:
            return self._repos[(repo_type, repo_id)]

    def has_repo(self, repo_id: str, repo_type: str = "dataset") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def files(self, repo_id: str, revision: str = "main", *, repo_type: str = "dataset") -> dict[str, bytes]:
        with self._lock:
            commit = self.repo(repo_id, repo_type).resolve(revision)
            assert commit is not None, f"unknown revision {revision}"
            return dict(commit.files)

    def lfs_files(self, repo_id: str, revision: str = "main", *, repo_type: str = "dataset") -> set[str]:
        """Paths stored as LFS pointers at `revision`."""
        with self._lock:
            commit = self.repo(repo_id, repo_type).resolve(revision)
            assert commit is not None, f"unknown revision {revision}"
            return set(commit.lfs)

    def head_sha(self, repo_id: str, *, repo_type: str = "dataset") -> str:
        with self._lock:
            return self.repo(repo_id, repo_type).branches["main"]

    def history(self, repo_id: str, *, repo_type: str = "dataset") -> list[Commit]:
        """Commits on `main`, newest first."""
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            out, sha = [], repo.branches["main"]
            while sha is not None:
                commit = repo.commits[sha]
                out.append(commit)
                sha = commit.parent
            return out

    def requests_to(self, route: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.route == route]

    def upload_mode(self, repo_id: str, path: str, content: bytes, *, repo_type: str = "dataset") -> str:
        """"lfs" or "regular": what `preupload` answers for `content` at `path` on the repo's `main`."""
        with self._lock:
            return self._upload_mode(self.repo(repo_id, repo_type).head(), path, len(content), content[:512])

    # -- store internals ---------------------------------------------------------------------------

    def _new_sha(self, *parts: str) -> str:
        self._counter += 1
        return hashlib.sha1("\0".join((*parts, str(self._counter), str(time.time_ns()))).encode()).hexdigest()

    def _create(self, repo_id: str, repo_type: str, private: bool) -> Repo:
        repo = Repo(repo_id, repo_type, private)
        initial = {".gitattributes": GITATTRIBUTES} if self.gitattributes else {}
        sha = self._new_sha(repo_id, "initial")
        repo.commits[sha] = Commit(sha, None, "initial commit", "", initial, added=tuple(initial))
        repo.branches["main"] = sha
        self._repos[(repo_type, repo_id)] = repo
        return repo

    def _upload_mode(self, head: Commit, path: str, size: int, sample: bytes) -> str:
        if not self.lfs or size == 0:
            return "regular"
        if size >= LFS_SIZE_THRESHOLD or is_binary(sample) or matches_any(path, lfs_patterns(head.files.get(".gitattributes"))):
            return "lfs"
        return "regular"

    def _commit_as_outsider(self, repo: Repo, files: dict[str, bytes], deleted: tuple[str, ...], message: str, sha: str | None) -> str:
        head = repo.head()
        snapshot, lfs = dict(head.files), set(head.lfs)
        for path in deleted:
            snapshot.pop(path, None)
            lfs.discard(path)
        for path, data in files.items():
            snapshot[path] = data
            if self._upload_mode(head, path, len(data), data[:512]) == "lfs":
                lfs.add(path)
                repo.lfs_objects[sha256_hex(data)] = data
            else:
                lfs.discard(path)
        return self._commit(repo, snapshot, message, added=tuple(files), deleted=deleted, lfs=frozenset(lfs), sha=sha).sha

    def _commit(
        self,
        repo: Repo,
        files: dict[str, bytes],
        message: str,
        description: str = "",
        *,
        added: tuple[str, ...] | list[str] = (),
        deleted: tuple[str, ...] | list[str] = (),
        lfs: frozenset[str] = frozenset(),
        sha: str | None = None,
    ) -> Commit:
        parent = repo.branches["main"]
        if sha is not None and (not re.fullmatch(r"[0-9a-f]{40}", sha) or sha in repo.commits):
            raise ValueError(f"commit id {sha!r} is malformed or already in {repo.repo_id}")
        sha = sha or self._new_sha(repo.repo_id, parent, message)
        commit = Commit(sha, parent, message, description, files, tuple(added), tuple(deleted), lfs=frozenset(lfs) & set(files))
        repo.commits[commit.sha] = commit
        repo.branches["main"] = commit.sha
        return commit

    def _take_fault(self, route: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.route in (route, "*") and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _signature(self, repo: Repo, oid: str) -> str:
        return hmac.new(self._secret, f"{repo.repo_type}/{repo.repo_id}/{oid}".encode(), hashlib.sha256).hexdigest()[:32]

    def _cdn_url(self, repo: Repo, oid: str) -> str:
        """A signed URL of an LFS object on the CDN listener: GET downloads it, PUT uploads it."""
        path = f"/lfs/{repo.repo_type}s/{repo.repo_id}/{oid}"
        return f"{self.cdn_endpoint}{path}?{urlencode({'X-Amz-Signature': self._signature(repo, oid)})}"


def _byte_range(header: str | None, total: int) -> tuple[int, int] | None | str:
    """The (start, end inclusive) of a single-range `Range: bytes=` header; None: whole file; "bad": 416."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not match or match.group(1) == match.group(2) == "":
        return "bad"
    first, last = match.groups()
    if first == "":  # suffix range: the last N bytes
        start, end = max(0, total - int(last)), total - 1
    else:
        start, end = int(first), min(int(last), total - 1) if last else total - 1
    if start >= total or start > end:
        return "bad"
    return start, end


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"
    # Keep-alive plus separate header/body writes would meet delayed ACKs (~40 ms per request):
    # buffer the answer (flushed after each request) and send it without Nagle.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server_version = "LoopbackHub/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output quiet; requests are recorded instead

    # One entry point for every verb: parse, check faults and auth, dispatch, record.
    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _patterns(self) -> list[tuple[str, str, re.Pattern[str], Any]]:
        return _PATTERNS

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        hub = self.hub
        split = urlsplit(self.path)
        raw_path = split.path
        query = parse_qs(split.query)
        body = self._read_body()
        route, handler, args = _route(self.command, raw_path, self._patterns())

        fault = hub._take_fault(route)
        if fault and fault.hang:
            self._record(raw_path, query, route, 0, body)
            with hub._lock:
                release = hub._release
            release.wait()
            self.close_connection = True
            return
        if fault and fault.delay:
            time.sleep(fault.delay)
        reply: _Reply | None
        if fault and fault.disconnect:
            self._record(raw_path, query, route, 0, body)
            self.close_connection = True
            return
        if fault and not fault.after:
            reply = _error(fault.status or 500, fault.message)
        else:
            reply = self._authorize(route, args)
            if reply is None:
                if handler is None:
                    reply = _error(404, f"no such route: {self.command} {raw_path}")
                else:
                    try:
                        reply = handler(self, args, query, body)
                    except Exception as exc:  # a server bug must show up as a 500, not a hang
                        reply = _error(500, f"server error: {type(exc).__name__}: {exc}")
            if fault and fault.after:
                reply = _error(fault.status or 500, fault.message)
        self._record(raw_path, query, route, reply.status, body)
        self._send(reply)

    def _record(self, path: str, query: dict, route: str, status: int, body: bytes) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        with self.hub._lock:
            self.hub.requests.append(
                RecordedRequest(self.command, unquote(path), query, route, status, "authorization" in {k.lower() for k in self.headers}, body, headers)
            )

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _content(self, data: bytes, headers: dict[str, str]) -> _Reply:
        """A file's bytes, honouring a single `Range` (206 with Content-Range, or 416)."""
        wanted = _byte_range(self.headers.get("Range"), len(data))
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", **headers}
        if wanted == "bad":
            return _error(416, "Requested range not satisfiable", headers={**headers, "Content-Range": f"bytes */{len(data)}"})
        if wanted is None:
            return _Reply(200, data, headers)
        start, end = wanted
        return _Reply(206, data[start : end + 1], {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"})

    # -- auth ----------------------------------------------------------------------------------------

    def _bearer(self) -> str | None:
        value = self.headers.get("Authorization")
        if value and value.lower().startswith("bearer "):
            return value[7:].strip()
        return None

    def _authorize(self, route: str, args: dict[str, str]) -> _Reply | None:
        hub = self.hub
        sent = self._bearer()
        if hub.token is None:
            return None
        if sent is not None and sent != hub.token:
            # The Hub's answer for a bad token; the client then raises a plain 401 HfHubHTTPError.
            return _error(401, "Invalid credentials in Authorization header")
        if sent is None and route in WRITE_ROUTES:
            return _error(401, "You must be authenticated to access this resource")
        if sent is None and "repo_id" in args:
            with hub._lock:
                repo = hub._repos.get((args["repo_type"], args["repo_id"]))
            if repo is not None and repo.private:
                return _error(401, "Repository not found", "RepoNotFound")
        return None

    # -- helpers -----------------------------------------------------------------------------------

    def _base(self) -> str:
        return self.hub.endpoint

    def _repo(self, args: dict[str, str]) -> Repo | _Reply:
        with self.hub._lock:
            repo = self.hub._repos.get((args["repo_type"], args["repo_id"]))
        if repo is None:
            return _error(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit_for(self, repo: Repo, revision: str) -> Commit | _Reply:
        commit = repo.resolve(revision)
        if commit is None:
            return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _last_commit(self, repo: Repo, commit: Commit, path: str, folder: bool) -> dict[str, str]:
        """The newest commit up to `commit` that changed `path` (a file, or anything under a folder)."""
        prefix = path.rstrip("/") + "/"

        def state(c: Commit) -> Any:
            if folder:
                return {p: d for p, d in c.files.items() if p.startswith(prefix)}
            return c.files.get(path)

        current = commit
        with self.hub._lock:
            while current.parent is not None:
                parent = repo.commits[current.parent]
                if state(parent) != state(current):
                    break
                current = parent
        return {"id": current.sha, "title": current.message, "date": current.date}

    def _expanded(self, repo: Repo, commit: Commit, entry: dict[str, Any]) -> dict[str, Any]:
        entry = dict(entry, lastCommit=self._last_commit(repo, commit, entry["path"], entry["type"] == "directory"))
        if entry["type"] == "file":
            entry["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False}, "pickleImportScan": None}
        return entry

    # -- handlers ----------------------------------------------------------------------------------

    def h_info(self, args, query, body) -> _Reply:
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        commit = self._commit_for(repo, args.get("revision", "main"))
        if isinstance(commit, _Reply):
            return commit
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path in sorted(commit.files):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                entry = commit.entry(path)
                sibling |= {"size": entry["size"], "blobId": entry["oid"]}
                if "lfs" in entry:
                    sibling["lfs"] = {"sha256": entry["lfs"]["oid"], "size": entry["lfs"]["size"], "pointerSize": entry["lfs"]["pointerSize"]}
            siblings.append(sibling)
        return _Reply(
            200,
            {
                "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.sha,
                "lastModified": commit.date,
                "createdAt": commit.date,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
            },
        )

    def h_create_repo(self, args, query, body) -> _Reply:
        payload = json.loads(body or b"{}")
        name = payload.get("name")
        if not name:
            return _error(400, "name is required")
        namespace = payload.get("organization") or DEFAULT_NAMESPACE
        repo_type = payload.get("type") or "model"
        repo_id = f"{namespace}/{name}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        url = f"{self._base()}/{URL_PREFIX[repo_type]}{repo_id}"
        with self.hub._lock:
            if (repo_type, repo_id) in self.hub._repos:
                return _Reply(409, {"error": f"You already created this {repo_type} repo", "url": url})
            self.hub._create(repo_id, repo_type, private)
        return _Reply(200, {"url": url, "name": repo_id, "id": repo_id})

    def h_validate_yaml(self, args, query, body) -> _Reply:
        return _Reply(200, {"errors": [], "warnings": []})

    def h_whoami(self, args, query, body) -> _Reply:
        return _Reply(200, {"type": "user", "name": DEFAULT_NAMESPACE, "orgs": [], "auth": {"type": "access_token"}})

    def h_preupload(self, args, query, body) -> _Reply:
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        commit = self._commit_for(repo, args["revision"])
        if isinstance(commit, _Reply):
            return commit
        files = []
        for item in json.loads(body or b"{}").get("files", []):
            path = item["path"]
            sample = base64.b64decode(item.get("sample") or b"")
            mode = self.hub._upload_mode(commit, path, int(item.get("size") or len(sample)), sample)
            entry: dict[str, Any] = {"path": path, "uploadMode": mode, "shouldIgnore": False}
            # Like the Hub: tell the client the current OID so it can drop unchanged files from the commit
            # (the sha256 for an LFS file, the git OID for a regular one: what the client compares).
            if path in commit.files:
                data = commit.files[path]
                entry["oid"] = sha256_hex(data) if path in commit.lfs else git_blob_sha1(data)
            files.append(entry)
        return _Reply(200, {"files": files, "commitOid": commit.sha})

    def h_commit(self, args, query, body) -> _Reply:
        if query.get("create_pr"):
            return _error(400, "pull requests are not supported by the loopback hub")
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        branch = args["revision"]
        if branch not in repo.branches:
            return _error(400, f"Can only commit to a branch, not {branch!r}")
        try:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            return _error(400, f"malformed NDJSON: {exc}")
        if not lines or lines[0].get("key") != "header":
            return _error(400, "first NDJSON line must be the header")
        header = lines[0]["value"]
        with self.hub._lock:
            head = repo.head(branch)
            parent = header.get("parentCommit")
            if parent and not head.sha.startswith(parent):
                return _error(412, "A commit has happened since. Please refresh and try again.")
            # Build the new snapshot on a copy: any bad operation leaves the repo untouched.
            snapshot, lfs = dict(head.files), set(head.lfs)
            added, deleted = [], []
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "")
                if key == "file":
                    if value.get("encoding") != "base64":
                        return _error(400, f"unsupported encoding for {path}")
                    content = base64.b64decode(value["content"])
                    if self.hub.lfs and (len(content) >= LFS_SIZE_THRESHOLD or is_binary(content)):
                        return _error(
                            400,
                            f"Your push was rejected because it contains binary files or files of 10 MiB or more ({path}): "
                            "upload them through LFS.",
                        )
                    snapshot[path] = content
                    lfs.discard(path)
                    added.append(path)
                elif key == "lfsFile":
                    oid, size = value.get("oid", ""), value.get("size")
                    stored = repo.lfs_objects.get(oid)
                    if value.get("algo", "sha256") != "sha256" or stored is None or len(stored) != size:
                        return _error(
                            400,
                            f"Your push was rejected because an LFS pointer pointed to a file that does not exist ({path}, oid {oid})",
                        )
                    snapshot[path] = stored
                    lfs.add(path)
                    added.append(path)
                elif key == "deletedFile":
                    if path not in snapshot:
                        return _error(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del snapshot[path]
                    lfs.discard(path)
                    deleted.append(path)
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    gone = [p for p in snapshot if p.startswith(prefix)]
                    if not gone:
                        return _error(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in gone:
                        del snapshot[p]
                        lfs.discard(p)
                    deleted.extend(gone)
                else:
                    return _error(400, f"unknown operation {key!r}")
            commit = self.hub._commit(
                repo, snapshot, header.get("summary", ""), header.get("description", ""), added=added, deleted=deleted, lfs=frozenset(lfs)
            )
        url = f"{self._base()}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.sha}"
        return _Reply(200, {"success": True, "commitOid": commit.sha, "commitUrl": url, "hookOutput": "", "pullRequestUrl": None})

    def h_lfs_batch(self, args, query, body) -> _Reply:
        """The git-LFS batch API (basic transfer): where to PUT each missing object, and how to verify it."""
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        try:
            payload = json.loads(body or b"{}")
        except json.JSONDecodeError as exc:
            return _error(422, f"malformed LFS batch request: {exc}")
        operation = payload.get("operation")
        if operation not in ("upload", "download"):
            return _error(422, f"unsupported LFS operation {operation!r}")
        if "basic" not in payload.get("transfers", ["basic"]):
            return _error(422, "only the basic transfer adapter is served")
        verify = f"{self._base()}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}.git/info/lfs/objects/verify"
        objects = []
        for item in payload.get("objects", []):
            oid, size = str(item.get("oid", "")), item.get("size")
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int) or size < 0:
                objects.append({"oid": oid, "size": size if isinstance(size, int) else 0, "error": {"code": 422, "message": "invalid oid or size"}})
                continue
            with self.hub._lock:
                stored = repo.lfs_objects.get(oid)
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if operation == "download":
                if stored is None:
                    entry["error"] = {"code": 404, "message": "Object does not exist"}
                else:
                    entry["actions"] = {"download": {"href": self.hub._cdn_url(repo, oid), "expires_in": 3600}}
            elif stored is None:
                # Missing: upload to the signed CDN URL, then verify; no "actions" means "already there".
                entry["actions"] = {
                    "upload": {"href": self.hub._cdn_url(repo, oid), "expires_in": 3600},
                    "verify": {"href": verify, "expires_in": 3600},
                }
            objects.append(entry)
        return _Reply(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, {"Content-Type": "application/vnd.git-lfs+json"})

    def h_lfs_verify(self, args, query, body) -> _Reply:
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        payload = json.loads(body or b"{}")
        with self.hub._lock:
            stored = repo.lfs_objects.get(str(payload.get("oid")))
        if stored is None or len(stored) != payload.get("size"):
            return _error(404, f"LFS object {payload.get('oid')} of size {payload.get('size')} was not uploaded")
        return _Reply(200, {"oid": payload["oid"], "size": len(stored)})

    def h_xet_token(self, args, query, body) -> _Reply:
        return _error(
            501,
            "Xet storage is not served by the loopback Hub: make huggingface_hub upload through LFS "
            "(plain_lfs_uploads() in a test, or HF_HUB_DISABLE_XET=1 before import).",
        )

    def h_tag(self, args, query, body) -> _Reply:
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        payload = json.loads(body or b"{}")
        tag = payload.get("tag")
        if not tag:
            return _error(400, "tag is required")
        with self.hub._lock:
            commit = self._commit_for(repo, args["revision"])
            if isinstance(commit, _Reply):
                return commit
            if tag in repo.tags:
                return _error(409, f"Tag {tag} already exists")
            repo.tags[tag] = commit.sha
        return _Reply(200, {"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": commit.sha})

    def h_refs(self, args, query, body) -> _Reply:
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        with self.hub._lock:
            data = {
                "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in repo.branches.items()],
                "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": s} for n, s in repo.tags.items()],
                "converts": [],
            }
        if query.get("include_prs"):
            data["pullRequests"] = []
        return _Reply(200, data)

    def h_commits(self, args, query, body) -> _Reply:
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        commit = self._commit_for(repo, args["revision"])
        if isinstance(commit, _Reply):
            return commit
        out = []
        with self.hub._lock:
            sha: str | None = commit.sha
            while sha is not None:
                c = repo.commits[sha]
                out.append({"id": c.sha, "title": c.message, "message": c.description, "date": c.date, "authors": [{"user": DEFAULT_NAMESPACE}]})
                sha = c.parent
        return _Reply(200, out)

    def h_tree(self, args, query, body) -> _Reply:
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        commit = self._commit_for(repo, args["revision"])
        if isinstance(commit, _Reply):
            return commit
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = query.get("expand", ["false"])[0].lower() in ("1", "true")
        base = args.get("path", "").strip("/")
        prefix = base + "/" if base else ""
        if base and not any(p.startswith(prefix) for p in commit.files):
            return _error(404, f"Entry not found: {base}", "EntryNotFound")
        entries: dict[str, dict] = {}
        for path in sorted(commit.files):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            # Folders on the way to the file.
            depth = len(parts) - 1 if recursive else min(1, len(parts) - 1)
            for i in range(1, depth + 1):
                folder = prefix + "/".join(parts[:i])
                entries.setdefault(folder, {"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0})
            if recursive or len(parts) == 1:
                entries[path] = commit.entry(path)
        listing = list(entries.values())
        # Pages linked like the Hub's (GitHub-style `Link: <url>; rel="next"` with an opaque cursor).
        try:
            start = int(base64.urlsafe_b64decode(query["cursor"][0]).decode()) if "cursor" in query else 0
        except (ValueError, UnicodeDecodeError):
            return _error(400, "invalid cursor")
        page = listing[start : start + self.hub.tree_page_size]
        if expand:
            page = [self._expanded(repo, commit, entry) for entry in page]
        headers = {}
        if start + self.hub.tree_page_size < len(listing):
            params = {k: v[0] for k, v in query.items() if k != "cursor"}
            params["cursor"] = base64.urlsafe_b64encode(str(start + self.hub.tree_page_size).encode()).decode()
            headers["Link"] = f'<{self._base()}{quote(urlsplit(self.path).path, safe="/%")}?{urlencode(params)}>; rel="next"'
        return _Reply(200, page, headers)

    def h_paths_info(self, args, query, body) -> _Reply:
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        commit = self._commit_for(repo, args["revision"])
        if isinstance(commit, _Reply):
            return commit
        form = parse_qs(body.decode()) if body else {}
        paths = form.get("paths", [])
        expand = form.get("expand", ["false"])[0].lower() in ("1", "true")
        if not paths and body.startswith(b"{"):
            payload = json.loads(body)
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        out = []
        for path in paths:
            if path in commit.files:
                entry = commit.entry(path)
            elif any(p.startswith(path.rstrip("/") + "/") for p in commit.files):
                entry = {"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0}
            else:
                continue
            out.append(self._expanded(repo, commit, entry) if expand else entry)
        return _Reply(200, out)

    def h_resolve(self, args, query, body) -> _Reply:
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        commit = self._commit_for(repo, args["revision"])
        if isinstance(commit, _Reply):
            return commit
        path = args["path"]
        if path not in commit.files:
            return _error(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        data = commit.files[path]
        entry = commit.entry(path)
        if path in commit.lfs:
            # Like the Hub: a redirect to the CDN; the metadata a client needs is on this very response.
            sha256 = entry["lfs"]["oid"]
            return _Reply(
                302,
                b"",
                {
                    "Location": self.hub._cdn_url(repo, sha256),
                    "X-Repo-Commit": commit.sha,
                    "X-Linked-Etag": f'"{sha256}"',
                    "X-Linked-Size": str(len(data)),
                    "ETag": f'"{entry["oid"]}"',
                },
            )
        return self._content(data, {"X-Repo-Commit": commit.sha, "ETag": f'"{entry["oid"]}"'})


class _CdnHandler(_Handler):
    """The CDN-like listener: signed LFS object URLs; no Hub token is needed (or expected) here."""

    server_version = "LoopbackCdn/1.0"

    def _patterns(self) -> list[tuple[str, str, re.Pattern[str], Any]]:
        return _CDN_PATTERNS

    def _authorize(self, route: str, args: dict[str, str]) -> _Reply | None:
        return None

    def _signed(self, args: dict[str, str], query: dict[str, list[str]]) -> Repo | _Reply:
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        sent = query.get("X-Amz-Signature", [""])[0]
        if not hmac.compare_digest(sent, self.hub._signature(repo, args["oid"])):
            return _error(403, "SignatureDoesNotMatch")
        return repo

    def h_cdn_get(self, args, query, body) -> _Reply:
        repo = self._signed(args, query)
        if isinstance(repo, _Reply):
            return repo
        with self.hub._lock:
            data = repo.lfs_objects.get(args["oid"])
        if data is None:
            return _error(404, "NoSuchKey")
        return self._content(data, {"ETag": f'"{args["oid"]}"'})

    def h_cdn_put(self, args, query, body) -> _Reply:
        repo = self._signed(args, query)
        if isinstance(repo, _Reply):
            return repo
        if sha256_hex(body) != args["oid"]:
            return _error(400, f"uploaded content has sha256 {sha256_hex(body)}, expected {args['oid']}")
        with self.hub._lock:
            repo.lfs_objects[args["oid"]] = body
        return _Reply(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})


# Routes that change state: they require the configured token.
WRITE_ROUTES = {"create_repo", "preupload", "commit", "tag", "lfs_batch", "lfs_verify"}

_REPO = r"(?P<repo_id>[^/]+/[^/]+)"
_GIT_REPO = r"(?P<repo_id>[^/]+/[^/]+?)\.git"
_TYPES = r"(?P<type>models|datasets|spaces)"
_PATTERNS: list[tuple[str, str, re.Pattern[str], Any]] = [
    ("POST", "create_repo", re.compile(r"^/api/repos/create$"), _Handler.h_create_repo),
    ("POST", "validate_yaml", re.compile(r"^/api/validate-yaml$"), _Handler.h_validate_yaml),
    ("GET", "whoami", re.compile(r"^/api/whoami-v2$"), _Handler.h_whoami),
    ("GET", "info", re.compile(rf"^/api/{_TYPES}/{_REPO}(?:/revision/(?P<revision>[^/]+))?$"), _Handler.h_info),
    ("POST", "preupload", re.compile(rf"^/api/{_TYPES}/{_REPO}/preupload/(?P<revision>[^/]+)$"), _Handler.h_preupload),
    ("POST", "commit", re.compile(rf"^/api/{_TYPES}/{_REPO}/commit/(?P<revision>[^/]+)$"), _Handler.h_commit),
    ("POST", "tag", re.compile(rf"^/api/{_TYPES}/{_REPO}/tag/(?P<revision>[^/]+)$"), _Handler.h_tag),
    ("GET", "refs", re.compile(rf"^/api/{_TYPES}/{_REPO}/refs$"), _Handler.h_refs),
    ("GET", "commits", re.compile(rf"^/api/{_TYPES}/{_REPO}/commits/(?P<revision>[^/]+)$"), _Handler.h_commits),
    ("GET", "tree", re.compile(rf"^/api/{_TYPES}/{_REPO}/tree/(?P<revision>[^/]+)(?:/(?P<path>.+))?$"), _Handler.h_tree),
    ("POST", "paths_info", re.compile(rf"^/api/{_TYPES}/{_REPO}/paths-info/(?P<revision>[^/]+)$"), _Handler.h_paths_info),
    ("GET", "xet_token", re.compile(rf"^/api/{_TYPES}/{_REPO}/xet-(?:read|write)-token(?:/(?P<revision>[^/]+))?$"), _Handler.h_xet_token),
    ("POST", "lfs_batch", re.compile(rf"^/(?:(?P<type>datasets|spaces)/)?{_GIT_REPO}/info/lfs/objects/batch$"), _Handler.h_lfs_batch),
    ("POST", "lfs_verify", re.compile(rf"^/(?:(?P<type>datasets|spaces)/)?{_GIT_REPO}/info/lfs/objects/verify$"), _Handler.h_lfs_verify),
    ("GET", "resolve", re.compile(rf"^/(?:(?P<type>datasets|spaces)/)?{_REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)$"), _Handler.h_resolve),
]
_CDN_OBJECT = re.compile(rf"^/lfs/{_TYPES}/{_REPO}/(?P<oid>[0-9a-f]{{64}})$")
_CDN_PATTERNS: list[tuple[str, str, re.Pattern[str], Any]] = [
    ("GET", "cdn", _CDN_OBJECT, _CdnHandler.h_cdn_get),
    ("PUT", "lfs_upload", _CDN_OBJECT, _CdnHandler.h_cdn_put),
]
ROUTES = sorted({name for _, name, _, _ in _PATTERNS + _CDN_PATTERNS})


def _route(method: str, raw_path: str, patterns: list[tuple[str, str, re.Pattern[str], Any]] = _PATTERNS) -> tuple[str, Any, dict[str, str]]:
    """Match on the still-quoted path so a quoted revision ("refs%2Fpr%2F1") stays one segment."""
    verb = "GET" if method == "HEAD" else method
    for want, name, pattern, handler in patterns:
        match = pattern.match(raw_path)
        if match and want == verb:
            args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            if "repo_id" in args:
                args["repo_type"] = REPO_TYPES.get(args.pop("type", None) or "models", "model")
            return name, handler, args
    return "unknown", None, {}
