"""A fleet of LLM servers behind one `Generator`: Ollama and OpenAI-compatible servers (vLLM,
llama.cpp's server, TGI) serving the same model, each with its own number of parallel slots.

Routing. Every request goes to the healthy endpoint with the largest share of its in-flight limit
free (by default its slots plus one: the extra request waits in the server's queue and hides the
client's turnaround, measured at 0.974 of ideal throughput against 0.889 with exactly the slots).
`max_in_flight` is the sum of the endpoints' limits, so the runner's thread pool keeps every
endpoint full and no endpoint ever gets more than its limit.

Failures. An endpoint that fails (connection lost or refused, timeout, 5xx, model gone) is marked
down and backed off (exponential, with jitter); when its backoff ends, one request's thread probes
its health (the backend's `check_ready`: model listed, same digest) before any work goes back to it.
An endpoint that answers overload (429, or 503 as Ollama and llama.cpp do when their queue is full)
is backed off for its `Retry-After` or the same exponential time, without a probe. Either way the
item goes at once to another endpoint and this costs the item none of its attempts: an item
attempt is spent only when every endpoint failed it, or for a fault of the item itself (malformed
or truncated output, 4xx), exactly as with one server. So losing an endpoint mid-run loses no
item and repeats only the requests it had in flight.

Identity. The cache key holds `model` and `digest`. Both are the fleet's, not an endpoint's:
`model` is the one name given (or the endpoints' common model name) and `digest` the one digest
every endpoint reports (Ollama: the model's digest; OpenAI-compatible: the configured digest, else
`openai-model:<id as /v1/models lists it>`). `check_ready` refuses endpoints that disagree, so an
item's key never depends on which endpoint served it, and adding or removing a server regenerates
nothing. A fleet of Ollama servers has the same keys as a lone `OllamaGenerator` of that model.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

from medset_dagster.generation.backends.common import (
    CONNECTION_ERROR,
    MODEL_NOT_FOUND,
    RATE_LIMITED,
    SERVER_ERROR,
    TIMEOUT,
    AttemptFailed,
    GenerationRequest,
    GenerationResult,
    GeneratorUnavailable,
    generate_with_retries,
    percentile,
)

log = logging.getLogger(__name__)

KINDS = ("ollama", "openai")
# HTTP answers that mean "alive but full": back off without a health probe.
OVERLOAD_STATUSES = frozenset({429, 503})
# Reasons that say the endpoint, not the item, is at fault: the item goes to another endpoint.
ENDPOINT_REASONS = frozenset({CONNECTION_ERROR, TIMEOUT, SERVER_ERROR, RATE_LIMITED, MODEL_NOT_FOUND})
# Recorded in an endpoint's figures when its probe finds other weights than the fleet's.
DIGEST_MISMATCH = "digest_mismatch"


@dataclass(frozen=True)
class Endpoint:
    """One LLM server of a fleet.

    name: unique in the fleet, used in logs, errors and `endpoint_stats`.
    kind: "ollama" (Ollama's API) or "openai" (any OpenAI-compatible chat-completions server).
    url: the server's root (`http://gpu-1:11434`; for "openai" the root or its `/v1` base).
    model: the model as this server names it (`ollama list`, or the id in `/v1/models`).
    slots: requests the server computes at once (`OLLAMA_NUM_PARALLEL`, vLLM's `--max-num-seqs`,
        llama-server's `--parallel`).
    max_in_flight: requests kept open at it; default `slots + 1`.
    digest: the weights' identity as the operator states it. "openai": the identity used in cache
        keys (else `openai-model:<id>`); give the Ollama digest of the same weights to share cache
        entries with Ollama endpoints. "ollama": checked against the digest the server reports.
    api_key_env: "openai" only: the environment variable holding the API key (never the key itself,
        so configuration can be shown and logged).
    timeout_s: seconds per request at this endpoint; default the fleet's `timeout_s`.

    Raises ValueError for an unknown kind, an empty name, url or model, or slots < 1.
    """

    name: str
    kind: str
    url: str
    model: str
    slots: int = 1
    max_in_flight: int | None = None
    digest: str | None = None
    api_key_env: str | None = None
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"endpoint {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        for attr in ("name", "url", "model"):
            value = getattr(self, attr)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"endpoint {self.name!r}: {attr} must be a non-empty string, got {value!r}")
        if isinstance(self.slots, bool) or not isinstance(self.slots, int) or self.slots < 1:
            raise ValueError(f"endpoint {self.name!r}: slots must be an int >= 1, got {self.slots!r}")
        if self.max_in_flight is not None and (
            isinstance(self.max_in_flight, bool) or not isinstance(self.max_in_flight, int) or self.max_in_flight < 1
        ):
            raise ValueError(f"endpoint {self.name!r}: max_in_flight must be an int >= 1, got {self.max_in_flight!r}")
        if self.api_key_env is not None and self.kind != "openai":
            raise ValueError(f"endpoint {self.name!r}: api_key_env applies to kind 'openai' only")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"endpoint {self.name!r}: timeout_s must be positive, got {self.timeout_s!r}")

    @property
    def in_flight_limit(self) -> int:
        """Requests kept open at this endpoint: `max_in_flight`, else `slots + 1`."""
        return self.max_in_flight if self.max_in_flight is not None else self.slots + 1

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> "Endpoint":
        """An endpoint from a mapping with the field names above (e.g. parsed JSON or Dagster
        config). Raises ValueError naming unknown or missing keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown endpoint keys {unknown}; known: {sorted(known)}")
        missing = [k for k in ("name", "kind", "url", "model") if k not in value]
        if missing:
            raise ValueError(f"endpoint {value.get('name', '?')!r} lacks {missing}")
        return cls(**dict(value))


def load_endpoints(config: str | Sequence[Mapping[str, Any]]) -> list[Endpoint]:
    """Endpoints from JSON text (a list of objects) or a list of mappings, e.g.
    `[{"name": "gpu-1", "kind": "ollama", "url": "http://gpu-1:11434", "model": "gemma3n:e4b", "slots": 4}]`.
    Raises ValueError for malformed JSON, a non-list, or a bad endpoint."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as err:
            raise ValueError(f"fleet configuration is not valid JSON: {err}") from None
    if not isinstance(config, Sequence) or isinstance(config, (str, bytes)):
        raise ValueError(f"fleet configuration must be a list of endpoints, got {type(config).__name__}")
    return [Endpoint.from_dict(item) for item in config]


class _Member:
    """An endpoint, its backend and its routing state and figures (guarded by the fleet's lock)."""

    def __init__(self, endpoint: Endpoint, backend: Any) -> None:
        self.endpoint = endpoint
        self.backend = backend
        self.limit = endpoint.in_flight_limit
        self.in_flight = 0
        self.down = False  # needs a passing health probe before any more work
        self.retry_at = 0.0  # time.monotonic() before which nothing is sent
        self.strikes = 0  # failure episodes since the last success; sets the backoff
        self.probing = False
        self.last_failure: AttemptFailed | None = None
        self.digest: str | None = None
        self.picked = 0  # when it last got a request (a counter), to spread ties
        self.calls = 0
        self.succeeded = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.latencies: list[float] = []
        self.failures: Counter[str] = Counter()
        self.peak_in_flight = 0
        self.backoffs = 0
        self.rerouted = 0
        self.probes = 0

    @property
    def name(self) -> str:
        return self.endpoint.name

    def usable(self, now: float) -> bool:
        return not self.down and now >= self.retry_at

    def state(self, now: float) -> str:
        if self.down:
            return "down"
        return "backing_off" if now < self.retry_at else "healthy"


class FleetGenerator:
    """Several LLM servers serving one model, as one `Generator` for `run_generation`.

    endpoints: the servers (`Endpoint`), at least one, names unique.
    model: the model name that goes into cache keys; default the endpoints' common `model` (required
        when they name it differently, e.g. `gemma3n:e4b` on Ollama and `google/gemma-3n-E4B-it` on
        vLLM; give the Ollama name to keep the keys of earlier Ollama runs).
    timeout_s: seconds per request (an endpoint's own `timeout_s` wins).
    max_attempts, backoff_initial_s, backoff_max_s: the item's retry policy, as for one server:
        attempts spent on the item's own failures or when no endpoint could serve it; waits in
        seconds, exponential with jitter.
    endpoint_backoff_initial_s, endpoint_backoff_max_s: how long a failed or overloaded endpoint is
        left alone (seconds), doubling per failure episode until a request succeeds there.
    ready_timeout_s: seconds for one health probe.

    Raises ValueError for no endpoints, duplicate names, or differing model names without `model`.
    """

    backend = "fleet"

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        model: str | None = None,
        timeout_s: float = 120.0,
        max_attempts: int = 4,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        endpoint_backoff_initial_s: float = 1.0,
        endpoint_backoff_max_s: float = 30.0,
        ready_timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        endpoints = list(endpoints)
        if not endpoints:
            raise ValueError("a fleet needs at least one endpoint")
        names = Counter(e.name for e in endpoints)
        dupes = sorted(n for n, c in names.items() if c > 1)
        if dupes:
            raise ValueError(f"endpoint names must be unique; repeated: {dupes}")
        served = sorted({e.model for e in endpoints})
        if model is None:
            if len(served) > 1:
                raise ValueError(
                    f"the endpoints name the model differently ({', '.join(served)}): pass model= the name "
                    "cache keys should carry (the same weights must be behind every endpoint)"
                )
            model = served[0]
        self.model = model
        self.timeout_s = timeout_s
        self.max_attempts = max(1, int(max_attempts))
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.endpoint_backoff_initial_s = endpoint_backoff_initial_s
        self.endpoint_backoff_max_s = endpoint_backoff_max_s
        self.ready_timeout_s = ready_timeout_s
        self._sleep = sleep
        self._members = [_Member(e, self._backend_for(e)) for e in endpoints]
        self.max_in_flight = sum(m.limit for m in self._members)
        self._cond = threading.Condition()
        self._ready_lock = threading.Lock()
        self._digest: str | None = None
        self._latest_failure: AttemptFailed | None = None
        self._picks = 0
        self._random = random.Random()

    def _backend_for(self, endpoint: Endpoint) -> Any:
        timeout = endpoint.timeout_s or self.timeout_s
        if endpoint.kind == "ollama":
            from medset_dagster.generation.backends.ollama import OllamaGenerator

            return OllamaGenerator(
                host=endpoint.url, model=endpoint.model, timeout_s=timeout, max_attempts=1,
                max_in_flight=endpoint.in_flight_limit, ready_timeout_s=self.ready_timeout_s,
            )
        from medset_dagster.generation.backends.openai_compat import (
            OpenAICompatGenerator,
        )

        return OpenAICompatGenerator(
            endpoint.url, endpoint.model, api_key_env=endpoint.api_key_env, digest=endpoint.digest,
            timeout_s=timeout, max_attempts=1, max_in_flight=endpoint.in_flight_limit,
            ready_timeout_s=self.ready_timeout_s,
        )

    # ------------------------------------------------------------------------------ identity

    @property
    def digest(self) -> str | None:
        """The digest every ready endpoint reports for the model; set by `check_ready`."""
        return self._digest

    @property
    def endpoints(self) -> list[Endpoint]:
        """The endpoints, in the order given."""
        return [m.endpoint for m in self._members]

    def _endpoint_digest(self, member: _Member) -> str:
        """Probe one endpoint: its digest, or GeneratorUnavailable (with the endpoint named)."""
        endpoint = member.endpoint
        try:
            member.backend.check_ready()
        except GeneratorUnavailable as err:
            raise GeneratorUnavailable(f"endpoint {endpoint.name}: {err}", reason=err.reason) from None
        except Exception as err:  # e.g. a half-started server's unreadable answer: a failed check, not a crash
            raise GeneratorUnavailable(
                f"endpoint {endpoint.name}: health check failed ({type(err).__name__}: {err})"
            ) from None
        digest = member.backend.digest
        if endpoint.kind == "ollama" and endpoint.digest and digest != endpoint.digest:
            raise GeneratorUnavailable(
                f"endpoint {endpoint.name}: Ollama at {endpoint.url} has {endpoint.model} with digest {digest}, "
                f"not the configured {endpoint.digest}",
                reason=MODEL_NOT_FOUND,
            )
        return str(digest)

    def check_ready(self) -> None:
        """Probe every endpoint at once (each within `ready_timeout_s` seconds) and settle the digest.

        Endpoints that do not answer are tolerated (backed off, probed again later) as long as one
        answers. Raises `GeneratorUnavailable` when none answers, when an answering endpoint lacks
        the model, or when endpoints report different digests (the message names the endpoints
        behind each digest): mixing them would serve one dataset from two models.
        """
        with self._ready_lock:
            outcomes: dict[str, str | GeneratorUnavailable] = {}

            def probe(member: _Member) -> None:
                try:
                    outcomes[member.name] = self._endpoint_digest(member)
                except GeneratorUnavailable as err:
                    outcomes[member.name] = err

            with ThreadPoolExecutor(max_workers=len(self._members), thread_name_prefix="fleet-ready") as pool:
                list(pool.map(probe, self._members))
            ordered = [(m.name, outcomes[m.name]) for m in self._members]  # messages in the order given
            errors = {n: o for n, o in ordered if isinstance(o, GeneratorUnavailable)}
            digests = {n: o for n, o in ordered if isinstance(o, str)}
            misconfigured = {n: e for n, e in errors.items() if e.reason == MODEL_NOT_FOUND}
            if misconfigured:
                raise GeneratorUnavailable(
                    "fleet endpoints without the model: " + "; ".join(str(e) for e in misconfigured.values()),
                    reason=MODEL_NOT_FOUND,
                )
            if not digests:
                raise GeneratorUnavailable(
                    "no endpoint of the fleet answers: " + "; ".join(str(e) for e in errors.values())
                )
            by_digest: dict[str, list[str]] = {}
            for name, digest in digests.items():
                by_digest.setdefault(digest, []).append(name)
            if len(by_digest) > 1:
                listing = "; ".join(
                    f"digest {d!r} at {', '.join(sorted(names))}" for d, names in sorted(by_digest.items())
                )
                raise GeneratorUnavailable(
                    f"fleet endpoints serve different weights for {self.model!r} ({listing}). The digest is part of "
                    "every cache key, so every endpoint must serve the same model; for an OpenAI-compatible "
                    "server holding the same weights as an Ollama one, set its `digest` to the Ollama digest.",
                    reason=MODEL_NOT_FOUND,
                )
            (digest,) = by_digest
            now = time.monotonic()
            with self._cond:
                self._digest = digest
                for member in self._members:
                    member.probes += 1
                    outcome = outcomes[member.name]
                    if isinstance(outcome, str):
                        member.digest, member.down, member.retry_at = outcome, False, 0.0
                    else:
                        failure = AttemptFailed(outcome.reason, str(outcome), retryable=True)
                        self._back_off(member, failure, now, down=True, escalate=True)
                        log.warning("fleet endpoint %s is not answering; backing off: %s", member.name, outcome)
                self._cond.notify_all()

    # ------------------------------------------------------------------------------ routing

    def _backoff_s(self, strikes: int) -> float:
        base = self.endpoint_backoff_initial_s * 2 ** max(0, strikes - 1)
        return min(self.endpoint_backoff_max_s, base * (1.0 + 0.25 * self._random.random()))

    def _back_off(self, member: _Member, failure: AttemptFailed, now: float, *, down: bool, escalate: bool) -> None:
        """Leave `member` alone for a while (lock held). Only the first failure of an episode (or a
        failed probe) lengthens the backoff: requests already in flight that fail with it do not."""
        member.last_failure = failure
        self._latest_failure = failure
        member.down = member.down or down
        if escalate:
            member.strikes += 1
            member.backoffs += 1
            wait = self._backoff_s(member.strikes)
            if failure.retry_after_s is not None and not down:
                wait = min(self.endpoint_backoff_max_s, failure.retry_after_s)
            member.retry_at = max(member.retry_at, now + wait)

    def _pick(self, now: float) -> _Member | None:
        """The usable endpoint with the largest share of its limit free (lock held)."""
        best: _Member | None = None
        for member in self._members:
            if member.in_flight >= member.limit or not member.usable(now):
                continue
            if best is None:
                best = member
                continue
            share = (member.limit - member.in_flight) / member.limit
            best_share = (best.limit - best.in_flight) / best.limit
            if share > best_share or (share == best_share and member.picked < best.picked):
                best = member
        return best

    def _no_endpoint(self) -> AttemptFailed:
        """The item attempt's failure when every endpoint is backing off (lock held)."""
        now = time.monotonic()
        latest = self._latest_failure
        reasons = {m.last_failure.reason for m in self._members if m.last_failure is not None}
        detail = "; ".join(
            f"{m.name}: {m.state(now)}, {m.last_failure.reason if m.last_failure else 'no failure'}"
            f" (retry in {max(0.0, m.retry_at - now):.2f}s)"
            for m in self._members
        )
        return AttemptFailed(
            latest.reason if latest is not None else CONNECTION_ERROR,
            f"no endpoint of the fleet can take the item: {detail}",
            retryable=reasons != {MODEL_NOT_FOUND},
        )

    def _probe(self, member: _Member) -> None:
        """Health-check a down endpoint whose backoff ended (lock held on entry and exit, released
        during the check): back in service if it answers with the fleet's digest."""
        member.probing = True
        self._cond.release()
        try:
            try:
                digest: str | None = self._endpoint_digest(member)
                problem: GeneratorUnavailable | None = None
            except GeneratorUnavailable as err:
                digest, problem = None, err
        finally:
            self._cond.acquire()
            member.probing = False
            self._cond.notify_all()
        now = time.monotonic()
        member.probes += 1
        if problem is None and digest != self._digest:
            member.failures[DIGEST_MISMATCH] += 1
            problem = GeneratorUnavailable(
                f"endpoint {member.name} now serves digest {digest!r}, the fleet {self._digest!r}", reason=MODEL_NOT_FOUND
            )
        if problem is not None:
            self._back_off(member, AttemptFailed(problem.reason, str(problem), retryable=True), now, down=True, escalate=True)
            log.warning("fleet endpoint %s failed its health probe; next in %.1fs: %s",
                        member.name, member.retry_at - now, problem)
            return
        member.digest, member.down = digest, False
        log.info("fleet endpoint %s is healthy again", member.name)

    def _next_change(self, now: float) -> float | None:
        """Seconds until the next backoff ends (lock held); None if no endpoint is backing off."""
        pending = [m.retry_at - now for m in self._members if m.retry_at > now]
        return max(0.001, min(pending)) if pending else None

    def _acquire(self) -> _Member:
        """Reserve a place at an endpoint, waiting while every usable one is full. Raises
        AttemptFailed when every endpoint is backing off and stays so past one backoff's end."""
        patience = 1  # times this attempt waits for a backoff to end before giving up
        with self._cond:
            while True:
                now = time.monotonic()
                member = self._pick(now)
                if member is not None:
                    member.in_flight += 1
                    member.peak_in_flight = max(member.peak_in_flight, member.in_flight)
                    self._picks += 1
                    member.picked = self._picks
                    return member
                due = next((m for m in self._members if m.down and not m.probing and now >= m.retry_at), None)
                if due is not None:
                    self._probe(due)
                    continue
                if any(m.usable(now) or m.probing for m in self._members):
                    self._cond.wait(timeout=self._next_change(now))  # a release or a probe's end wakes us
                    continue
                if patience == 0:
                    raise self._no_endpoint()
                patience -= 1
                self._cond.wait(timeout=self._next_change(now))

    def _release(self, member: _Member, latency_s: float, result: GenerationResult | None,
                 failure: AttemptFailed | None) -> bool:
        """Return `member`'s place and record the call; True if the failure is the endpoint's fault
        (the item should go elsewhere)."""
        with self._cond:
            member.in_flight -= 1
            member.calls += 1
            member.latencies.append(latency_s)
            self._cond.notify()
            if result is not None:
                member.succeeded += 1
                member.prompt_tokens += result.prompt_tokens
                member.completion_tokens += result.completion_tokens
                member.strikes = 0
                return False
            assert failure is not None
            member.failures[failure.reason] += 1
            member.prompt_tokens += failure.prompt_tokens
            member.completion_tokens += failure.completion_tokens
            if failure.reason not in ENDPOINT_REASONS:
                return False
            now = time.monotonic()
            overload = failure.status in OVERLOAD_STATUSES
            fresh = member.usable(now)  # the first failure of an episode sets the backoff
            self._back_off(member, failure, now, down=not overload, escalate=fresh)
            if fresh:
                log.warning("fleet endpoint %s %s; backing off %.1fs: %s", member.name,
                            "is overloaded" if overload else "failed", member.retry_at - now, failure)
            return True

    def _routed_attempt(self, request: GenerationRequest, sent: list[int]) -> GenerationResult:
        """One item attempt: endpoint after endpoint until one answers, an item fault, or every
        endpoint has failed it once (then that endpoint's failure is the attempt's). Counts the
        requests it sends in `sent[0]`."""
        failed_at = 0
        while True:
            member = self._acquire()
            sent[0] += 1
            start = time.perf_counter()
            try:
                result = member.backend.attempt(request)
            except AttemptFailed as failure:
                if not self._release(member, time.perf_counter() - start, None, failure):
                    raise
                failed_at += 1
                if failed_at >= len(self._members):
                    raise
                with self._cond:
                    member.rerouted += 1
                continue
            except BaseException:
                with self._cond:
                    member.in_flight -= 1
                    self._cond.notify()
                raise
            self._release(member, time.perf_counter() - start, result, None)
            return result

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """One item on whichever endpoint is free, with up to `max_attempts` item attempts (see the
        module doc); never raises for a per-item failure. The result's `attempts` is the number of
        requests sent for the item, reroutes included (so a run's `calls` adds up to the
        endpoints' `calls`); `latency_s` the item's whole time in seconds. Calls `check_ready`
        first if it never ran (and raises its `GeneratorUnavailable`)."""
        if self._digest is None:
            self.check_ready()
        sent = [0]
        result = generate_with_retries(
            lambda: self._routed_attempt(request, sent),
            max_attempts=self.max_attempts,
            backoff_initial_s=self.backoff_initial_s,
            backoff_max_s=self.backoff_max_s,
            sleep=self._sleep,
        )
        return replace(result, attempts=sent[0])

    # ------------------------------------------------------------------------------ figures

    def endpoint_stats(self) -> dict[str, dict[str, Any]]:
        """Per-endpoint figures since construction (or `reset_stats`), keyed by endpoint name:
        kind, url, model, slots, max_in_flight, state ("healthy", "backing_off", "down"), digest,
        calls (requests sent, retries included), succeeded, failed, failures_by_reason (reason ->
        count; `digest_mismatch` for failed probes), prompt_tokens, completion_tokens,
        latency_p50_s and latency_p95_s (seconds per request; absent before the first call),
        peak_in_flight, backoffs (times backed off), rerouted (items sent on to another endpoint
        after a failure here), probes (health checks). Plain values only, ready for asset metadata.
        """
        now = time.monotonic()
        with self._cond:
            stats: dict[str, dict[str, Any]] = {}
            for m in self._members:
                figures: dict[str, Any] = {
                    "kind": m.endpoint.kind,
                    "url": m.endpoint.url,
                    "model": m.endpoint.model,
                    "slots": m.endpoint.slots,
                    "max_in_flight": m.limit,
                    "state": m.state(now),
                    "digest": m.digest or "",
                    "calls": m.calls,
                    "succeeded": m.succeeded,
                    "failed": m.calls - m.succeeded,
                    "failures_by_reason": dict(sorted(m.failures.items())),
                    "prompt_tokens": m.prompt_tokens,
                    "completion_tokens": m.completion_tokens,
                    "peak_in_flight": m.peak_in_flight,
                    "backoffs": m.backoffs,
                    "rerouted": m.rerouted,
                    "probes": m.probes,
                }
                if m.latencies:
                    figures["latency_p50_s"] = round(percentile(m.latencies, 50) or 0.0, 4)
                    figures["latency_p95_s"] = round(percentile(m.latencies, 95) or 0.0, 4)
                stats[m.name] = figures
            return stats

    def reset_stats(self) -> None:
        """Zero every endpoint's figures (routing state is kept)."""
        with self._cond:
            for m in self._members:
                m.calls = m.succeeded = m.prompt_tokens = m.completion_tokens = 0
                m.peak_in_flight = m.backoffs = m.rerouted = m.probes = 0
                m.latencies = []
                m.failures = Counter()

    def close(self) -> None:
        """Close every endpoint's HTTP connections."""
        for member in self._members:
            member.backend.close()

    def __enter__(self) -> "FleetGenerator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
