"""Runner and cache: concurrency, cache hits, invalidation, resume after failures, kills and interrupts."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from medset_dagster.generation import (
    GenerationCache,
    GenerationItem,
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    OllamaGenerator,
    cache_key,
    run_generation,
)
from medset_dagster.generation.runner import GenerationAborted
from medset_dagster_tests.servers.ollama_server import (
    FakeOllamaServer,
    expected_content,
)

REPO = Path(__file__).resolve().parents[1]
MODEL = "gemma3n:e4b"
SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}
TEMPLATE = "emergency-question/v1"


def make_items(n: int, *, temperature: float = 0.7, task: str = "emergency_question") -> list[GenerationItem]:
    """`n` distinct question prompts (kept importable: the kill test's child process uses it)."""
    return [
        GenerationItem(
            item_id=f"item-{i:04d}",
            request=GenerationRequest(
                task=task,
                messages=[
                    {"role": "system", "content": "You are a seasoned humanitarian medic."},
                    {"role": "user", "content": f"Write one first-aid question about situation {i}."},
                ],
                schema=SCHEMA,
                params=GenerationParams(temperature=temperature, max_tokens=350),
            ),
            extra={"chunk_ids": [f"c{i}"]},
        )
        for i in range(n)
    ]


def make_generator(url: str, **kwargs) -> OllamaGenerator:
    options = dict(timeout_s=2.0, max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.02, max_in_flight=4)
    options.update(kwargs)
    return OllamaGenerator(host=url, model=MODEL, **options)


def expected(items: list[GenerationItem]) -> dict[str, dict]:
    return {it.item_id: expected_content(it.request.messages, SCHEMA) for it in items}


def parsed(results: dict[str, GenerationResult]) -> dict[str, dict | None]:
    return {item_id: r.parsed for item_id, r in results.items()}


@pytest.fixture
def server():
    with FakeOllamaServer([MODEL]) as srv:
        yield srv


@pytest.fixture
def cache(tmp_path):
    with GenerationCache(tmp_path / "generation.sqlite") as c:
        yield c


# ----------------------------------------------------------------------------- runner basics


def test_keeps_exactly_max_in_flight_and_reports(cache):
    items = make_items(40)
    with FakeOllamaServer([MODEL], latency_s=0.1) as server:
        report = run_generation(make_generator(server.url, max_in_flight=4), items, cache, template_version=TEMPLATE)
        assert server.peak_in_flight == 4
    assert list(report.results) == [it.item_id for it in items]  # input order, whatever the completion order
    assert parsed(report.results) == expected(items)
    assert (report.requested, report.from_cache, report.generated, report.failed) == (40, 0, 40, 0)
    assert report.calls == 40 and report.failed_by_reason == {}
    assert report.prompt_tokens > 0 and report.completion_tokens > 0
    assert 0.1 <= report.latency_p50 <= report.latency_p95 < 2.0
    # 40 items x 100 ms over 4 slots is 1 s when the pipe stays full; one at a time would be 4 s.
    # (Loose bound: the machine is shared. benchmarks/generation.py measures the real share.)
    assert report.wall_s < 2.0, report.wall_s
    assert report.items_per_minute == pytest.approx(40 / report.wall_s * 60)
    assert report.summary()["generated"] == 40


def test_server_cap_is_respected_and_saturated(cache):
    with FakeOllamaServer([MODEL], latency_s=0.03, max_concurrent=2) as server:
        run_generation(make_generator(server.url, max_in_flight=2), make_items(20), cache, template_version=TEMPLATE)
        assert server.peak_in_flight == 2


def test_second_run_makes_zero_calls(server, cache):
    items = make_items(12)
    first = run_generation(make_generator(server.url), items, cache, template_version=TEMPLATE)
    calls = server.calls
    second = run_generation(make_generator(server.url), items, cache, template_version=TEMPLATE)
    assert server.calls == calls == 12
    assert (second.from_cache, second.generated, second.calls) == (12, 0, 0)
    assert second.latency_p50 is None
    assert parsed(second.results) == parsed(first.results)
    assert all(r.ok for r in second.results.values())


def test_template_version_change_regenerates_everything(server, cache):
    items = make_items(6)
    run_generation(make_generator(server.url), items, cache, template_version=TEMPLATE)
    report = run_generation(make_generator(server.url), items, cache, template_version="emergency-question/v2")
    assert (report.from_cache, report.generated) == (0, 6) and server.calls == 12


def test_changing_one_param_regenerates_only_affected_items(server, cache):
    items = make_items(10)
    run_generation(make_generator(server.url), items, cache, template_version=TEMPLATE)
    changed = {"item-0002", "item-0007"}
    edited = [
        replace(it, request=replace(it.request, params=replace(it.request.params, temperature=0.2)))
        if it.item_id in changed
        else it
        for it in items
    ]
    server.reset_counters()
    report = run_generation(make_generator(server.url), edited, cache, template_version=TEMPLATE)
    assert server.calls == 2 and (report.from_cache, report.generated) == (8, 2)
    sent = {r.body["messages"][1]["content"] for r in server.requests}
    assert sent == {"Write one first-aid question about situation 2.", "Write one first-aid question about situation 7."}


def test_extra_and_model_digest_are_part_of_the_key():
    (item,) = make_items(1)
    base = cache_key(item.request, MODEL, "sha256:a", TEMPLATE, item.extra)
    assert base == cache_key(item.request, MODEL, "sha256:a", TEMPLATE, dict(item.extra))
    assert base != cache_key(item.request, MODEL, "sha256:a", TEMPLATE, {"chunk_ids": ["other"]})
    assert base != cache_key(item.request, MODEL, "sha256:b", TEMPLATE, item.extra)
    assert base != cache_key(item.request, "gemma3n:e2b", "sha256:a", TEMPLATE, item.extra)
    assert base != cache_key(replace(item.request, task="other"), MODEL, "sha256:a", TEMPLATE, item.extra)


def test_identical_requests_are_generated_once(server, cache):
    (item,) = make_items(1)
    twin = replace(item, item_id="twin")
    report = run_generation(make_generator(server.url), [item, twin], cache, template_version=TEMPLATE)
    assert server.calls == 1 and report.generated == 2
    assert report.results[item.item_id] == report.results["twin"]


class InMemoryGenerator:
    """Any object with these members is a Generator: completion order here is random."""

    backend, model, digest, max_in_flight = "memory", "echo", "sha256:echo", 3

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.calls = 0

    def check_ready(self) -> None:
        pass

    def generate(self, request: GenerationRequest) -> GenerationResult:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        time.sleep(random.uniform(0, 0.01))
        text = '{"question": "%s?"}' % request.messages[-1]["content"]
        return GenerationResult(text, {"question": request.messages[-1]["content"] + "?"}, "stop", 1, 1, 0.01, 1, None)


def test_results_do_not_depend_on_completion_order(tmp_path):
    items = make_items(30)
    runs = []
    for run in range(2):
        with GenerationCache(tmp_path / f"{run}.sqlite") as cache:
            runs.append(run_generation(InMemoryGenerator(), items, cache, template_version=TEMPLATE).results)
    assert list(runs[0]) == list(runs[1]) == [it.item_id for it in items]
    assert parsed(runs[0]) == parsed(runs[1])


def test_a_backend_bug_surfaces(cache):
    generator = InMemoryGenerator(fail=RuntimeError("backend bug"))
    with pytest.raises(RuntimeError, match="backend bug"):
        run_generation(generator, make_items(20), cache, template_version=TEMPLATE)
    assert generator.calls < 20  # stopped starting new items after the first crash


def test_duplicate_item_ids_are_rejected(server, cache):
    (item,) = make_items(1)
    with pytest.raises(ValueError, match="duplicate item_id"):
        run_generation(make_generator(server.url), [item, item], cache, template_version=TEMPLATE)


def test_progress_is_reported_during_and_at_end(cache):
    calls: list[tuple[float, int, int, float, float | None]] = []
    with FakeOllamaServer([MODEL], latency_s=0.05) as server:
        run_generation(
            make_generator(server.url, max_in_flight=2),
            make_items(20),
            cache,
            template_version=TEMPLATE,
            on_progress=lambda done, total, rate, eta: calls.append((time.perf_counter(), done, total, rate, eta)),
            progress_every_s=0.1,
        )
    assert len(calls) >= 4
    gaps = [b[0] - a[0] for a, b in zip(calls, calls[1:])]
    assert max(gaps) < 0.3
    dones = [c[1] for c in calls]
    assert dones == sorted(dones) and calls[-1][1:3] == (20, 20) and calls[-1][4] == 0.0
    assert all(c[3] > 0 for c in calls[1:])


def test_two_stage_question_then_answer(server, cache):
    gen = make_generator(server.url)
    questions = run_generation(gen, make_items(5), cache, template_version="q/v1")
    answer_schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}

    def answers_for(results):
        return [
            GenerationItem(
                item_id=item_id,
                request=GenerationRequest(
                    task="emergency_answer",
                    messages=[{"role": "user", "content": f"Answer from context only: {r.parsed['question']}"}],
                    schema=answer_schema,
                    params=GenerationParams(temperature=0.2, max_tokens=350),
                ),
            )
            for item_id, r in results.items()
            if r.ok
        ]

    answers = run_generation(gen, answers_for(questions.results), cache, template_version="a/v1")
    assert answers.generated == 5 and all(r.parsed["answer"] for r in answers.results.values())
    calls = server.calls
    again = run_generation(gen, answers_for(run_generation(gen, make_items(5), cache, template_version="q/v1").results),
                           cache, template_version="a/v1")
    assert server.calls == calls and again.from_cache == 5


