"""Publish a release folder to a Hugging Face dataset repo as one atomic, tagged commit.

The folder is the unit of release: `data/*.parquet` shards, the JSON export, `build.json` (the
manifest with `content_hash`), `README.md` and maybe `images/`. Every file goes in one
`create_commit`, which the Hub applies whole or not at all, so a retry after a failure can never leave
half a release behind. The manifest's `content_hash` decides whether there is anything to publish.

Every request runs under client-side timeouts (`HubTimeouts`, installed by `hub_call`) and the
retries under a deadline (`deadline_s`), so a Hub that accepts a request and never answers fails
the publish after a bounded wait; the commit being atomic, nothing is published then.

The token is only handed to `HfApi`; it never reaches a log line, an exception or the outcome.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    hf_hub_download,
)
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from medset_dagster.common.hub_client import (
    DEFAULT_TIMEOUTS,
    HubTimeouts,
    http_status,
    hub_call,
    is_transient,
    resolve_endpoint,
    short_reason,
)
from medset_dagster.common.retry import RetryPolicy
from medset_dagster.release.files import MANIFEST_NAME, ReleaseFile, list_release_files

_LOG = logging.getLogger(__name__)
REPO_TYPE = "dataset"

# No new attempt of the publish starts after this many seconds: with the default timeouts a Hub
# that never answers fails the publish within about this long plus one attempt.
DEFAULT_PUBLISH_DEADLINE_S = 600.0

Status = Literal["dry_run", "committed", "unchanged"]
TagStatus = Literal["created", "exists", "exists_elsewhere"]


class ReleaseFolderError(ValueError):
    """The release folder cannot be published as it is (missing manifest, no content hash...)."""


class HubPublishError(RuntimeError):
    """Publishing failed; the message says what to check. Never contains the token."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False):
        super().__init__(message)
        self.status = status
        self.transient = transient


