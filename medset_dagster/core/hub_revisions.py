"""Source revisions: the Hub commit a dataset is at now, or a content hash of a local mirror.

Also holds the small Hub-call helpers shared with `hub_publish`: which failures are worth a retry,
bounded exponential backoff, the endpoint in effect, and token redaction. Nothing here knows Dagster.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from medset_dagster.core.hashing import sha256_tree

_LOG = logging.getLogger(__name__)
T = TypeVar("T")

# HTTP statuses that say "try again later" rather than "you are wrong".
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection and timeout errors of whichever HTTP stack the installed client uses."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        errors += [module.TimeoutException, module.NetworkError, module.RemoteProtocolError]
    try:
        import requests

        errors += [requests.ConnectionError, requests.Timeout]
    except ImportError:
        pass
    return tuple(errors)


_TRANSPORT_ERRORS = _transport_errors()


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a Hub error, looking through wrapping exceptions (`raise ... from`)."""
    while exc is not None:
        if isinstance(exc, HfHubHTTPError) and exc.response is not None:
            return exc.response.status_code
        exc = exc.__cause__  # type: ignore[assignment]
    return None


def is_transient(exc: BaseException) -> bool:
    """True for failures a later attempt may not see: 5xx, 408/429, timeouts, dropped connections.

    `hf_hub_download` wraps a failed HEAD in `LocalEntryNotFoundError ... from <cause>`, so causes count.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, HfHubHTTPError) and current.response is not None:
            return current.response.status_code in TRANSIENT_STATUSES
        if isinstance(current, OfflineModeIsEnabled):
            return False  # a setting, not a glitch
        if isinstance(current, _TRANSPORT_ERRORS):
            return True
        current = current.__cause__
    return False


def redact(text: str, token: str | None) -> str:
    """Remove the token from text bound for logs or exception messages."""
    if token:
        text = text.replace(token, "***")
    return text


def short_reason(exc: BaseException, token: str | None) -> str:
    """One line naming the failure, safe to log."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__, token)


def resolve_endpoint(endpoint: str | None) -> str:
    """The Hub URL in effect. HF_ENDPOINT is read now, not at import, so a late setting still counts."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: `attempts` tries in all, waits from `initial` doubling up to `maximum`."""

    attempts: int = 5
    initial: float = 1.0
    maximum: float = 30.0
    jitter: float = 0.5


def call_with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy,
    token: str | None,
    log: Callable[[str], None] | None = None,
) -> T:
    """Run `fn`, retrying transient failures only; the last failure is re-raised unchanged."""

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        message = (
            f"{what}: transient failure ({short_reason(exc, token) if exc else 'unknown'}); "
            f"retry {state.attempt_number}/{policy.attempts - 1} in {wait:.1f}s"
        )
        (log or _LOG.warning)(message)

    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(max(1, policy.attempts)),
        wait=wait_exponential_jitter(initial=policy.initial, max=policy.maximum, jitter=policy.jitter),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)


class HubRevisionError(RuntimeError):
    """The current revision of a source could not be read."""


def current_revision(
    repo_id: str,
    *,
    token: str | None = None,
    endpoint: str | None = None,
    retry: RetryPolicy = RetryPolicy(attempts=4, initial=0.5, maximum=8.0),
    timeout: float = 30.0,
    log: Callable[[str], None] | None = None,
) -> str:
    """The commit sha of dataset `repo_id` on the Hub now (`dataset_info(repo_id).sha`)."""
    url = resolve_endpoint(endpoint)
    api = HfApi(endpoint=url, token=token)
    failure: str | None = None
    sha: str | None = None
    try:
        info = call_with_retries(
            lambda: api.dataset_info(repo_id, timeout=timeout),
            what=f"dataset_info({repo_id})",
            policy=retry,
            token=token,
            log=log,
        )
        sha = info.sha
    except RepositoryNotFoundError:
        failure = (
            f"Dataset {repo_id!r} was not found on {url} (or it is private or gated and the token has no access). "
            "Check the repo id, HF_ENDPOINT and HF_TOKEN."
        )
    except Exception as exc:  # noqa: BLE001 - every cause gets the same actionable message
        kind = "unreachable" if is_transient(exc) else "refused the request"
        failure = (
            f"Cannot read the current revision of dataset {repo_id!r}: {url} {kind} "
            f"({short_reason(exc, token)}). Check the network, HF_ENDPOINT and HF_TOKEN."
        )
    # Raised outside the except block so the client's exception (which holds request headers) is not chained.
    if failure is not None:
        raise HubRevisionError(failure)
    if not sha:
        raise HubRevisionError(f"{url} returned no commit sha for dataset {repo_id!r}; is HF_ENDPOINT a Hub?")
    return sha


def local_mirror_revision(folder: str | Path) -> str:
    """Content hash of a local mirror folder: editing any file there reads as a new upstream revision."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"local mirror folder {folder} does not exist")
    return sha256_tree(folder)
