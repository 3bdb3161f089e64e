"""Run many generation items: cache first, then the misses with a full pipe of concurrent requests.

The runner handles single-request items. A two-stage task (question, then an answer whose prompt
contains the question) is two calls: stage 1, build stage-2 items from its results, stage 2. The
stage-2 cache key contains the stage-1 output (it is in the messages), so it stays consistent.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from medset_dagster.generation.backends.common import (
    CONNECTION_ERROR,
    MODEL_NOT_FOUND,
    MODEL_OUTPUT_FAILURES,
    RATE_LIMITED,
    SERVER_ERROR,
    TIMEOUT,
    GenerationRequest,
    GenerationResult,
    Generator,
    percentile,
)
from medset_dagster.generation.cache import GenerationCache, cache_key

ProgressCallback = Callable[[int, int, float, float | None], None]

# Reasons that say the server, not the item, is at fault: a run of them trips the breaker.
OUTAGE_REASONS = frozenset({TIMEOUT, CONNECTION_ERROR, SERVER_ERROR, MODEL_NOT_FOUND, RATE_LIMITED})


# Reasons that will fail every item: the run stops at the first one.
FATAL_REASONS = frozenset({MODEL_NOT_FOUND})


class GenerationAborted(RuntimeError):
    """The run stopped early: too many consecutive outage failures (the server is gone), a fatal
    failure (the model is not on the server), or the step's deadline passed.

    Everything that completed is already in the cache; rerunning resumes from there. `report`
    holds the finished items only. `retryable` is False when retrying the step cannot help (a
    fatal reason, or a deadline: the server hangs).
    """

    def __init__(self, message: str, report: "GenerationReport", *, retryable: bool = True) -> None:
        super().__init__(message)
        self.report = report
        self.retryable = retryable


@dataclass(frozen=True)
class GenerationItem:
    """One unit of work. `extra` joins the cache key (inputs not visible in the messages)."""

    item_id: str
    request: GenerationRequest
    extra: Mapping[str, Any] | None = None


@dataclass
class GenerationReport:
    """Results by item id (in input order) and the run's figures.

    `requested == from_cache + generated + failed`: `from_cache` counts successes served from the
    cache, `failed_by_reason` every item that ended failed, this run or (`failed_from_cache` of them)
    a settled failure served from the cache. Tokens, latencies and `calls` (backend requests,
    retries included) count this run's work only; cache hits cost nothing.
    """

    results: dict[str, GenerationResult]
    backend: str
    model: str
    digest: str | None
    template_version: str
    requested: int = 0
    from_cache: int = 0
    generated: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    failed_from_cache: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_p50: float | None = None
    latency_p95: float | None = None
    items_per_minute: float = 0.0
    wall_s: float = 0.0
    calls: int = 0

    @property
    def failed(self) -> int:
        return sum(self.failed_by_reason.values())

    def succeeded(self) -> dict[str, GenerationResult]:
        return {item_id: r for item_id, r in self.results.items() if r.ok}

    def summary(self) -> dict[str, Any]:
        """Plain figures (no results, no None), e.g. for asset metadata or a log line."""
        figures: dict[str, Any] = {
            "backend": self.backend,
            "model": self.model,
            "digest": self.digest or "",
            "template_version": self.template_version,
            "requested": self.requested,
            "from_cache": self.from_cache,
            "generated": self.generated,
            "failed": self.failed,
            "failed_by_reason": dict(self.failed_by_reason),
            "failed_from_cache": self.failed_from_cache,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "items_per_minute": round(self.items_per_minute, 2),
            "wall_s": round(self.wall_s, 3),
            "calls": self.calls,
        }
        if self.latency_p50 is not None:
            figures["latency_p50"] = round(self.latency_p50, 4)
        if self.latency_p95 is not None:
            figures["latency_p95"] = round(self.latency_p95, 4)
        return figures


def run_generation(
    generator: Generator,
    items: Sequence[GenerationItem],
    cache: GenerationCache,
    *,
    template_version: str,
    on_progress: ProgressCallback | None = None,
    progress_every_s: float = 30.0,
    abort_after_consecutive_failures: int | None = 10,
    deadline: float | None = None,
    retry_model_failures: bool = False,
) -> GenerationReport:
    """Generate every item, serving stored successes from `cache` without calling the backend, and
    the model's own failures too (`MODEL_OUTPUT_FAILURES`: truncated, malformed, empty; the same key
    would give the same answer) unless `retry_model_failures`. A server's failure is always retried.

    Misses go through a pool of exactly `generator.max_in_flight` threads fed from one queue, so a
    slot that frees is refilled at once: the server waits only for the client's turnaround. Each
    result is written to the cache by the thread that produced it, the moment it is produced, so an
    interrupted run keeps everything that completed. Items with equal keys are generated once.

    Calls `generator.check_ready()` first: the model digest is part of every key, and a missing
    server or model should fail the run once, clearly, rather than every item.

    Per-item failures are counted, not raised. But `abort_after_consecutive_failures` items in a row
    failing for an outage reason (timeout, connection, 5xx, 404) mean the server died mid-run:
    rather than spend every remaining item's retries and backoff on it, the runner stops starting
    new items, lets in-flight ones finish into the cache, and raises `GenerationAborted`. One item
    failing for a fatal reason (`FATAL_REASONS`: the model is not on the server) stops it at once.

    `deadline` (a `time.monotonic()` instant) bounds the whole call: past it the runner starts
    nothing new, stops waiting for requests a hung server never answers, and raises
    `GenerationAborted` (not retryable).
    """
    start = time.perf_counter()
    ids = [item.item_id for item in items]
    if len(set(ids)) != len(ids):
        dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise ValueError(f"duplicate item_id values: {dupes[:5]}")

    generator.check_ready()
    model, digest = generator.model, generator.digest
    keys = {
        item.item_id: cache_key(item.request, model, digest, template_version, item.extra) for item in items
    }
    cached = cache.get_many(keys.values(), settled=() if retry_model_failures else MODEL_OUTPUT_FAILURES)

    # One request per distinct missing key, in input order (so work order is reproducible).
    todo: dict[str, GenerationItem] = {}
    for item in items:
        key = keys[item.item_id]
        if key not in cached and key not in todo:
            todo[key] = item

    total = len(items)
    from_cache = sum(1 for item in items if keys[item.item_id] in cached and cached[keys[item.item_id]].ok)
    fresh: dict[str, GenerationResult] = {}
    lock = threading.Lock()
    done_items = [sum(1 for item in items if keys[item.item_id] in cached)]  # items resolved so far, cache hits included
    items_per_key = Counter(keys.values())

    streak = [0]  # consecutive outage failures, in completion order
    tripped = threading.Event()  # breaker tripped or a backend raised: start nothing new
    fatal: list[str] = []
    timed_out = [False]
    crashed: list[BaseException] = []
    outstanding = [len(todo)]
    all_done = threading.Event()

    def work(key: str, item: GenerationItem) -> None:
        try:
            if tripped.is_set():
                return  # queued before the stop: left for the next run
            result = generator.generate(item.request)
            cache.put(key, item.request.task, result)
            with lock:
                fresh[key] = result
                done_items[0] += items_per_key[key]
                streak[0] = streak[0] + 1 if result.error in OUTAGE_REASONS else 0
                if abort_after_consecutive_failures and streak[0] >= abort_after_consecutive_failures:
                    tripped.set()
                if result.error in FATAL_REASONS:
                    fatal.append(result.error)
                    tripped.set()
        except BaseException as exc:  # a bug, not a per-item failure (those are results)
            with lock:
                crashed.append(exc)
            tripped.set()
        finally:
            with lock:
                outstanding[0] -= 1
                if outstanding[0] == 0:
                    all_done.set()

    def progress() -> None:
        if on_progress is None:
            return
        elapsed = time.perf_counter() - start
        with lock:
            done, finished = done_items[0], len(fresh)
        rate = finished / elapsed if elapsed > 0 else 0.0
        remaining = total - done
        eta = remaining / rate if rate > 0 else (0.0 if remaining == 0 else None)
        on_progress(done, total, rate, eta)

    if todo:
        workers = max(1, min(int(generator.max_in_flight), len(todo)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"gen-{generator.backend}")
        try:
            # All items are queued at once; each worker takes the next the moment it is free.
            for key, item in todo.items():
                pool.submit(work, key, item)
            # Wait on one event, not on the futures: `concurrent.futures.wait` over thousands of
            # pending futures costs O(pending) per completion and starves the workers of the GIL.
            next_report = time.perf_counter() + progress_every_s
            while True:
                wait_s = max(0.0, next_report - time.perf_counter())
                if deadline is not None:
                    wait_s = min(wait_s, max(0.0, deadline - time.monotonic()))
                if all_done.wait(timeout=wait_s):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    # A hung server would hold the in-flight requests until their own timeouts:
                    # stop waiting for them; whatever completes later still lands in the cache.
                    timed_out[0] = True
                    tripped.set()
                    break
                if time.perf_counter() >= next_report:
                    progress()
                    next_report = time.perf_counter() + progress_every_s
        except BaseException:
            # Interrupted (or a callback raised): start nothing new; in-flight items still finish
            # in their threads and land in the cache for the next run.
            tripped.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=not timed_out[0], cancel_futures=timed_out[0])
        if crashed:
            raise crashed[0]
    progress()

    results: dict[str, GenerationResult] = {}
    for item in items:
        key = keys[item.item_id]
        if key in cached:
            results[item.item_id] = cached[key]
        elif key in fresh:
            results[item.item_id] = fresh[key]

    new = list(fresh.values())
    wall = time.perf_counter() - start
    latencies = [r.latency_s for r in new]
    report = GenerationReport(
        results=results,
        backend=generator.backend,
        model=model,
        digest=digest,
        template_version=template_version,
        requested=total,
        from_cache=from_cache,
        generated=sum(items_per_key[k] for k, r in fresh.items() if r.ok),
        failed_by_reason=dict(sorted(Counter(r.error for r in results.values() if r.error is not None).items())),
        failed_from_cache=sum(1 for item in items if keys[item.item_id] in cached and not cached[keys[item.item_id]].ok),
        prompt_tokens=sum(r.prompt_tokens for r in new),
        completion_tokens=sum(r.completion_tokens for r in new),
        latency_p50=percentile(latencies, 50),
        latency_p95=percentile(latencies, 95),
        items_per_minute=(len(new) / wall * 60.0) if wall > 0 else 0.0,
        wall_s=wall,
        calls=sum(r.attempts for r in new),
    )
    if timed_out[0]:
        raise GenerationAborted(
            f"{generator.backend} did not finish within the step's deadline: {len(results)} of {total} items "
            f"finished and are cached; the rest were left for the next run. Model {model!r}.",
            report,
            retryable=False,
        )
    if fatal:
        raise GenerationAborted(
            f"{generator.backend} answered {fatal[0]} for model {model!r}: every item would fail the same way; "
            f"{len(results)} of {total} items finished and are cached.",
            report,
            retryable=False,
        )
    if tripped.is_set():
        reasons = ", ".join(f"{k}={v}" for k, v in report.failed_by_reason.items())
        raise GenerationAborted(
            f"{generator.backend} stopped answering: {abort_after_consecutive_failures} items in a row failed "
            f"({reasons}); {len(results)} of {total} items finished and are cached, rerun to resume. "
            f"Model {model!r}.",
            report,
        )
    return report
