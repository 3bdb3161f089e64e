"""The fleet generator: real `ollama` and `openai` clients routed over several loopback servers.

Server-side logs are the ground truth here: each stand-in records every request it received and
what it answered, so "never more than its slots", "no item served twice" and "at most the
in-flight requests repeated" are checked where a real server would see them.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter

import pytest

from medset_dagster.generation import (
    Endpoint,
    FleetGenerator,
    GenerationCache,
    Generator,
    GeneratorUnavailable,
    OllamaGenerator,
    cache_key,
    load_endpoints,
    run_generation,
)
from medset_dagster.generation.runner import GenerationAborted
from medset_dagster_tests.servers.html_server import HtmlServer
from medset_dagster_tests.servers.ollama_server import FakeOllamaServer, model_digest
from medset_dagster_tests.servers.openai_server import (
    FakeOpenAIServer,
    expected_content,
)
from medset_dagster_tests.test_generation_runner import SCHEMA, TEMPLATE, make_items

OLLAMA_MODEL = "gemma3n:e4b"
OPENAI_MODEL = "google/gemma-3n-E4B-it"
WEIGHTS = model_digest(OLLAMA_MODEL)  # what the Ollama stand-in reports for its model


def openai_endpoint(name: str, server: FakeOpenAIServer, slots: int, **kwargs) -> Endpoint:
    return Endpoint(name, "openai", server.url, OPENAI_MODEL, slots=slots, **kwargs)


def fleet(endpoints: list[Endpoint], **kwargs) -> FleetGenerator:
    options = dict(timeout_s=5.0, max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05,
                   endpoint_backoff_initial_s=0.05, endpoint_backoff_max_s=0.2, ready_timeout_s=1.0)
    options.update(kwargs)
    return FleetGenerator(endpoints, **options)


@pytest.fixture
def cache(tmp_path):
    with GenerationCache(tmp_path / "generation.sqlite") as c:
        yield c


def answered(*servers) -> Counter[str]:
    """How many 200 answers each item (its user message) got, over all the servers."""
    return Counter(r.body["messages"][1]["content"] for s in servers for r in s.requests if r.status == 200)


def unanswered(server) -> list[str]:
    """Items this server received and never answered (cut by a kill)."""
    return [r.body["messages"][1]["content"] for r in server.requests if r.status != 200]


def prompts(items) -> set[str]:
    return {it.request.messages[1]["content"] for it in items}


@pytest.fixture
def html_server():
    """URL of a loopback server that answers 200 with HTML to everything: not an LLM server."""
    with HtmlServer() as server:
        yield server.url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------- configuration


def test_endpoint_defaults_and_validation():
    endpoint = Endpoint("gpu-1", "ollama", "http://gpu-1:11434", OLLAMA_MODEL, slots=4)
    assert endpoint.in_flight_limit == 5  # slots + 1 hides the client's turnaround
    assert Endpoint("g", "openai", "http://g:8000", "m", slots=4, max_in_flight=4).in_flight_limit == 4
    with pytest.raises(ValueError, match="kind"):
        Endpoint("x", "tgi", "http://x", "m")
    with pytest.raises(ValueError, match="slots"):
        Endpoint("x", "ollama", "http://x", "m", slots=0)
    with pytest.raises(ValueError, match="api_key_env"):
        Endpoint("x", "ollama", "http://x", "m", api_key_env="KEY")
    with pytest.raises(ValueError, match="model"):
        Endpoint("x", "ollama", "http://x", " ")


def test_load_endpoints_from_json_and_mappings():
    text = json.dumps([
        {"name": "gpu-1", "kind": "ollama", "url": "http://gpu-1:11434", "model": OLLAMA_MODEL, "slots": 4},
        {"name": "vllm-1", "kind": "openai", "url": "http://vllm-1:8000/v1", "model": OPENAI_MODEL, "slots": 16,
         "digest": WEIGHTS, "api_key_env": "VLLM_KEY"},
    ])
    endpoints = load_endpoints(text)
    assert [e.name for e in endpoints] == ["gpu-1", "vllm-1"]
    assert endpoints == load_endpoints(json.loads(text))
    assert endpoints[1].digest == WEIGHTS and endpoints[1].slots == 16
    with pytest.raises(ValueError, match="unknown endpoint keys.*'slot'"):
        load_endpoints([{"name": "a", "kind": "ollama", "url": "http://a", "model": "m", "slot": 2}])
    with pytest.raises(ValueError, match="lacks"):
        load_endpoints([{"name": "a", "kind": "ollama", "url": "http://a"}])
    with pytest.raises(ValueError, match="not valid JSON"):
        load_endpoints("[{")


def test_fleet_is_a_generator_with_one_model_name():
    a = Endpoint("a", "ollama", "http://127.0.0.1:1", OLLAMA_MODEL, slots=2)
    b = Endpoint("b", "openai", "http://127.0.0.1:2", OPENAI_MODEL, slots=6)
    with pytest.raises(ValueError, match="name the model differently"):
        FleetGenerator([a, b])
    with pytest.raises(ValueError, match="unique"):
        FleetGenerator([a, a])
    with pytest.raises(ValueError, match="at least one"):
        FleetGenerator([])
    mixed = FleetGenerator([a, b], model=OLLAMA_MODEL)
    assert isinstance(mixed, Generator)
    assert (mixed.backend, mixed.model, mixed.max_in_flight) == ("fleet", OLLAMA_MODEL, 3 + 7)


# ----------------------------------------------------------------------------- routing


def test_slot_limits_are_respected_and_every_slot_used(cache):
    # Each server refuses (503) anything beyond its slots + one queued request: a single refusal
    # would show that the fleet overfilled it.
    items = make_items(150)
    with FakeOpenAIServer([OPENAI_MODEL], latency_s=0.04, max_concurrent=1, max_queue=1) as s1, \
            FakeOpenAIServer([OPENAI_MODEL], latency_s=0.04, max_concurrent=2, max_queue=1) as s2, \
            FakeOpenAIServer([OPENAI_MODEL], latency_s=0.04, max_concurrent=4, max_queue=1) as s4:
        gen = fleet([openai_endpoint("s1", s1, 1), openai_endpoint("s2", s2, 2), openai_endpoint("s4", s4, 4)])
        report = run_generation(gen, items, cache, template_version=TEMPLATE)
        servers = (s1, s2, s4)
        assert [s.refused for s in servers] == [0, 0, 0]
        assert [s.peak_in_flight for s in servers] == [1, 2, 4]  # saturated, never above the slots
        assert [s.peak_open for s in servers] == [2, 3, 5]  # slots + 1 by default
        assert answered(*servers) == Counter(prompts(items))  # every item served exactly once
        # Work follows capacity: the 4-slot server serves the most, the 1-slot one the least.
        assert s4.answered > s2.answered > s1.answered > 0
    assert (report.generated, report.failed, report.calls) == (150, 0, 150)
    stats = gen.endpoint_stats()
    assert [stats[n]["peak_in_flight"] for n in ("s1", "s2", "s4")] == [2, 3, 5]
    assert sum(s["calls"] for s in stats.values()) == 150


def test_max_in_flight_equal_to_slots_never_queues(cache):
    with FakeOpenAIServer([OPENAI_MODEL], latency_s=0.03, max_concurrent=2, max_queue=0) as a, \
            FakeOpenAIServer([OPENAI_MODEL], latency_s=0.03, max_concurrent=3, max_queue=0) as b:
        gen = fleet([openai_endpoint("a", a, 2, max_in_flight=2), openai_endpoint("b", b, 3, max_in_flight=3)])
        assert gen.max_in_flight == 5
        report = run_generation(gen, make_items(60), cache, template_version=TEMPLATE)
        assert (a.refused, b.refused, a.peak_open, b.peak_open) == (0, 0, 2, 3)
    assert report.generated == 60


@pytest.mark.parametrize(("status", "retry_after_s", "reason"), [(503, None, "server_error"), (429, 1.0, "rate_limited")])
def test_overload_backs_the_endpoint_off_and_moves_its_items(cache, status, retry_after_s, reason):
    # `a` is shared with someone else: it has 2 slots and no queue, but this fleet is told 4
    # places, so it keeps answering overload. Each overload must keep it idle for its backoff.
    backoff_s = 1.0
    items = make_items(160)  # b alone needs over 2 s: longer than a's backoff
    with FakeOpenAIServer([OPENAI_MODEL], latency_s=0.03, max_concurrent=2, max_queue=0, overload_status=status,
                          retry_after_s=retry_after_s) as a, \
            FakeOpenAIServer([OPENAI_MODEL], latency_s=0.03, max_concurrent=2) as b:
        gen = fleet([openai_endpoint("a", a, 2, max_in_flight=4), openai_endpoint("b", b, 2)],
                    endpoint_backoff_initial_s=backoff_s, endpoint_backoff_max_s=2.0)
        report = run_generation(gen, items, cache, template_version=TEMPLATE)
        assert a.refused >= 1
        assert answered(a, b) == Counter(prompts(items))  # nothing lost, nothing served twice
        log = sorted(a.requests, key=lambda r: r.started)
    assert (report.generated, report.failed) == (160, 0)
    stats = gen.endpoint_stats()
    assert stats["a"]["failures_by_reason"] == {reason: a.refused}
    assert stats["a"]["backoffs"] >= 1 and stats["a"]["rerouted"] == a.refused
    assert stats["b"]["failures_by_reason"] == {}
    # After the first refusal, requests reach `a` only within a moment (those already on their way
    # before the client read the refusal) or after the backoff (Retry-After when the server gives one).
    first = next(r for r in log if r.status == status)
    wait = retry_after_s if retry_after_s is not None else backoff_s
    late = [r.started - first.finished for r in log if r.started > first.finished + 0.25]
    assert late, "a was never used again after its backoff"
    assert min(late) >= wait * 0.95, late[:3]


def test_connection_loss_reroutes_and_repeats_only_the_requests_in_flight(cache):
    items = make_items(160)
    with FakeOpenAIServer([OPENAI_MODEL], latency_s=0.02, max_concurrent=2) as a, \
            FakeOpenAIServer([OPENAI_MODEL], latency_s=0.02, max_concurrent=2) as b:
        # One attempt per item: an item survives the loss only if the fleet moves it at once.
        gen = fleet([openai_endpoint("a", a, 2), openai_endpoint("b", b, 2)], max_attempts=1)

        def crash_a() -> None:
            deadline = time.monotonic() + 20
            while a.answered < 20 and time.monotonic() < deadline:
                time.sleep(0.005)
            a.kill()

        killer = threading.Thread(target=crash_a)
        killer.start()
        report = run_generation(gen, items, cache, template_version=TEMPLATE)
        killer.join()
        lost = unanswered(a)
        assert answered(a, b) == Counter(prompts(items))  # every item, each served once
        assert 1 <= len(lost) <= 3  # at most a's in-flight requests (2 slots + 1) ...
        assert set(lost) <= {r.body["messages"][1]["content"] for r in b.requests if r.status == 200}  # ... redone by b
    assert (report.generated, report.failed) == (160, 0)
    stats = gen.endpoint_stats()
    assert stats["a"]["state"] == "down"
    assert 1 <= stats["a"]["failures_by_reason"]["connection_error"] <= 3
    assert report.calls == 160 + stats["a"]["rerouted"]
    assert stats["a"]["calls"] + stats["b"]["calls"] == report.calls


def test_a_restarted_endpoint_is_probed_and_rejoins(cache):
    items = make_items(200)
    with FakeOpenAIServer([OPENAI_MODEL], latency_s=0.03, max_concurrent=2) as a, \
            FakeOpenAIServer([OPENAI_MODEL], latency_s=0.03, max_concurrent=2) as b:
        gen = fleet([openai_endpoint("a", a, 2), openai_endpoint("b", b, 2)])

        def crash_and_restart_a() -> None:
            deadline = time.monotonic() + 20
            while a.answered < 10 and time.monotonic() < deadline:
                time.sleep(0.005)
            a.kill()
            time.sleep(0.3)
            a.restart()

        worker = threading.Thread(target=crash_and_restart_a)
        worker.start()
        report = run_generation(gen, items, cache, template_version=TEMPLATE)
        worker.join()
        restarted_at = max(r.started for r in a.requests if r.status != 200)
        after = [r for r in a.requests if r.started > restarted_at and r.status == 200]
        assert answered(a, b) == Counter(prompts(items))
    assert report.failed == 0
    assert after, "the restarted endpoint got no work"
    stats = gen.endpoint_stats()
    assert stats["a"]["state"] == "healthy" and stats["a"]["probes"] >= 2


def test_an_endpoint_down_at_start_is_left_out_until_it_answers(cache):
    with FakeOpenAIServer([OPENAI_MODEL], latency_s=0.01, max_concurrent=2) as b:
        gen = fleet([Endpoint("a", "openai", f"http://127.0.0.1:{free_port()}", OPENAI_MODEL, slots=2),
                     openai_endpoint("b", b, 2)])
        report = run_generation(gen, make_items(30), cache, template_version=TEMPLATE)
    assert (report.generated, report.failed) == (30, 0)
    stats = gen.endpoint_stats()
    assert stats["a"]["calls"] == 0 and stats["a"]["state"] == "down" and stats["b"]["calls"] == 30


@pytest.mark.parametrize("same_weights", [True, False])
def test_an_endpoint_that_comes_up_late_joins_only_with_the_fleets_digest(cache, same_weights):
    items = make_items(150)
    port = free_port()
    late = FakeOpenAIServer([OPENAI_MODEL], latency_s=0.02, max_concurrent=2, port=port)
    with FakeOpenAIServer([OPENAI_MODEL], latency_s=0.02, max_concurrent=2) as a:
        digest = None if same_weights else "sha256:other-weights"
        gen = fleet([openai_endpoint("a", a, 2),
                     Endpoint("late", "openai", f"http://127.0.0.1:{port}", OPENAI_MODEL, slots=2, digest=digest)])

        def come_up() -> None:
            deadline = time.monotonic() + 20
            while a.answered < 10 and time.monotonic() < deadline:
                time.sleep(0.005)
            late.start()

        worker = threading.Thread(target=come_up)
        worker.start()
        try:
            report = run_generation(gen, items, cache, template_version=TEMPLATE)
            worker.join()
            assert answered(a, late) == Counter(prompts(items))
        finally:
            late.stop()
    assert report.failed == 0 and gen.digest == f"openai-model:{OPENAI_MODEL}"
    stats = gen.endpoint_stats()["late"]
    if same_weights:
        assert late.answered > 0 and stats["state"] == "healthy"
    else:  # other weights: never given an item, whatever its health
        assert late.calls == 0 and stats["failures_by_reason"]["digest_mismatch"] >= 1 and stats["state"] == "down"


def test_an_endpoint_answering_something_else_is_left_out(cache, html_server):
    with FakeOpenAIServer([OPENAI_MODEL], latency_s=0.01, max_concurrent=2) as b:
        gen = fleet([Endpoint("proxy", "openai", html_server, OPENAI_MODEL, slots=2),
                     Endpoint("ollama-proxy", "ollama", html_server, OLLAMA_MODEL, slots=2),
                     openai_endpoint("b", b, 2)], model=OPENAI_MODEL)
        report = run_generation(gen, make_items(30), cache, template_version=TEMPLATE)
    assert (report.generated, report.failed) == (30, 0)
    stats = gen.endpoint_stats()
    assert stats["proxy"]["state"] == stats["ollama-proxy"]["state"] == "down"
    assert stats["proxy"]["calls"] == stats["ollama-proxy"]["calls"] == 0 and stats["b"]["calls"] == 30


def test_losing_every_endpoint_trips_the_runner_breaker(cache):
    with FakeOpenAIServer([OPENAI_MODEL], latency_s=0.02, max_concurrent=2) as a, \
            FakeOpenAIServer([OPENAI_MODEL], latency_s=0.02, max_concurrent=2) as b:
        gen = fleet([openai_endpoint("a", a, 2), openai_endpoint("b", b, 2)], max_attempts=2)
        a.fail_after(10, "disconnect")
        b.fail_after(10, "disconnect")
        start = time.perf_counter()
        with pytest.raises(GenerationAborted, match="fleet stopped answering") as info:
            run_generation(gen, make_items(300), cache, template_version=TEMPLATE, abort_after_consecutive_failures=5)
        assert time.perf_counter() - start < 20
    assert set(info.value.report.failed_by_reason) == {"connection_error"}
    assert info.value.report.generated >= 10


def test_check_ready_with_no_endpoint_answering_names_them():
    gen = fleet([Endpoint("a", "openai", f"http://127.0.0.1:{free_port()}", "m"),
                 Endpoint("b", "ollama", f"http://127.0.0.1:{free_port()}", "m")])
    with pytest.raises(GeneratorUnavailable, match="no endpoint of the fleet answers.*endpoint a.*endpoint b"):
        gen.check_ready()


def test_a_model_missing_from_one_endpoint_is_refused_at_start():
    with FakeOpenAIServer([OPENAI_MODEL]) as a, FakeOpenAIServer(["other"]) as b:
        gen = fleet([openai_endpoint("a", a, 1), openai_endpoint("b", b, 1)])
        with pytest.raises(GeneratorUnavailable, match="without the model: endpoint b") as info:
            gen.check_ready()
    assert info.value.reason == "model_not_found"


def test_a_model_removed_mid_run_sends_its_items_elsewhere(cache):
    items = make_items(100)
    with FakeOpenAIServer([OPENAI_MODEL], latency_s=0.02, max_concurrent=2) as a, \
            FakeOpenAIServer([OPENAI_MODEL], latency_s=0.02, max_concurrent=2) as b:
        gen = fleet([openai_endpoint("a", a, 2), openai_endpoint("b", b, 2)])

        def unload_model() -> None:
            deadline = time.monotonic() + 20
            while a.answered < 10 and time.monotonic() < deadline:
                time.sleep(0.005)
            a.remove_model(OPENAI_MODEL)

        worker = threading.Thread(target=unload_model)
        worker.start()
        report = run_generation(gen, items, cache, template_version=TEMPLATE)
        worker.join()
        assert answered(a, b) == Counter(prompts(items))
    assert (report.generated, report.failed) == (100, 0)
    stats = gen.endpoint_stats()["a"]
    assert stats["succeeded"] >= 10 and stats["failures_by_reason"]["model_not_found"] >= 1
    assert stats["state"] == "down"  # its probes find the model gone, so it stays out


def test_item_faults_are_retried_as_with_one_server(cache):
    with FakeOpenAIServer([OPENAI_MODEL], latency_s=0.01) as a:
        gen = fleet([openai_endpoint("a", a, 2)], max_attempts=3)
        a.queue_faults("malformed_json", "truncated")
        report = run_generation(gen, make_items(1), cache, template_version=TEMPLATE)
        (result,) = report.results.values()
    assert result.ok and result.attempts == 3
    stats = gen.endpoint_stats()["a"]
    assert stats["failures_by_reason"] == {"malformed_json": 1, "truncated": 1}
    assert stats["rerouted"] == 0 and stats["backoffs"] == 0 and stats["state"] == "healthy"


# ----------------------------------------------------------------------------- identity and cache keys


def test_mixed_ollama_and_openai_fleet_shares_keys_with_a_lone_ollama(cache):
    items = make_items(80)
    with FakeOllamaServer([OLLAMA_MODEL], latency_s=0.02, max_concurrent=2) as ollama_server, \
            FakeOpenAIServer([OPENAI_MODEL], latency_s=0.02, max_concurrent=2) as openai_server:
        gen = fleet(
            [Endpoint("ollama-1", "ollama", ollama_server.url, OLLAMA_MODEL, slots=2),
             openai_endpoint("vllm-1", openai_server, 2, digest=WEIGHTS)],
            model=OLLAMA_MODEL,
        )
        report = run_generation(gen, items, cache, template_version=TEMPLATE)
        assert gen.digest == WEIGHTS
        assert ollama_server.calls > 0 and openai_server.answered > 0
        assert ollama_server.peak_in_flight <= 2 and openai_server.peak_in_flight <= 2
        # Both engines answer the same request alike, so the results are the expected ones.
        assert {k: r.parsed for k, r in report.results.items()} == {
            it.item_id: expected_content(it.request.messages, SCHEMA) for it in items
        }
        stats = gen.endpoint_stats()
        assert stats["ollama-1"]["kind"] == "ollama" and stats["vllm-1"]["kind"] == "openai"
        assert stats["ollama-1"]["calls"] + stats["vllm-1"]["calls"] == 80
        for figures in stats.values():
            assert figures["prompt_tokens"] > 0 and figures["completion_tokens"] > 0
            assert 0.02 <= figures["latency_p50_s"] <= figures["latency_p95_s"] < 2.0
        # Same keys as a lone Ollama generator: switching to the fleet regenerated nothing.
        calls = ollama_server.calls
        lone = OllamaGenerator(host=ollama_server.url, model=OLLAMA_MODEL, timeout_s=5)
        again = run_generation(lone, items, cache, template_version=TEMPLATE)
        assert (again.from_cache, again.calls, ollama_server.calls) == (80, 0, calls)


def test_cache_keys_do_not_depend_on_which_endpoints_serve(cache):
    items = make_items(40)
    with FakeOpenAIServer([OPENAI_MODEL], latency_s=0.02, max_concurrent=2) as a, \
            FakeOpenAIServer([OPENAI_MODEL], latency_s=0.02, max_concurrent=2) as b, \
            FakeOpenAIServer([OPENAI_MODEL], latency_s=0.02, max_concurrent=2) as c:
        both = fleet([openai_endpoint("a", a, 2), openai_endpoint("b", b, 2)])
        first = run_generation(both, items, cache, template_version=TEMPLATE)
        assert first.generated == 40 and a.answered > 0 and b.answered > 0  # items served by either
        variants = [
            fleet([openai_endpoint("a", a, 2)]),
            fleet([openai_endpoint("b", b, 2)]),
            fleet([openai_endpoint("c", c, 2), openai_endpoint("b", b, 4), openai_endpoint("a", a, 1)]),
        ]
        for variant in variants:
            variant.check_ready()
            assert (variant.model, variant.digest) == (both.model, both.digest) == (
                OPENAI_MODEL, f"openai-model:{OPENAI_MODEL}")
            report = run_generation(variant, items, cache, template_version=TEMPLATE)
            assert (report.from_cache, report.calls) == (40, 0)
        assert c.calls == 0
    (item,) = items[:1]
    assert cache_key(item.request, both.model, both.digest, TEMPLATE, item.extra) == cache_key(
        item.request, variants[2].model, variants[2].digest, TEMPLATE, item.extra)


def test_digest_mismatch_is_refused_naming_the_endpoints():
    with FakeOllamaServer([OLLAMA_MODEL]) as ollama_server, FakeOpenAIServer([OPENAI_MODEL]) as s1, \
            FakeOpenAIServer([OPENAI_MODEL]) as s2:
        # An OpenAI-compatible server with no configured digest is not known to hold Ollama's weights.
        gen = fleet([Endpoint("ollama-1", "ollama", ollama_server.url, OLLAMA_MODEL, slots=2),
                     openai_endpoint("vllm-1", s1, 2), openai_endpoint("vllm-2", s2, 2, digest=WEIGHTS)],
                    model=OLLAMA_MODEL)
        with pytest.raises(GeneratorUnavailable, match="different weights") as info:
            gen.check_ready()
        message = str(info.value)
        assert f"digest {WEIGHTS!r} at ollama-1, vllm-2" in message
        assert f"digest 'openai-model:{OPENAI_MODEL}' at vllm-1" in message
        assert info.value.reason == "model_not_found" and gen.digest is None
        # Two OpenAI servers configured with different weights.
        pinned = fleet([openai_endpoint("v1", s1, 1, digest="sha256:aaa"), openai_endpoint("v2", s2, 1, digest="sha256:bbb")])
        with pytest.raises(GeneratorUnavailable, match="'sha256:aaa' at v1; digest 'sha256:bbb' at v2"):
            pinned.check_ready()
        # An Ollama endpoint whose configured digest is not what the server reports.
        stale = fleet([Endpoint("o", "ollama", ollama_server.url, OLLAMA_MODEL, digest="sha256:old")])
        with pytest.raises(GeneratorUnavailable, match="endpoint o: .*not the configured sha256:old"):
            stale.check_ready()
