"""The loopback Hub serves dataset repos to the real `datasets` and `huggingface_hub` clients.

`datasets.load_dataset(repo, revision=sha)` runs unchanged in a child process whose HF_ENDPOINT is the
loopback Hub (see `servers/hub_process.py`), for every native layout of the nine sources; uploads go
through the LFS batch API and read back byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import httpx
import polars as pl
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

from medset_dagster.sources.registry import hub_sources
from medset_dagster_tests.servers.hub_process import load_over_http
from medset_dagster_tests.servers.hub_server import (
    LFS_SIZE_THRESHOLD,
    HubServer,
    plain_lfs_uploads,
    sha256_hex,
)

SAMPLE_HUB = Path(__file__).resolve().parents[1] / "medset_dagster" / "sample_data" / "hub"
TOKEN = "hf_loopbackDatasetsToken0000000000"


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def digest(frame: pl.DataFrame) -> str:
    return hashlib.sha256(frame.write_ndjson().encode()).hexdigest()


def ok(result: dict) -> dict:
    assert result["error"] is None, f"{result['label']}: {result['error']}"
    return result


# -- load_dataset over HTTP ------------------------------------------------------------------------


def layout_requests() -> list[tuple[str, str, dict]]:
    """(label, repo, load_dataset kwargs) for each source as the pipeline loads it, plus the side splits and
    configs, pinned at the registry's revision."""
    out = []
    for spec in hub_sources():
        kwargs = {"name": spec.config, "split": spec.split, "data_files": spec.data_files, "revision": spec.revision, **spec.loader_options}
        out.append((spec.source_id, spec.hub_repo, {k: v for k, v in kwargs.items() if v is not None}))
    by_id = {spec.source_id: spec for spec in hub_sources()}
    for label, source_id, extra in (
        ("medqa[validation]", "medqa", {"split": "validation"}),
        ("medqa[test]", "medqa", {"split": "test"}),
        ("symptom_to_diagnosis[test]", "symptom_to_diagnosis", {"split": "test"}),
        ("medical_o1_reasoning_sft[zh]", "medical_o1_reasoning_sft", {"name": "zh", "split": "train"}),
        ("medical_o1_reasoning_sft[en_mix]", "medical_o1_reasoning_sft", {"name": "en_mix", "split": "train"}),
    ):
        spec = by_id[source_id]
        out.append((label, spec.hub_repo, {"revision": spec.revision, **extra}))
    return out


def test_load_dataset_reads_every_native_layout_at_the_pinned_sha(tmp_path: Path) -> None:
    import datasets

    with HubServer(lfs=True) as hub:
        for spec in hub_sources():
            # The sample mirrors, committed under the registry's pinned revision, then upstream moves on.
            hub.add_repo(spec.hub_repo, folder_files(SAMPLE_HUB / spec.hub_repo), sha=spec.revision)
            hub.push(spec.hub_repo, {"NOTICE.txt": b"moved on\n"})
        assert hub.lfs_files("gamino/wiki_medical_terms", "7eb458284a4cf38dd8baf9f2697b46682b9e168b") == {"wiki_medical_terms.parquet"}

        requests = layout_requests()
        results = load_over_http(hub.endpoint, [{"label": l, "repo": r, "kwargs": k} for l, r, k in requests], hf_home=tmp_path / "hf")

        for (label, repo, kwargs), result in zip(requests, results, strict=True):
            ok(result)
            local = {k: v for k, v in kwargs.items() if k != "revision"}
            expected = datasets.load_dataset(str(SAMPLE_HUB / repo), cache_dir=str(tmp_path / "local"), **local).to_polars()
            assert (result["rows"], result["columns"], result["digest"]) == (expected.height, expected.columns, digest(expected)), label

        pinned = {spec.revision for spec in hub_sources()}
        resolves = hub.requests_to("resolve")
        assert resolves and {r.path.split("/resolve/")[1].split("/")[0] for r in resolves} <= pinned, "only pinned shas were read"
        # The Parquet mirrors are LFS files: read through a 302 to the CDN, without the Hub token.
        redirected = {r.path for r in resolves if r.status == 302}
        assert any(p.endswith("wiki_medical_terms.parquet") for p in redirected)
        assert any(p.endswith("data/train-00000-of-00001.parquet") for p in redirected)
        assert len(hub.requests_to("cdn")) == 3 and all(r.status == 200 for r in hub.requests_to("cdn"))