# ----------------------------------------------------------------------------- failures and resume


def test_the_models_failed_answers_are_settled_and_served_a_servers_failures_are_retried(server, cache):
    items = make_items(6)
    bad = {"Write one first-aid question about situation 1.", "Write one first-aid question about situation 4."}
    server.set_fault_predicate(lambda _i, body: "malformed_json" if body["messages"][1]["content"] in bad else None)
    first = run_generation(make_generator(server.url, max_attempts=2), items, cache, template_version=TEMPLATE)
    assert first.failed_by_reason == {"malformed_json": 2} and first.generated == 4 and first.failed_from_cache == 0
    assert first.calls == 4 + 2 * 2 == server.calls
    assert not first.results["item-0001"].ok and first.results["item-0001"].parsed is None
    assert cache.counts() == {"ok": 4, "failed": 2, "total": 6}

    # A rebuild: the model's malformed answers are what the same request gives; no call is repeated,
    # and the items are reported failed for the same reason.
    server.heal()
    server.reset_counters()
    second = run_generation(make_generator(server.url), items, cache, template_version=TEMPLATE)
    assert server.calls == 0 and second.calls == 0
    assert (second.from_cache, second.generated, second.failed, second.failed_from_cache) == (4, 0, 2, 2)
    assert second.failed_by_reason == {"malformed_json": 2}
    assert {k for k, r in second.results.items() if not r.ok} == {"item-0001", "item-0004"}

    # Asked to, the runner tries them again; their successes replace the failures.
    third = run_generation(make_generator(server.url), items, cache, template_version=TEMPLATE, retry_model_failures=True)
    assert server.calls == 2 and (third.from_cache, third.generated, third.failed) == (4, 2, 0)
    assert parsed(third.results) == expected(items)
    assert cache.counts() == {"ok": 6, "failed": 0, "total": 6}

    # A server's failure is never settled: the next run retries it.
    server.set_fault_predicate(lambda _i, body: "server_error" if "situation 2." in body["messages"][1]["content"] else None)
    more = make_items(8)[6:] + [GenerationItem("item-x", make_items(3)[2].request, extra={"v": 2})]
    failed = run_generation(make_generator(server.url, max_attempts=1), more, cache, template_version=TEMPLATE)
    assert failed.failed_by_reason == {"server_error": 1}
    server.heal()
    server.reset_counters()
    again = run_generation(make_generator(server.url), more, cache, template_version=TEMPLATE)
    assert server.calls == 1 and (again.from_cache, again.generated, again.failed) == (2, 1, 0)


