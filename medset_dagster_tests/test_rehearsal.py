"""The full-profile rehearsal, reduced: every real client against the loopback services, at 5% size.

`benchmarks/rehearsal.py` runs `python -m medset_dagster build / publish / build --changed` with
`MEDSET_PROFILE=full` against a loopback Hub (LFS storage), Cohere and Ollama. Here at scale 0.05,
50 scenarios and no latency: the exact counts at that size, the pinned revisions (registry pins held
although every head moved; PubMedQA pinned by its first observation), the LFS upload round trip
(every published file read back with the same hash), the no-change rerun (0 downloads, 0 LLM and 0
embedding calls) and a tracked source's head moving (its downstream only). Also: a Hub that accepts
a request and never answers fails the publish after a bounded wait, with nothing published.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path

import httpx
import httpx2
import numpy as np
import pytest

from medset_dagster.common.hub_client import (
    DEFAULT_TIMEOUTS,
    HubTimeouts,
    active_timeouts,
    bound_hub_requests,
)
from medset_dagster.common.retry import RetryPolicy
from medset_dagster.release.hub_release import HubPublishError, publish_release
from medset_dagster.sources.registry import SOURCES_BY_ID, benchmark_sources, hub_sources
from medset_dagster_tests.servers.cohere_server import CohereTestServer, lexical_embedding
from medset_dagster_tests.servers.hub_server import HubServer, plain_lfs_uploads
from medset_dagster_tests.test_hub_publish import write_release

REPO = Path(__file__).resolve().parents[1]

# What the pipeline keeps from the scale-0.05 mirrors (after the source's own rules: the rows of a
# record source, the inputs of a generated one), as test_full_mirrors plans them; the RAG source's
# count is its scenario draws.
AT_0_05 = {
    "medical_o1_verifiable_problem": 2014,
    "medical_o1_reasoning_sft": 985,
    "medqa": 508,
    "wiki_medical_terms": 340,
    "symptom_to_diagnosis": 41,
    "synthetic_disaster_reports": 50,
    "medicationqa": 35,
    "diseases_symptoms": 18,
    "first_aid_dataset": 5,
    "extreme_firstaid_qa_dataset": 50,
}


def load_rehearsal():
    """benchmarks/rehearsal.py as a module (benchmarks/ is not a package)."""
    if "rehearsal" in sys.modules:
        return sys.modules["rehearsal"]
    spec = importlib.util.spec_from_file_location("rehearsal", REPO / "benchmarks" / "rehearsal.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["rehearsal"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """One reduced rehearsal for the module (about a minute on 2 cores): (report, printed lines, seconds)."""
    module = load_rehearsal()
    lines: list[str] = []
    settings = module.Settings(
        scale=0.05, scenarios=50, llm_latency_s=0.0, embed_latency_s=0.0, track_source="symptom_to_diagnosis",
        work_dir=tmp_path_factory.mktemp("rehearsal"), child_timeout_s=600,
    )
    started = time.perf_counter()
    report = module.rehearse(settings, out=lines.append)
    return report, lines, time.perf_counter() - started


def test_reduced_rehearsal_passes_end_to_end(rehearsal) -> None:
    report, lines, _ = rehearsal
    failed = [name for name, ok in report.checks.items() if not ok]
    assert report.passed and not failed, f"failed checks {failed}:\n" + "\n".join(lines[-80:])


def test_counts_are_exact_at_five_percent(rehearsal) -> None:
    report, _, _ = rehearsal
    counts = {row["source"]: row for row in report.counts if row["source"] != "TOTAL"}
    assert {source: row["after_source_dedup"] for source, row in counts.items()} == AT_0_05
    for source in ("medical_o1_reasoning_sft", "synthetic_disaster_reports", "medicationqa", "diseases_symptoms"):
        assert counts[source]["after_generation"] == AT_0_05[source], "a record source keeps its rows through generation"
    # Every generated source kept records, and the stand-ins saw the calls that made them.
    assert all(counts[spec.source_id]["after_generation"] > 0 for spec in SOURCES_BY_ID.values() if spec.task)
    # Each scenario draw seeds its question: distinct questions, most of them grounded in the PDF.
    assert counts["extreme_firstaid_qa_dataset"]["after_generation"] >= 0.8 * AT_0_05["extreme_firstaid_qa_dataset"]
    assert report.calls["llm_calls"] >= AT_0_05["medqa"] + AT_0_05["symptom_to_diagnosis"] + 2 * AT_0_05["wiki_medical_terms"]
    assert report.calls["embedding_calls"] > 0 and report.calls["texts_embedded"] > 0
    assert report.build["peak_rss_bytes"] > 0 and report.stages["generation (LLM tasks)"] > 0


def test_every_source_loads_its_pinned_revision(rehearsal) -> None:
    report, _, _ = rehearsal
    sources = report.pins["sources"]
    assert set(sources) == {spec.source_id for spec in (*hub_sources(), *benchmark_sources())}
    for source_id, row in sources.items():
        spec = SOURCES_BY_ID[source_id]
        if spec.revision:  # the registry's pin, although the Hub's head had moved on
            assert row["loaded"] == spec.revision != row["hub_head"], source_id
        else:  # pinned by first observation: the head seen then
            assert row["loaded"] == row["data_sha"] == report.pins["pins_file"][source_id]["revision"], source_id
    assert set(report.pins["served_at"]) <= {row["data_sha"] for row in sources.values()}
    assert report.no_change["pins_kept"], "the first-observation pin held after PubMedQA's head moved"


def test_publish_goes_through_lfs_and_reads_back_identical(rehearsal) -> None:
    report, _, _ = rehearsal
    files = {f["path"]: f for f in report.publish["files"]}
    assert {"README.md", "build.json", "medical_training_dataset.json"} <= set(files)
    assert any(path.startswith("data/train-") and path.endswith(".parquet") for path in files)
    assert all(f["match"] for f in files.values()), [path for path, f in files.items() if not f["match"]]
    lfs = {path for path, f in files.items() if f["lfs"]}
    assert lfs and all(path.endswith((".parquet", ".png")) for path in lfs)
    assert report.publish["lfs_uploads"] == len(lfs), "each LFS file went up once, to the signed CDN URL"
    assert report.publish["tags"] and report.publish["commits"] == 2, "one atomic release commit over the repo's first"


def test_no_change_rerun_downloads_and_calls_nothing(rehearsal) -> None:
    report, _, _ = rehearsal
    rerun = report.no_change
    assert rerun["ok"] and rerun["materialized"] == []
    assert (rerun["downloads"], rerun["llm_calls"], rerun["embedding_calls"]) == (0, 0, 0)
    assert rerun["runs"] == 1, "only the observation runs"


def test_a_tracked_source_rebuilds_its_downstream_only(rehearsal) -> None:
    report, _, _ = rehearsal
    track = report.track
    assert track["revision_loaded"] == track["head"] and track["after_source_dedup"] == AT_0_05["symptom_to_diagnosis"] + 3
    assert not track["outside_downstream"]
    assert {"generation_inputs/symptom_to_diagnosis", "generated_records/symptom_to_diagnosis", "curated_dataset", "dataset_card"} <= set(
        track["materialized"]
    )
    assert not any(key.startswith(("source_records/", "medqa_explanations", "chunk_embeddings")) for key in track["materialized"])
    assert (track["llm_calls"], track["embedding_calls"]) == (3, 0), "only the three new items reached the model"


# ---------------------------------------------------------------------------------------------------
# Client-side timeouts: a Hub that never answers


TOKEN = "hf_loopbackWriteToken000000000000"
QUICK = HubTimeouts(connect_s=1.0, read_s=1.0, write_s=1.0, pool_s=1.0)
TWO_TRIES = RetryPolicy(attempts=2, initial_s=0.1, maximum_s=0.1, jitter_s=0.0)


@pytest.mark.parametrize("route", ["create_repo", "info", "commit"])
def test_a_hub_that_never_answers_fails_the_publish_after_a_bounded_wait(tmp_path: Path, route: str) -> None:
    release = write_release(tmp_path / "release", content_hash="c" * 64, shards=2)
    with HubServer(token=TOKEN, lfs=True) as hub, plain_lfs_uploads():
        hub.fail_next(route, hang=True, times=100)
        started = time.perf_counter()
        with pytest.raises(HubPublishError) as caught:
            publish_release(
                release, repo_id="medset/hung", token=TOKEN, endpoint=hub.endpoint, version_tag="v1",
                log=lambda _line: None, retry=TWO_TRIES, timeouts=QUICK, deadline_s=5.0,
            )
        waited = time.perf_counter() - started
        hung = [r for r in hub.requests if r.route == route and r.status == 0]
        nothing_published = not hub.has_repo("medset/hung") or (
            len(hub.history("medset/hung")) == 1 and not hub.repo("medset/hung").tags
        )
    bound_hub_requests(DEFAULT_TIMEOUTS)
    assert waited < 10, f"gave up after {waited:.1f}s"
    assert len(hung) == 2, "each attempt was sent, held unanswered, and timed out on the client"
    assert nothing_published, "no commit and no tag"
    assert "did not answer in time" in str(caught.value) and "nothing was published" in str(caught.value)
    assert caught.value.transient and TOKEN not in str(caught.value)


def test_every_hub_request_without_a_timeout_gets_the_bounds() -> None:
    from huggingface_hub import get_session

    try:
        bound_hub_requests(HubTimeouts(connect_s=2, read_s=3, write_s=4, pool_s=5))
        assert active_timeouts().read_s == 3
        session = get_session()
        # The paginated listing passes timeout=None explicitly; create_commit passes none at all.
        for timeout in (None, httpx2.USE_CLIENT_DEFAULT):
            request = session.build_request("GET", "http://127.0.0.1:9/api/datasets/x/tree/main", timeout=timeout)
            for hook in session.event_hooks["request"]:
                hook(request)
            assert request.extensions["timeout"] == {"connect": 2, "read": 3, "write": 4, "pool": 5}
        own = session.build_request("GET", "http://127.0.0.1:9/api/datasets/x", timeout=7.5)
        for hook in session.event_hooks["request"]:
            hook(own)
        assert own.extensions["timeout"]["read"] == 7.5, "a timeout the caller set is kept"
    finally:
        bound_hub_requests(DEFAULT_TIMEOUTS)
    with pytest.raises(ValueError):
        HubTimeouts(read_s=0)


# ---------------------------------------------------------------------------------------------------
# The Cohere stand-in under load


def test_cohere_stand_in_serves_with_latency_and_a_slot_cap() -> None:
    with CohereTestServer(latency_s=0.2, max_concurrent=2) as server:
        def embed() -> None:
            body = {"model": "embed-english-v3.0", "texts": ["bleeding"], "input_type": "search_query"}
            httpx.post(f"{server.base_url}/v2/embed", json=body, timeout=10).raise_for_status()

        started = time.perf_counter()
        threads = [threading.Thread(target=embed) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        assert server.calls == 4 and server.texts_embedded == 4 and server.peak_in_flight == 2
    assert 0.4 <= elapsed < 1.5, "four requests through two slots take two service times"


def test_lexical_vectors_score_shared_words_above_unrelated_text() -> None:
    def cosine(a: str, b: str) -> float:
        return float(np.dot(lexical_embedding("m", a, 1024), lexical_embedding("m", b, 1024)))

    passage = "Apply firm direct pressure to any external bleeding and keep the casualty warm to prevent shock."
    assert cosine(passage, passage) == pytest.approx(1.0, abs=1e-5)
    assert cosine("How do I stop bleeding with pressure when in shock?", passage) > 0.3
    assert cosine("What is the capital of Peru?", passage) < 0.3
