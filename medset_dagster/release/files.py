"""The one listing of a release folder's files, with their sizes and hashes.

The manifest (`build.json`), the publish step and the release asset's metadata all read the folder
through `list_release_files`, so they agree on what the release is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medset_dagster.common.hashing import sha256_file

MANIFEST_NAME = "build.json"


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release: `path` relative to the release folder (POSIX, as in the Hub repo),
    `bytes` its size in bytes, `sha256` its hex digest."""

    path: str
    bytes: int
    sha256: str


def list_release_files(release_dir: str | Path, *, include_manifest: bool = True) -> list[tuple[Path, ReleaseFile]]:
    """Every file under `release_dir` as (absolute path, ReleaseFile), sorted by release path.

    Hidden files and folders (".cache/", ".DS_Store", temporary files) are tooling leftovers, not
    release content, and are skipped. `include_manifest=False` leaves out `build.json`.
    """
    release_dir = Path(release_dir)
    found = []
    for path in sorted(p for p in release_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(release_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if not include_manifest and rel.as_posix() == MANIFEST_NAME:
            continue
        found.append((path, ReleaseFile(rel.as_posix(), path.stat().st_size, sha256_file(path))))
    return found
