"""Per-item generation cache: one SQLite row per item, committed the moment the item completes.

WAL mode with one transaction per item means a killed run loses at most the items that were in
flight; the next run serves every committed success and retries everything else. Failures are
stored too; a failure is served only when the caller names its reason as settled (the model's own
answer, e.g. truncated, which the same key would give again), so a server's failure is always
tried again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medset_dagster.common.hashing import sha256_json
from medset_dagster.generation.backends import GenerationRequest, GenerationResult

# Bump when the key's recipe changes, so old rows can never be served under a new meaning.
CACHE_KEY_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    text TEXT NOT NULL,
    parsed TEXT,
    finish_reason TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT,
    error_detail TEXT,
    created_at TEXT NOT NULL
)
"""

_COLUMNS = (
    "key, task, text, parsed, finish_reason, prompt_tokens, completion_tokens, "
    "latency_s, attempts, error, error_detail, created_at"
)


def cache_key(
    request: GenerationRequest,
    model: str,
    digest: str | None,
    template_version: str,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """sha256 of everything that decides an item's output.

    The schema is included with the messages because it constrains the output as much as the prompt
    does; `extra` carries inputs not visible in the messages (e.g. retrieved chunk ids).
    """
    return sha256_json(
        {
            "key_version": CACHE_KEY_VERSION,
            "task": request.task,
            "template_version": template_version,
            "messages": request.messages,
            "schema": request.schema,
            "model": model,
            "digest": digest,
            "params": asdict(request.params),
            "extra": dict(extra) if extra is not None else None,
        }
    )


def _row_to_result(row: sqlite3.Row) -> GenerationResult:
    return GenerationResult(
        text=row["text"],
        parsed=json.loads(row["parsed"]) if row["parsed"] is not None else None,
        finish_reason=row["finish_reason"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        latency_s=row["latency_s"],
        attempts=row["attempts"],
        error=row["error"],
        error_detail=row["error_detail"],
    )


class GenerationCache:
    """Thread-safe SQLite cache of generation results, keyed by `cache_key`.

    One connection guarded by a lock: writes are tiny (a row) next to an LLM call, so serializing
    them costs nothing measurable and avoids SQLITE_BUSY between the runner's threads.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a killed process (not a power cut), at no fsync per row.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "GenerationCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, key: str, task: str, result: GenerationResult) -> None:
        """Store one item in its own transaction. A failure never overwrites a stored success."""
        row = (
            key,
            task,
            result.text,
            json.dumps(result.parsed, ensure_ascii=False, sort_keys=True) if result.parsed is not None else None,
            result.finish_reason,
            int(result.prompt_tokens),
            int(result.completion_tokens),
            float(result.latency_s),
            int(result.attempts),
            result.error,
            result.error_detail,
            datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        )
        with self._lock:
            self._conn.execute(
                f"INSERT INTO generations ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET "
                "task=excluded.task, text=excluded.text, parsed=excluded.parsed, "
                "finish_reason=excluded.finish_reason, prompt_tokens=excluded.prompt_tokens, "
                "completion_tokens=excluded.completion_tokens, latency_s=excluded.latency_s, "
                "attempts=excluded.attempts, error=excluded.error, error_detail=excluded.error_detail, "
                "created_at=excluded.created_at "
                "WHERE excluded.error IS NULL OR generations.error IS NOT NULL",
                row,
            )

    def get(self, key: str) -> GenerationResult | None:
        """The stored success for `key`, or None (absent or failed)."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str], *, settled: Iterable[str] = ()) -> dict[str, GenerationResult]:
        """Stored results among `keys`: every success, and the failures whose reason is in `settled`
        (other failures are left out so they are retried)."""
        wanted = list(dict.fromkeys(keys))
        reasons = sorted(set(settled))
        served = "error IS NULL" + (f" OR error IN ({','.join('?' * len(reasons))})" if reasons else "")
        found: dict[str, GenerationResult] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):  # stay under SQLite's bound-parameter limit
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM generations WHERE ({served}) AND key IN ({marks})", [*reasons, *batch]
                ).fetchall()
                found.update((row["key"], _row_to_result(row)) for row in rows)
        return found

    def entry(self, key: str) -> dict[str, Any] | None:
        """The raw row for `key`, failures included (for inspection and tests)."""
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM generations WHERE key = ?", (key,)).fetchone()
        return dict(row) if row is not None else None

    def counts(self) -> dict[str, int]:
        """Rows stored, split into successes and failures."""
        with self._lock:
            ok, failed = self._conn.execute(
                "SELECT COALESCE(SUM(error IS NULL), 0), COALESCE(SUM(error IS NOT NULL), 0) FROM generations"
            ).fetchone()
        return {"ok": int(ok), "failed": int(failed), "total": int(ok) + int(failed)}
