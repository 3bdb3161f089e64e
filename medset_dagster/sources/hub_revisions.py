"""Source revisions: the Hub commit a dataset is at now, or a content hash of a local mirror."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError

from medset_dagster.common.hashing import sha256_tree
from medset_dagster.common.hub_client import (
    hub_call,
    is_transient,
    resolve_endpoint,
    short_reason,
)
from medset_dagster.common.retry import RetryPolicy


class HubRevisionError(RuntimeError):
    """The current revision of a source could not be read."""


def current_revision(
    repo_id: str,
    *,
    token: str | None = None,
    endpoint: str | None = None,
    retry: RetryPolicy = RetryPolicy(attempts=4, initial_s=0.5, maximum_s=8.0),
    timeout: float = 30.0,
    log: Callable[[str], None] | None = None,
) -> str:
    """The commit sha of dataset `repo_id` on the Hub now (`dataset_info(repo_id).sha`)."""
    url = resolve_endpoint(endpoint)
    api = HfApi(endpoint=url, token=token)
    failure: str | None = None
    sha: str | None = None
    try:
        info = hub_call(
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
