"""What every LLM backend shares: request and result types, failure reasons, JSON output parsing,
and the retry wrapper that turns the last failed attempt into a result.

A backend never raises for a per-item failure: `generate` returns a `GenerationResult` whose
`error` names the reason, so the caller counts it instead of crashing a run. Only `check_ready`
raises (`GeneratorUnavailable`), because a missing server or model fails every item.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol, runtime_checkable

from medset_dagster.common.retry import RetryPolicy, retrying

# Named failure reasons, so a run can report failures by cause.
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
SERVER_ERROR = "server_error"
RATE_LIMITED = "rate_limited"
CLIENT_ERROR = "client_error"
MODEL_NOT_FOUND = "model_not_found"
EMPTY_CONTENT = "empty_content"
MALFORMED_JSON = "malformed_json"
EMPTY_FIELD = "empty_field"
BACKEND_ERROR = "backend_error"
# The token budget ran out mid-output. Retried: another seed often gives a shorter answer.
TRUNCATED = "truncated"
# Failures that are the model's own answer (the server worked): under the same cache key (model,
# digest, prompt, parameters, seed) a rerun would get the same answer, so the cache serves them as
# settled unless a run asks to retry them. Every other reason is the server's and is always retried.
MODEL_OUTPUT_FAILURES = frozenset({EMPTY_CONTENT, MALFORMED_JSON, EMPTY_FIELD, TRUNCATED})



def output_failure(reason: str, finish: str, text: str, prompt_tokens: int, completion_tokens: int) -> "AttemptFailed":
    """The retryable failure for an answer whose text did not parse: `TRUNCATED` when the token
    budget ran out (`finish == "length"`), else `reason` (from `diagnose_json_output`)."""
    return AttemptFailed(
        TRUNCATED if finish == "length" else reason,
        f"finish_reason={finish}, content={text[:200]!r}",
        retryable=True,
        text=text,
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )



class GeneratorUnavailable(RuntimeError):
    """The backend cannot serve any request (server down, model absent, package missing).

    `reason` is a failure reason: `CONNECTION_ERROR` (nothing answers, the default) or
    `MODEL_NOT_FOUND` (the server answers but lacks the model, or serves other weights), so a
    caller with several servers can tell a server that is down from one that is misconfigured.
    """

    def __init__(self, message: str, *, reason: str = CONNECTION_ERROR) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class GenerationParams:
    """Sampling parameters. Keyword-only so `top_p` and `max_tokens` can never be swapped."""

    temperature: float
    top_p: float = 0.9
    max_tokens: int
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.max_tokens, int) or self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be a positive int, got {self.max_tokens!r}")


@dataclass(frozen=True)
class GenerationRequest:
    """One chat call: rendered messages plus the JSON schema the output must satisfy."""

    task: str
    messages: list[dict[str, Any]]
    schema: dict[str, Any]
    params: GenerationParams


@dataclass(frozen=True)
class GenerationResult:
    """Outcome of one item. `error` is None on success; then `parsed` satisfies the schema."""

    text: str
    parsed: dict[str, Any] | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    attempts: int
    error: str | None
    # Human-readable detail of the last failure (the reason itself is in `error`).
    error_detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class Generator(Protocol):
    """What the runner needs from a backend."""

    backend: str
    model: str
    max_in_flight: int

    @property
    def digest(self) -> str | None: ...

    def check_ready(self) -> None: ...

    def generate(self, request: GenerationRequest) -> GenerationResult: ...


class HttpGenerator:
    """What the HTTP backends share: the model identity found by `check_ready` (`digest`), and the
    closing of their two clients (`_client` for generation, `_probe`, made on first use, for the
    short readiness calls). A context manager: leaving it closes the connections."""

    _client: Any
    _probe: Any = None
    _digest: str | None = None

    @property
    def digest(self) -> str | None:
        """The served model's identity (the server's digest, or the id it reports); set by `check_ready`."""
        return self._digest

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()
        if self._probe is not None:
            self._probe.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile `q` (0-100) of `values`; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# --------------------------------------------------------------------------- output parsing

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?```$", re.DOTALL)


def required_fields(schema: dict[str, Any]) -> list[str]:
    """The names a JSON schema's top-level `required` lists (empty when it lists none)."""
    return list(schema.get("required") or [])


