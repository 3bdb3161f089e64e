"""Each release is built in a folder of its own, and `release` points at the current one.

A build writes its data files, card and manifest into `releases/<id>/`; only when that folder is
complete does `publish_current` switch the `release` symlink to it, with one `rename`, which is
atomic. A reader (or the publish step) sees the old release or the new one, never a mix, and a
build killed halfway leaves the current release untouched.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

# Release folders kept besides the current one, so a rollback needs no rebuild.
KEEP_PREVIOUS = 2
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def new_release_folder(releases_dir: Path, release_id: str) -> Path:
    """An empty folder `releases_dir/<release_id>` (emptied if a crashed attempt left one)."""
    folder = Path(releases_dir) / _SAFE.sub("-", release_id)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def current_release(pointer: Path) -> Path | None:
    """The folder `pointer` designates, or None when there is no release yet."""
    pointer = Path(pointer)
    if pointer.is_symlink():
        return pointer.resolve()
    return pointer if pointer.is_dir() else None


def publish_current(pointer: Path, folder: Path) -> None:
    """Make `pointer` (a symlink) designate `folder`, atomically.

    A plain folder left at `pointer` by an older layout is moved into `folder`'s parent as
    `legacy` first, so nothing is deleted.
    """
    pointer, folder = Path(pointer), Path(folder)
    if pointer.exists() and not pointer.is_symlink():
        legacy = folder.parent / "legacy"
        if legacy.exists():
            shutil.rmtree(legacy)
        pointer.rename(legacy)
    temporary = pointer.with_name(f".{pointer.name}.switch")
    temporary.unlink(missing_ok=True)
    # A relative target keeps the data folder movable as a whole.
    temporary.symlink_to(os.path.relpath(folder, pointer.parent), target_is_directory=True)
    os.replace(temporary, pointer)


def prune_releases(releases_dir: Path, pointer: Path, keep_previous: int = KEEP_PREVIOUS) -> list[Path]:
    """Delete release folders beyond the current one and the `keep_previous` newest others;
    returns what was deleted. Folders still being built by another run are younger than the
    current one's and are kept."""
    current = current_release(pointer)
    folders = sorted((p for p in Path(releases_dir).iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    if current is None:
        return []
    newer = [p for p in folders if p.stat().st_mtime > current.stat().st_mtime]
    older = [p for p in folders if p != current and p not in newer]
    doomed = older[keep_previous:]
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    return doomed
