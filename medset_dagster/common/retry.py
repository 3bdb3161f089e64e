"""The one retry mechanism: bounded attempts with exponential backoff and jitter, on tenacity.

Every client that talks to a network service (the Hub, Cohere, Ollama and OpenAI-compatible
servers, PDF downloads) retries through `retrying`: what counts as transient is the caller's
predicate, the bound and the waits are a `RetryPolicy`, and a server's own hint (`Retry-After`)
wins over the computed wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all; waits start at `initial_s` seconds and double up to `maximum_s`,
    plus up to `jitter_s` seconds of random jitter so parallel clients do not retry in lockstep."""

    attempts: int = 5
    initial_s: float = 1.0
    maximum_s: float = 30.0
    jitter_s: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")


def retrying(
    policy: RetryPolicy,
    retry_if: Callable[[BaseException], bool],
    *,
    wait_hint: Callable[[BaseException], float | None] | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Retrying:
    """A tenacity `Retrying` for `policy`; the last failure is re-raised unchanged.

    `retry_if(error)` says whether an exception is worth another attempt. `wait_hint(error)` may
    return the seconds the server asked for (the caller caps it). `on_retry(attempt,
    error, wait_s)` is called before each wait, e.g. to log it. Use it as `retrying(...)(fn)` or
    iterate `for attempt in retrying(...): with attempt: ...`.
    """
    backoff = wait_exponential_jitter(initial=policy.initial_s, max=policy.maximum_s, jitter=policy.jitter_s)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hinted = wait_hint(error) if (wait_hint is not None and error is not None) else None
        return hinted if hinted is not None else backoff(state)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is None:
            return
        error = state.outcome.exception() if state.outcome else None
        on_retry(state.attempt_number, error, state.next_action.sleep if state.next_action else 0.0)

    return Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait,
        retry=retry_if_exception(retry_if),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    retry_if: Callable[[BaseException], bool],
    **options,
) -> T:
    """`fn()` under `retrying(policy, retry_if, **options)`."""
    return retrying(policy, retry_if, **options)(fn)
