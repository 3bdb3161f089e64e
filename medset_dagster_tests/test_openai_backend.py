"""The OpenAI-compatible backend, through the real `openai` client, against the loopback stand-in."""

from __future__ import annotations

import socket
import time

import pytest

from medset_dagster.generation import (
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    GeneratorUnavailable,
    OpenAICompatGenerator,
)
from medset_dagster.generation.backends.openai_compat import openai_base_url
from medset_dagster_tests.servers.html_server import HtmlServer
from medset_dagster_tests.servers.openai_server import (
    FakeOpenAIServer,
    expected_content,
)

MODEL = "google/gemma-3n-E4B-it"
SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}
REASONS = {"timeout", "server_error", "rate_limited", "malformed_json", "empty_content", "empty_field",
           "truncated", "model_not_found", "connection_error", "client_error"}


def request(text: str = "How do I stop severe bleeding in a flood?") -> GenerationRequest:
    return GenerationRequest(
        task="emergency_question",
        messages=[{"role": "system", "content": "You are a medic."}, {"role": "user", "content": text}],
        schema=SCHEMA,
        params=GenerationParams(temperature=0.7, top_p=0.8, max_tokens=350, seed=7),
    )


def generator(url: str, **kwargs) -> OpenAICompatGenerator:
    options = dict(timeout_s=0.5, max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05)
    options.update(kwargs)
    return OpenAICompatGenerator(url, MODEL, **options)


def assert_sound(result: GenerationResult) -> None:
    """Every result is a usable success or a failure with a named reason, never an empty output."""
    if result.ok:
        assert result.parsed is not None
        assert all(isinstance(result.parsed[f], str) and result.parsed[f].strip() for f in SCHEMA["required"])
    else:
        assert result.error in REASONS
        assert result.parsed is None
        assert result.error_detail


@pytest.fixture
def server():
    with FakeOpenAIServer([MODEL], slow_s=1.2) as srv:
        yield srv


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


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://gpu-1:8000", "http://gpu-1:8000/v1"),
        ("http://gpu-1:8000/", "http://gpu-1:8000/v1"),
        ("http://gpu-1:8000/v1/", "http://gpu-1:8000/v1"),
        ("https://llm.example/openai/v1", "https://llm.example/openai/v1"),
    ],
)
def test_base_url_gets_v1_only_when_it_has_no_path(url, base):
    assert openai_base_url(url) == base


def test_base_url_without_host_is_refused():
    with pytest.raises(ValueError, match="not an http"):
        openai_base_url("gpu-1:8000")


def test_api_key_from_the_named_environment_variable(monkeypatch):
    monkeypatch.setenv("MEDSET_TEST_LLM_KEY", "sk-loopback")
    with FakeOpenAIServer([MODEL], api_key="sk-loopback") as srv:
        gen = generator(srv.url, api_key_env="MEDSET_TEST_LLM_KEY")
        gen.check_ready()
        assert gen.generate(request()).ok
        without = generator(srv.url)  # a placeholder key: the server answers 401
        with pytest.raises(GeneratorUnavailable, match="401"):
            without.check_ready()
        assert without.generate(request()).error == "client_error"


def test_unset_api_key_variable_is_refused(monkeypatch):
    monkeypatch.delenv("MEDSET_TEST_LLM_KEY", raising=False)
    with pytest.raises(ValueError, match="MEDSET_TEST_LLM_KEY"):
        generator("http://127.0.0.1:1", api_key_env="MEDSET_TEST_LLM_KEY")


# ----------------------------------------------------------------------------- check_ready and identity


def test_identity_is_the_served_id_unless_a_digest_is_configured(server):
    gen = generator(server.url)
    assert gen.digest is None
    gen.check_ready()
    assert gen.digest == f"openai-model:{MODEL}"
    pinned = generator(server.url, digest="sha256:0123abcd")
    pinned.check_ready()
    assert pinned.digest == "sha256:0123abcd"


def test_check_ready_missing_model_names_what_is_served(server):
    gen = OpenAICompatGenerator(server.url, "other-model", timeout_s=0.5)
    with pytest.raises(GeneratorUnavailable, match=f"other-model.*{MODEL}") as info:
        gen.check_ready()
    assert info.value.reason == "model_not_found"


