"""Stable content hashes: the identity of cached work, chunks, shards and data versions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def stable_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no whitespace) so equal values hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    """Hex sha256 of `text` encoded as UTF-8."""
    return sha256_bytes(text.encode("utf-8"))


def sha256_json(value: Any) -> str:
    """Hex SHA-256 (64 characters) of `stable_json(value)`: equal values hash equally whatever their key
    order; values JSON cannot encode are hashed as their `str`."""
    return sha256_text(stable_json(value))


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of the file's bytes, read `chunk_size` bytes at a time; OSError when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(root: str | Path) -> str:
    """Hash of every file's relative path and bytes under `root`, in sorted order."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def shard_of(key: str, shard_count: int) -> int:
    """The shard an item belongs to: stable across runs, machines and Python versions."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % shard_count
