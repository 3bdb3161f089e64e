"""Run `datasets` in a fresh process pointed at a loopback Hub, the way the full profile runs it.

huggingface_hub and datasets read HF_ENDPOINT once, at import (`constants.ENDPOINT`,
`datasets.config.HF_ENDPOINT`, the set of Hub origins allowed to receive the token), so a test
process that already imported them cannot re-point them faithfully. A child process started with
HF_ENDPOINT set, HF_HUB_OFFLINE / HF_DATASETS_OFFLINE unset and a throw-away HF_HOME sees exactly what
a pipeline process started against that endpoint sees.

From a test:

    results = load_over_http(hub.endpoint, [
        {"label": "medqa", "repo": "truehealth/medqa", "kwargs": {"split": "train", "revision": sha}},
        {"label": "medqa rows", "source_id": "medqa", "revision": sha},   # sources/loading.py + map_source
    ], hf_home=tmp_path / "hf")

Each result is a dict: `label`; `rows` (int) and `columns` (list of str) of the loaded split;
`digest` (sha256 hex of the rows as NDJSON, to compare two loads); `first` (the first row as a dict, or
None); `seconds` (float, wall time of the load); for a `source_id` request also `stats` (SourceStats as
a dict: rows_read, rows_mapped, rows_kept, dropped, ...) and `kept_digest`; `error` (None, or
"<ExceptionType>: <message>" when that load raised; the other requests still run).

Command line (what `load_over_http` runs): `python -m medset_dagster_tests.servers.hub_process REQUESTS.json`
prints one JSON list of results on stdout's last line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# Variables of the parent that would change what the child loads or where it looks.
_STRIPPED = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_HOME", "HF_TOKEN",
             "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH")


def hub_env(endpoint: str, hf_home: Path, token: str | None = None) -> dict[str, str]:
    """The environment of a process that talks to `endpoint` only, with its caches under `hf_home`."""
    env = {k: v for k, v in os.environ.items() if k not in _STRIPPED}
    env |= {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
    }
    if token:
        env["HF_TOKEN"] = token
    return env


def load_over_http(
    endpoint: str,
    requests: list[dict[str, Any]],
    *,
    hf_home: Path,
    token: str | None = None,
    timeout: float = 600.0,
) -> list[dict[str, Any]]:
    """Run the load requests in one child process (in order, sharing its cache); return one result each.

    Raises RuntimeError (with the child's stderr tail) if the child itself fails, and
    subprocess.TimeoutExpired after `timeout` seconds.
    """
    hf_home.mkdir(parents=True, exist_ok=True)
    request_file = hf_home / f"requests-{time.time_ns()}.json"
    request_file.write_text(json.dumps(requests))
    done = subprocess.run(
        [sys.executable, "-m", "medset_dagster_tests.servers.hub_process", str(request_file)],
        env=hub_env(endpoint, hf_home, token),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"hub_process exited {done.returncode}:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _frame_digest(frame: Any) -> str:
    return hashlib.sha256(frame.write_ndjson().encode()).hexdigest()


def _run_one(request: dict[str, Any]) -> dict[str, Any]:
    import datasets

    result: dict[str, Any] = {"label": request.get("label", ""), "error": None}
    started = time.perf_counter()
    try:
        if "source_id" in request:
            from medset_dagster.sources.loading import load_native_rows, map_source
            from medset_dagster.sources.registry import SOURCES_BY_ID

            spec = SOURCES_BY_ID[request["source_id"]]
            rows = load_native_rows(spec, hub_root=None, revision=request.get("revision"), token=os.environ.get("HF_TOKEN"))
            kept, stats = map_source(spec, rows)
            result["stats"] = dataclasses.asdict(stats)
            result["kept_digest"] = _frame_digest(kept)
        else:
            dataset = datasets.load_dataset(request["repo"], **request.get("kwargs", {}))
            rows = dataset.to_polars()
        result |= {
            "rows": rows.height,
            "columns": rows.columns,
            "digest": _frame_digest(rows),
            "first": rows.head(1).to_dicts()[0] if rows.height else None,
        }
    except Exception as error:  # reported per request; the caller asserts on it
        result["error"] = f"{type(error).__name__}: {error}"
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def main(argv: list[str]) -> int:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    requests = json.loads(Path(argv[0]).read_text())
    results = [_run_one(request) for request in requests]
    print(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
