"""The Ollama backend, through the real `ollama` client, against the loopback stand-in server."""

from __future__ import annotations

import socket

import pytest

from medset_dagster.generation import (
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    GeneratorUnavailable,
    OllamaGenerator,
    parse_json_output,
)
from medset_dagster.generation.backends import diagnose_json_output
from medset_dagster_tests.servers.ollama_server import (
    FakeOllamaServer,
    expected_content,
    model_digest,
)

MODEL = "gemma3n:e4b"
SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}
REASONS = {"timeout", "server_error", "malformed_json", "empty_content", "empty_field", "model_not_found",
           "connection_error"}


def request(text: str = "How do I stop severe bleeding in a flood?") -> GenerationRequest:
    return GenerationRequest(
        task="emergency_question",
        messages=[{"role": "system", "content": "You are a medic."}, {"role": "user", "content": text}],
        schema=SCHEMA,
        params=GenerationParams(temperature=0.7, top_p=0.8, max_tokens=350, seed=7),
    )


def generator(url: str, **kwargs) -> OllamaGenerator:
    options = dict(timeout_s=0.5, max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05)
    options.update(kwargs)
    return OllamaGenerator(host=url, model=MODEL, **options)


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
    with FakeOllamaServer([MODEL], slow_s=1.2) as srv:
        yield srv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------- check_ready


def test_check_ready_records_digest(server):
    gen = generator(server.url)
    assert gen.digest is None
    gen.check_ready()
    assert gen.digest == model_digest(MODEL)
    assert (gen.backend, gen.model, gen.max_in_flight) == ("ollama", MODEL, 4)


def test_check_ready_untagged_name_means_latest():
    with FakeOllamaServer(["llama3.2:latest"]) as srv:
        gen = OllamaGenerator(host=srv.url, model="llama3.2")
        gen.check_ready()
        assert gen.digest == model_digest("llama3.2:latest")


def test_check_ready_nothing_listening():
    host = f"http://127.0.0.1:{free_port()}"
    gen = OllamaGenerator(host=host, model=MODEL, timeout_s=1)
    with pytest.raises(GeneratorUnavailable) as info:
        gen.check_ready()
    message = str(info.value)
    assert "ollama serve" in message and "OLLAMA_HOST" in message and host in message


def test_check_ready_missing_model(server):
    gen = OllamaGenerator(host=server.url, model="qwen3:0.6b", timeout_s=1)
    with pytest.raises(GeneratorUnavailable, match=r"ollama pull qwen3:0\.6b"):
        gen.check_ready()


def test_host_defaults_to_ollama_host_env(server, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    gen = OllamaGenerator(model=MODEL)
    assert gen.host == server.url
    gen.check_ready()
    monkeypatch.delenv("OLLAMA_HOST")
    assert OllamaGenerator(model=MODEL).host == "http://127.0.0.1:11434"


# ----------------------------------------------------------------------------- generate


def test_generate_sends_schema_and_options(server):
    gen = generator(server.url)
    req = request()
    result = gen.generate(req)
    assert_sound(result)
    assert result.ok and result.attempts == 1 and result.finish_reason == "stop"
    assert result.parsed == expected_content(req.messages, SCHEMA)
    assert result.prompt_tokens > 0 and result.completion_tokens > 0 and result.latency_s > 0
    body = server.requests[-1].body
    assert body["format"] == SCHEMA and body["stream"] is False and body["model"] == MODEL
    assert body["options"] == {"temperature": 0.7, "top_p": 0.8, "num_predict": 350, "seed": 7}


def test_outputs_are_reproducible_and_distinct(server):
    gen = generator(server.url)
    a1, a2, b = gen.generate(request("a")), gen.generate(request("a")), gen.generate(request("b"))
    assert a1.parsed == a2.parsed and a1.parsed != b.parsed


FAULT_REASON = {
    "slow": "timeout",
    "server_error": "server_error",
    "overloaded": "server_error",
    "malformed_json": "malformed_json",
    "empty_content": "empty_content",
    "empty_field": "empty_field",
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


def test_missing_model_is_not_retried(server):
    gen = generator(server.url)
    gen.check_ready()
    server.remove_model(MODEL)  # e.g. `ollama rm` while a run is going
    result = gen.generate(request())
    assert_sound(result)
    assert result.error == "model_not_found" and result.attempts == 1 and server.calls == 1
    assert f"ollama pull {MODEL}" in result.error_detail


def test_injected_404_is_not_retried(server):
    gen = generator(server.url)
    server.queue_faults("missing_model")
    result = gen.generate(request())
    assert result.error == "model_not_found" and server.calls == 1


def test_one_attempt_reports_the_http_status(server):
    from medset_dagster.generation.backends.common import AttemptFailed

    server.queue_faults("overloaded")
    with pytest.raises(AttemptFailed) as info:
        generator(server.url).attempt(request())
    assert (info.value.reason, info.value.status, info.value.retryable) == ("server_error", 503, True)


def test_connection_refused_is_retried_then_counted():
    gen = OllamaGenerator(host=f"http://127.0.0.1:{free_port()}", model=MODEL, timeout_s=0.5, max_attempts=2,
                          backoff_initial_s=0.01, backoff_max_s=0.02)
    result = gen.generate(request())
    assert_sound(result)
    assert result.error == "connection_error" and result.attempts == 2


def test_fail_after_nth(server):
    gen = generator(server.url, max_attempts=2)
    server.fail_after(2, "server_error")
    results = [gen.generate(request(str(i))) for i in range(4)]
    assert [r.ok for r in results] == [True, True, False, False]
    assert {r.error for r in results[2:]} == {"server_error"}
    assert server.calls == 2 + 2 * 2


def test_backoff_is_exponential_with_jitter(server):
    sleeps: list[float] = []
    gen = generator(server.url, max_attempts=4, backoff_initial_s=0.1, backoff_max_s=10, sleep=sleeps.append)
    server.queue_faults("server_error", "server_error", "server_error")
    assert gen.generate(request()).ok
    assert len(sleeps) == 3
    for n, waited in enumerate(sleeps):
        base = 0.1 * 2**n
        assert base <= waited <= base + 0.1  # jitter adds up to `backoff_initial_s`


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"question": "q", "answer": "a"}', {"question": "q", "answer": "a"}),
        ('```json\n{"question": "q", "answer": "a"}\n```', {"question": "q", "answer": "a"}),
        ('  ```\n{"question": "q", "answer": "a"}```  ', {"question": "q", "answer": "a"}),
        ('{"question": "q"}', None),
        ('{"question": "q", "answer": "   "}', None),
        ('{"question": "q", "answer": 3}', None),
        ('["q", "a"]', None),
        ('{"question": "q", "answer": "a"', None),
        ("", None),
    ],
)
def test_parse_json_output(text, expected):
    assert parse_json_output(text, SCHEMA) == expected


def test_diagnose_names_reasons():
    assert diagnose_json_output("  ", SCHEMA)[1] == "empty_content"
    assert diagnose_json_output("{nope", SCHEMA)[1] == "malformed_json"
    assert diagnose_json_output('{"question": ""}', SCHEMA)[1] == "empty_field"
    assert diagnose_json_output('{"n": 0}', {"properties": {"n": {"type": "integer"}}, "required": ["n"]}) == (
        {"n": 0},
        None,
    )