def test_a_failure_never_overwrites_a_success(cache):
    (item,) = make_items(1)
    ok = GenerationResult('{"question": "q"}', {"question": "q"}, "stop", 1, 1, 0.1, 1, None)
    bad = GenerationResult("", None, "error", 0, 0, 0.1, 4, "timeout", "no answer")
    cache.put("k", item.request.task, ok)
    cache.put("k", item.request.task, bad)
    assert cache.get("k") == ok
    cache.put("k2", item.request.task, bad)
    assert cache.get("k2") is None and cache.entry("k2")["error"] == "timeout"
    cache.put("k2", item.request.task, ok)
    assert cache.get("k2") == ok


def test_server_fails_after_k_then_resume(tmp_path):
    """The server dies after K of N items: the run stops early, a healthy rerun does only the rest."""
    n, k = 60, 17
    items = make_items(n)
    with FakeOllamaServer([MODEL], latency_s=0.01) as server:
        server.fail_after(k, "server_error")
        with GenerationCache(tmp_path / "c.sqlite") as cache:
            with pytest.raises(GenerationAborted, match="rerun to resume") as info:
                run_generation(make_generator(server.url, max_attempts=2), items, cache, template_version=TEMPLATE,
                               abort_after_consecutive_failures=5)
            partial = info.value.report
            assert partial.generated == k and partial.failed_by_reason["server_error"] >= 5
            assert len(partial.results) < n  # stopped early instead of failing all N
            first_calls, first_ok = server.calls, k
            assert first_calls <= k + 2 * (5 + 4)  # K successes, then the breaker's streak plus in-flight

            server.heal()
            server.reset_counters()
            report = run_generation(make_generator(server.url), items, cache, template_version=TEMPLATE)
            assert server.calls == n - k and report.from_cache == k and report.failed == 0
            # Successful generations over both runs: each item exactly once.
            assert first_ok + server.calls == n
    assert parsed(report.results) == expected(items)