def diagnose_json_output(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Parse `text` against `schema`; return (parsed, None) or (None, reason)."""
    body = (text or "").strip()
    if not body:
        return None, EMPTY_CONTENT
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return None, MALFORMED_JSON
    if not isinstance(value, dict):
        return None, MALFORMED_JSON
    properties = schema.get("properties") or {}
    for name in required_fields(schema):
        if name not in value or value[name] is None:
            return None, EMPTY_FIELD
        declared = (properties.get(name) or {}).get("type", "string")
        if declared == "string":
            # A blank required string would become an empty dataset cell: treat as a failure.
            if not isinstance(value[name], str) or not value[name].strip():
                return None, EMPTY_FIELD
    return value, None


def parse_json_output(text: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON object in `text` (markdown fences stripped) if its required fields are non-empty."""
    parsed, _ = diagnose_json_output(text, schema)
    return parsed



class AttemptFailed(Exception):
    """One failed attempt; `retryable` decides whether tenacity tries again.

    `status` is the HTTP status when the server answered with an error (None otherwise), and
    `retry_after_s` the wait in seconds the server asked for (a `Retry-After` header), if any:
    a fleet uses both to tell an overloaded server (429, 503) from a broken one.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        retryable: bool,
        text: str = "",
        finish_reason: str = "error",
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.text = text
        self.finish_reason = finish_reason
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.status = status
        self.retry_after_s = retry_after_s



def parsed_result(text: str, finish: str, prompt_tokens: int, completion_tokens: int, schema: dict[str, Any]) -> GenerationResult:
    """One answer as a result: `text` parsed against `schema` (see `diagnose_json_output`); raises
    `AttemptFailed` (retryable; `truncated` when `finish` is "length") when it does not satisfy it.
    Latency and attempts are filled in by `generate_with_retries`."""
    parsed, reason = diagnose_json_output(text, schema)
    if reason is not None:
        raise output_failure(reason, finish, text, prompt_tokens, completion_tokens)
    return GenerationResult(
        text=text,
        parsed=parsed,
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_s=0.0,
        attempts=0,
        error=None,
    )


def generate_with_retries(
    attempt: Callable[[], GenerationResult],
    *,
    max_attempts: int,
    backoff_initial_s: float,
    backoff_max_s: float,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int], None] | None = None,
) -> GenerationResult:
    """Run `attempt` under tenacity; turn the last failure into a result with `error` set.

    `attempt()` returns a result or raises `AttemptFailed`; a retryable failure is tried again
    after an exponential wait with jitter (seconds, `backoff_initial_s` doubling up to
    `backoff_max_s`), or after the failure's `retry_after_s` when the server gave one (capped at
    `backoff_max_s`). `latency_s` is the item's whole cost (all attempts and backoff), `attempts`
    the calls it took. Never raises `AttemptFailed`; any other exception propagates.
    """
    start = time.perf_counter()
    tries = 0
    policy = RetryPolicy(attempts=max_attempts, initial_s=backoff_initial_s, maximum_s=backoff_max_s, jitter_s=backoff_initial_s)

    def hint(error: BaseException) -> float | None:
        wanted = error.retry_after_s if isinstance(error, AttemptFailed) else None
        return None if wanted is None else max(0.0, min(wanted, backoff_max_s))

    attempts = retrying(policy, lambda e: isinstance(e, AttemptFailed) and e.retryable, wait_hint=hint, sleep=sleep)
    try:
        for state in attempts:
            with state:
                tries = state.retry_state.attempt_number
                if on_retry is not None and tries > 1:
                    on_retry(tries)
                result = attempt()
        latency = time.perf_counter() - start
        return replace(result, latency_s=latency, attempts=tries)
    except AttemptFailed as failure:
        return GenerationResult(
            text=failure.text,
            parsed=None,
            finish_reason=failure.finish_reason,
            prompt_tokens=failure.prompt_tokens,
            completion_tokens=failure.completion_tokens,
            latency_s=time.perf_counter() - start,
            attempts=tries,
            error=failure.reason,
            error_detail=failure.detail,
        )


