"""Screenshot the global asset lineage graph of this code location in headless Chromium.

Usage (from the repo root):

    .venv/bin/python scripts/screenshot_lineage.py [--out scripts/lineage.png] [--port 3333]
        [--group retrieval] [--width 2400] [--height 1400] [--direction horizontal|vertical]

What it does:

1. Installs Debian's chromium with apt-get if /usr/bin/chromium is missing.
2. Starts `dagster dev -w workspace.yaml -h 127.0.0.1 -p PORT` from the repo root with
   DAGSTER_HOME set to the repo's instance, `.dagster/` (as `make dev` does), and waits until the
   webserver answers /server_info and GraphQL reports every code location as LOADED.
3. Drives headless Chromium over the DevTools protocol (the `websockets` package that the
   webserver already depends on): opens /asset-groups (Dagster 1.13's "Global asset lineage"),
   expands every asset group (the UI's Alt+E shortcut), hides the side panels, grows the window
   until the whole graph fits at a readable zoom, zooms to fit and saves a PNG. With --group NAME
   it also saves the graph of that one group (/asset-groups/<repo>@<location>/<group>) next to it
   as <out-stem>-<group>.png.
4. Stops dagster dev (SIGINT to its process group, then SIGTERM/SIGKILL if it lingers) and
   Chromium, even on error.

Nothing here names an asset: the graph is whatever the code location defines. Only 127.0.0.1 is
contacted. Everything dagster writes goes to the instance in .dagster/ (dagster.yaml there keeps
storage and logs in it). `scripts/check_ui.py` reuses this module's helpers.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]
# localStorage entries the Dagster UI reads on start: no "Join the Dagster community" dialog
# (setting it here rather than through the setNuxSeen mutation leaves the instance untouched),
# and the left navigation collapsed to icons.
UI_LOCAL_STORAGE = {"communityNux": '"1"', "dagster-nav-collapsed": "true"}
# Zoom below which node labels get hard to read; the window grows (up to --max-*) to stay above it.
MIN_READABLE_SCALE = 0.55
# The window never shrinks below this, so the toolbar stays on one line.
MIN_WINDOW = (1400, 800)

T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Chromium install
# ---------------------------------------------------------------------------------------------


def ensure_chromium() -> None:
    if os.path.exists(CHROMIUM):
        return
    if os.geteuid() != 0:
        sys.exit(f"{CHROMIUM} is missing; install it with: sudo apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        log(f"{CHROMIUM} is missing; running: {' '.join(cmd)}")
        subprocess.run(cmd, check=True, env=env)
    if not os.path.exists(CHROMIUM):
        sys.exit(f"apt-get install chromium did not provide {CHROMIUM}")


# ---------------------------------------------------------------------------------------------
# dagster dev
# ---------------------------------------------------------------------------------------------


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - 127.0.0.1 only
        return r.read()


def graphql(base: str, query: str, timeout: float = 30) -> dict:
    req = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - 127.0.0.1 only
        body = json.load(r)
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on PythonError { message }
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename
          ... on PythonError { message }
          ... on RepositoryLocation { name } } } } } }
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dagster_dev(port: int, timeout: float, root: Path = REPO_ROOT, env: dict | None = None):
    """Run `dagster dev -w workspace.yaml` in `root` and yield its base URL once every code location
    is LOADED. `env` defaults to this process's environment with DAGSTER_HOME=<root>/.dagster."""
    if port_in_use(port):
        sys.exit(f"127.0.0.1:{port} is already in use; pick another --port")
    env = env if env is not None else {**os.environ, "DAGSTER_HOME": str(root / ".dagster")}
    logfile = tempfile.NamedTemporaryFile(
        prefix="dagster-dev-", suffix=".log", delete=False, mode="w"
    )
    cmd = [
        str(Path(sys.executable).parent / "dagster"),
        "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    log(f"starting in {root}: DAGSTER_HOME={env.get('DAGSTER_HOME')} {' '.join(cmd)} (log: {logfile.name})")
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # own process group: webserver, daemon and code server with it
    )
    base = f"http://127.0.0.1:{port}"
    ok = False
    try:
        deadline = time.monotonic() + timeout

        def check_alive():
            if proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {proc.returncode}; see {logfile.name}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"dagster dev not ready after {timeout:.0f}s; see {logfile.name}"
                )

        while True:
            check_alive()
            try:
                info = json.loads(http_get(f"{base}/server_info"))
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                time.sleep(1)
        log(f"webserver answers: dagster {info.get('dagster_version')}")

        while True:
            check_alive()
            try:
                ws = graphql(base, WORKSPACE_QUERY)["workspaceOrError"]
            except (urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError):
                time.sleep(2)
                continue
            if ws["__typename"] != "Workspace":
                raise RuntimeError(f"workspace error: {ws.get('message')}")
            entries = ws["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                break
            time.sleep(2)
        for e in entries:
            loc = e["locationOrLoadError"] or {}
            if loc.get("__typename") != "RepositoryLocation":
                raise RuntimeError(
                    f"code location {e['name']} failed to load:\n{loc.get('message')}"
                )
        log(f"code location(s) loaded: {', '.join(e['name'] for e in entries)}")
        ok = True
        yield base
    finally:
        stop_process_group(proc, "dagster dev", grace=60)
        logfile.close()
        if ok:
            os.unlink(logfile.name)
        else:
            tail = Path(logfile.name).read_text(errors="replace").splitlines()[-30:]
            print("---- last lines of dagster dev's log ----", *tail, sep="\n", file=sys.stderr)


def stop_process_group(proc: subprocess.Popen, name: str, grace: float) -> None:
    """SIGINT (what Ctrl-C sends) to the group, then SIGTERM, then SIGKILL; wait for the group."""
    pgid = proc.pid  # start_new_session=True: the child leads its own group
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        end = time.monotonic() + wait
        while time.monotonic() < end:
            proc.poll()
            try:
                os.killpg(pgid, 0)  # anyone of the group left (including grandchildren)?
            except ProcessLookupError:
                log(f"{name} stopped ({signal.Signals(sig).name})")
                return
            time.sleep(0.2)
    proc.poll()


# ---------------------------------------------------------------------------------------------
# Chromium over the DevTools protocol
# ---------------------------------------------------------------------------------------------


class Chromium:
    def __init__(self, width: int, height: int):
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.proc = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self.stack = contextlib.ExitStack()
        try:
            port_file = Path(self.profile, "DevToolsActivePort")
            deadline = time.monotonic() + 60
            while not (port_file.exists() and port_file.read_text().strip()):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("chromium did not open its DevTools port")
                time.sleep(0.1)
            devtools_port = int(port_file.read_text().split()[0])
            targets = json.loads(http_get(f"http://127.0.0.1:{devtools_port}/json/list"))
            page = next(t for t in targets if t["type"] == "page")
            self.ws = self.stack.enter_context(
                connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
            )
            self.ids = itertools.count(1)
            self.resize(width, height)
        except BaseException:
            self.close()
            raise

    def send(self, method: str, timeout: float = 60, **params):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        end = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, end - time.monotonic())))
            if msg.get("id") == msg_id:  # events (no id) are ignored
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str):
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JS error: {res['exceptionDetails']}")
        return res["result"].get("value")

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip

    def navigate(self, url: str, timeout: float = 60) -> None:
        """Load `url` and wait until the new document has loaded."""
        self.js("window.__screenshotOldDocument = true")
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(RuntimeError):  # evaluating mid-navigation can fail
                if self.js("!window.__screenshotOldDocument && document.readyState === 'complete'"):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load within {timeout:.0f}s")
            time.sleep(0.2)

    def key(self, code: str, key: str, vk: int, alt: bool = False) -> None:
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, modifiers=1 if alt else 0,
                      code=code, key=key, windowsVirtualKeyCode=vk)  # fmt: skip

    def double_click(self, x: float, y: float) -> None:
        for count in (1, 2):
            for kind in ("mousePressed", "mouseReleased"):
                self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                          clickCount=count)  # fmt: skip

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stack.close()
        stop_process_group(self.proc, "chromium", grace=5)
        shutil.rmtree(self.profile, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The asset graph page
# ---------------------------------------------------------------------------------------------

# Facts about the rendered graph, read from the DOM. The graph is an <svg> whose width/height
# attributes are the layout's size in graph units, inside a transformed div inside the viewport
# div; asset nodes are CSS-module classes named AssetNode_*; a spinner has role=progressbar.
GRAPH_STATE_JS = r"""
(() => {
  const svg = document.querySelector('svg[class*="svgContainer"], svg[class*="sVGContainer"]');
  const text = document.body ? document.body.innerText : '';
  const state = {
    url: location.href,
    hasGraph: !!svg,
    nodes: document.querySelectorAll('[class*="AssetNode_assetNodeContainer"]').length,
    groups: svg ? svg.querySelectorAll('foreignObject').length : 0,
    spinners: document.querySelectorAll('[role="progressbar"], .bp5-spinner, .bp4-spinner').length,
    error: /Cycle detected|Unexpected GraphQL error|An unexpected error|Page not found/i.test(text)
      ? text.slice(0, 300) : null,
  };
  if (svg) {
    const vp = svg.parentElement.parentElement.getBoundingClientRect();
    // The search/filter toolbar floats over the top of the graph viewport.
    const bar = document.querySelector('input[placeholder^="Search and filter"]');
    state.overlay = bar ? Math.max(0, bar.getBoundingClientRect().bottom + 8 - vp.y) : 60;
    const m = (svg.parentElement.style.transform || '').match(/matrix\(([^,]+)/);
    Object.assign(state, {
      graphW: parseFloat(svg.getAttribute('width')), graphH: parseFloat(svg.getAttribute('height')),
      vpX: vp.x, vpY: vp.y, vpW: vp.width, vpH: vp.height, scale: m ? parseFloat(m[1]) : null,
    });
  }
  return state;
})()
"""

# A point inside the graph viewport with nothing on it (a double-click there zooms to fit; one on
# a node would open the asset).
EMPTY_POINT_JS = r"""
(() => {
  const svg = document.querySelector('svg[class*="svgContainer"], svg[class*="sVGContainer"]');
  if (!svg) return null;
  const vpEl = svg.parentElement.parentElement, r = vpEl.getBoundingClientRect();
  for (let fy = 0.05; fy < 0.95; fy += 0.05) for (let fx = 0.05; fx < 0.9; fx += 0.05) {
    const x = r.x + r.width * fx, y = r.y + r.height * fy, el = document.elementFromPoint(x, y);
    if (el === svg || el === vpEl || el === svg.parentElement) return [x, y];
  }
  return null;
})()
"""

# The open asset-tree panel's hide button, at the top of the panel next to "Jump to..." (its icon
# is called panel_show_right; the left navigation's own toggle sits at the bottom left).
HIDE_SIDEBAR_JS = r"""
(() => {
  const btn = [...document.querySelectorAll('button')].find(b => {
    const icon = b.querySelector('[aria-label="panel_show_right"]'), r = b.getBoundingClientRect();
    return icon && r.y < 150 && r.x > 100;
  });
  if (!btn) return false;
  btn.click();
  return true;
})()
"""


def wait_for_graph(browser: Chromium, timeout: float, settle: float = 2.0) -> dict:
    """Poll until the graph has rendered nodes and nothing changes for `settle` seconds."""
    deadline = time.monotonic() + timeout
    last, stable_since = None, None
    while True:
        state = browser.js(GRAPH_STATE_JS)
        if state and state.get("error"):
            raise RuntimeError(f"the UI shows an error: {state['error']}")
        drawn = state and (state["nodes"] or state["groups"])
        ready = drawn and state["hasGraph"] and not state["spinners"]
        key = state and (state["nodes"], state["groups"], state.get("graphW"), state.get("graphH"),
                         state.get("scale"), state["url"])  # fmt: skip
        if ready and key == last:
            if time.monotonic() - stable_since >= settle:
                return state
        else:
            last, stable_since = key, time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"asset graph did not render within {timeout:.0f}s (last state: {state})"
            )
        time.sleep(0.5)


