"""Generation throughput: our backend + runner vs the published one-at-a-time loop (prints figures).

Starts the loopback Ollama stand-in in a child process (as the real Ollama is a separate process)
with a fixed latency per request and a cap of C requests served at once, so the ideal throughput is
C / latency. Then, in one run:
  1. N items with OllamaGenerator + run_generation (max_in_flight=C) into a fresh cache;
  2. the same N items with sequential `client.chat` calls, like the published scripts;
  3. a second, cached run of (1): it should make zero calls;
  4. SmolLM2-135M (llama.cpp) tokens/s for one short JSON-constrained generation.

    .venv/bin/python benchmarks/generation.py [--items 400] [--latency 0.05] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medset_dagster.generation import (  # noqa: E402
    GenerationCache,
    GenerationItem,
    GenerationParams,
    GenerationRequest,
    LlamaCppGenerator,
    OllamaGenerator,
    run_generation,
)

MODEL = "gemma3n:e4b"
SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}},
    "required": ["question"],
}


def make_items(n: int) -> list[GenerationItem]:
    return [
        GenerationItem(
            item_id=f"item-{i:05d}",
            request=GenerationRequest(
                task="emergency_question",
                messages=[
                    {"role": "system", "content": "You are a seasoned humanitarian medic."},
                    {"role": "user", "content": f"Write one realistic first-aid question for situation {i}."},
                ],
                schema=SCHEMA,
                params=GenerationParams(temperature=0.7, max_tokens=350),
            ),
        )
        for i in range(n)
    ]


def stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_stats", timeout=5) as response:
        return json.load(response)


def line(label: str, n: int, wall: float, ideal: float) -> str:
    rate = n / wall
    return f"{label:<34} wall {wall:7.2f} s   {rate:7.1f} items/s   {rate / ideal:6.1%} of ideal"


def bench_ollama(n: int, latency: float, concurrency: int) -> None:
    ideal = concurrency / latency
    server = subprocess.Popen(
        [sys.executable, "-m", "medset_dagster_tests.servers.ollama_server",
         "--latency", str(latency), "--max-concurrent", str(concurrency)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        url = server.stdout.readline().strip()
        items = make_items(n)
        print(f"stand-in Ollama at {url}: latency {latency * 1000:.0f} ms, {concurrency} served at once "
              f"-> ideal {ideal:.1f} items/s; {n} items; load average {os.getloadavg()[0]:.2f}")

        with tempfile.TemporaryDirectory() as tmp, GenerationCache(Path(tmp) / "bench.sqlite") as cache:
            generator = OllamaGenerator(host=url, model=MODEL, timeout_s=30, max_in_flight=concurrency)
            generator.check_ready()  # warm the probe client; run_generation checks again (counted)
            before = stats(url)["chat_calls"]
            report = run_generation(generator, items, cache, template_version="bench/v1")
            ours_calls = stats(url)["chat_calls"] - before
            print(line(f"runner (max_in_flight={concurrency})", n, report.wall_s, ideal)
                  + f"   calls {ours_calls}, p50 {report.latency_p50 * 1000:.1f} ms, "
                  f"p95 {report.latency_p95 * 1000:.1f} ms, peak in flight {stats(url)['peak_in_flight']}")

            import ollama

            client = ollama.Client(host=url, timeout=30)
            start = time.perf_counter()
            for item in items:  # the published scripts: one chat call at a time
                client.chat(model=MODEL, messages=item.request.messages, format=item.request.schema,
                            options={"temperature": 0.7, "num_predict": 350})
            sequential = time.perf_counter() - start
            print(line("sequential client.chat loop", n, sequential, ideal))

            before = stats(url)["chat_calls"]
            cached = run_generation(generator, items, cache, template_version="bench/v1")
            print(f"{'cached second run':<34} wall {cached.wall_s:7.2f} s   "
                  f"calls {stats(url)['chat_calls'] - before} (report: {cached.calls}), "
                  f"from cache {cached.from_cache}/{cached.requested}")
            print(f"speed-up over sequential: {sequential / report.wall_s:.2f}x")

        # For reference only: one request more than the server's slots hides the client's turnaround
        # (response parse, cache write, next request) behind a queued request, at the cost of that
        # request waiting in the server's queue. The runner's contract stays max_in_flight = C.
        with tempfile.TemporaryDirectory() as tmp, GenerationCache(Path(tmp) / "bench.sqlite") as cache:
            over = OllamaGenerator(host=url, model=MODEL, timeout_s=30, max_in_flight=concurrency + 1)
            over.check_ready()
            report = run_generation(over, items, cache, template_version="bench/v1")
            print(line(f"(ref.) runner, max_in_flight={concurrency + 1}", n, report.wall_s, ideal))
    finally:
        server.stdin.close()
        server.wait(timeout=10)


def bench_smollm2() -> None:
    start = time.perf_counter()
    generator = LlamaCppGenerator()
    generator.check_ready()
    load = time.perf_counter() - start
    request = GenerationRequest(
        task="emergency_question",
        messages=[
            {"role": "system", "content": 'You are a medic. Reply only with JSON: {"question": "..."}'},
            {"role": "user", "content": "Write one short first-aid question about a burn."},
        ],
        schema=SCHEMA,
        params=GenerationParams(temperature=0.7, max_tokens=64),
    )
    generator.generate(request)  # warm-up (first call pays for page-ins and buffers)
    result = generator.generate(request)
    print(f"SmolLM2-135M Q4_1 (llama.cpp, n_threads={generator.n_threads}, load+hash {load:.1f} s): "
          f"{result.completion_tokens} tokens in {result.latency_s:.2f} s = "
          f"{result.completion_tokens / result.latency_s:.1f} tokens/s "
          f"(prompt {result.prompt_tokens} tokens, JSON-schema constrained, finish {result.finish_reason}); "
          f"output {result.text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=4, help="C: requests the server serves at once")
    parser.add_argument("--no-llama", action="store_true", help="skip the SmolLM2 tokens/s measurement")
    args = parser.parse_args()
    bench_ollama(args.items, args.latency, args.concurrency)
    if not args.no_llama:
        bench_smollm2()


if __name__ == "__main__":
    main()
