"""Observing source revisions: the Hub sha through the real client, and local mirror hashes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from huggingface_hub import constants

from medset_dagster.common.retry import RetryPolicy
from medset_dagster.sources.hub_revisions import (
    HubRevisionError,
    current_revision,
    local_mirror_revision,
)
from medset_dagster_tests.servers.hub_server import HubServer

FAST = RetryPolicy(attempts=3, initial_s=0.01, maximum_s=0.05, jitter_s=0.0)
SOURCE = "gamino/wiki_medical_terms"


@pytest.fixture
def hub():
    with HubServer() as server:
        server.add_repo(SOURCE, {"data.parquet": b"PAR1 rows"})
        yield server


def test_current_revision_is_the_hub_sha_and_follows_a_change(hub: HubServer) -> None:
    assert current_revision(SOURCE, endpoint=hub.endpoint, retry=FAST) == hub.head_sha(SOURCE)

    hub.set_sha(SOURCE, "7eb458284a4cf38dd8baf9f2697b46682b9e168b")
    assert current_revision(SOURCE, endpoint=hub.endpoint, retry=FAST) == "7eb458284a4cf38dd8baf9f2697b46682b9e168b"

    moved = hub.push(SOURCE, {"data.parquet": b"PAR1 more rows"})
    assert current_revision(SOURCE, endpoint=hub.endpoint, retry=FAST) == moved
    assert [r.route for r in hub.requests] == ["info"] * 3


def test_hf_endpoint_is_read_at_call_time(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    assert current_revision(SOURCE, retry=FAST) == hub.head_sha(SOURCE)


def test_transient_failures_are_retried(hub: HubServer) -> None:
    hub.fail_next("info", status=503)
    hub.fail_next("info", disconnect=True)
    assert current_revision(SOURCE, endpoint=hub.endpoint, retry=FAST) == hub.head_sha(SOURCE)
    assert len(hub.requests_to("info")) == 3


def test_persistent_5xx_gives_up_after_the_bounded_attempts(hub: HubServer) -> None:
    hub.fail_next("info", status=500, times=10)
    with pytest.raises(HubRevisionError, match=SOURCE) as caught:
        current_revision(SOURCE, endpoint=hub.endpoint, retry=FAST)
    assert "HF_ENDPOINT" in str(caught.value)
    assert len(hub.requests_to("info")) == FAST.attempts


def test_unknown_dataset_names_the_repo(hub: HubServer) -> None:
    with pytest.raises(HubRevisionError, match="nobody/missing") as caught:
        current_revision("nobody/missing", endpoint=hub.endpoint, retry=FAST)
    assert "HF_TOKEN" in str(caught.value)
    assert len(hub.requests_to("info")) == 1, "a 404 is not retried"


def test_private_dataset_needs_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # No implicit token from the machine: this test is about the one passed in.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)
    with HubServer(token="hf_reader") as hub:
        sha = hub.add_repo("medset/private-mirror", {"a.json": b"{}"}, private=True)
        assert current_revision("medset/private-mirror", token="hf_reader", endpoint=hub.endpoint, retry=FAST) == sha
        with pytest.raises(HubRevisionError, match="HF_TOKEN") as caught:
            current_revision("medset/private-mirror", endpoint=hub.endpoint, retry=FAST)
        assert "medset/private-mirror" in str(caught.value)


def test_unreachable_hub_names_repo_endpoint_and_what_to_check() -> None:
    # A port nobody listens on: connection refused, retried, then a clear error without the token.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    canary = "hf_CANARYrevision0000000000000000"
    messages: list[str] = []
    with pytest.raises(HubRevisionError) as caught:
        current_revision(SOURCE, token=canary, endpoint=endpoint, retry=FAST, log=messages.append)
    text = str(caught.value)
    assert SOURCE in text and endpoint in text and "network" in text and "HF_ENDPOINT" in text
    assert len(messages) == FAST.attempts - 1, "each retry is logged"
    assert canary not in text + "".join(messages)
    assert caught.value.__context__ is None


def test_local_mirror_revision_changes_when_a_file_changes(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "data").mkdir(parents=True)
    (mirror / "data" / "rows.jsonl").write_text('{"q": 1}\n')
    first = local_mirror_revision(mirror)
    assert local_mirror_revision(mirror) == first, "stable while nothing changes"

    (mirror / "data" / "rows.jsonl").write_text('{"q": 2}\n')
    edited = local_mirror_revision(mirror)
    assert edited != first

    (mirror / "data" / "rows.jsonl").rename(mirror / "data" / "renamed.jsonl")
    assert local_mirror_revision(mirror) != edited, "a rename is a change too"

    with pytest.raises(FileNotFoundError):
        local_mirror_revision(tmp_path / "absent")
