"""Scripted browser checks of the Dagster UI of this code location (issue 13, the UI half).

Usage (from the repo root, after `make setup`; about 6 minutes on 2 cores):

    .venv/bin/python scripts/check_ui.py [--port N] [--keep] [--shots scripts/ui]

It prints one `PASS` or `FAIL` line per check and exits 1 if any check failed. Screenshots go to
`scripts/ui/` (one or more per check, named after it).

What it does, touching nothing of your checkout, your `.dagster/` or your `.medset/`:

1. Installs Debian's chromium with apt-get if /usr/bin/chromium is missing (as root).
2. Copies the checkout's files (`git ls-files`: tracked and untracked-but-not-ignored) into a
   temporary folder, so the sample mirrors it edits later are a copy; makes a temporary
   DAGSTER_HOME holding a copy of `.dagster/dagster.yaml`, and a temporary MEDSET_DATA_DIR.
3. Runs `python -m medset_dagster build` there (sample profile), so the instance has the build's
   runs, recorded with the code location's origin.
4. Starts `dagster dev -w workspace.yaml` there on a free 127.0.0.1 port (same environment) and
   drives headless Chromium over the DevTools protocol (`scripts/screenshot_lineage.py`'s client:
   /usr/bin/chromium with --headless --no-sandbox --disable-gpu --disable-background-networking
   --disable-component-update --disable-sync --no-first-run). Where the UI shows a fact only as
   styling (a metadata entry's type, a check's metadata), the check reads Dagster's GraphQL API at
   /graphql instead, and says so.

The checks:

1. `build_dataset_runs`: the build_dataset job's Runs tab lists every run of the build.
2. `shard_row_counts`: each partition of medqa_explanations shows its own row count, equal to its
   shard's table file.
3. `hub_release_not_materializable`: hub_release's Materialize button is disabled, the release
   group's "Materialize all (N)" counts only the other assets, and the run it launches leaves
   hub_release out.
4. `observed_sources_kind`: every hub_datasets/* shows a kind (Hugging Face).
5. `record_column_descriptions`: the curated_dataset column schema describes the four columns.
6. `seed_is_text`: curated_dataset's `seed` is text metadata (GraphQL).
7. `check_metadata_numeric`: every check of curated_dataset has numeric metadata (GraphQL).
8. `unsynced_after_mirror_edit`: after a row is added to the copied Diseases_Symptoms mirror and
   "Materialize all ▾ → Observe all" is clicked in the sources group, source_records/diseases_symptoms
   shows Unsynced (and another source does not).
9. `nothing_written_to_root`: dagster dev wrote nothing in the checkout copy outside `.dagster/`
   (no .nux, logs, .logs_queue, storage, history, schedules, .telemetry).

Only 127.0.0.1 is contacted. The temporary folder is removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import screenshot_lineage as sl  # noqa: E402  (this folder's helpers: dagster dev, Chromium, GraphQL)

REPO_ROOT = sl.REPO_ROOT
LOCATION = "medset_dagster"
TASK = "medqa_explanations"
SHARDS = ("shard-0", "shard-1", "shard-2", "shard-3")
MIRROR_CSV = Path("medset_dagster/sample_data/hub/QuyenAnhDE/Diseases_Symptoms/Diseases_Symptoms.csv")
# What dagster dev writes in its working directory when DAGSTER_HOME is not where it should be.
STRAY_NAMES = (".nux", "logs", ".logs_queue", "storage", "history", "schedules", ".telemetry")

log = sl.log


# ---------------------------------------------------------------------------------------------
# Set-up: a copy of the checkout, a temporary instance and data folder, the build
# ---------------------------------------------------------------------------------------------


def checkout_files(root: Path) -> list[Path]:
    """The checkout's files (tracked, and untracked but not ignored), relative to `root`."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root, check=True, capture_output=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        keep = ("medset_dagster", "workspace.yaml", "pyproject.toml", "Makefile", "uv.lock", ".dagster/dagster.yaml")
        return [p.relative_to(root) for name in keep for p in ([root / name] if (root / name).is_file()
                else (root / name).rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    return [Path(name) for name in out.decode().split("\0") if name and (root / name).is_file()]


def copy_checkout(source: Path, target: Path) -> None:
    for rel in checkout_files(source):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target / rel)


def snapshot(root: Path) -> set[str]:
    """Every path under `root`, relative, except those under .dagster/ and Python's __pycache__."""
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.relative_to(root).parts[0] != ".dagster" and "__pycache__" not in p.parts
    }


