"""Small helpers for every Hub call: what is transient, the endpoint in effect, token redaction,
and the client-side timeouts every Hub request runs under.

Shared by the source observations (`sources/hub_revisions.py`), the loads (`sources/loading.py`)
and the publish (`release/hub_release.py`). Nothing here knows Dagster.

Timeouts. huggingface_hub 2.4 sends every request through one shared `httpx2.Client` created with
`timeout=None`, and several of its calls (`create_commit`, `create_repo`, the LFS batch and
upload requests, the paginated tree listing, which passes `timeout=None` explicitly) take no
timeout argument at all: against a server that accepts a request and never answers, they wait
forever. `hub_call` therefore first installs `bound_hub_requests`: a client factory (the
library's own, plus one request hook) that gives every request without a timeout of its own the
bounds of `HubTimeouts`. Requests that set a timeout keep it. `hub_call`'s `deadline_s` bounds the
retries as well, so a hung server fails the call after a bounded wait.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

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


@dataclass(frozen=True)
class HubTimeouts:
    """Client-side bounds, in seconds, of one Hub request that sets none of its own.

    `connect_s`: to open the connection; `read_s`: the longest wait for the next bytes of an answer
    (a server that accepts a request and never answers fails after this long); `write_s`: to send
    each chunk of a request body (LFS uploads); `pool_s`: to get a connection from the pool.
    """

    connect_s: float = 10.0
    read_s: float = 60.0
    write_s: float = 60.0
    pool_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("connect_s", "read_s", "write_s", "pool_s"):
            value = getattr(self, name)
            if not value or value <= 0:
                raise ValueError(f"HubTimeouts.{name} must be a positive number of seconds, got {value!r}")

    def as_extension(self) -> dict[str, float]:
        """The bounds in the shape of httpx's per-request `timeout` extension."""
        return {"connect": self.connect_s, "read": self.read_s, "write": self.write_s, "pool": self.pool_s}


DEFAULT_TIMEOUTS = HubTimeouts()

_TIMEOUT_LOCK = threading.Lock()
_active_timeouts: HubTimeouts = DEFAULT_TIMEOUTS
_factory_installed = False


def _fill_missing_timeouts(request: Any) -> None:
    """Request hook: each of connect/read/write/pool the request leaves unbounded gets the active bound."""
    bounds = _active_timeouts.as_extension()
    current = dict(request.extensions.get("timeout") or {})
    filled = {kind: current[kind] if current.get(kind) is not None else bound for kind, bound in bounds.items()}
    request.extensions = {**request.extensions, "timeout": filled}


def _client_factory():
    """huggingface_hub's own client (its request hook, redirects), plus `_fill_missing_timeouts`."""
    from huggingface_hub.utils._http import default_client_factory

    client = default_client_factory()
    hooks = client.event_hooks
    client.event_hooks = {"request": [*hooks.get("request", []), _fill_missing_timeouts], "response": list(hooks.get("response", []))}
    return client


def bound_hub_requests(timeouts: HubTimeouts = DEFAULT_TIMEOUTS) -> None:
    """Make every later huggingface_hub (and `datasets`) request in this process run under `timeouts`.

    The first call installs the client factory (`huggingface_hub.set_client_factory`, which closes the
    shared client made without it); later calls only change the bounds, which apply process-wide to
    the requests sent from then on.
    """
    global _active_timeouts, _factory_installed
    from huggingface_hub import set_client_factory

    with _TIMEOUT_LOCK:
        _active_timeouts = timeouts
        if not _factory_installed:
            set_client_factory(_client_factory)
            _factory_installed = True


def active_timeouts() -> HubTimeouts:
    """The bounds requests get now (`DEFAULT_TIMEOUTS` until `bound_hub_requests` says otherwise)."""
    return _active_timeouts


def hub_call(
    fn: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy,
    token: str | None,
    log: Callable[[str], None] | None = None,
    timeouts: HubTimeouts = DEFAULT_TIMEOUTS,
    deadline_s: float | None = None,
) -> T:
    """Run `fn` with every Hub request bounded by `timeouts`, retrying transient failures only
    (`is_transient`); the last failure is re-raised.

    `deadline_s`: no new attempt starts once this many seconds have passed since the first, so the
    whole call ends within `deadline_s` plus one attempt (whose requests are each bounded by
    `timeouts`). Each retry is logged as one line naming `what`, the reason (token redacted) and
    the wait.
    """
    bound_hub_requests(timeouts)
    started = time.monotonic()

    def worth_retrying(error: BaseException) -> bool:
        if deadline_s is not None and time.monotonic() - started >= deadline_s:
            return False
        return is_transient(error)

    def on_retry(attempt: int, error: BaseException, wait_s: float) -> None:
        (log or _LOG.warning)(
            f"{what}: transient failure ({short_reason(error, token)}); retry {attempt}/{policy.attempts - 1} in {wait_s:.1f}s"
        )

    return call_with_retries(fn, policy, worth_retrying, on_retry=on_retry)