@dataclass
class PublishOutcome:
    """What a publish did: `status`, the repo, commit sha and URL and `tag` (None on a dry run), every
    release file (`files`), the manifest's `content_hash`, `tag_status` (None on a dry run), the stale
    paths `deleted` in the commit, and `notes` for the log."""

    status: Status
    repo_id: str | None
    commit_sha: str | None
    commit_url: str | None
    tag: str | None
    files: list[ReleaseFile]
    content_hash: str
    tag_status: TagStatus | None = None
    deleted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_release(release_dir: Path, manifest_name: str = MANIFEST_NAME) -> str:
    """Check every file of `release_dir` against its manifest; return the manifest's content hash.

    Raises `ReleaseFolderError` naming each file that is missing, extra, or whose size or sha256
    differs from what `build.json` records: a folder half-written by a crashed build, or edited
    by hand, is never uploaded.
    """
    manifest_path = release_dir / manifest_name
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        recorded = {path: (entry["bytes"], entry["sha256"]) for path, entry in manifest["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ReleaseFolderError(f"cannot read the manifest {manifest_path}: {exc}") from exc
    actual = {f.path: (f.bytes, f.sha256) for _, f in list_release_files(release_dir, include_manifest=False)}
    problems = [f"{path}: missing" for path in sorted(set(recorded) - set(actual))]
    problems += [f"{path}: not in {manifest_name}" for path in sorted(set(actual) - set(recorded))]
    problems += [
        f"{path}: {'size' if actual[path][0] != recorded[path][0] else 'sha256'} differs from {manifest_name}"
        for path in sorted(set(actual) & set(recorded))
        if actual[path] != recorded[path]
    ]
    if problems:
        raise ReleaseFolderError(
            f"release folder {release_dir} does not match its {manifest_name}; nothing was published: "
            + "; ".join(problems)
            + ". Rebuild the release (materialize release_files and dataset_card) and publish again."
        )
    return read_content_hash(manifest_path)


def read_content_hash(manifest: Path) -> str:
    """The `content_hash` recorded in the manifest file `manifest` (build.json). Raises `ReleaseFolderError`
    when the file cannot be read or parsed, or holds no non-empty string `content_hash`."""
    try:
        value = json.loads(manifest.read_text(encoding="utf-8")).get("content_hash")
    except (OSError, ValueError, AttributeError) as exc:
        raise ReleaseFolderError(f"cannot read the manifest {manifest}: {exc}") from exc
    if not isinstance(value, str) or not value:
        raise ReleaseFolderError(f"manifest {manifest} has no content_hash")
    return value


def publish_release(
    release_dir: Path,
    *,
    repo_id: str | None,
    token: str | None,
    endpoint: str | None = None,
    private: bool = True,
    version_tag: str,
    manifest_name: str = MANIFEST_NAME,
    log: Callable[[str], None] = _LOG.info,
    prune_prefixes: tuple[str, ...] = ("data/",),
    retry: RetryPolicy = RetryPolicy(),
    timeouts: HubTimeouts = DEFAULT_TIMEOUTS,
    deadline_s: float | None = DEFAULT_PUBLISH_DEADLINE_S,
) -> PublishOutcome:
    """Publish `release_dir` to dataset `repo_id` and tag it `version_tag`; `repo_id=None` is a dry run.

    Stale files under `prune_prefixes` (old shards) are deleted in the same commit. If the Hub's
    manifest already has the local `content_hash`, nothing is committed (status `unchanged`).
    Every Hub request is bounded by `timeouts`; each retried step (create the repo, observe and
    commit, tag) starts no new attempt after `deadline_s` seconds.
    """
    release_dir = Path(release_dir)
    if not release_dir.is_dir():
        raise ReleaseFolderError(f"release folder {release_dir} does not exist")
    if not (release_dir / manifest_name).is_file():
        raise ReleaseFolderError(f"release folder {release_dir} has no {manifest_name}")
    content_hash = verify_release(release_dir, manifest_name)
    entries = list_release_files(release_dir)
    files = [entry for _, entry in entries]

    if repo_id is None:
        total = sum(f.bytes for f in files)
        log(f"Dry run: {len(files)} files ({total:,} bytes) would be published and tagged {version_tag}:")
        for f in files:
            log(f"  {f.path}  {f.bytes:,} bytes  sha256 {f.sha256}")
        return PublishOutcome("dry_run", None, None, None, None, files, content_hash,
                              notes=[f"dry run: nothing sent; the tag would be {version_tag}"])

    url = resolve_endpoint(endpoint)
    outcome: PublishOutcome | None = None
    failure: HubPublishError | None = None
    try:
        outcome = _publish(
            release_dir, entries, content_hash, repo_id=repo_id, token=token, endpoint=url, private=private,
            version_tag=version_tag, manifest_name=manifest_name, log=log, prune_prefixes=prune_prefixes, retry=retry,
            timeouts=timeouts, deadline_s=deadline_s,
        )
    except HubPublishError as exc:
        failure = exc
    except (HfHubHTTPError, OSError, ValueError, ConnectionError, TimeoutError) as exc:
        failure = _explain(exc, repo_id=repo_id, endpoint=url, token=token, retry=retry, timeouts=timeouts)
    except Exception as exc:  # transport errors of the HTTP stack (httpx2) are not OSError
        if not is_transient(exc):
            raise
        failure = _explain(exc, repo_id=repo_id, endpoint=url, token=token, retry=retry, timeouts=timeouts)
    # Raised outside the except block: the client's exception holds request headers, so it is not chained.
    if failure is not None:
        log(f"Publish to {repo_id} failed: {failure}")
        raise failure
    assert outcome is not None
    return outcome


def _publish(
    release_dir: Path,
    entries: list[tuple[Path, ReleaseFile]],
    content_hash: str,
    *,
    repo_id: str,
    token: str | None,
    endpoint: str,
    private: bool,
    version_tag: str,
    manifest_name: str,
    log: Callable[[str], None],
    prune_prefixes: tuple[str, ...],
    retry: RetryPolicy,
    timeouts: HubTimeouts,
    deadline_s: float | None,
) -> PublishOutcome:
    api = HfApi(endpoint=endpoint, token=token)
    files = [entry for _, entry in entries]
    notes: list[str] = []

    def call(what: str, fn: Callable[[], Any]) -> Any:
        return hub_call(fn, what=what, policy=retry, token=token, log=log, timeouts=timeouts, deadline_s=deadline_s)

    call("create_repo", lambda: api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True))

    # Observe and commit as one retried unit: each attempt re-reads the head, so a commit that landed
    # although its answer was lost is seen as done instead of being repeated.
    commit_sent = False
    stale: list[str] = []

    def observe_and_commit() -> tuple[Status, str, str | None, list[str]]:
        nonlocal commit_sent, stale
        info = api.dataset_info(repo_id, timeout=timeouts.read_s)
        head = info.sha
        if info.private is not None and info.private != private:
            note = f"{repo_id} already exists as {'private' if info.private else 'public'}; visibility left unchanged"
            if note not in notes:
                notes.append(note)
        remote_paths = api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=head)
        remote_hash = _remote_content_hash(api, repo_id, head, manifest_name, remote_paths, token, endpoint)
        if remote_hash == content_hash:
            return ("committed", head, None, stale) if commit_sent else ("unchanged", head, None, [])
        local_paths = {f.path for f in files}
        stale = sorted(p for p in remote_paths if p.startswith(prune_prefixes) and p not in local_paths)
        # Fresh operation objects per attempt: the client mutates them and refuses to reuse them.
        operations: list[Any] = [CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(path)) for path, f in entries]
        operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
        commit_sent = True
        result = api.create_commit(
            repo_id,
            operations,
            commit_message=f"Release {version_tag}",
            commit_description=f"content_hash: {content_hash}\nfiles: {len(files)}, stale files removed: {len(stale)}",
            repo_type=REPO_TYPE,
            parent_commit=head,  # refuse to commit over a head that moved since we looked
        )
        return "committed", result.oid, result.commit_url, stale

    status, sha, commit_url, deleted = call(f"publish {repo_id}", observe_and_commit)
    if commit_url is None:
        commit_url = f"{endpoint}/datasets/{repo_id}/commit/{sha}"
    if status == "unchanged":
        log(f"{repo_id} already holds content {content_hash[:12]} at {sha[:12]}: no commit made")
    else:
        log(f"Committed {len(files)} files to {repo_id} at {sha[:12]} ({len(deleted)} stale removed): {commit_url}")

    tag_failure: HubPublishError | None = None
    try:
        tag_status = _ensure_tag(api, repo_id, version_tag, sha, call, log)
    except Exception as exc:  # noqa: BLE001 - Hub errors and transport errors alike
        if not (isinstance(exc, HfHubHTTPError) or is_transient(exc)):
            raise
        tag_failure = _explain(exc, repo_id=repo_id, endpoint=endpoint, token=token, retry=retry, timeouts=timeouts)
    if tag_failure is not None:
        # The release is on the Hub; only the tag is missing, and a re-run (status unchanged) adds it.
        raise HubPublishError(
            f"{tag_failure} The release was committed at {sha} but tagging it {version_tag} failed; "
            "re-running the publish adds the tag.",
            status=tag_failure.status,
            transient=tag_failure.transient,
        )
    if tag_status == "exists_elsewhere":
        notes.append(f"tag {version_tag} already exists on another commit; left unchanged")
    return PublishOutcome(
        status, repo_id, sha, commit_url, version_tag, files, content_hash,
        tag_status=tag_status, deleted=deleted, notes=notes,
    )