def run_build(root: Path, env: dict, logfile: Path) -> None:
    cmd = [sys.executable, "-m", "medset_dagster", "build"]
    log(f"building in {root}: {' '.join(cmd)} (log: {logfile})")
    with open(logfile, "w") as out:
        done = subprocess.run(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-30:]
        raise SystemExit("the build failed:\n" + "\n".join(tail))
    log("build done")


# ---------------------------------------------------------------------------------------------
# The browser and GraphQL
# ---------------------------------------------------------------------------------------------

CLICK_JS = r"""
((label, scope) => {
  const pool = [...document.querySelectorAll(scope)].filter(e => e.offsetParent !== null || e.getClientRects().length);
  const el = pool.find(e => (e.innerText || '').trim().startsWith(label));
  if (!el) return null;
  el.scrollIntoView({block: 'center'});
  el.click();
  return (el.innerText || '').trim();
})
"""

BUTTON_JS = r"""
((label) => {
  const b = [...document.querySelectorAll('button')].find(b => (b.innerText || '').trim().startsWith(label));
  if (!b) return null;
  const r = b.getBoundingClientRect();
  return {text: b.innerText.trim(), disabled: b.disabled, x: r.x + r.width / 2, y: r.y + r.height / 2};
})
"""


class Page:
    """A Chromium tab on the Dagster UI at `base`, with the waits the checks need."""

    def __init__(self, browser: sl.Chromium, base: str, shots: Path):
        self.browser, self.base, self.shots = browser, base, shots

    def goto(self, path: str) -> None:
        self.browser.navigate(self.base + path)

    def text(self) -> str:
        return self.browser.js("document.body ? document.body.innerText : ''") or ""

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = 60) -> object:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f}s for {what}")
            time.sleep(0.5)

    def wait_text(self, needle: str, timeout: float = 60) -> str:
        return self.wait(lambda: needle in self.text() and self.text(), f"{needle!r} on {self.browser.js('location.href')}", timeout)  # type: ignore[return-value]

    def button(self, label: str) -> dict | None:
        return self.browser.js(f"({BUTTON_JS})({json.dumps(label)})")

    def click(self, label: str, scope: str = "button, a, [role=menuitem]") -> str:
        clicked = self.browser.js(f"({CLICK_JS})({json.dumps(label)}, {json.dumps(scope)})")
        if not clicked:
            raise RuntimeError(f"nothing labelled {label!r} to click on {self.browser.js('location.href')}")
        return clicked

    def click_caret_after(self, label: str) -> None:
        """The split button's dropdown half, right of the button labelled `label`."""
        ok = self.browser.js(
            "(() => { const bs = [...document.querySelectorAll('button')];"
            f" const i = bs.findIndex(b => (b.innerText || '').trim().startsWith({json.dumps(label)}));"
            " if (i < 0 || !bs[i + 1]) return false; bs[i + 1].click(); return true; })()"
        )
        if not ok:
            raise RuntimeError(f"no dropdown next to {label!r}")

    def hover(self, x: float, y: float) -> None:
        self.browser.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)

    def shot(self, name: str, settle: float = 1.0) -> Path:
        time.sleep(settle)
        path = self.shots / name
        self.browser.screenshot(path)
        return path


