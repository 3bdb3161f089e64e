"""Fleet throughput: FleetGenerator + run_generation over 1, 2 and 4 loopback servers (prints figures).

Each server is a stand-in in its own process (as real servers are) with a fixed latency per
request and S slots served at once, so the ideal throughput of a fleet of n servers is
n * S / latency. The default stand-in is the OpenAI-compatible one with a queue of one place
beyond its slots: the fleet's default of slots + 1 requests per endpoint fills it, and anything
more would be refused with 503 (the `refused` column must stay 0). Target: at least 0.95 of ideal
for each fleet size.

A stand-in holds a slot a little longer than the nominal latency (its timer wakes late and it
writes the answer); it reports how long, so the share of the capacity the stand-ins really had
(slots / measured service time) is printed too: what the fleet's routing leaves unused.

Each size runs `--repeat` times (fresh items each time) and the median share is its figure: the
machine is shared, and one run can lose a few percent to a neighbour's burst. The client's CPU time
per item is printed too. For reference, each size is also run once with exactly S requests per
endpoint (no queued request to hide the client's turnaround).

    .venv/bin/python benchmarks/fleet.py [--servers 1,2,4] [--slots 4] [--latency 0.05] [--seconds 10]
                                         [--repeat 3] [--kind openai|ollama|mixed] [--no-reference]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medset_dagster.generation import (  # noqa: E402
    Endpoint,
    FleetGenerator,
    GenerationCache,
    GenerationItem,
    GenerationParams,
    GenerationRequest,
    run_generation,
)
from medset_dagster_tests.servers.ollama_server import model_digest  # noqa: E402

OLLAMA_MODEL = "gemma3n:e4b"
OPENAI_MODEL = "google/gemma-3n-E4B-it"
SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}


def make_items(n: int, run: str) -> list[GenerationItem]:
    return [
        GenerationItem(
            item_id=f"{run}-{i:05d}",
            request=GenerationRequest(
                task="emergency_question",
                messages=[
                    {"role": "system", "content": "You are a seasoned humanitarian medic."},
                    {"role": "user", "content": f"Write one realistic first-aid question for situation {run}-{i}."},
                ],
                schema=SCHEMA,
                params=GenerationParams(temperature=0.7, max_tokens=350),
            ),
        )
        for i in range(n)
    ]


def start_server(stack: ExitStack, kind: str, latency: float, slots: int) -> str:
    """A stand-in server in a child process; returns its URL. The stack stops it."""
    if kind == "ollama":
        args = ["-m", "medset_dagster_tests.servers.ollama_server", "--model", OLLAMA_MODEL]
    else:
        args = ["-m", "medset_dagster_tests.servers.openai_server", "--model", OPENAI_MODEL, "--max-queue", "1"]
    process = subprocess.Popen(
        [sys.executable, *args, "--latency", str(latency), "--max-concurrent", str(slots)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )

    def stop() -> None:
        process.stdin.close()
        process.wait(timeout=10)

    stack.callback(stop)
    return process.stdout.readline().strip()


def server_stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_stats", timeout=5) as response:
        return json.load(response)


def endpoints_for(kinds: list[str], urls: list[str], slots: int, per_endpoint: int | None) -> list[Endpoint]:
    endpoints = []
    for i, (kind, url) in enumerate(zip(kinds, urls)):
        model = OLLAMA_MODEL if kind == "ollama" else OPENAI_MODEL
        digest = model_digest(OLLAMA_MODEL) if kind == "openai" else None  # same weights as the Ollama one
        endpoints.append(Endpoint(f"{kind}-{i + 1}", kind, url, model, slots=slots, max_in_flight=per_endpoint,
                                  digest=digest))
    return endpoints


def run_once(label: str, kinds: list[str], urls: list[str], slots: int, latency: float, seconds: float,
             per_endpoint: int | None) -> float:
    ideal = len(urls) * slots / latency
    n = max(50, int(ideal * seconds))
    fleet = FleetGenerator(endpoints_for(kinds, urls, slots, per_endpoint), model=OLLAMA_MODEL, timeout_s=30)
    before = {url: server_stats(url) for url in urls}
    with tempfile.TemporaryDirectory() as tmp, GenerationCache(Path(tmp) / "bench.sqlite") as cache, fleet:
        cpu = time.process_time()
        report = run_generation(fleet, make_items(n, label), cache, template_version="bench/v1")
        cpu = time.process_time() - cpu
    share = n / report.wall_s / ideal
    stats = fleet.endpoint_stats()
    after = {url: server_stats(url) for url in urls}
    refused = sum(after[url].get("refused", 0) - before[url].get("refused", 0) for url in urls)
    capacity_note = ""
    if all("slot_seconds" in after[url] for url in urls):
        held = sum(after[url]["slot_seconds"] - before[url]["slot_seconds"] for url in urls)
        served = sum(after[url]["served"] - before[url]["served"] for url in urls)
        service = held / served
        capacity_note = (f"  service {service * 1000:.1f} ms/request -> "
                         f"{n / report.wall_s / (len(urls) * slots / service):6.1%} of measured capacity")
    per = ", ".join(
        f"{name} {s['calls']} calls p50 {s['latency_p50_s'] * 1000:.0f} ms p95 {s['latency_p95_s'] * 1000:.0f} ms"
        for name, s in stats.items()
    )
    print(f"{label:<40} {n:5d} items  wall {report.wall_s:6.2f} s  {n / report.wall_s:6.1f} items/s  "
          f"ideal {ideal:5.1f}  {share:6.1%} of ideal  failed {report.failed}  refused {refused}  "
          f"client cpu {cpu / n * 1000:.2f} ms/item  load {os.getloadavg()[0]:.2f}{capacity_note}  [{per}]",
          flush=True)
    return share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="1,2,4", help="fleet sizes, comma-separated")
    parser.add_argument("--slots", type=int, default=4, help="S: requests each server computes at once")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--seconds", type=float, default=10.0, help="ideal duration of each run (sets the item count)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per fleet size; the median share counts")
    parser.add_argument("--kind", choices=("openai", "ollama", "mixed"), default="openai")
    parser.add_argument("--no-reference", action="store_true", help="skip the runs with exactly S per endpoint")
    args = parser.parse_args()
    sizes = [int(s) for s in args.servers.split(",")]
    print(f"{args.kind} stand-ins, {args.slots} slots each, {args.latency * 1000:.0f} ms per request; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    shares: dict[int, float] = {}
    for size in sizes:
        kinds = [("ollama" if i % 2 else "openai") if args.kind == "mixed" else args.kind for i in range(size)]
        with ExitStack() as stack:
            urls = [start_server(stack, kind, args.latency, args.slots) for kind in kinds]
            runs = [
                run_once(f"{size} server(s), slots+1 per endpoint, run {r + 1}", kinds, urls, args.slots,
                         args.latency, args.seconds, None)
                for r in range(args.repeat)
            ]
            shares[size] = statistics.median(runs)
            if not args.no_reference:
                run_once(f"(ref.) {size} server(s), slots per endpoint", kinds, urls, args.slots,
                         args.latency, args.seconds, args.slots)
    verdict = "PASS" if all(share >= 0.95 for share in shares.values()) else "BELOW TARGET"
    print("median share of ideal by fleet size: " + ", ".join(f"{k}: {v:.3f}" for k, v in shares.items())
          + f"  (target >= 0.95: {verdict}; load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