def _remote_content_hash(
    api: HfApi, repo_id: str, revision: str, manifest_name: str, remote_paths: list[str], token: str | None, endpoint: str
) -> str | None:
    """`content_hash` of the manifest on the Hub at `revision`; None on first publish or if unreadable."""
    if manifest_name not in remote_paths:
        return None
    # A throwaway cache: the manifest is tiny and a shared cache could serve a stale copy.
    with tempfile.TemporaryDirectory(prefix="medset-hub-") as cache_dir:
        path = hf_hub_download(
            repo_id, manifest_name, repo_type=REPO_TYPE, revision=revision,
            cache_dir=cache_dir, token=token, endpoint=endpoint,
        )
        try:
            value = json.loads(Path(path).read_text(encoding="utf-8")).get("content_hash")
        except (ValueError, AttributeError):
            return None  # a broken manifest on the Hub is replaced by publishing
    return value if isinstance(value, str) else None


def _ensure_tag(
    api: HfApi, repo_id: str, tag: str, sha: str, call: Callable[[str, Callable[[], Any]], Any], log: Callable[[str], None]
) -> TagStatus:
    """Tag `sha` unless the tag exists; an existing tag is reported, never moved, never fatal."""
    refs = call("list_repo_refs", lambda: api.list_repo_refs(repo_id, repo_type=REPO_TYPE))
    existing = {ref.name: ref.target_commit for ref in refs.tags}
    if tag not in existing:
        try:
            call("create_tag", lambda: api.create_tag(
                repo_id, tag=tag, revision=sha, repo_type=REPO_TYPE, tag_message=f"Release {tag}"
            ))
            log(f"Tagged {sha[:12]} as {tag}")
            return "created"
        except HfHubHTTPError as exc:
            if http_status(exc) != 409:
                raise
            # Created meanwhile, or by our own attempt whose answer was lost: look again.
            refs = call("list_repo_refs", lambda: api.list_repo_refs(repo_id, repo_type=REPO_TYPE))
            existing = {ref.name: ref.target_commit for ref in refs.tags}
    if existing.get(tag) == sha:
        log(f"Tag {tag} already points at {sha[:12]}")
        return "exists"
    log(f"Tag {tag} already exists on {str(existing.get(tag))[:12]}, not on {sha[:12]}: left as is")
    return "exists_elsewhere"


