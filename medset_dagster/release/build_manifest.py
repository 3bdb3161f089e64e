"""The build manifest (`build.json`): everything needed to say how a release was made.

It records the sources at the revisions loaded (and the registry's pins), the PDFs by SHA-256, the
generation and retrieval settings, the curation policy, the code (git commit, the command that
rebuilds the release, where the code can be read) and lock file, and every release file with its hash.

`content_hash` identifies the release *content*: the sorted `(path, sha256)` pairs of every release
file except `build.json`, plus the declared licence. Run ids, timestamps and the git commit are
recorded but left out of it, so republishing identical content is detectable: the publish step
compares it with the Hub's copy and makes no commit when they are equal.

The inputs are plain dataclasses (or dicts of the same shape) so a Dagster asset can fill them from
upstream metadata; the dataset card (`release/card/`) reads the same ones.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from medset_dagster.common.files import atomic_write_text
from medset_dagster.common.hashing import sha256_file, sha256_json
from medset_dagster.dataset.curation import CurationPolicy
from medset_dagster.release.files import MANIFEST_NAME, list_release_files
from medset_dagster.release.licensing import LicenceDecision
from medset_dagster.sources.registry import SourceSpec

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_ROOT.parent
UNKNOWN_COMMIT = "unknown"
# The setting that names where the build code can be read when the checkout has no git remote URL.
CODE_URL_SETTING = "MEDSET_CODE_URL"
# Where a source's revision_loaded comes from: a Hub commit sha (40 hex), or the SHA-256 content
# hash of a local mirror folder (64 hex, sample profile; `hub_revisions.local_mirror_revision`).
LoadedFrom = Literal["hub", "local_mirror"]
REVISION_PATTERNS: dict[str, str] = {"hub": r"[0-9a-f]{40}", "local_mirror": r"[0-9a-f]{64}"}

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------
# Inputs (shared with the dataset card)


@dataclass(frozen=True)
class SourceEntry:
    """One source as built: where it came from and how many rows it contributes to the release.

    Two revision fields, never mixed: `revision_loaded` is what this build read, in full (a Hub
    commit sha when `loaded_from` is "hub", the mirror folder's SHA-256 content hash when it is
    "local_mirror"; None for a source generated from the PDFs alone, or when no load recorded it);
    `revision_pinned` is the registry's pin (a Hub commit sha, or None). `licence` is the terms the
    source's rows carry as every card section states them (`LicenceDecision.sources`).

    Raises `ValueError` when `loaded_from` and `revision_loaded` disagree (one set without the other,
    or a value that is not a Hub commit / a content hash as `loaded_from` says).
    """

    source_id: str
    hub_repo: str | None
    config: str | None
    revision_loaded: str | None
    revision_pinned: str | None
    licence: str
    rows: int  # rows of this source in the final dataset
    loaded_from: LoadedFrom | None = None
    hub_head: str | None = None  # the Hub's head commit when last observed (full profile), if known
    description: str = ""
    published_rows: int | None = None  # rows the published build had, for comparison on the card

    def __post_init__(self) -> None:
        if (self.loaded_from is None) != (self.revision_loaded is None):
            raise ValueError(
                f"{self.source_id}: revision_loaded {self.revision_loaded!r} and loaded_from {self.loaded_from!r} "
                "must be given together"
            )
        if self.loaded_from is not None:
            pattern = REVISION_PATTERNS.get(self.loaded_from)
            if pattern is None:
                raise ValueError(f"{self.source_id}: loaded_from must be one of {sorted(REVISION_PATTERNS)}, not {self.loaded_from!r}")
            if not re.fullmatch(pattern, str(self.revision_loaded)):
                what = "a Hub commit sha (40 hex)" if self.loaded_from == "hub" else "a content hash (64 hex)"
                raise ValueError(f"{self.source_id}: revision_loaded {self.revision_loaded!r} is not {what}")

    def manifest_dict(self) -> dict[str, Any]:
        """The entry as `build.json` records it (revisions in full)."""
        return {
            "source_id": self.source_id,
            "hub_repo": self.hub_repo,
            "config": self.config,
            "revision_loaded": self.revision_loaded,
            "loaded_from": self.loaded_from,
            "revision_pinned": self.revision_pinned,
            "hub_head": self.hub_head,
            "licence": self.licence,
            "rows": self.rows,
        }


@dataclass(frozen=True)
class DocumentEntry:
    """One PDF of the RAG corpus, pinned by hash."""

    doc_id: str
    filename: str
    sha256: str
    licence: str
    title: str = ""


@dataclass(frozen=True)
class GenerationTask:
    """One LLM task: the rows of `task` (a source id) it produced and the prompts that made them."""

    task: str
    template_version: str  # hash over all the task's templates (prompts.task_version)
    items_requested: int
    items_kept: int
    templates: dict[str, str] = field(default_factory=dict)  # template name -> template hash
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)  # template name -> sampling params


@dataclass(frozen=True)
class GenerationInfo:
    """The LLM behind the generated sources: `backend` (llama_cpp, ollama, openai, fleet), `model`, the
    model `digest` the backend reported (None when unknown), one `GenerationTask` per task (dicts accepted)."""

    backend: str
    model: str
    digest: str | None
    tasks: list[GenerationTask] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Accept tasks as dicts (from asset metadata) as well as dataclasses.
        object.__setattr__(self, "tasks", [coerce(GenerationTask, t) for t in self.tasks])


@dataclass(frozen=True)
class RetrievalInfo:
    """The RAG settings as built: `chunk_size`, `chunk_overlap`, `chunk_min_chars` (characters), the
    `embedder` settings, `index_kind` (flat_ip or hnsw_ip), `top_k` (chunks retrieved per question),
    `chunks` (vectors in the index) and `min_similarity`."""

    chunk_size: int
    chunk_overlap: int
    chunk_min_chars: int
    embedder: dict[str, Any]  # vector_index.embedder_settings(): backend, model, fingerprint, dimension
    index_kind: str
    top_k: int = 5
    chunks: int | None = None
    # Cosine similarity the best passage must reach for a question to be answered at all.
    min_similarity: float | None = None


def coerce(cls: type[T], value: T | Mapping[str, Any]) -> T:
    """`value` as a `cls` instance: dataclasses pass through, mappings are unpacked (unknown keys fail)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls(**value)
    raise TypeError(f"expected {cls.__name__} or a mapping, got {type(value).__name__}")