def test_interrupted_run_then_resume(tmp_path):
    """The runner is interrupted (here: by its progress callback) after K items, then resumed."""
    n, k, c = 40, 10, 4
    items = make_items(n)

    class Interrupt(Exception):
        pass

    def stop_after_k(done, total, rate, eta):
        if done >= k:
            raise Interrupt

    with FakeOllamaServer([MODEL], latency_s=0.03) as server:
        with GenerationCache(tmp_path / "c.sqlite") as cache:
            with pytest.raises(Interrupt):
                run_generation(make_generator(server.url, max_in_flight=c), items, cache, template_version=TEMPLATE,
                               on_progress=stop_after_k, progress_every_s=0.005)
            first = server.calls
            assert first < n
            report = run_generation(make_generator(server.url, max_in_flight=c), items, cache,
                                    template_version=TEMPLATE)
            assert server.calls <= n + c  # both runs: each item once, plus at most the in-flight ones
            assert report.failed == 0
    assert parsed(report.results) == expected(items)


CHILD = textwrap.dedent(
    """
    import sys
    from medset_dagster.generation import GenerationCache, run_generation
    from medset_dagster_tests.test_generation_runner import make_generator, make_items, TEMPLATE
    url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with GenerationCache(path) as cache:
        run_generation(make_generator(url, max_in_flight=4), make_items(n), cache, template_version=TEMPLATE)
    """
)


def test_killed_process_then_resume(tmp_path):
    """SIGKILL the generating process mid-run; every committed item survives and is not redone."""
    n, k, c = 40, 12, 4
    items = make_items(n)
    db = tmp_path / "c.sqlite"
    with FakeOllamaServer([MODEL], latency_s=0.05) as server:
        child = subprocess.Popen([sys.executable, "-c", CHILD, server.url, str(db), str(n)], cwd=REPO)
        try:
            deadline = time.monotonic() + 60
            while server.calls < k and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            assert child.poll() is None, "child finished before it could be killed"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(timeout=30)
        first = server.calls
        assert k <= first < n

        with GenerationCache(db) as cache:
            committed = cache.counts()["ok"]
            assert first - c <= committed <= first
            report = run_generation(make_generator(server.url), items, cache, template_version=TEMPLATE)
        assert report.from_cache == committed and server.calls - first == n - committed
        assert server.calls <= n + c  # at most the in-flight items were generated twice
    with FakeOllamaServer([MODEL]) as clean_server, GenerationCache(tmp_path / "clean.sqlite") as clean:
        uninterrupted = run_generation(make_generator(clean_server.url), items, clean, template_version=TEMPLATE)
    assert parsed(report.results) == parsed(uninterrupted.results) == expected(items)


def test_cache_rows_survive_sigkill(tmp_path):
    db = tmp_path / "c.sqlite"
    script = textwrap.dedent(
        """
        import os, signal, sys
        from medset_dagster.generation import GenerationCache, GenerationResult
        cache = GenerationCache(sys.argv[1])
        for i in range(5):
            cache.put(f"k{i}", "t", GenerationResult('{"q": "x"}', {"q": "x"}, "stop", 1, 1, 0.1, 1, None))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script, str(db)], cwd=REPO)
    assert proc.returncode == -signal.SIGKILL
    with GenerationCache(db) as cache:
        assert cache.counts() == {"ok": 5, "failed": 0, "total": 5}
        assert cache.get("k3").parsed == {"q": "x"}
