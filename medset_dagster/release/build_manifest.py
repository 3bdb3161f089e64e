"""The build manifest (`build.json`): everything needed to say how a release was made.

It records the sources at the revisions loaded, the PDFs by SHA-256, the generation and retrieval
settings, the curation policy, the code and lock file, and every release file with its hash.

`content_hash` identifies the release *content*: the sorted `(path, sha256)` pairs of every release
file except `build.json`, plus the declared licence. Run ids, timestamps and the git commit are
recorded but left out of it, so republishing identical content is detectable: the publish step
compares it with the Hub's copy and makes no commit when they are equal.

The inputs are plain dataclasses (or dicts of the same shape) so a Dagster asset can fill them from
upstream metadata; the dataset card (`dataset_card.py`) reads the same ones.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from medset_dagster.common.files import atomic_write_text
from medset_dagster.common.hashing import sha256_file, sha256_json
from medset_dagster.dataset.curation import CurationPolicy
from medset_dagster.release.files import MANIFEST_NAME, list_release_files
from medset_dagster.release.licensing import LicenceDecision
from medset_dagster.sources.registry import SourceSpec

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_ROOT.parent
UNKNOWN_COMMIT = "unknown"

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------
# Inputs (shared with the dataset card)


@dataclass(frozen=True)
class SourceEntry:
    """One source as built: where it came from and how many rows it contributes to the release."""

    source_id: str
    hub_repo: str | None
    config: str | None
    revision: str | None  # the revision loaded (the registry's pin, or the mirror's)
    licence: str
    rows: int  # rows of this source in the final dataset
    revision_observed: str | None = None  # the Hub's current head when checked, if known
    description: str = ""
    published_rows: int | None = None  # rows the published build had, for comparison on the card

    def manifest_dict(self) -> dict[str, Any]:
        return {
            "source_id": self.source_id,
            "hub_repo": self.hub_repo,
            "config": self.config,
            "revision": self.revision,
            "revision_observed": self.revision_observed,
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
    backend: str
    model: str
    digest: str | None
    tasks: list[GenerationTask] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Accept tasks as dicts (from asset metadata) as well as dataclasses.
        object.__setattr__(self, "tasks", [coerce(GenerationTask, t) for t in self.tasks])


@dataclass(frozen=True)
class RetrievalInfo:
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
    revisions_observed: Mapping[str, str] | None = None,
) -> list[SourceEntry]:
    """One entry per spec (the dataset's sources, in registry order) with its rows in the release.

    `revisions_loaded` overrides the registry's pin (e.g. the sample profile's mirror revision).
    """
    loaded, observed = revisions_loaded or {}, revisions_observed or {}
    return [
        SourceEntry(
            source_id=spec.source_id,
            hub_repo=spec.hub_repo,
            config=spec.config,
            revision=loaded.get(spec.source_id, spec.revision),
            licence=spec.licence,
            rows=int(rows_by_source.get(spec.source_id, 0)),
            revision_observed=observed.get(spec.source_id),
            description=spec.description,
            published_rows=spec.published_rows,
        )
        for spec in specs
    ]


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


def package_version() -> str:
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
) -> BuildManifest:
    """The manifest of the release folder as it is now (write README.md and images first).

    `lock_file` defaults to `repo_root/uv.lock`; `commit` defaults to `git_commit(repo_root)`;
    `code_version` to a hash of the package sources.
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