def policy_dict(policy: CurationPolicy | Mapping[str, Any]) -> dict[str, Any]:
    """The curation policy as build.json and the card record it: name, seed, min_chars and max_chars
    (characters), global_dedup, length_filter. A mapping (asset metadata) is copied, its two flags
    derived from `name` when absent."""
    if isinstance(policy, CurationPolicy):
        return {
            "name": policy.name,
            "seed": policy.seed,
            "min_chars": policy.min_chars,
            "max_chars": policy.max_chars,
            "global_dedup": policy.global_dedup,
            "length_filter": policy.length_filter,
        }
    out = dict(policy)
    # A dict from asset metadata may carry the name only: the flags follow from it, as in CurationPolicy.
    out.setdefault("global_dedup", out.get("name") == "card")
    out.setdefault("length_filter", out.get("name") == "card")
    return out


# ---------------------------------------------------------------------------------------------------
# Helpers that fill the inputs from the registry, the corpus specs and the prompt templates


def source_entries(
    specs: Sequence[SourceSpec],
    rows_by_source: Mapping[str, int],
    *,
    revisions_loaded: Mapping[str, str] | None = None,
    hub_heads: Mapping[str, str] | None = None,
    licences: Mapping[str, str] | None = None,
) -> list[SourceEntry]:
    """One entry per spec (the dataset's sources, in registry order) with its rows in the release.

    `revisions_loaded`: source id -> the revision its load recorded (`revision_loaded` metadata:
    a Hub commit or a mirror content hash, told apart by `loaded_from_revision`); a source missing
    there has none (never the registry's pin in its place). `hub_heads`: the Hub's head when
    observed. `licences`: source id -> the terms its rows carry (`LicenceDecision.sources`), else
    the registry's licence string. Raises `ValueError` for a revision that is neither kind.
    """
    loaded, heads, terms = revisions_loaded or {}, hub_heads or {}, licences or {}
    return [
        SourceEntry(
            source_id=spec.source_id,
            hub_repo=spec.hub_repo,
            config=spec.config,
            revision_loaded=loaded.get(spec.source_id) or None,
            revision_pinned=spec.revision,
            licence=terms.get(spec.source_id, spec.licence),
            rows=int(rows_by_source.get(spec.source_id, 0)),
            loaded_from=loaded_from_revision(loaded[spec.source_id]) if loaded.get(spec.source_id) else None,
            hub_head=heads.get(spec.source_id) or None,
            description=spec.description,
            published_rows=spec.published_rows,
        )
        for spec in specs
    ]