def prepare_ui(browser: Chromium, base: str) -> None:
    """Seed localStorage for the 127.0.0.1:PORT origin before the UI reads it."""
    browser.navigate(f"{base}/server_info")  # any same-origin page
    deadline = time.monotonic() + 30
    while browser.js("location.origin") != base:
        if time.monotonic() > deadline:
            raise TimeoutError("could not open the webserver in chromium")
        time.sleep(0.2)
    for k, v in UI_LOCAL_STORAGE.items():
        browser.js(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)})")


def fit_and_shoot(browser: Chromium, out: Path, args, timeout: float) -> dict:
    """Hide the side panel, grow the window so the whole graph fits readably, zoom to fit, shoot."""
    state = wait_for_graph(browser, timeout)
    if browser.js(HIDE_SIDEBAR_JS):
        state = wait_for_graph(browser, timeout)
    # The viewport's margins (title above, navigation left) stay the same when the window grows.
    # Dagster centres the graph in the whole viewport, under the floating toolbar: keep that
    # band free above and below.
    margin_x = browser.width - state["vpW"]
    margin_y = browser.height - state["vpH"] + 2 * state["overlay"]
    gw, gh = state["graphW"], state["graphH"]
    # Dagster fits to the viewport at most at zoom 1; want at least MIN_READABLE_SCALE.
    fit = min(1.0, (browser.width - margin_x) / gw, (browser.height - margin_y) / gh)
    want = min(1.0, max(fit, MIN_READABLE_SCALE))
    width = int(min(args.max_width, max(browser.width, margin_x + gw * want + 40)))
    height = int(min(args.max_height, max(browser.height, margin_y + gh * want + 40)))
    if fit >= 1.0:  # a small graph, drawn at full size: drop the empty margins around it
        width = int(max(MIN_WINDOW[0], min(width, margin_x + gw + 160)))
        height = int(max(MIN_WINDOW[1], min(height, margin_y + gh + 160)))
    if (width, height) != (browser.width, browser.height):
        log(f"graph is {gw:.0f}x{gh:.0f} units; resizing the window to {width}x{height}")
        browser.resize(width, height)
        state = wait_for_graph(browser, timeout)
    point = browser.js(EMPTY_POINT_JS)
    if point:
        browser.double_click(*point)  # Dagster's "zoom to fit" gesture
        time.sleep(1.0)  # the zoom is animated
        state = wait_for_graph(browser, timeout)
    else:
        log("warning: found no empty spot to double-click; keeping the initial zoom")
    time.sleep(args.settle)  # fonts, edge animations, status dots
    browser.screenshot(out)
    log(f"saved {out} ({browser.width}x{browser.height}, zoom {state['scale']:.2f}, "
        f"{state['nodes']} asset nodes drawn)")  # fmt: skip
    return state