def gql(base: str, query: str, variables: dict | None = None) -> dict:
    req_body = {"query": query, "variables": variables or {}}
    import urllib.request

    req = urllib.request.Request(f"{base}/graphql", data=json.dumps(req_body).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - 127.0.0.1 only
        body = json.load(r)
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


RUNS_QUERY = """
query Runs($filter: RunsFilter, $limit: Int) { runsOrError(filter: $filter, limit: $limit) {
  __typename ... on Runs { results { runId jobName status assetSelection { path }
    tags { key value } } } } }
"""
NODES_QUERY = "{ assetNodes { assetKey { path } groupName kinds isMaterializable isObservable } }"
LATEST_METADATA_QUERY = """
query Latest($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
  assetMaterializations(limit: 1) { metadataEntries { label __typename
    ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue } } } } } }
"""
CHECKS_QUERY = """
query Checks($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
  assetChecksOrError { ... on AssetChecks { checks { name
    executionForLatestMaterialization { status evaluation { metadataEntries { label __typename } } } } } } } } }
"""
STALE_QUERY = """
query Stale($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
  staleStatus staleCauses { key { path } reason } } } }
"""
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def runs(base: str, job: str | None = None, limit: int = 50) -> list[dict]:
    filt = {"pipelineName": job} if job else {}
    return gql(base, RUNS_QUERY, {"filter": filt, "limit": limit})["runsOrError"]["results"]


def wait_for_new_run(base: str, before: set[str], timeout: float = 240) -> dict:
    """The first run not in `before`, once it has finished."""
    deadline = time.monotonic() + timeout
    run = None
    while time.monotonic() < deadline:
        new = [r for r in runs(base, limit=20) if r["runId"] not in before]
        if new:
            run = new[-1]
            if run["status"] in TERMINAL:
                return run
        time.sleep(1)
    raise TimeoutError(f"no new run finished within {timeout:.0f}s (last seen: {run})")


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    ok: bool
    detail: str


class Checks:
    def __init__(self, page: Page, root: Path, data_dir: Path):
        self.page, self.base, self.root, self.data_dir = page, page.base, root, data_dir
        self.results: list[Result] = []

    def run(self, name: str, fn: Callable[[], tuple[bool, str]]) -> None:
        log(f"check {name} ...")
        try:
            ok, detail = fn()
        except Exception as error:  # noqa: BLE001 - a check that cannot run fails, with why
            ok, detail = False, f"{type(error).__name__}: {error}"
        self.results.append(Result(name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)

    # 1
    def build_dataset_runs(self) -> tuple[bool, str]:
        build = runs(self.base, "build_dataset")
        if not build:
            return False, "the instance has no build_dataset run"
        ids = [r["runId"][:8] for r in build]
        self.page.goto(f"/locations/{LOCATION}/jobs/build_dataset/runs")
        self.page.wait(lambda: all(i in self.page.text() for i in ids), "every build run in the Runs tab")
        self.page.shot("1-build_dataset-runs.png")
        phases = sorted({t["value"] for r in build for t in r["tags"] if t["key"] == "medset/phase"})
        origins = {t["value"] for r in build for t in r["tags"] if t["key"] == "dagster/code_location"}
        return origins == {LOCATION}, (
            f"all {len(ids)} runs of the build listed ({', '.join(ids)}; phases {', '.join(phases)}); "
            f"code location tag {sorted(origins)}")

    # 2
    def shard_row_counts(self) -> tuple[bool, str]:
        import pyarrow.parquet as pq

        shown, files = {}, {}
        for shard in SHARDS:
            self.page.goto(f"/assets/{TASK}?view=partitions&partition={shard}")
            text = self.page.wait_text("dagster/row_count")
            match = re.search(r"dagster/row_count\s+([\d,]+)", text)
            shown[shard] = int(match.group(1).replace(",", "")) if match else None
            files[shard] = pq.read_metadata(self.data_dir / "assets" / TASK / f"{shard}.parquet").num_rows
            self.page.shot(f"2-{TASK}-{shard}.png")
        ok = shown == files
        return ok, f"UI row counts {shown}, shard files {files}"

    # 3
    def hub_release_not_materializable(self) -> tuple[bool, str]:
        nodes = gql(self.base, NODES_QUERY)["assetNodes"]
        release = [n for n in nodes if n["groupName"] == "release"]
        hub = next(n for n in release if n["assetKey"]["path"] == ["hub_release"])
        materializable = sorted("/".join(n["assetKey"]["path"]) for n in release if n["isMaterializable"])
        self.page.goto("/assets/hub_release")
        self.page.wait(lambda: self.page.button("Materialize"), "the Materialize button")
        time.sleep(2)  # let the page settle, so the button is not re-rendered under the pointer
        button = self.page.button("Materialize")
        tooltip = ""
        for _ in range(3):  # the tooltip opens on the pointer entering the button: leave, then enter
            self.page.hover(5, 5)
            time.sleep(0.3)
            self.page.hover(button["x"], button["y"])
            with contextlib.suppress(TimeoutError):
                tooltip = self.page.wait(lambda: self.page.browser.js(
                    "[...document.querySelectorAll('.bp5-tooltip, [role=tooltip]')].map(e => e.innerText).join(' ')"),
                    "the disabled button's tooltip", timeout=3)
                break
        self.page.shot("3-hub_release-asset.png")
        self.page.goto(f"/locations/{LOCATION}/asset-groups/release")
        label = self.page.wait(lambda: (self.page.button("Materialize all") or {}).get("text"), "Materialize all")
        self.page.shot("3-release-group.png")
        before = {r["runId"] for r in runs(self.base, limit=100)}
        self.page.click("Materialize all", "button")
        launched = wait_for_new_run(self.base, before)
        selected = sorted("/".join(k["path"]) for k in launched["assetSelection"] or [])
        ok = (not hub["isMaterializable"] and button["disabled"] and label == f"Materialize all ({len(materializable)})"
              and "hub_release" not in selected and selected == materializable and launched["status"] == "SUCCESS")
        return ok, (f"Materialize button disabled={button['disabled']} (tooltip {tooltip or 'not seen'!r}); group button "
                    f"{label!r}; its run {launched['runId'][:8]} materialized {selected} ({launched['status']})")

    # 4
    def observed_sources_kind(self) -> tuple[bool, str]:
        nodes = gql(self.base, NODES_QUERY)["assetNodes"]
        observed = {"/".join(n["assetKey"]["path"]): n["kinds"] for n in nodes if n["assetKey"]["path"][0] == "hub_datasets"}
        without = sorted(k for k, kinds in observed.items() if not kinds)
        self.page.goto("/assets/hub_datasets/medqa")
        text = self.page.wait_text("Kinds")
        shown = "Hugging Face" in text.split("Kinds", 1)[1][:200]
        self.page.shot("4-hub_datasets-medqa.png")
        self.page.goto(f"/locations/{LOCATION}/asset-groups/sources")
        self.page.wait_text("Observed")
        self.page.shot("4-sources-group.png", settle=2)
        ok = bool(observed) and not without and shown
        return ok, (f"{len(observed)} observed sources, kinds {sorted({k for v in observed.values() for k in v})}, "
                    f"none without: {not without}; hub_datasets/medqa page shows 'Hugging Face' under Kinds: {shown}")

    # 5
    def record_column_descriptions(self) -> tuple[bool, str]:
        from medset_dagster.dataset.records import COLUMN_DESCRIPTIONS

        self.page.goto("/assets/curated_dataset")
        text = self.page.wait_text("Column name")
        columns = text.split("Column name", 1)[1].split("Metadata", 1)[0]
        missing = [c for c, d in COLUMN_DESCRIPTIONS.items() if not re.search(rf"\b{c}\b\s+String\s+{re.escape(d)}", columns)]
        self.page.shot("5-curated_dataset-columns.png")
        return not missing, (f"column schema describes {sorted(COLUMN_DESCRIPTIONS)}" if not missing
                             else f"no description shown for {missing}")

    # 6
    def seed_is_text(self) -> tuple[bool, str]:
        entries = gql(self.base, LATEST_METADATA_QUERY, {"path": ["curated_dataset"]})["assetOrError"]["assetMaterializations"][0]["metadataEntries"]
        seed = next((e for e in entries if e["label"] == "seed"), None)
        ok = bool(seed) and seed["__typename"] == "TextMetadataEntry"
        return ok, f"seed entry (GraphQL): {seed}"

    # 7
    def check_metadata_numeric(self) -> tuple[bool, str]:
        checks = gql(self.base, CHECKS_QUERY, {"path": ["curated_dataset"]})["assetNodeOrError"]["assetChecksOrError"]["checks"]
        numeric = {}
        for c in checks:
            evaluation = (c["executionForLatestMaterialization"] or {}).get("evaluation") or {}
            numeric[c["name"]] = sorted(e["label"] for e in evaluation.get("metadataEntries", [])
                                        if e["__typename"] in ("IntMetadataEntry", "FloatMetadataEntry"))
        self.page.goto("/assets/curated_dataset?view=checks")
        self.page.wait_text(checks[0]["name"] if checks else "Checks")
        self.page.shot("7-curated_dataset-checks.png")
        without = sorted(name for name, labels in numeric.items() if not labels)
        return bool(checks) and not without, (
            f"{len(checks)} checks, numeric metadata (GraphQL): "
            + "; ".join(f"{n}: {', '.join(v) or 'NONE'}" for n, v in sorted(numeric.items())))

    # 8
    def unsynced_after_mirror_edit(self) -> tuple[bool, str]:
        target = ["source_records", "diseases_symptoms"]
        other = ["source_records", "medicationqa"]
        before_status = gql(self.base, STALE_QUERY, {"path": target})["assetNodeOrError"]["staleStatus"]
        csv = self.root / MIRROR_CSV
        csv.write_text(csv.read_text() + '99,Tonsillitis,"Sore throat, fever and swollen tonsils",Rest and fluids\n')
        self.page.goto(f"/locations/{LOCATION}/asset-groups/sources")
        self.page.wait(lambda: self.page.button("Materialize all"), "Materialize all")
        self.page.click_caret_after("Materialize all")
        item = self.page.wait(lambda: self.page.browser.js(
            "[...document.querySelectorAll('[role=menuitem], .bp5-menu-item, a, button')]"
            ".map(e => (e.innerText || '').trim()).find(t => t.startsWith('Observe all'))"), "Observe all", timeout=10)
        self.page.shot("8-observe-all-menu.png", settle=3)
        before = {r["runId"] for r in runs(self.base, limit=100)}
        self.page.click("Observe all", "[role=menuitem], .bp5-menu-item, a, button")
        observed = wait_for_new_run(self.base, before)
        stale = gql(self.base, STALE_QUERY, {"path": target})["assetNodeOrError"]
        other_status = gql(self.base, STALE_QUERY, {"path": other})["assetNodeOrError"]["staleStatus"]
        self.page.goto("/assets/" + "/".join(target))
        text = self.page.wait_text("Unsynced", timeout=60)
        self.page.shot("8-diseases_symptoms-unsynced.png")
        # The lineage around it, for the picture: the node carries the same tag.
        self.page.goto("/assets/" + "/".join(target) + "?view=lineage")
        with contextlib.suppress(TimeoutError):
            self.page.wait(lambda: self.page.text().count("Unsynced") >= 2, "the tag in the lineage", timeout=30)
        self.page.shot("8-diseases_symptoms-lineage.png", settle=2)
        causes = [f"{'/'.join(c['key']['path'])}: {c['reason']}" for c in stale["staleCauses"]]
        ok = (before_status == "FRESH" and observed["status"] == "SUCCESS" and "Unsynced" in text
              and stale["staleStatus"] == "STALE" and other_status == "FRESH")
        return ok, (f"before {before_status}; clicked {item!r}, run {observed['runId'][:8]} {observed['status']}; "
                    f"page shows Unsynced; GraphQL {stale['staleStatus']} ({'; '.join(causes)}); "
                    f"source_records/medicationqa {other_status}")


def nothing_written(before: set[str], after: set[str]) -> tuple[bool, str]:
    new = sorted(after - before)
    stray = [p for p in new if p.split("/")[0] in STRAY_NAMES]
    if not new:
        return True, "no new file or folder outside .dagster/ (checked for " + ", ".join(STRAY_NAMES) + " and any other)"
    return False, f"new outside .dagster/: {new[:20]}" + (f" (dagster's own: {stray})" if stray else "")


# ---------------------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0, help="port for dagster dev (default: a free one)")
    p.add_argument("--shots", type=Path, default=REPO_ROOT / "scripts" / "ui", help="where screenshots go")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    p.add_argument("--startup-timeout", type=float, default=300)
    args = p.parse_args()
    # As in screenshot_lineage.py: dagster dev must get a SIGINT it can act on; SIGTERM cleans up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{p.prog}: terminated"))

    sl.ensure_chromium()
    results: list[Result] = []
    work = Path(tempfile.mkdtemp(prefix="medset-ui-check-"))
    root, home, data = work / "checkout", work / "dagster_home", work / "data"
    try:
        copy_checkout(REPO_ROOT, root)
        home.mkdir()
        shutil.copy2(REPO_ROOT / ".dagster" / "dagster.yaml", home / "dagster.yaml")
        env = {**os.environ, "DAGSTER_HOME": str(home), "MEDSET_DATA_DIR": str(data), "MEDSET_PROFILE": "sample"}
        env.pop("PYTHONPATH", None)
        log(f"temporary checkout {root}, DAGSTER_HOME={home}, MEDSET_DATA_DIR={data}")
        run_build(root, env, work / "build.log")
        args.shots.mkdir(parents=True, exist_ok=True)
        for old in args.shots.glob("*.png"):
            old.unlink()
        before = snapshot(root)
        port = args.port or sl.free_port()
        with sl.dagster_dev(port, args.startup_timeout, root=root, env=env) as base:
            browser = sl.Chromium(1600, 1000)
            try:
                sl.prepare_ui(browser, base)
                checks = Checks(Page(browser, base, args.shots), root, data)
                checks.results = results
                checks.run("build_dataset_runs", checks.build_dataset_runs)
                checks.run("shard_row_counts", checks.shard_row_counts)
                checks.run("observed_sources_kind", checks.observed_sources_kind)
                checks.run("record_column_descriptions", checks.record_column_descriptions)
                checks.run("seed_is_text", checks.seed_is_text)
                checks.run("check_metadata_numeric", checks.check_metadata_numeric)
                checks.run("hub_release_not_materializable", checks.hub_release_not_materializable)
                checks.run("unsynced_after_mirror_edit", checks.unsynced_after_mirror_edit)
            finally:
                browser.close()
        after = snapshot(root)
        ok, detail = nothing_written(before, after)
        results.append(Result("nothing_written_to_root", ok, detail))
        print(f"{'PASS' if ok else 'FAIL'} nothing_written_to_root: {detail}", flush=True)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = [r.name for r in results if not r.ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
    raise SystemExit(130)