def loaded_from_revision(revision: str) -> LoadedFrom:
    """What a recorded `revision_loaded` is: "hub" for a commit sha (40 hex), "local_mirror" for a
    mirror folder's SHA-256 content hash (64 hex). Raises `ValueError` for anything else."""
    for kind, pattern in REVISION_PATTERNS.items():
        if re.fullmatch(pattern, revision):
            return kind  # type: ignore[return-value]
    raise ValueError(f"revision {revision!r} is neither a Hub commit sha (40 hex) nor a content hash (64 hex)")


# What each profile generates with unless MEDSET_GENERATOR / MEDSET_OLLAMA_MODEL say otherwise (profiles.py).
DEFAULT_BACKEND = {"sample": "llama_cpp", "full": "ollama"}
DEFAULT_OLLAMA_MODEL = "gemma3n:e4b"


def reproduce_settings(
    profile: str,
    *,
    backend: str | None = None,
    model: str | None = None,
    scenarios: int | None = None,
    licence: str | None = None,
    acknowledge_licence_conflict: bool = False,
) -> dict[str, str]:
    """The environment settings (besides MEDSET_PROFILE) a rebuild needs to make the same release:
    MEDSET_GENERATOR when `backend` is not the profile's default, MEDSET_OLLAMA_MODEL for another
    Ollama model, MEDSET_SCENARIOS (full profile; the sample profile fixes it), and the declared
    licence settings. Never secrets or hosts."""
    settings: dict[str, str] = {}
    if backend and backend != DEFAULT_BACKEND.get(profile):
        settings["MEDSET_GENERATOR"] = backend
    if backend == "ollama" and model and model != DEFAULT_OLLAMA_MODEL:
        settings["MEDSET_OLLAMA_MODEL"] = model
    if profile == "full" and scenarios is not None:
        settings["MEDSET_SCENARIOS"] = str(scenarios)
    if licence:
        settings["MEDSET_RELEASE_LICENCE"] = licence
    if acknowledge_licence_conflict:
        settings["MEDSET_ACKNOWLEDGE_LICENCE_CONFLICT"] = "1"
    return settings


def reproduce_command(profile: str, policy: str = "card", settings: Mapping[str, str] | None = None) -> str:
    """The shell command that rebuilds a release like this one from a checkout of its `git_commit`.

    `profile`: "sample" or "full"; `policy`: the curation policy (`make build` runs the default,
    "card"; another goes through `python -m medset_dagster build --policy`); `settings`: further
    environment variables the build read (e.g. `MEDSET_SCENARIOS`), written sorted after
    `MEDSET_PROFILE`, values shell-quoted. Secrets (tokens, keys) must not be passed.
    Example: `reproduce_command("sample")` == "MEDSET_PROFILE=sample make build".
    """
    env = {"MEDSET_PROFILE": profile, **dict(sorted((settings or {}).items()))}
    prefix = " ".join(f"{name}={shlex.quote(str(value))}" for name, value in env.items())
    if policy == "card":
        return f"{prefix} make build"
    return f"make setup && {prefix} .venv/bin/python -m medset_dagster build --policy {shlex.quote(policy)}"


def generation_task(task: str, items_requested: int, items_kept: int, *, max_tokens_cap: int | None = None) -> GenerationTask:
    """A task's record from `prompts.TASK_TEMPLATES`, with the profile's token cap applied as sent."""
    from medset_dagster.generation.prompts import TASK_TEMPLATES, task_version

    parameters: dict[str, dict[str, Any]] = {}
    for template in TASK_TEMPLATES[task]:
        params = dict(template.params.__dict__)
        if max_tokens_cap is not None and max_tokens_cap < params["max_tokens"]:
            params["max_tokens"] = max_tokens_cap
        parameters[template.name] = params
    return GenerationTask(
        task=task,
        template_version=task_version(task),
        items_requested=items_requested,
        items_kept=items_kept,
        templates={t.name: t.version for t in TASK_TEMPLATES[task]},
        parameters=parameters,
    )


# ---------------------------------------------------------------------------------------------------
# The manifest