def test_pinned_sha_keeps_old_files_while_tracking_follows_the_head(tmp_path: Path) -> None:
    repo = "gretelai/symptom_to_diagnosis"
    old = [{"output_text": "migraine", "input_text": f"throbbing headache, day {i}"} for i in range(5)]
    new = [{"output_text": "common cold", "input_text": f"runny nose, day {i}"} for i in range(7)]
    old_parquet = parquet_bytes(pl.DataFrame({"x": [1, 2, 3]}))
    with HubServer(lfs=True) as hub:
        pinned = hub.add_repo(repo, {"train.jsonl": jsonl(old), "extra/rows.parquet": old_parquet})
        requests = [
            {"label": "pinned", "repo": repo, "kwargs": {"data_files": "train.jsonl", "split": "train", "revision": pinned}},
            {"label": "track", "repo": repo, "kwargs": {"data_files": "train.jsonl", "split": "train"}},
        ]
        home = tmp_path / "hf"  # one cache for every run, as on a build machine
        before = load_over_http(hub.endpoint, requests, hf_home=home)
        assert [ok(r)["rows"] for r in before] == [5, 5]

        head = hub.push(repo, {"train.jsonl": jsonl(new), "extra/rows.parquet": parquet_bytes(pl.DataFrame({"x": [9]}))})
        after = load_over_http(
            hub.endpoint,
            [*requests, {"label": "head sha", "repo": repo, "kwargs": {"data_files": "train.jsonl", "split": "train", "revision": head}}],
            hf_home=home,
        )
        assert [ok(r)["rows"] for r in after] == [5, 7, 7]
        assert after[0]["digest"] == before[0]["digest"]
        assert after[0]["first"]["output_text"] == "migraine" and after[1]["first"]["output_text"] == "common cold"

        # The old LFS object is still served at the old sha, the new one at the head.
        for revision, expected in ((pinned, old_parquet), (head, None)):
            path = hf_hub_download(repo, "extra/rows.parquet", repo_type="dataset", revision=revision, cache_dir=tmp_path / "dl", endpoint=hub.endpoint)
            assert Path(path).read_bytes() == (expected or hub.files(repo, head)["extra/rows.parquet"])


# -- uploads ---------------------------------------------------------------------------------------


def test_lfs_upload_round_trip_with_create_commit(tmp_path: Path) -> None:
    parquet = parquet_bytes(pl.DataFrame({"input": [f"q{i}" for i in range(500)], "output": ["a"] * 500}))
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    readme = b"---\nlicense: other\n---\n# Release\n"
    repo = "tester/release"
    with HubServer(token=TOKEN, lfs=True) as hub:
        api = HfApi(endpoint=hub.endpoint, token=TOKEN)
        api.create_repo(repo, repo_type="dataset", private=True)
        operations = [
            CommitOperationAdd("data/train-00000-of-00001.parquet", parquet),
            CommitOperationAdd("images/rows.png", png),
            CommitOperationAdd("README.md", readme),
        ]
        with plain_lfs_uploads():
            commit = api.create_commit(repo, operations, commit_message="release", repo_type="dataset")

        routes = [r.route for r in hub.requests if r.route not in ("create_repo", "validate_yaml")]
        # The two LFS files go up in parallel threads: their upload/verify pairs may interleave.
        assert routes[:2] == ["preupload", "lfs_batch"] and routes[-1] == "commit"
        assert sorted(routes[2:-1]) == ["lfs_upload", "lfs_upload", "lfs_verify", "lfs_verify"]
        preupload = json.loads(hub.requests_to("preupload")[0].body)
        assert {f["path"] for f in preupload["files"]} == {op.path_in_repo for op in operations}
        assert all(not r.authenticated for r in hub.requests_to("lfs_upload")), "the token never goes to the CDN"
        commit_lines = [json.loads(line) for line in hub.requests_to("commit")[0].body.splitlines()]
        assert sorted(line["key"] for line in commit_lines[1:]) == ["file", "lfsFile", "lfsFile"]
        assert hub.lfs_files(repo) == {"data/train-00000-of-00001.parquet", "images/rows.png"}

        entries = {e.path: e for e in api.list_repo_tree(repo, repo_type="dataset", recursive=True, revision=commit.oid) if hasattr(e, "lfs")}
        assert entries["data/train-00000-of-00001.parquet"].lfs.sha256 == sha256_hex(parquet)
        assert entries["README.md"].lfs is None
        for path, content in (("data/train-00000-of-00001.parquet", parquet), ("images/rows.png", png), ("README.md", readme)):
            local = hf_hub_download(repo, path, repo_type="dataset", revision=commit.oid, cache_dir=tmp_path / "cache", endpoint=hub.endpoint, token=TOKEN)
            assert sha256_hex(Path(local).read_bytes()) == sha256_hex(content), path

        # The same bytes again: the batch answers "already there", so nothing is uploaded twice.
        hub.requests.clear()
        with plain_lfs_uploads():
            api.create_commit(repo, [CommitOperationAdd("data/copy.parquet", parquet)], commit_message="copy", repo_type="dataset")
        assert hub.requests_to("lfs_upload") == [] and len(hub.requests_to("lfs_batch")) == 1
        assert hub.files(repo)["data/copy.parquet"] == parquet


