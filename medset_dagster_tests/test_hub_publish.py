"""Publishing a release folder with the real huggingface_hub client against the loopback Hub."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path

import polars as pl
import pytest

from medset_dagster.common.hashing import sha256_file
from medset_dagster.common.retry import RetryPolicy
from medset_dagster.release.build_manifest import compute_file_hashes
from medset_dagster.release.hub_release import (
    HubPublishError,
    ReleaseFolderError,
    publish_release,
)
from medset_dagster_tests.servers.hub_server import HubServer

TOKEN = "hf_loopbackWriteToken000000000000"
REPO = "medset/medical-qa"
FAST = RetryPolicy(attempts=3, initial_s=0.01, maximum_s=0.05, jitter_s=0.0)
ONE_SHOT = RetryPolicy(attempts=1, initial_s=0.01, maximum_s=0.01, jitter_s=0.0)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def write_release(root: Path, *, content_hash: str, shards: int, rows: int = 4) -> Path:
    """A release folder shaped like the real one: shards, JSON export, manifest, card, a chart."""
    (root / "data").mkdir(parents=True)
    for k in range(shards):
        frame = pl.DataFrame(
            {
                "input": [f"q{k}-{i}" for i in range(rows)],
                "context": [""] * rows,
                "output": [f"a{k}-{i}" for i in range(rows)],
                "source": ["medqa"] * rows,
            }
        )
        frame.write_parquet(root / "data" / f"train-{k:05d}-of-{shards:05d}.parquet")
    (root / "medical_training_dataset.json").write_text(json.dumps([{"input": "q", "context": "", "output": "a", "source": "medqa"}]))
    (root / "README.md").write_text(f"---\nlicense: other\n---\n# Medical Q&A\n\ncontent {content_hash}\n")
    (root / "images").mkdir()
    (root / "images" / "rows_per_source.png").write_bytes(PNG + content_hash.encode())
    manifest = {"content_hash": content_hash, "rows": rows * shards, "files": compute_file_hashes(root)}
    (root / "build.json").write_text(json.dumps(manifest))
    return root


def local_files(root: Path) -> dict[str, bytes]:
    files = {p.relative_to(root): p for p in root.rglob("*") if p.is_file()}
    return {rel.as_posix(): p.read_bytes() for rel, p in files.items() if not any(x.startswith(".") for x in rel.parts)}


@pytest.fixture
def hub():
    with HubServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return write_release(tmp_path / "release-v1", content_hash="a" * 64, shards=2)


def publish(folder: Path, hub: HubServer, *, tag: str = "v1.0.0", token: str = TOKEN, retry: RetryPolicy = FAST, log=None):
    lines: list[str] = []
    outcome = publish_release(
        folder, repo_id=REPO, token=token, endpoint=hub.endpoint, version_tag=tag,
        log=log or lines.append, retry=retry,
    )
    return outcome, lines


def test_first_publish_creates_repo_commits_every_file_and_tags(hub: HubServer, release: Path) -> None:
    outcome, lines = publish(release, hub)

    assert outcome.status == "committed"
    assert hub.has_repo(REPO) and hub.repo(REPO).private, "created as a private dataset repo"
    on_hub = hub.files(REPO)
    on_hub.pop(".gitattributes")  # the Hub's own initial file, kept
    assert on_hub == local_files(release), "names and bytes on the Hub are exactly the release"

    commit = hub.history(REPO)[0]
    assert commit.sha == outcome.commit_sha == hub.head_sha(REPO)
    assert commit.message == "Release v1.0.0"
    assert sorted(commit.added) == sorted(local_files(release)) and commit.deleted == ()
    assert len(hub.requests_to("commit")) == 1, "one atomic commit"
    assert hub.repo(REPO).tags == {"v1.0.0": outcome.commit_sha}
    assert outcome.tag == "v1.0.0" and outcome.tag_status == "created"
    assert outcome.commit_url and outcome.commit_sha in outcome.commit_url
    assert {f.path: (f.bytes, f.sha256) for f in outcome.files} == {
        path: (len(data), sha256_file(release / path)) for path, data in local_files(release).items()
    }
    assert any("Committed" in line for line in lines)


def test_second_publish_of_same_content_makes_no_commit(hub: HubServer, release: Path) -> None:
    first, _ = publish(release, hub)
    second, lines = publish(release, hub)

    assert second.status == "unchanged"
    assert second.commit_sha == first.commit_sha == hub.head_sha(REPO)
    assert len(hub.requests_to("commit")) == 1
    assert len(hub.requests_to("tag")) == 1
    assert second.tag_status == "exists"
    assert any("no commit" in line for line in lines)


def test_new_release_replaces_stale_shards_in_the_same_commit(hub: HubServer, release: Path, tmp_path: Path) -> None:
    publish(release, hub)
    smaller = write_release(tmp_path / "release-v2", content_hash="b" * 64, shards=1)

    outcome, _ = publish(smaller, hub, tag="v2.0.0")

    assert outcome.status == "committed"
    assert outcome.deleted == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
    on_hub = hub.files(REPO)
    assert ".gitattributes" in on_hub, "only stale files under data/ are removed"
    on_hub.pop(".gitattributes")
    assert on_hub == local_files(smaller)
    assert sorted(hub.repo(REPO).tags) == ["v1.0.0", "v2.0.0"]
    assert len(hub.history(REPO)) == 3  # initial, v1, v2


def test_commit_5xx_leaves_no_partial_release_and_a_retry_succeeds(hub: HubServer, release: Path, tmp_path: Path) -> None:
    first, _ = publish(release, hub)
    before_files, before_head = hub.files(REPO), hub.head_sha(REPO)
    newer = write_release(tmp_path / "release-v2", content_hash="c" * 64, shards=3)

    hub.fail_next("commit", status=500)
    with pytest.raises(HubPublishError) as caught:
        publish(newer, hub, tag="v2.0.0", retry=ONE_SHOT)
    assert caught.value.transient and caught.value.status == 500
    assert "nothing partial" in str(caught.value)
    assert hub.head_sha(REPO) == before_head and hub.files(REPO) == before_files, "server state unchanged"
    assert "v2.0.0" not in hub.repo(REPO).tags

    # Retried inside one publish: the first commit fails, the second lands.
    hub.fail_next("commit", status=503)
    outcome, lines = publish(newer, hub, tag="v2.0.0")
    assert outcome.status == "committed"
    assert [r.status for r in hub.requests_to("commit")] == [200, 500, 503, 200]
    assert any("retry 1/2" in line for line in lines)
    files = hub.files(REPO)
    files.pop(".gitattributes")
    assert files == local_files(newer)
    assert hub.history(REPO)[1].sha == first.commit_sha, "exactly one new commit on top of v1"


def test_commit_whose_answer_is_lost_is_not_made_twice(hub: HubServer, release: Path) -> None:
    # The commit lands but the client sees a 502: the retry must notice instead of committing again.
    hub.fail_next("commit", status=502, after=True)
    outcome, _ = publish(release, hub)

    assert outcome.status == "committed"
    assert len(hub.history(REPO)) == 2  # initial + one release commit
    assert outcome.commit_sha == hub.head_sha(REPO)
    assert hub.repo(REPO).tags == {"v1.0.0": outcome.commit_sha}


def test_existing_tag_is_reported_not_fatal(hub: HubServer, release: Path) -> None:
    initial = hub.add_repo(REPO, private=True)
    hub.repo(REPO).tags["v1.0.0"] = initial  # someone tagged the empty repo already

    outcome, lines = publish(release, hub)

    assert outcome.status == "committed"
    assert outcome.tag_status == "exists_elsewhere"
    assert hub.repo(REPO).tags["v1.0.0"] == initial, "an existing tag is never moved"
    assert any("v1.0.0" in note for note in outcome.notes)
    assert any("already exists" in line for line in lines)


def test_401_names_hf_token_and_never_leaks_the_token(
    hub: HubServer, release: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    canary = "hf_CANARYdoNotLeak7f3c9a1b2e4d6f80"
    lines: list[str] = []
    caplog.set_level(logging.DEBUG)

    with pytest.raises(HubPublishError) as caught:
        publish_release(
            release, repo_id=REPO, token=canary, endpoint=hub.endpoint, version_tag="v1.0.0",
            log=lines.append, retry=FAST,
        )

    err = caught.value
    message = str(err)
    assert err.status == 401 and not err.transient
    assert "HF_TOKEN" in message and "MEDSET_HUB_REPO" in message
    assert hub.requests and all(r.status == 401 for r in hub.requests), "the server saw and rejected the token"
    assert len(hub.requests) <= 3, "a 401 is not retried"
    assert err.__cause__ is None and err.__context__ is None, "the client's exception (with headers) is not chained"
    out, errout = capfd.readouterr()
    for text in (message, repr(err), "".join(traceback.format_exception(err)), caplog.text, "\n".join(lines), out, errout):
        assert canary not in text
    assert not hub.has_repo(REPO)


def test_401_on_commit_is_not_retried(hub: HubServer, release: Path) -> None:
    hub.fail_next("commit", status=401, message="Invalid credentials in Authorization header")
    with pytest.raises(HubPublishError, match="HF_TOKEN"):
        publish(release, hub)
    assert len(hub.requests_to("commit")) == 1
    assert len(hub.history(REPO)) == 1, "nothing committed"


def test_dry_run_sends_nothing_and_lists_the_files(hub: HubServer, release: Path) -> None:
    (release / ".cache").mkdir()
    (release / ".cache" / "leftover.lock").write_text("tooling")
    lines: list[str] = []

    outcome = publish_release(release, repo_id=None, token=TOKEN, endpoint=hub.endpoint, version_tag="v1.0.0", log=lines.append)

    assert hub.requests == []
    assert outcome.status == "dry_run" and outcome.commit_sha is None and outcome.repo_id is None
    expected = sorted(local_files(release))
    assert [f.path for f in outcome.files] == expected
    assert ".cache/leftover.lock" not in expected
    for f in outcome.files:
        assert f.bytes == (release / f.path).stat().st_size
        assert f.sha256 == sha256_file(release / f.path)
        assert any(f.path in line and f.sha256 in line for line in lines)
    assert TOKEN not in "\n".join(lines) and TOKEN not in repr(outcome)


def test_release_without_manifest_is_refused_before_any_request(hub: HubServer, release: Path) -> None:
    (release / "build.json").unlink()
    with pytest.raises(ReleaseFolderError, match="build.json"):
        publish(release, hub)
    assert hub.requests == []


def test_card_metadata_rejected_by_the_hub_points_at_readme(hub: HubServer, release: Path) -> None:
    hub.fail_next("validate_yaml", status=400, message='"license" must be one of [apache-2.0, ...]')
    with pytest.raises(HubPublishError, match="README.md") as caught:
        publish(release, hub)
    assert caught.value.status == 400 and not caught.value.transient
    assert hub.requests_to("commit") == [] and len(hub.history(REPO)) == 1


def test_failed_tag_says_the_commit_landed_and_a_rerun_adds_the_tag(hub: HubServer, release: Path) -> None:
    hub.fail_next("tag", status=403, message="no permission to create tags")
    with pytest.raises(HubPublishError, match="committed at") as caught:
        publish(release, hub)
    assert "re-running" in str(caught.value) and caught.value.status == 403
    assert hub.repo(REPO).tags == {}

    outcome, _ = publish(release, hub)
    assert outcome.status == "unchanged" and outcome.tag_status == "created"
    assert hub.repo(REPO).tags == {"v1.0.0": hub.head_sha(REPO)}
    assert len(hub.requests_to("commit")) == 1


def test_a_folder_that_does_not_match_its_manifest_is_refused_naming_the_files(release: Path, hub: HubServer) -> None:
    from medset_dagster.release.hub_release import ReleaseFolderError

    (release / "README.md").write_text("edited by hand")
    (release / "data" / "train-00001-of-00002.parquet").unlink()
    (release / "notes.txt").write_text("not part of the release")
    with pytest.raises(ReleaseFolderError) as caught:
        publish(release, hub)
    message = str(caught.value)
    assert "README.md: sha256 differs" in message or "README.md: size differs" in message
    assert "data/train-00001-of-00002.parquet: missing" in message
    assert "notes.txt: not in build.json" in message
    assert not hub.has_repo(REPO), "nothing was sent"