@dataclass
class BuildManifest:
    """The content of `build.json`. Besides the commented fields: `version` of the release, `created_by`
    ("medset_dagster <version>"), `rows` in the dataset, the inputs as dicts (`sources`, `documents`,
    `generation`, `retrieval`, `curation`), `code_version` (default: 16 hex over the package sources),
    `git_commit` (40 hex or "unknown"), `dagster_run_id`, `created_at`, `lock_file_sha256` (uv.lock),
    `quality` (what the quality stages removed) and `content_hash` (hex SHA-256; module docstring)."""

    version: str
    created_by: str
    licence: dict[str, Any]  # {"licence", "conflicts": [{source, licence, why}], "notes"}
    rows: int | None
    sources: list[dict[str, Any]]
    documents: list[dict[str, Any]]
    generation: dict[str, Any] | None
    retrieval: dict[str, Any] | None
    curation: dict[str, Any]
    code_version: str
    git_commit: str
    command: str | None  # the shell command that rebuilds the release from a checkout of git_commit
    code_url: str | None  # where the build code can be read (git remote, or MEDSET_CODE_URL)
    dagster_run_id: str | None
    created_at: str | None
    lock_file_sha256: str | None
    quality: dict[str, Any] | None
    files: dict[str, dict[str, Any]]  # release path -> {"bytes", "sha256"}; build.json excluded
    content_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=False)