def _explain(
    exc: BaseException, *, repo_id: str, endpoint: str, token: str | None, retry: RetryPolicy, timeouts: HubTimeouts = DEFAULT_TIMEOUTS
) -> HubPublishError:
    """Turn a client failure into an actionable message that names what to check and never the token."""
    status = http_status(exc)
    reason = short_reason(exc, token)
    if status == 401:
        message = (
            f"The Hub at {endpoint} rejected the credentials (401) while publishing {repo_id}. "
            "Check HF_TOKEN (a write token for the repo's namespace) and the repo name in MEDSET_HUB_REPO."
        )
    elif status == 403:
        message = (
            f"The Hub at {endpoint} refused to publish to {repo_id} (403): the token has no write access there. "
            "Check HF_TOKEN's permissions and the repo name in MEDSET_HUB_REPO."
        )
    elif isinstance(exc, RepositoryNotFoundError) or status == 404:
        message = (
            f"Dataset repo {repo_id} was not found on {endpoint} ({reason}). "
            "Check the repo name in MEDSET_HUB_REPO and that HF_TOKEN can write to it."
        )
    elif status == 412:
        message = (
            f"{repo_id} changed on the Hub while publishing (another commit landed first); nothing was committed. "
            "Re-run the publish."
        )
    elif status == 400:  # also the client's "Invalid metadata in README.md" ValueError, raised from a 400
        message = (
            f"The Hub at {endpoint} rejected the release content for {repo_id} ({reason}); nothing was committed. "
            "Check README.md's metadata (YAML, licence id) and the file names."
        )
    elif _is_timeout(exc):
        message = (
            f"The Hub at {endpoint} did not answer in time ({reason}; each request may wait {timeouts.read_s:g}s for an "
            f"answer, at most {retry.attempts} attempts); nothing was published (a commit is atomic). Check the "
            "network and HF_ENDPOINT, then re-run."
        )
    elif is_transient(exc):
        message = (
            f"The Hub at {endpoint} kept failing after up to {retry.attempts} attempts ({reason}); nothing partial was "
            "published (a commit is atomic). Check the network and HF_ENDPOINT, then re-run."
        )
    else:
        message = f"Publishing {repo_id} to {endpoint} failed: {reason}."
    return HubPublishError(message, status=status, transient=is_transient(exc))


def _is_timeout(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) is a client-side timeout."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError) or "Timeout" in type(current).__name__:
            return True
        current = current.__cause__ or current.__context__
    return False
