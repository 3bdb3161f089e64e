"""A loopback stand-in for the Hugging Face Hub, for tests of the real `huggingface_hub` client.

Only the endpoints our code (and `hf_hub_download`) calls are served, with the response shapes and
headers the installed client parses. Repositories live in memory as a list of commits, each commit a
full snapshot of `{path: bytes}`, so a commit is atomic by construction: it either becomes the new head
or nothing changes. Every request is recorded and faults can be injected per route.

Usage:

    with HubServer(token="hf_test") as hub:
        api = HfApi(endpoint=hub.endpoint, token="hf_test")
        ...
        hub.fail_next("commit", status=500)
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
DEFAULT_NAMESPACE = "tester"
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(content: bytes) -> str:
    """The git OID of a regular file: what the Hub returns as `oid`/ETag and the client compares."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


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


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

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


@dataclass
class Fault:
    route: str
    status: int | None
    times: int
    message: str
    disconnect: bool
    delay: float
    after: bool


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
    """

    def __init__(self, token: str | None = None, *, gitattributes: bool = True):
        self.token = token
        self.gitattributes = gitattributes
        self.requests: list[RecordedRequest] = []
        self._repos: dict[tuple[str, str], Repo] = {}
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> HubServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
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
    ) -> None:
        """Make the next `times` requests to `route` fail.

        `route` is a name from `ROUTES` or "*". `disconnect` drops the connection without an answer;
        `delay` sleeps first (for client timeouts); `after` runs the handler (state changes happen) and
        then answers with the failure, like a response lost on the way back.
        """
        with self._lock:
            self._faults.append(Fault(route, status, times, message, disconnect, delay, after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes] | None = None,
        *,
        repo_type: str = "dataset",
        private: bool = False,
        message: str = "initial commit",
    ) -> str:
        """Create a repo (optionally with files) as if someone else had; return its head sha."""
        with self._lock:
            repo = self._create(repo_id, repo_type, private)
            if files:
                return self._commit(repo, dict(repo.head().files) | files, message, added=tuple(files)).sha
            return repo.branches["main"]

    def push(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        repo_type: str = "dataset",
        deleted: tuple[str, ...] = (),
        message: str = "update",
    ) -> str:
        """Commit on `main` as an outside party (upstream moving on); return the new sha."""
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            snapshot = dict(repo.head().files)
            for path in deleted:
                snapshot.pop(path, None)
            snapshot.update(files)
            return self._commit(repo, snapshot, message, added=tuple(files), deleted=tuple(deleted)).sha

    def set_sha(self, repo_id: str, sha: str, *, repo_type: str = "dataset") -> None:
        """Force `main` to a given sha (same files), for tests that only care about the revision."""
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            head = repo.head()
            repo.commits[sha] = Commit(sha, head.sha, "set_sha", "", dict(head.files))
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

    def _commit(
        self,
        repo: Repo,
        files: dict[str, bytes],
        message: str,
        description: str = "",
        *,
        added: tuple[str, ...] | list[str] = (),
        deleted: tuple[str, ...] | list[str] = (),
    ) -> Commit:
        parent = repo.branches["main"]
        commit = Commit(self._new_sha(repo.repo_id, parent, message), parent, message, description, files, tuple(added), tuple(deleted))
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
        route, handler, args = _route(self.command, raw_path)

        fault = hub._take_fault(route)
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
        with self.hub._lock:
            self.hub.requests.append(
                RecordedRequest(self.command, unquote(path), query, route, status, "authorization" in {k.lower() for k in self.headers}, body)
            )

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

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

    # -- handlers ----------------------------------------------------------------------------------

    def h_info(self, args, query, body) -> _Reply:
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        commit = self._commit_for(repo, args.get("revision", "main"))
        if isinstance(commit, _Reply):
            return commit
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = [
            {"rfilename": path, **({"size": len(data), "blobId": git_blob_sha1(data)} if blobs else {})}
            for path, data in sorted(commit.files.items())
        ]
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
            entry: dict[str, Any] = {"path": item["path"], "uploadMode": "regular", "shouldIgnore": False}
            # Like the Hub: tell the client the current OID so it can drop unchanged files from the commit.
            if item["path"] in commit.files:
                entry["oid"] = git_blob_sha1(commit.files[item["path"]])
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
            snapshot = dict(head.files)
            added, deleted = [], []
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "")
                if key == "file":
                    if value.get("encoding") != "base64":
                        return _error(400, f"unsupported encoding for {path}")
                    snapshot[path] = base64.b64decode(value["content"])
                    added.append(path)
                elif key == "deletedFile":
                    if path not in snapshot:
                        return _error(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del snapshot[path]
                    deleted.append(path)
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    gone = [p for p in snapshot if p.startswith(prefix)]
                    if not gone:
                        return _error(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in gone:
                        del snapshot[p]
                    deleted.extend(gone)
                elif key == "lfsFile":
                    return _error(400, "LFS is not served here: preupload answers uploadMode=regular")
                else:
                    return _error(400, f"unknown operation {key!r}")
            commit = self.hub._commit(repo, snapshot, header.get("summary", ""), header.get("description", ""), added=added, deleted=deleted)
        url = f"{self._base()}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.sha}"
        return _Reply(200, {"success": True, "commitOid": commit.sha, "commitUrl": url, "hookOutput": "", "pullRequestUrl": None})

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
        base = args.get("path", "").strip("/")
        prefix = base + "/" if base else ""
        if base and not any(p.startswith(prefix) for p in commit.files):
            return _error(404, f"Entry not found: {base}", "EntryNotFound")
        entries: dict[str, dict] = {}
        for path, data in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            # Folders on the way to the file.
            depth = len(parts) - 1 if recursive else min(1, len(parts) - 1)
            for i in range(1, depth + 1):
                folder = prefix + "/".join(parts[:i])
                entries.setdefault(folder, {"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0})
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "path": path, "oid": git_blob_sha1(data), "size": len(data)}
        return _Reply(200, list(entries.values()))

    def h_paths_info(self, args, query, body) -> _Reply:
        repo = self._repo(args)
        if isinstance(repo, _Reply):
            return repo
        commit = self._commit_for(repo, args["revision"])
        if isinstance(commit, _Reply):
            return commit
        form = parse_qs(body.decode()) if body else {}
        paths = form.get("paths", [])
        if not paths and body.startswith(b"{"):
            paths = json.loads(body).get("paths", [])
        out = []
        for path in paths:
            if path in commit.files:
                data = commit.files[path]
                out.append({"type": "file", "path": path, "oid": git_blob_sha1(data), "size": len(data)})
            elif any(p.startswith(path.rstrip("/") + "/") for p in commit.files):
                out.append({"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0})
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
        return _Reply(
            200,
            data,
            {
                "Content-Type": "application/octet-stream",
                "X-Repo-Commit": commit.sha,
                "ETag": f'"{git_blob_sha1(data)}"',
                "Accept-Ranges": "bytes",
            },
        )


# Routes that change state: they require the configured token.
WRITE_ROUTES = {"create_repo", "preupload", "commit", "tag"}

_REPO = r"(?P<repo_id>[^/]+/[^/]+)"
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
    ("GET", "resolve", re.compile(rf"^/(?:(?P<type>datasets|spaces)/)?{_REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)$"), _Handler.h_resolve),
]
ROUTES = sorted({name for _, name, _, _ in _PATTERNS})


def _route(method: str, raw_path: str) -> tuple[str, Any, dict[str, str]]:
    """Match on the still-quoted path so a quoted revision ("refs%2Fpr%2F1") stays one segment."""
    verb = "GET" if method == "HEAD" else method
    for want, name, pattern, handler in _PATTERNS:
        match = pattern.match(raw_path)
        if match and want == verb:
            args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            if "repo_id" in args:
                args["repo_type"] = REPO_TYPES.get(args.pop("type", None) or "models", "model")
            return name, handler, args
    return "unknown", None, {}