def compute_file_hashes(release_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Release path -> {bytes, sha256} for every release file but `build.json`."""
    return {f.path: {"bytes": f.bytes, "sha256": f.sha256} for _, f in list_release_files(release_dir, include_manifest=False)}


def content_hash(files: Mapping[str, Mapping[str, Any]], licence: str) -> str:
    """What identifies the release content: files by (path, sha256) and the declared licence. Nothing else."""
    return sha256_json({"files": sorted((path, entry["sha256"]) for path, entry in files.items()), "licence": licence})


def git_commit(repo_root: str | Path = REPO_ROOT) -> str:
    """`git rev-parse HEAD` of `repo_root`, or "unknown" (no git, not a repository, detached tarball)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_COMMIT
    commit = done.stdout.strip()
    return commit if len(commit) == 40 else UNKNOWN_COMMIT


def _git(repo_root: str | Path, *args: str) -> str | None:
    """The stripped output of `git <args>` in `repo_root`, or None when git fails or is missing."""
    try:
        done = subprocess.run(["git", *args], cwd=repo_root, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def commit_year(repo_root: str | Path = REPO_ROOT, commit: str = "HEAD") -> int | None:
    """The year (UTC, e.g. 2026) of `commit`'s committer date in `repo_root`: the citation's year,
    which a rebuild of the same commit never changes. None without git or a repository."""
    out = _git(repo_root, "show", "-s", "--format=%ct", commit)
    if not out or not out.isdigit():
        return None
    import datetime

    return datetime.datetime.fromtimestamp(int(out), tz=datetime.timezone.utc).year


def public_url(remote: str) -> str | None:
    """A git remote as a URL a reader can open: credentials and ".git" removed, scp-style
    `git@host:owner/repo` as `https://host/owner/repo`; None for a local path or `file://`."""
    remote = remote.strip()
    scp = re.fullmatch(r"(?:[^@/\s]+@)?([A-Za-z0-9.-]+\.[A-Za-z]{2,}):(?!/)(.+)", remote)
    if scp:
        remote = f"https://{scp.group(1)}/{scp.group(2)}"
    parts = urllib.parse.urlsplit(remote)
    if parts.scheme not in ("http", "https", "ssh", "git") or not parts.hostname:
        return None
    host = parts.hostname + (f":{parts.port}" if parts.port and parts.scheme in ("http", "https") else "")
    path = re.sub(r"\.git$", "", parts.path.rstrip("/"))
    return urllib.parse.urlunsplit(("https" if parts.scheme != "http" else "http", host, path, "", ""))


def code_url(repo_root: str | Path = REPO_ROOT, env: Mapping[str, str] | None = None) -> str | None:
    """Where the build code can be read: the URL of the checkout's git remote (`origin` first, then
    the first remote) as `public_url` gives it, else the `MEDSET_CODE_URL` setting of `env`
    (default: the process environment), else None."""
    remotes = (_git(repo_root, "remote") or "").split()
    for name in sorted(remotes, key=lambda r: r != "origin"):
        url = public_url(_git(repo_root, "remote", "get-url", name) or "")
        if url:
            return url
    setting = (os.environ if env is None else env).get(CODE_URL_SETTING, "").strip()
    return setting or None


def package_version() -> str:
    """The installed version of the `medset_dagster` distribution, or "unknown" when it is not installed."""
    try:
        return importlib.metadata.version("medset_dagster")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def source_code_version(package_root: str | Path = PACKAGE_ROOT) -> str:
    """Hash of the package's Python sources: a code version that needs no git."""
    package_root = Path(package_root)
    sources = sorted(p for p in package_root.rglob("*.py") if "__pycache__" not in p.parts)
    return sha256_json([(p.relative_to(package_root).as_posix(), sha256_file(p)) for p in sources])[:16]


def _licence_dict(licence: LicenceDecision | str) -> dict[str, Any]:
    if isinstance(licence, str):
        return {"licence": licence, "conflicts": [], "notes": []}
    return {
        "licence": licence.licence,
        "conflicts": [{"source": s, "licence": lic, "why": why} for s, lic, why in licence.conflicts],
        "notes": list(licence.notes),
    }


def build_manifest(
    *,
    release_dir: str | Path,
    version: str,
    licence: LicenceDecision | str,
    sources: Sequence[SourceEntry | Mapping[str, Any]],
    curation: CurationPolicy | Mapping[str, Any],
    documents: Sequence[DocumentEntry | Mapping[str, Any]] = (),
    generation: GenerationInfo | Mapping[str, Any] | None = None,
    retrieval: RetrievalInfo | Mapping[str, Any] | None = None,
    rows: int | None = None,
    dagster_run_id: str | None = None,
    created_at: str | None = None,
    code_version: str | None = None,
    repo_root: str | Path = REPO_ROOT,
    lock_file: str | Path | None = None,
    commit: str | None = None,
    quality: Mapping[str, Any] | None = None,
    command: str | None = None,
    code_url: str | None = None,
) -> BuildManifest:
    """The manifest of the release folder as it is now (write README.md and images first).

    `lock_file` defaults to `repo_root/uv.lock`; `commit` defaults to `git_commit(repo_root)`;
    `code_version` to a hash of the package sources. `command` (`reproduce_command`) and
    `code_url` are recorded as given. Raises `ValueError`/`TypeError` for malformed inputs.
    """
    files = compute_file_hashes(release_dir)
    licence_info = _licence_dict(licence)
    lock = Path(lock_file) if lock_file is not None else Path(repo_root) / "uv.lock"
    gen = coerce(GenerationInfo, generation) if generation is not None else None
    ret = coerce(RetrievalInfo, retrieval) if retrieval is not None else None
    return BuildManifest(
        version=version,
        created_by=f"medset_dagster {package_version()}",
        licence=licence_info,
        rows=rows,
        sources=[coerce(SourceEntry, s).manifest_dict() for s in sources],
        documents=[asdict(coerce(DocumentEntry, d)) for d in documents],
        generation=asdict(gen) if gen is not None else None,
        retrieval=asdict(ret) if ret is not None else None,
        curation=policy_dict(curation),
        code_version=code_version or source_code_version(),
        git_commit=commit or git_commit(repo_root),
        command=command,
        code_url=code_url,
        dagster_run_id=dagster_run_id,
        created_at=created_at,
        lock_file_sha256=sha256_file(lock) if lock.is_file() else None,
        quality=dict(quality) if quality is not None else None,
        files=files,
        content_hash=content_hash(files, licence_info["licence"]),
    )


def write_manifest(manifest: BuildManifest, release_dir: str | Path) -> Path:
    """Write `build.json` atomically; refuses if the folder's files changed since the manifest was built."""
    release_dir = Path(release_dir)
    # Sizes and paths only: a cheap check that catches the usual mistake (writing the card after the manifest).
    now = {f.path: f.bytes for _, f in list_release_files(release_dir, include_manifest=False)}
    recorded = {path: entry["bytes"] for path, entry in manifest.files.items()}
    if now != recorded:
        changed = sorted(set(now.items()) ^ set(recorded.items()))
        raise ValueError(
            f"release folder {release_dir} changed since the manifest was built "
            f"(first differences: {[p for p, _ in changed[:5]]}); build the manifest again"
        )
    return atomic_write_text(release_dir / MANIFEST_NAME, manifest.to_json() + "\n")