def shoot_global_graph(browser: Chromium, base: str, out: Path, args) -> str:
    browser.navigate(f"{base}/asset-groups")
    wait_for_graph(browser, args.render_timeout)
    # Large graphs open with every group collapsed. Alt+E is the UI's "Expand all groups"; it puts
    # the expanded groups into the URL (?expanded=...). Only offered when there are 2+ groups.
    browser.js("document.activeElement && document.activeElement.blur(); window.focus()")
    browser.key("KeyE", "e", 69, alt=True)
    deadline = time.monotonic() + 15
    while "expanded=" not in browser.js("location.href") and time.monotonic() < deadline:
        time.sleep(0.3)
    url = browser.js("location.href")
    if "expanded=" in url:
        # Reload on the expanded URL so the layout and the zoom start from the final graph.
        browser.navigate(url)
    else:
        log("no group to expand (single group, or groups already open)")
    state = fit_and_shoot(browser, out, args, args.render_timeout)
    total = len(graphql(base, GROUPS_QUERY)["assetNodes"])
    if state["nodes"] < total:  # nodes outside the viewport are not drawn
        log(f"warning: only {state['nodes']} of {total} assets are in the picture; "
            "try a larger --max-width/--max-height")  # fmt: skip
    return url


GROUPS_QUERY = "{ assetNodes { groupName repository { name location { name } } } }"


