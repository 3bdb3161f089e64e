"""The full-profile rehearsal: every real client against loopback services, at the real scale (prints figures).

This machine cannot reach the Hub, Cohere or Ollama, so the rehearsal serves their APIs on 127.0.0.1
and runs the pipeline exactly as production would, through `python -m medset_dagster` in child
processes with `MEDSET_PROFILE=full`:

  0. generate the synthetic mirrors of the nine sources (`fixtures/full_mirrors.py`) and commit them
     into a loopback Hub (LFS storage) at the registry's pinned revisions, with the sample benchmark
     mirrors (the nine `benchmark` entries; PubMedQA is pinned by its first observation); then move
     every registry-pinned repo's head on (a pinned build must not follow it); place the 240-page
     guideline PDF as `<data>/pdfs/9789241513081-eng.pdf` (pinned on first use);
  1. `build --policy published` (observe, then build_dataset phase by phase);
  2. `publish` to the loopback Hub through the LFS upload path, then read every file back and
     compare its hash;
  3. `build --changed` with nothing changed (all heads moved, PubMedQA's too: pins hold): expect 0
     downloads, 0 LLM and 0 embedding calls;
  4. `MEDSET_TRACK_SOURCES=<source>`, a new upstream commit to that source, `observe`, then
     `build --changed --no-observe`: expect that source's downstream only.

It prints the per-source counts (read from the Dagster instance: the funnel of `curated_dataset`,
`after_source_dedup`) against the published ones, the LLM and embedding calls counted at the
stand-ins, the wall time of each stage (from the runs' step events), the share of the ideal LLM
time (calls x latency / slots) that generation reached, the peak RSS of the build process (from
`wait4`), the files published, and the two reruns. Exit status 1 when a correctness check fails
(a count, a hash, a call or download in the no-change rerun, an asset outside the tracked source's
downstream); the performance targets are reported as met or MISSED (exit status 1 for a miss with
`--strict-targets`).

Latency and slots. Ollama answers each chat in `--llm-latency` seconds with `--llm-slots` requests
served at once (Ollama's OLLAMA_NUM_PARALLEL, 4 by default, equal to the client's requests in
flight); Cohere each embed request (up to 96 texts) in `--embed-latency` seconds through
`--embed-slots` slots. The default 0.2 s per chat compresses gemma3n's real seconds per answer about
tenfold, so a full-size run takes about 25 minutes instead of hours; the LLM share (ideal / measured)
is a ratio, and a longer latency only amortises the fixed costs further (`--llm-latency 2` rehearses
the real pace).

    .venv/bin/python benchmarks/rehearsal.py [--scale 1.0] [--llm-latency 0.2] [--llm-slots 4]
        [--embed-latency 0.3] [--embed-slots 2] [--scenarios 1000] [--track-source symptom_to_diagnosis]
        [--work DIR] [--keep] [--json OUT]

The test suite runs a reduced rehearsal (`medset_dagster_tests/test_rehearsal.py`: scale 0.05, 50
scenarios, no latency) through `rehearse()`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from medset_dagster.sources.registry import SOURCES_BY_ID, benchmark_sources, hub_sources  # noqa: E402
from medset_dagster_tests.fixtures.full_mirrors import (  # noqa: E402
    GUIDELINE_FILENAME,
    GUIDELINE_PAGES,
    FullMirrors,
    build_mirrors,
    guideline_pdf,
    push_mirrors,
    symptom_row,
)
from medset_dagster_tests.servers.cohere_server import CohereTestServer  # noqa: E402
from medset_dagster_tests.servers.hub_process import hub_env  # noqa: E402
from medset_dagster_tests.servers.hub_server import HubServer  # noqa: E402
from medset_dagster_tests.servers.ollama_server import FakeOllamaServer  # noqa: E402

SAMPLE_HUB = REPO / "medset_dagster" / "sample_data" / "hub"
HUB_TOKEN = "hf_rehearsalWriteToken0000000000000"
COHERE_KEY = "rehearsal-cohere-key"
RELEASE_REPO = "medset/medical-qa-rehearsal"
MODEL = "gemma3n:e4b"
GB = 1024**3
# Hub routes that move file bytes to a reader: a download.
DOWNLOAD_ROUTES = ("resolve", "cdn")
# The deterministic sources and the row count the published build had (shared/reference/sources.md);
# wiki's registry count is of generated rows and the RAG source's of generations: neither is exact.
DETERMINISTIC = (
    "medical_o1_verifiable_problem",
    "medical_o1_reasoning_sft",
    "synthetic_disaster_reports",
    "medicationqa",
    "diseases_symptoms",
    "first_aid_dataset",
    "symptom_to_diagnosis",
    "medqa",
)
GENERATION_TASKS = ("emergency_scenarios", "medical_term_questions", "medqa_explanations", "symptom_diagnoses")
# Performance targets of issue 12 (full scale, 2 cores).
TARGET_LLM_SHARE = 0.9
TARGET_NON_LLM_S = 300.0
TARGET_PEAK_RSS = 4 * GB
TARGET_NO_CHANGE_S = 60.0
# Environment variables of the parent that would change what a child builds, loads or where.
_STRIPPED_PREFIXES = ("MEDSET_", "COHERE_", "OLLAMA_", "DAGSTER_")


@dataclass
class Settings:
    """What to rehearse. `scale` sizes the mirrors (1.0: the real row counts); `scenarios` is
    MEDSET_SCENARIOS; the latencies are the stand-ins' service time per request and the slots how
    many requests each serves at once. `track_source` None skips step 4."""

    scale: float = 1.0
    seed: int = 12
    scenarios: int = 1000
    llm_latency_s: float = 0.2
    llm_slots: int = 4
    embed_latency_s: float = 0.3
    embed_slots: int = 2
    track_source: str | None = "symptom_to_diagnosis"
    work_dir: Path | None = None
    keep: bool = False
    child_timeout_s: float = 4 * 3600


@dataclass
class CliRun:
    """One `python -m medset_dagster ...` child: exit code, wall time, peak RSS, its output lines
    and the Dagster runs it launched (found by the run tag `medset/pid`)."""

    command: list[str]
    returncode: int
    wall_s: float
    peak_rss_bytes: int
    stdout: list[str]
    log: Path
    pid: int
    run_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class Report:
    """Everything the rehearsal measured (`asdict` is its JSON)."""

    settings: dict[str, Any]
    mirrors: dict[str, Any] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)
    counts: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)
    llm: dict[str, float] = field(default_factory=dict)
    pins: dict[str, Any] = field(default_factory=dict)
    publish: dict[str, Any] = field(default_factory=dict)
    no_change: dict[str, Any] = field(default_factory=dict)
    track: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    targets: dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(self.checks.values())


# --------------------------------------------------------------------------------------------------
# Services and data
# --------------------------------------------------------------------------------------------------


@dataclass
class Services:
    hub: HubServer
    cohere: CohereTestServer
    ollama: FakeOllamaServer

    def counters(self) -> dict[str, int]:
        """Calls seen so far: LLM chats, embed requests, texts embedded, Hub downloads and requests."""
        routes = Counter(request.route for request in list(self.hub.requests))
        return {
            "llm_calls": self.ollama.calls,
            "embedding_calls": self.cohere.calls,
            "texts_embedded": self.cohere.texts_embedded,
            "downloads": sum(routes[route] for route in DOWNLOAD_ROUTES),
            "hub_requests": sum(routes.values()),
            "lfs_uploads": routes["lfs_upload"],
        }


@contextmanager
def services(settings: Settings) -> Iterator[Services]:
    """The loopback Hub (LFS storage, token required for writes), Cohere and Ollama stand-ins, each on
    127.0.0.1 in threads of this process (the build runs in a child, so they do not share its GIL)."""
    hub = HubServer(token=HUB_TOKEN, lfs=True)
    cohere = CohereTestServer(
        api_key=COHERE_KEY, latency_s=settings.embed_latency_s, max_concurrent=settings.embed_slots, vectors="lexical"
    )
    ollama = FakeOllamaServer([MODEL], latency_s=settings.llm_latency_s, max_concurrent=settings.llm_slots, honour_seed=True)
    hub.start()
    try:
        with cohere, ollama:
            yield Services(hub, cohere, ollama)
    finally:
        hub.stop()


def benchmark_repos() -> dict[str, tuple[str | None, dict[str, bytes]]]:
    """The sample benchmark mirrors as Hub repos: hub_repo -> (pinned revision or None, files)."""
    repos: dict[str, tuple[str | None, dict[str, bytes]]] = {}
    for spec in benchmark_sources():
        if spec.hub_repo in repos:
            continue
        folder = SAMPLE_HUB / spec.hub_repo
        files = {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}
        repos[spec.hub_repo] = (spec.revision, files)
    return repos


def seed_hub(hub: HubServer, mirrors: FullMirrors) -> dict[str, str]:
    """Commit the source mirrors and the benchmark mirrors at their pins (PubMedQA: a fresh sha, pinned
    by the first observation); return hub_repo -> the sha holding the data."""
    shas = {SOURCES_BY_ID[sid].hub_repo: sha for sid, sha in push_mirrors(hub, mirrors, pinned=True).items()}
    for repo, (revision, files) in benchmark_repos().items():
        shas[repo] = hub.add_repo(repo, files, sha=revision, message="sample benchmark mirror")
    return shas


def move_heads(hub: HubServer, repos: list[str], note: str) -> dict[str, str]:
    """A new upstream commit (a changelog line, data unchanged) on each repo; return the new heads."""
    return {repo: hub.push(repo, {"CHANGELOG.md": f"{note}\n".encode()}, message=note) for repo in repos}


def tracked_change(hub: HubServer, mirrors: FullMirrors, source_id: str, new_rows: int = 3) -> tuple[str, int]:
    """Push a commit to `source_id`'s repo that adds `new_rows` new rows (symptom_to_diagnosis: to its
    train.jsonl) or, for another source, touches its README; return (new head, rows added)."""
    spec = SOURCES_BY_ID[source_id]
    files = mirrors.repos[spec.hub_repo]
    if source_id != "symptom_to_diagnosis":
        readme = files.get("README.md", b"") + b"\nRevised upstream.\n"
        return hub.push(spec.hub_repo, {"README.md": readme}, message="upstream revision"), 0
    train = files["train.jsonl"]
    seen = {json.loads(line)["input_text"] for line in train.decode().splitlines() if line.strip()}
    rng, added = random.Random(f"{mirrors.seed}:tracked"), []
    while len(added) < new_rows:
        row = symptom_row(rng)
        if row["input_text"] not in seen:
            seen.add(row["input_text"])
            added.append(json.dumps(row, ensure_ascii=False))
    content = train.rstrip(b"\n") + b"\n" + "\n".join(added).encode() + b"\n"
    return hub.push(spec.hub_repo, {"train.jsonl": content}, message=f"{new_rows} new rows"), new_rows


# --------------------------------------------------------------------------------------------------
# Children
# --------------------------------------------------------------------------------------------------


@dataclass
class Layout:
    """The rehearsal's folders: data (MEDSET_DATA_DIR), Dagster home, HF home, child logs."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def hf_home(self) -> Path:
        return self.root / "hf"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def create(self) -> None:
        for folder in (self.data / "pdfs", self.dagster_home, self.hf_home, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        # The repo's instance settings (the `llm` pool, run monitoring), storage under this home.
        shutil.copyfile(REPO / ".dagster" / "dagster.yaml", self.dagster_home / "dagster.yaml")


def child_env(layout: Layout, svc: Services, settings: Settings, *, track: str | None = None) -> dict[str, str]:
    """The full profile's environment, pointed at the loopback services and the rehearsal's folders."""
    env = {k: v for k, v in hub_env(svc.hub.endpoint, layout.hf_home, HUB_TOKEN).items() if not k.startswith(_STRIPPED_PREFIXES)}
    env |= {
        "MEDSET_PROFILE": "full",
        "MEDSET_DATA_DIR": str(layout.data),
        "DAGSTER_HOME": str(layout.dagster_home),
        "MEDSET_HUB_REPO": RELEASE_REPO,
        "MEDSET_SCENARIOS": str(settings.scenarios),
        "COHERE_API_KEY": COHERE_KEY,
        "COHERE_BASE_URL": svc.cohere.base_url,
        "OLLAMA_HOST": svc.ollama.url,
        # huggingface_hub uploads through Xet whenever hf_xet is installed; the loopback Hub serves LFS.
        "HF_HUB_DISABLE_XET": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if track:
        env["MEDSET_TRACK_SOURCES"] = track
    return env


def run_cli(args: list[str], env: dict[str, str], log: Path, *, timeout_s: float, echo: Callable[[str], None]) -> CliRun:
    """Run `python -m medset_dagster ARGS`; stdout lines are echoed, stderr (Dagster's event log)
    goes to `log`. The child is reaped with `wait4`, whose rusage gives its peak RSS."""
    command = [sys.executable, "-m", "medset_dagster", *args]
    lines: list[str] = []
    started = time.perf_counter()
    with open(log, "w") as errors:
        child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert child.stdout is not None
        deadline = started + timeout_s
        for line in child.stdout:
            lines.append(line.rstrip("\n"))
            echo(f"    | {lines[-1]}")
            if time.perf_counter() > deadline:
                child.kill()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    # ru_maxrss is in kilobytes on Linux.
    return CliRun(command[2:], child.returncode, wall, usage.ru_maxrss * 1024, lines, log, child.pid)


# --------------------------------------------------------------------------------------------------
# What the instance recorded
# --------------------------------------------------------------------------------------------------


class Instance:
    """Reads the rehearsal's Dagster instance: runs by process, step durations, materializations."""

    def __init__(self, home: Path):
        from dagster import DagsterInstance

        self._instance = DagsterInstance.from_config(str(home))

    def close(self) -> None:
        self._instance.dispose()

    def runs_of(self, cli: CliRun) -> list:
        """The runs the child launched, oldest first (tagged with its pid by the launcher)."""
        from dagster import RunsFilter

        runs = self._instance.get_runs(RunsFilter(tags={"medset/pid": str(cli.pid)}))
        cli.run_ids = [run.run_id for run in reversed(runs)]
        return list(reversed(runs))

    def steps(self, run_ids: list[str]) -> list[tuple[str, str, float]]:
        """(run id, step key, seconds from STEP_START to STEP_SUCCESS/FAILURE) of every step."""
        from dagster import DagsterEventType

        out = []
        for run_id in run_ids:
            starts: dict[str, float] = {}
            for entry in self._instance.all_logs(
                run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
            ):
                if entry.dagster_event.event_type == DagsterEventType.STEP_START:
                    starts[entry.step_key] = entry.timestamp
                elif entry.step_key in starts:
                    out.append((run_id, entry.step_key, entry.timestamp - starts.pop(entry.step_key)))
        return out

    def materialized(self, run_ids: list[str]) -> list[str]:
        """Asset keys (with `[partition]`) materialized by these runs, sorted."""
        from dagster import DagsterEventType

        keys = set()
        for run_id in run_ids:
            for entry in self._instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
                materialization = entry.dagster_event.event_specific_data.materialization
                partition = f"[{materialization.partition}]" if materialization.partition else ""
                keys.add(materialization.asset_key.to_user_string() + partition)
        return sorted(keys)

    def metadata(self, key: str, partition: str | None = None) -> dict[str, Any]:
        from medset_dagster.defs.metadata import latest_metadata

        return latest_metadata(self._instance, key, partition)

    def observation(self, key: str) -> tuple[str | None, dict[str, Any]]:
        from dagster import AssetKey

        from medset_dagster.defs.metadata import latest_observation

        return latest_observation(self._instance, AssetKey.from_user_string(key))


def step_groups() -> dict[str, str]:
    """Step key -> the stage it belongs to: its asset's group (`generation` split into the LLM tasks
    and the record joins); an asset check's step goes with its asset."""
    from medset_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    groups = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_python_identifier()
        group = node.group_name or "default"
        if node.is_observable and not node.is_materializable:
            group = "observe"
        elif group == "generation":
            group = "generation (LLM tasks)" if name in GENERATION_TASKS else "generation (records)"
        groups[name] = group
        for check in node.check_keys:
            groups[f"{name}_{check.name}"] = group
    # A multi-asset's step is named after its op, not after an asset.
    for assets_def in graph.assets_defs:
        if assets_def.is_executable and assets_def.keys:
            first = min(assets_def.keys, key=lambda key: key.to_user_string())
            groups.setdefault(assets_def.node_def.name, groups[first.to_python_identifier()])
    return groups


def stage_times(instance: Instance, builds: list[CliRun]) -> tuple[dict[str, float], list[tuple[str, str, float]]]:
    """Seconds per stage summed over the step events of the builds' runs, plus `run overhead` (the
    rest of the children's wall time: interpreter start, imports, run launch, staleness)."""
    groups = step_groups()
    steps = [step for build in builds for step in instance.steps(build.run_ids)]
    stages: dict[str, float] = {}
    for _, step_key, seconds in steps:
        stage = groups.get(step_key, "other")
        stages[stage] = stages.get(stage, 0.0) + seconds
    stages["run overhead"] = sum(build.wall_s for build in builds) - sum(stages.values())
    return stages, steps


# --------------------------------------------------------------------------------------------------
# The rehearsal
# --------------------------------------------------------------------------------------------------


def expected_counts(mirrors: FullMirrors) -> dict[str, int]:
    """Rows each source keeps after its own rules at the mirrors' scale (the plan); at scale 1.0 the
    deterministic sources' equal the published counts."""
    return {sid: stats["rows_kept"] for sid, stats in mirrors.expected.items()}


def read_counts(instance: Instance, mirrors: FullMirrors) -> list[dict[str, Any]]:
    """Per source, from `curated_dataset`'s funnel: after_source_dedup (the inputs, for a generated
    source), after_generation and final; with the plan's and the published count."""
    funnel = {row["source"]: row for row in instance.metadata("curated_dataset").get("funnel_json", [])}
    expected = expected_counts(mirrors)
    rows = []
    for source, row in funnel.items():
        if source == "TOTAL":
            continue
        spec = SOURCES_BY_ID[source]
        want = expected.get(source)
        rows.append({
            "source": source,
            "after_source_dedup": row["after_source_dedup"],
            "expected": want,
            "published": spec.published_rows,
            "exact": source in DETERMINISTIC,
            "ok": want is None or source not in expected or row["after_source_dedup"] == want,
            "after_generation": row["after_generation"],
            "final": row["final"],
            "generated": spec.task is not None,
        })
    if "TOTAL" in funnel:
        rows.append({"source": "TOTAL", "after_source_dedup": funnel["TOTAL"]["after_source_dedup"], "expected": None,
                     "published": sum(s.published_rows or 0 for s in SOURCES_BY_ID.values() if s.role in ("records", "generation_inputs", "rag")),
                     "exact": False, "ok": True, "after_generation": funnel["TOTAL"]["after_generation"], "final": funnel["TOTAL"]["final"],
                     "generated": False})
    return rows


def read_pins(instance: Instance, hub: HubServer, shas: dict[str, str], layout: Layout) -> dict[str, Any]:
    """Per Hub source and benchmark: the revision its asset loaded and the head its observation saw;
    PubMedQA's first-observation pin; the revisions the Hub served files at."""
    loaded = {}
    for spec in (*hub_sources(), *benchmark_sources()):
        prefix = "source_records" if spec.role == "records" else "generation_inputs" if spec.role == "generation_inputs" else "benchmark_items"
        metadata = instance.metadata(f"{prefix}/{spec.source_id}")
        _, observed = instance.observation(f"hub_datasets/{spec.source_id}")
        loaded[spec.source_id] = {
            "loaded": metadata.get("revision_loaded"),
            "pinned": spec.revision or "first observation",
            "hub_head": observed.get("hub_head"),
            "data_sha": shas[spec.hub_repo],
        }
    pins_file = layout.data / "pins" / "hub_revisions.json"
    served_at = {r.path.split("/resolve/")[1].split("/")[0] for r in hub.requests_to("resolve") if "/resolve/" in r.path}
    return {
        "sources": loaded,
        "pins_file": json.loads(pins_file.read_text()) if pins_file.is_file() else {},
        "served_at": sorted(served_at),
    }


def read_back(hub: HubServer, release_dir: Path, hf_home: Path) -> list[dict[str, Any]]:
    """Download every file of the published repo with the real client (LFS files through the CDN
    redirect) and compare its SHA-256 with the release folder's `build.json` / local file."""
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi(endpoint=hub.endpoint, token=HUB_TOKEN)
    remote = sorted(p for p in api.list_repo_files(RELEASE_REPO, repo_type="dataset") if p != ".gitattributes")
    lfs = hub.lfs_files(RELEASE_REPO)
    out = []
    with tempfile.TemporaryDirectory(prefix="readback-", dir=hf_home) as cache:
        for path in remote:
            local = release_dir / path
            downloaded = Path(hf_hub_download(RELEASE_REPO, path, repo_type="dataset", endpoint=hub.endpoint, token=HUB_TOKEN, cache_dir=cache))
            hub_sha = _sha256(downloaded)
            local_sha = _sha256(local) if local.is_file() else None
            out.append({"path": path, "bytes": downloaded.stat().st_size, "lfs": path in lfs, "sha256": hub_sha, "match": hub_sha == local_sha})
    missing = sorted(str(p.relative_to(release_dir)) for p in release_dir.rglob("*") if p.is_file() and str(p.relative_to(release_dir)) not in remote)
    out += [{"path": path, "bytes": 0, "lfs": False, "sha256": None, "match": False, "missing_on_hub": True} for path in missing]
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def downstream_of(source_id: str) -> set[str]:
    """Asset keys (user strings) of `source_id`'s asset and everything downstream of it."""
    from dagster import AssetKey, AssetSelection

    from medset_dagster.definitions import defs

    spec = SOURCES_BY_ID[source_id]
    prefix = "source_records" if spec.role == "records" else "generation_inputs"
    graph = defs.resolve_asset_graph()
    return {key.to_user_string() for key in AssetSelection.assets(AssetKey([prefix, source_id])).downstream().resolve(graph)}


def rehearse(settings: Settings, out: Callable[[str], None] = print) -> Report:
    """Run the whole rehearsal (see the module docstring) and return what it measured."""
    report = Report(settings={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()})
    root = Path(settings.work_dir) if settings.work_dir else Path(tempfile.mkdtemp(prefix="medset-rehearsal-"))
    layout = Layout(root)
    layout.create()
    try:
        _rehearse(settings, layout, report, out)
    finally:
        if not settings.keep and not settings.work_dir:
            shutil.rmtree(root, ignore_errors=True)
    return report


def _rehearse(settings: Settings, layout: Layout, report: Report, out: Callable[[str], None]) -> None:
    out(f"== medset_dagster full-profile rehearsal: scale {settings.scale}, {settings.scenarios} scenarios, work dir {layout.root} ==")
    started = time.perf_counter()
    mirrors = build_mirrors(settings.scale, settings.seed, pdf=False)
    # The registry pins the WHO book's page count (240): the stand-in has the real pages at any scale.
    pdf = guideline_pdf(GUIDELINE_PAGES, settings.seed)
    (layout.data / "pdfs" / GUIDELINE_FILENAME).write_bytes(pdf)
    report.mirrors = {"bytes": mirrors.total_bytes, "seconds": round(time.perf_counter() - started, 1), "pdf_pages": GUIDELINE_PAGES,
                      "pdf_bytes": len(pdf)}
    out(f"mirrors: 9 sources, {mirrors.total_bytes / 1e6:.1f} MB, guideline PDF {GUIDELINE_PAGES} pages, generated in {report.mirrors['seconds']}s")

    with services(settings) as svc:
        out(f"services: Hub {svc.hub.endpoint} (LFS, CDN {svc.hub.cdn_endpoint}); Cohere {svc.cohere.base_url} "
            f"({settings.embed_latency_s:g}s per call, {settings.embed_slots} slots); Ollama {svc.ollama.url} "
            f"({settings.llm_latency_s:g}s per call, {settings.llm_slots} slots)")
        shas = seed_hub(svc.hub, mirrors)
        pinned_repos = sorted({spec.hub_repo for spec in (*hub_sources(), *benchmark_sources()) if spec.revision})
        move_heads(svc.hub, pinned_repos, "upstream moved on after the pinned revision")
        env = child_env(layout, svc, settings)

        def cli(name: str, args: list[str], run_env: dict[str, str]) -> CliRun:
            out(f"\n[{name}] python -m medset_dagster {' '.join(args)}")
            result = run_cli(args, run_env, layout.logs / f"{name}.log", timeout_s=settings.child_timeout_s, echo=out)
            out(f"[{name}] exit {result.returncode} in {result.wall_s:.1f}s, peak RSS {result.peak_rss_bytes / GB:.2f} GB (log {result.log})")
            return result

        # 1. The build.
        before = svc.counters()
        build = cli("build", ["build", "--policy", "published"], env)
        after = svc.counters()
        report.calls = {name: after[name] - before[name] for name in after}
        report.checks["build succeeded"] = build.ok
        if not build.ok:
            out(_tail(build.log))
            return
        instance = Instance(layout.dagster_home)
        try:
            instance.runs_of(build)
            report.build = {"wall_s": round(build.wall_s, 1), "peak_rss_bytes": build.peak_rss_bytes, "runs": len(build.run_ids)}
            report.counts = read_counts(instance, mirrors)
            report.stages, steps = stage_times(instance, [build])
            report.pins = read_pins(instance, svc.hub, shas, layout)
            llm_steps = sum(seconds for _, step, seconds in steps if step in GENERATION_TASKS)
            embedding_step = sum(seconds for _, step, seconds in steps if step == "chunk_embeddings")
            ideal = report.calls["llm_calls"] * settings.llm_latency_s / settings.llm_slots
            report.llm = {
                "calls": report.calls["llm_calls"],
                "ideal_s": round(ideal, 1),
                "generation_steps_s": round(llm_steps, 1),
                "share": round(ideal / llm_steps, 3) if llm_steps > 0 else 0.0,
                "embedding_step_s": round(embedding_step, 1),
                "non_llm_s": round(build.wall_s - llm_steps - embedding_step, 1),
                "peak_in_flight": svc.ollama.peak_in_flight,
            }
            _print_build(report, settings, out)
            _check_counts_and_pins(report, settings)

            # 2. The publish, and every file read back.
            before = svc.counters()
            publish = cli("publish", ["publish"], env)
            after = svc.counters()
            report.checks["publish succeeded"] = publish.ok
            if publish.ok:
                release_dir = (layout.data / "release").resolve()
                files = read_back(svc.hub, release_dir, layout.hf_home)
                head = svc.hub.head_sha(RELEASE_REPO)
                report.publish = {
                    "wall_s": round(publish.wall_s, 1),
                    "commit": head,
                    "commits": len(svc.hub.history(RELEASE_REPO)),
                    "tags": sorted(svc.hub.repo(RELEASE_REPO).tags),
                    "lfs_uploads": after["lfs_uploads"] - before["lfs_uploads"],
                    "files": files,
                }
                report.checks["published files match the release (hashes)"] = bool(files) and all(f["match"] for f in files)
                report.checks["LFS upload path used"] = report.publish["lfs_uploads"] > 0 and any(f["lfs"] for f in files)
                _print_publish(report, out)
            else:
                out(_tail(publish.log))

            # 3. Nothing changed (every head has moved on, PubMedQA's too): nothing to rebuild.
            first_pins = dict(report.pins.get("pins_file", {}))
            move_heads(svc.hub, sorted({spec.hub_repo for spec in benchmark_sources()} | set(pinned_repos)), "upstream moved on again")
            before = svc.counters()
            rerun = cli("no-change", ["build", "--changed", "--policy", "published"], env)
            after = svc.counters()
            instance.runs_of(rerun)
            delta = {name: after[name] - before[name] for name in after}
            report.no_change = {
                "wall_s": round(rerun.wall_s, 1),
                "ok": rerun.ok,
                "runs": len(rerun.run_ids),
                "materialized": instance.materialized(rerun.run_ids),
                **{name: delta[name] for name in ("downloads", "llm_calls", "embedding_calls")},
                "pins_kept": _read_json(layout.data / "pins" / "hub_revisions.json") == first_pins,
            }
            report.checks["no-change rerun: 0 downloads, 0 LLM, 0 embedding calls, nothing materialized"] = (
                rerun.ok and delta["downloads"] == 0 and delta["llm_calls"] == 0 and delta["embedding_calls"] == 0
                and not report.no_change["materialized"]
            )
            report.checks["first-observation pin kept after the head moved"] = report.no_change["pins_kept"] and bool(first_pins)
            out(f"\nno-change rerun: {rerun.wall_s:.1f}s, {delta['downloads']} downloads, {delta['llm_calls']} LLM calls, "
                f"{delta['embedding_calls']} embedding calls, {len(rerun.run_ids)} run(s), materialized: "
                f"{', '.join(report.no_change['materialized']) or 'nothing'}")

            # 4. One source's head moves under `track`.
            if settings.track_source:
                _track(settings, layout, svc, mirrors, instance, report, cli, out)
        finally:
            instance.close()
    report.targets = {
        f"generation reaches >= {TARGET_LLM_SHARE} of the ideal LLM time": report.llm.get("share", 0) >= TARGET_LLM_SHARE,
        f"non-LLM time < {TARGET_NON_LLM_S:.0f}s": report.llm.get("non_llm_s", 1e9) < TARGET_NON_LLM_S,
        f"peak RSS of the build <= {TARGET_PEAK_RSS / GB:.0f} GB": report.build.get("peak_rss_bytes", 1 << 62) <= TARGET_PEAK_RSS,
        f"no-change rerun < {TARGET_NO_CHANGE_S:.0f}s": report.no_change.get("wall_s", 1e9) < TARGET_NO_CHANGE_S,
    }
    out("\nChecks:")
    for name, ok in report.checks.items():
        out(f"  {'ok    ' if ok else 'FAILED'}  {name}")
    out(f"Targets (full scale, 2 cores; this run at scale {settings.scale}):")
    for name, met in report.targets.items():
        out(f"  {'met   ' if met else 'MISSED'}  {name}")


def _track(settings, layout, svc, mirrors, instance, report, cli, out) -> None:
    source = settings.track_source
    track_env = child_env(layout, svc, settings, track=source)
    head, added = tracked_change(svc.hub, mirrors, source)
    out(f"\n[track] MEDSET_TRACK_SOURCES={source}; new upstream commit {head[:12]} ({added} new rows)")
    before = svc.counters()
    observe = cli("track-observe", ["observe"], track_env)
    build = cli("track-build", ["build", "--changed", "--no-observe", "--policy", "published"], track_env)
    after = svc.counters()
    instance.runs_of(build)
    materialized = instance.materialized(build.run_ids)
    allowed = downstream_of(source)
    outside = sorted(key for key in materialized if key.split("[")[0] not in allowed)
    delta = {name: after[name] - before[name] for name in after}
    spec = SOURCES_BY_ID[source]
    prefix = "source_records" if spec.role == "records" else "generation_inputs"
    loaded = instance.metadata(f"{prefix}/{source}")
    report.track = {
        "source": source,
        "head": head,
        "rows_added": added,
        "wall_s": round(observe.wall_s + build.wall_s, 1),
        "build_wall_s": round(build.wall_s, 1),
        "materialized": materialized,
        "outside_downstream": outside,
        "revision_loaded": loaded.get("revision_loaded"),
        "after_source_dedup": loaded.get("after_source_dedup"),
        **{name: delta[name] for name in ("downloads", "llm_calls", "embedding_calls")},
    }
    report.checks[f"track {source}: its downstream only, at the new head"] = (
        observe.ok and build.ok and bool(materialized) and not outside and loaded.get("revision_loaded") == head
    )
    out(f"track {source}: observe + build --changed in {observe.wall_s + build.wall_s:.1f}s; loaded {str(loaded.get('revision_loaded'))[:12]} "
        f"({loaded.get('after_source_dedup')} rows after source dedup); {delta['downloads']} downloads, {delta['llm_calls']} LLM calls, "
        f"{delta['embedding_calls']} embedding calls")
    out(f"  materialized ({len(materialized)}): {', '.join(materialized)}")
    if outside:
        out(f"  OUTSIDE {source}'s downstream: {', '.join(outside)}")


def _check_counts_and_pins(report: Report, settings: Settings) -> None:
    exact = [row for row in report.counts if row["exact"]]
    report.checks["per-source counts exact (deterministic sources)"] = len(exact) == len(DETERMINISTIC) and all(row["ok"] for row in exact)
    if settings.scale == 1.0:
        report.checks["equal to the published counts"] = all(row["after_source_dedup"] == row["published"] for row in exact)
    sources = report.pins["sources"]
    registry = [sid for sid, row in sources.items() if SOURCES_BY_ID[sid].revision]
    report.checks["registry-pinned sources loaded at their pin although the head moved"] = all(
        sources[sid]["loaded"] == SOURCES_BY_ID[sid].revision and sources[sid]["hub_head"] != SOURCES_BY_ID[sid].revision for sid in registry
    )
    first = [sid for sid in sources if not SOURCES_BY_ID[sid].revision]
    report.checks["first-observation sources pinned to the head first seen"] = all(
        report.pins["pins_file"].get(sid, {}).get("revision") == sources[sid]["data_sha"] == sources[sid]["loaded"] for sid in first
    )
    report.checks["every file was served at a pinned revision"] = set(report.pins["served_at"]) <= {row["data_sha"] for row in sources.values()}


def _print_build(report: Report, settings: Settings, out: Callable[[str], None]) -> None:
    out("\nPer-source counts (curated_dataset funnel; after_source_dedup = the inputs of a generated source)")
    out(f"  {'source':<30} {'after_source_dedup':>18} {'expected':>9} {'published':>9}  {'':6} {'after_generation':>16} {'final':>7}")
    for row in report.counts:
        mark = ("exact" if row["ok"] else "WRONG") if row["exact"] else ""
        expected = f"{row['expected']:,}" if row["expected"] is not None else ""
        published = f"{row['published']:,}" if row["published"] else ""
        out(f"  {row['source']:<30} {row['after_source_dedup']:>18,} {expected:>9} {published:>9}  {mark:<6} "
            f"{row['after_generation']:>16,} {row['final']:>7,}")
    out("  (wiki's published 9,528 counts generated rows over repeated runs of the script, the RAG source's 1,641 the")
    out("   answers kept over at least two runs of 1,000 draws: neither is a deterministic count)")
    calls = report.calls
    out(f"\nCalls at the stand-ins: {calls['llm_calls']:,} LLM (Ollama), {calls['embedding_calls']:,} embedding (Cohere, "
        f"{calls['texts_embedded']:,} texts); Hub: {calls['downloads']:,} downloads, {calls['hub_requests']:,} requests")
    out("\nWall time by stage (step events of the build's runs)")
    for stage, seconds in sorted(report.stages.items(), key=lambda item: -item[1]):
        out(f"  {stage:<26} {seconds:>9.1f}s")
    out(f"  {'build (wall)':<26} {report.build['wall_s']:>9.1f}s over {report.build['runs']} runs")
    llm = report.llm
    out(f"\nLLM time: ideal {llm['calls']:,} calls x {settings.llm_latency_s:g}s / {settings.llm_slots} slots = {llm['ideal_s']:,.1f}s; "
        f"generation steps took {llm['generation_steps_s']:,.1f}s: share {llm['share']:.3f} (peak {llm['peak_in_flight']} in flight)")
    out(f"Non-LLM time: build wall {report.build['wall_s']:,.1f}s - generation steps {llm['generation_steps_s']:,.1f}s "
        f"- chunk_embeddings {llm['embedding_step_s']:,.1f}s = {llm['non_llm_s']:,.1f}s")
    out(f"Peak RSS of the build process: {report.build['peak_rss_bytes'] / GB:.2f} GB")
    pins = report.pins
    moved = sum(1 for row in pins["sources"].values() if row["hub_head"] != row["loaded"])
    out(f"Revisions: {len(pins['sources'])} sources loaded at their pins ({moved} Hub heads had moved on); "
        f"first-observation pins {json.dumps({k: v['revision'][:12] for k, v in pins['pins_file'].items()})}; "
        f"files served at {len(pins['served_at'])} pinned revisions")


def _print_publish(report: Report, out: Callable[[str], None]) -> None:
    publish = report.publish
    out(f"\nPublished {RELEASE_REPO} at {publish['commit'][:12]} (tags {', '.join(publish['tags'])}) in {publish['wall_s']:.1f}s, "
        f"{publish['lfs_uploads']} LFS uploads; read back from the Hub:")
    for f in publish["files"]:
        out(f"  {f['path']:<44} {f['bytes']:>13,} bytes  {'LFS    ' if f['lfs'] else 'regular'}  "
            f"sha256 {str(f['sha256'])[:16]}  {'matches' if f['match'] else 'DIFFERS'}")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return "\n".join(text[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Settings()
    parser.add_argument("--scale", type=float, default=defaults.scale, help="mirror size (1.0: the real row counts)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--scenarios", type=int, default=defaults.scenarios, help="MEDSET_SCENARIOS")
    parser.add_argument("--llm-latency", type=float, default=defaults.llm_latency_s, help="seconds per Ollama chat request")
    parser.add_argument("--llm-slots", type=int, default=defaults.llm_slots, help="chat requests Ollama serves at once")
    parser.add_argument("--embed-latency", type=float, default=defaults.embed_latency_s, help="seconds per Cohere embed request")
    parser.add_argument("--embed-slots", type=int, default=defaults.embed_slots, help="embed requests Cohere serves at once")
    parser.add_argument("--track-source", default=defaults.track_source, help="the source whose head moves under `track` ('' skips step 4)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (kept); default a temporary one, removed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--strict-targets", action="store_true", help="exit 1 when a performance target is missed")
    args = parser.parse_args(argv)
    settings = Settings(
        scale=args.scale, seed=args.seed, scenarios=args.scenarios, llm_latency_s=args.llm_latency, llm_slots=args.llm_slots,
        embed_latency_s=args.embed_latency, embed_slots=args.embed_slots, track_source=args.track_source or None,
        work_dir=args.work, keep=args.keep,
    )
    report = rehearse(settings)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2, default=str))
    if not report.passed:
        return 1
    if args.strict_targets and not all(report.targets.values()):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
