"""Code versions: a hash of the source that decides an asset's output.

Dagster marks an asset stale when its code version changes, so each asset's version covers exactly
the plain modules and functions it runs (and, for prompts or registry entries, their contents).
"""

from __future__ import annotations

import inspect
from types import FunctionType, ModuleType

from medset_dagster.common.hashing import sha256_text, stable_json


def code_version(*parts: ModuleType | type | FunctionType | str, extra: object = None) -> str:
    """16 hex characters: sha256 over the source of each module, class or function in `parts`
    (strings are hashed as they are) and the canonical JSON of `extra`."""
    texts = [part if isinstance(part, str) else inspect.getsource(part) for part in parts]
    return sha256_text("\0".join(texts) + "\0" + stable_json(extra))[:16]