def shoot_group(browser: Chromium, base: str, group: str, out: Path, args) -> str:
    """The group's own lineage page: /locations/<repo path>/asset-groups/<group>."""
    homes = {
        (n["repository"]["name"], n["repository"]["location"]["name"])
        for n in graphql(base, GROUPS_QUERY)["assetNodes"]
        if n["groupName"] == group
    }
    if not homes:
        names = sorted({n["groupName"] for n in graphql(base, GROUPS_QUERY)["assetNodes"]})
        raise SystemExit(f"no asset group named {group!r}; groups: {', '.join(names)}")
    repo, location = sorted(homes)[0]
    # The UI's repo path: just the location for the default `__repository__`, else repo@location.
    repo_path = urllib.parse.quote(location, safe="")
    if repo != "__repository__":
        repo_path = f"{repo}@{repo_path}"
    url = f"{base}/locations/{repo_path}/asset-groups/{urllib.parse.quote(group, safe='')}"
    browser.navigate(url)
    fit_and_shoot(browser, out, args, args.render_timeout)
    return url


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO_ROOT / "scripts" / "lineage.png")
    p.add_argument("--port", type=int, default=3333)
    p.add_argument("--group", action="append", default=[],
                   help="also screenshot this asset group's own graph (repeatable)")
    p.add_argument("--width", type=int, default=2400, help="initial window width")
    p.add_argument("--height", type=int, default=1400, help="initial window height")
    p.add_argument("--max-width", type=int, default=4000)
    p.add_argument("--max-height", type=int, default=4000)
    p.add_argument("--direction", choices=["horizontal", "vertical"], default="horizontal",
                   help="graph layout direction (the UI's own setting)")
    p.add_argument("--startup-timeout", type=float, default=300,
                   help="seconds to wait for dagster dev and the code location")
    p.add_argument("--render-timeout", type=float, default=120)
    p.add_argument("--settle", type=float, default=2.0,
                   help="extra seconds before each screenshot")
    args = p.parse_args()  # fmt: skip
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    UI_LOCAL_STORAGE["asset-graph-direction"] = json.dumps(args.direction)

    # dagster dev maps SIGTERM onto its SIGINT handler, and a SIGINT that is ignored when it starts
    # (as for jobs started with `&` by a non-interactive shell) stays ignored in children. Give
    # SIGINT a Python handler here (handlers reset to the default on exec) and turn SIGTERM into
    # an exception so the cleanup below still runs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{p.prog}: terminated"))

    ensure_chromium()
    with dagster_dev(args.port, args.startup_timeout) as base:
        browser = Chromium(args.width, args.height)
        try:
            prepare_ui(browser, base)
            url = shoot_global_graph(browser, base, out, args)
            log(f"global graph URL: {url}")
            for group in args.group:
                gout = out.with_name(f"{out.stem}-{group}{out.suffix}")
                browser.resize(args.width, args.height)
                gurl = shoot_group(browser, base, group, gout, args)
                log(f"group graph URL: {gurl}")
        finally:
            browser.close()
    log("done")


if __name__ == "__main__":
    main()