def test_check_ready_nothing_listening():
    gen = generator(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(GeneratorUnavailable, match="No OpenAI-compatible server") as info:
        gen.check_ready()
    assert info.value.reason == "connection_error"


def test_check_ready_fails_fast_on_a_hung_server():
    # A listener that never answers: the probe gives up after ready_timeout_s, not timeout_s.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        gen = OpenAICompatGenerator(f"http://127.0.0.1:{sock.getsockname()[1]}", MODEL, timeout_s=30,
                                    ready_timeout_s=0.3)
        start = time.perf_counter()
        with pytest.raises(GeneratorUnavailable):
            gen.check_ready()
        assert time.perf_counter() - start < 5


def test_check_ready_on_a_server_that_is_not_openai_compatible(html_server):
    with pytest.raises(GeneratorUnavailable, match="not an OpenAI model list"):
        generator(html_server).check_ready()
    result = generator(html_server, max_attempts=2).generate(request())
    assert result.error == "server_error" and result.attempts == 2  # retried, then counted


# ----------------------------------------------------------------------------- generate


def test_sends_schema_and_sampling_parameters(server):
    result = generator(server.url).generate(request())
    assert_sound(result)
    assert result.ok and result.attempts == 1 and result.finish_reason == "stop"
    assert result.parsed == expected_content(request().messages, SCHEMA)
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    (sent,) = server.requests
    body = sent.body
    assert body["model"] == MODEL and body["messages"] == request().messages
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "emergency_question", "schema": SCHEMA, "strict": False},
    }
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.7, 0.8, 350, 7)
    assert body.get("stream") in (None, False)


FAULT_REASON = {
    "server_error": "server_error",
    "overloaded": "server_error",
    "rate_limited": "rate_limited",
    "malformed_json": "malformed_json",
    "empty_content": "empty_content",
    "empty_field": "empty_field",
    "truncated": "truncated",
    "slow": "timeout",
    "disconnect": "connection_error",
}


@pytest.mark.parametrize("fault", sorted(FAULT_REASON))
def test_fault_then_success(server, fault):
    gen = generator(server.url)
    server.queue_faults(fault)
    result = gen.generate(request())
    assert_sound(result)
    assert result.ok and result.attempts == 2 and server.calls == 2
    assert result.parsed == expected_content(request().messages, SCHEMA)


@pytest.mark.parametrize("fault", sorted(FAULT_REASON))
def test_fault_exhausts_attempts_into_counted_failure(server, fault):
    gen = generator(server.url, max_attempts=3)
    server.queue_faults(fault, fault, fault)
    result = gen.generate(request())
    assert_sound(result)
    assert not result.ok and result.error == FAULT_REASON[fault]
    assert result.attempts == 3 and server.calls == 3


def test_truncation_keeps_the_finish_reason(server):
    server.queue_faults("truncated")
    result = generator(server.url, max_attempts=1).generate(request())
    assert result.error == "truncated" and result.finish_reason == "length"
    assert result.completion_tokens > 0


def test_missing_model_is_not_retried(server):
    gen = generator(server.url)
    gen.check_ready()
    server.remove_model(MODEL)
    result = gen.generate(request())
    assert_sound(result)
    assert result.error == "model_not_found" and result.attempts == 1 and server.calls == 1


def test_connection_refused_is_retried_then_counted():
    result = generator(f"http://127.0.0.1:{free_port()}", max_attempts=2).generate(request())
    assert_sound(result)
    assert result.error == "connection_error" and result.attempts == 2


def test_retry_after_is_honoured(server):
    sleeps: list[float] = []
    with FakeOpenAIServer([MODEL], retry_after_s=0.3) as srv:
        gen = generator(srv.url, backoff_initial_s=0.01, backoff_max_s=5, sleep=sleeps.append)
        srv.queue_faults("rate_limited", "overloaded")
        assert gen.generate(request()).ok
    assert sleeps == [0.3, 0.3]


def test_backoff_is_exponential_with_jitter(server):
    sleeps: list[float] = []
    gen = generator(server.url, max_attempts=4, backoff_initial_s=0.1, backoff_max_s=10, sleep=sleeps.append)
    server.queue_faults("server_error", "server_error", "server_error")
    assert gen.generate(request()).ok
    assert len(sleeps) == 3
    for n, waited in enumerate(sleeps):
        base = 0.1 * 2**n
        assert base <= waited <= base + 0.1


def test_killed_server_then_restarted(server):
    gen = generator(server.url, max_attempts=1)
    assert gen.generate(request("a")).ok
    server.kill()
    assert gen.generate(request("b")).error == "connection_error"
    server.restart()
    assert gen.generate(request("c")).ok
