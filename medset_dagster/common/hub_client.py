"""Small helpers for every Hub call: what is transient, the endpoint in effect, token redaction.

Shared by the source observations (`sources/hub_revisions.py`) and the publish
(`release/hub_release.py`). Nothing here knows Dagster.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypeVar

from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from medset_dagster.common.retry import RetryPolicy, call_with_retries

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


def hub_call(
    fn: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy,
    token: str | None,
    log: Callable[[str], None] | None = None,
) -> T:
    """Run `fn`, retrying transient failures only (`is_transient`); the last failure is re-raised.

    Each retry is logged as one line naming `what`, the reason (token redacted) and the wait.
    """

    def on_retry(attempt: int, error: BaseException, wait_s: float) -> None:
        (log or _LOG.warning)(
            f"{what}: transient failure ({short_reason(error, token)}); retry {attempt}/{policy.attempts - 1} in {wait_s:.1f}s"
        )

    return call_with_retries(fn, policy, is_transient, on_retry=on_retry)