def test_the_release_publish_goes_through_lfs_and_reads_back_identical(tmp_path: Path) -> None:
    from medset_dagster.common.retry import RetryPolicy
    from medset_dagster.release.hub_release import publish_release
    from medset_dagster_tests.test_hub_publish import local_files, write_release

    release = write_release(tmp_path / "release", content_hash="b" * 64, shards=2)
    with HubServer(token=TOKEN, lfs=True) as hub, plain_lfs_uploads():
        outcome = publish_release(
            release, repo_id="medset/medical-qa", token=TOKEN, endpoint=hub.endpoint, version_tag="v1.0.0",
            log=lambda line: None, retry=RetryPolicy(attempts=2, initial_s=0.01, maximum_s=0.02, jitter_s=0.0),
        )
        assert outcome.status == "committed"
        assert hub.lfs_files("medset/medical-qa") == {
            "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet", "images/rows_per_source.png",
        }
        assert len(hub.requests_to("lfs_upload")) == 3
        on_hub = hub.files("medset/medical-qa")
        on_hub.pop(".gitattributes")
        assert on_hub == local_files(release)


def test_preupload_modes_and_the_hub_rules_on_binary_files() -> None:
    with HubServer(token=TOKEN, lfs=True) as hub:
        hub.add_repo("tester/modes")
        assert hub.upload_mode("tester/modes", "README.md", b"# text\n") == "regular"
        assert hub.upload_mode("tester/modes", "rows.json", b'[{"a": 1}]') == "regular"
        assert hub.upload_mode("tester/modes", "data/x.parquet", b"PAR1 text-looking") == "lfs", ".gitattributes pattern"
        assert hub.upload_mode("tester/modes", "blob.bin", b"ab\x00cd") == "lfs", "binary content"
        assert hub.upload_mode("tester/modes", "big.json", b"[" + b" " * LFS_SIZE_THRESHOLD + b"]") == "lfs", "10 MiB or more"

        # A client that ignores the preupload answer and commits binary bytes as a regular file is refused.
        header = json.dumps({"key": "header", "value": {"summary": "raw"}})
        raw = json.dumps({"key": "file", "value": {"path": "blob.bin", "encoding": "base64", "content": "YWIAY2Q="}})
        response = httpx.post(
            f"{hub.endpoint}/api/datasets/tester/modes/commit/main",
            content=f"{header}\n{raw}\n",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 400 and "LFS" in response.json()["error"]
        # An lfsFile pointing at an object that was never uploaded is refused too.
        missing = json.dumps({"key": "lfsFile", "value": {"path": "x.parquet", "algo": "sha256", "oid": "0" * 64, "size": 3}})
        response = httpx.post(
            f"{hub.endpoint}/api/datasets/tester/modes/commit/main",
            content=f"{header}\n{missing}\n",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert response.status_code == 400 and "does not exist" in response.json()["error"]
        assert len(hub.history("tester/modes")) == 1


def test_an_xet_upload_is_answered_with_the_fix() -> None:
    from huggingface_hub.utils._runtime import is_xet_available

    if not is_xet_available():
        pytest.skip("hf_xet is not installed or Xet is disabled: the client uses LFS anyway")
    with HubServer(token=TOKEN, lfs=True) as hub:
        api = HfApi(endpoint=hub.endpoint, token=TOKEN)
        api.create_repo("tester/xet", repo_type="dataset")
        with pytest.raises(Exception, match="501"):  # hf_xet raises its own error type
            api.upload_file(path_or_fileobj=parquet_bytes(pl.DataFrame({"a": [1]})), path_in_repo="a.parquet", repo_id="tester/xet", repo_type="dataset")
        assert [r.status for r in hub.requests_to("xet_token")][:1] == [501]
        assert hub.requests_to("lfs_batch") == [] and len(hub.history("tester/xet")) == 1


# -- protocol details ------------------------------------------------------------------------------


def test_tree_pages_paths_info_ranges_and_signed_cdn_urls() -> None:
    files = {f"data/part-{i}.jsonl": jsonl([{"i": i}]) for i in range(5)} | {"data/t.parquet": parquet_bytes(pl.DataFrame({"a": [1]}))}
    with HubServer(lfs=True, tree_page_size=2) as hub:
        first = hub.add_repo("tester/tree", files)
        second = hub.push("tester/tree", {"data/part-0.jsonl": jsonl([{"i": 100}])})
        api = HfApi(endpoint=hub.endpoint)

        listed = list(api.list_repo_tree("tester/tree", repo_type="dataset", recursive=True, revision=first))
        assert sorted(e.path for e in listed) == sorted([".gitattributes", "data", *files])
        assert len(hub.requests_to("tree")) == 4, "8 entries in pages of 2, followed through the Link header"

        infos = {i.path: i for i in api.get_paths_info("tester/tree", ["data/part-0.jsonl", "data/part-1.jsonl", "data/t.parquet"], expand=True, repo_type="dataset", revision=second)}
        assert infos["data/part-0.jsonl"].last_commit.oid == second and infos["data/part-1.jsonl"].last_commit.oid == first
        assert infos["data/t.parquet"].lfs.size == len(files["data/t.parquet"])

        url = f"{hub.endpoint}/datasets/tester/tree/resolve/{first}/data/part-3.jsonl"
        partial = httpx.get(url, headers={"Range": "bytes=2-5"})
        assert partial.status_code == 206 and partial.content == files["data/part-3.jsonl"][2:6]
        assert partial.headers["X-Repo-Commit"] == first

        redirect = httpx.head(f"{hub.endpoint}/datasets/tester/tree/resolve/main/data/t.parquet")
        assert redirect.status_code == 302 and redirect.headers["X-Linked-Size"] == str(len(files["data/t.parquet"]))
        assert redirect.headers["Location"].startswith(hub.cdn_endpoint)
        assert httpx.get(redirect.headers["Location"]).content == files["data/t.parquet"]
        unsigned = redirect.headers["Location"].split("?")[0]
        assert httpx.get(unsigned).status_code == 403


def test_a_hung_request_times_the_client_out_and_the_server_recovers() -> None:
    with HubServer() as hub:
        sha = hub.add_repo("tester/slow", {"a.json": b"[]"})
        api = HfApi(endpoint=hub.endpoint)
        hub.fail_next("info", hang=True)
        with pytest.raises(Exception) as caught:
            api.dataset_info("tester/slow", timeout=0.5)
        assert "timed out" in str(caught.value).lower() or "timeout" in type(caught.value).__name__.lower()
        assert [r.status for r in hub.requests_to("info")] == [0], "the request arrived and was never answered"
        hub.release_hung_requests()
        assert api.dataset_info("tester/slow", timeout=5).sha == sha
