"""The whole build generating through a fleet of two LLM servers (one speaking Ollama's API, one
the OpenAI chat-completions API), one of which dies mid-generation."""

from __future__ import annotations

import json
import threading
import time

from dagster import instance_for_test

from medset_dagster.defs.generation import GenerationSettings, GeneratorResource
from medset_dagster_tests.conftest import make_pipeline, metadata_of
from medset_dagster_tests.servers.ollama_server import FakeOllamaServer, model_digest
from medset_dagster_tests.servers.openai_server import FakeOpenAIServer

SMALL = GenerationSettings(scenario_count=6, max_items_per_task=6)
MODEL = "gemma3n:e4b"


def release_bytes(pipeline) -> dict[str, bytes]:
    release = pipeline.release
    return {p.relative_to(release).as_posix(): p.read_bytes() for p in [*release.glob("data/*"), release / "medical_training_dataset.json"]}


def test_a_fleet_build_equals_a_one_server_build_and_survives_losing_a_server(tmp_path):
    for home in ("home-one", "home-fleet"):
        (tmp_path / home).mkdir()
    with FakeOllamaServer([MODEL]) as alone, instance_for_test(temp_dir=str(tmp_path / "home-one")) as instance:
        one = make_pipeline(tmp_path / "one", alone.url, generation_settings=SMALL)
        one.observe_and_build(instance)
        reference = release_bytes(one)

    with FakeOllamaServer([MODEL], latency_s=0.02) as ollama, FakeOpenAIServer([MODEL], latency_s=0.02, max_concurrent=2) as openai:
        fleet = json.dumps([
            {"name": "ollama-1", "kind": "ollama", "url": ollama.url, "model": MODEL, "slots": 2},
            # The same weights served by an OpenAI-compatible server: the operator states the digest,
            # so both servers' answers share one cache.
            {"name": "openai-1", "kind": "openai", "url": f"{openai.url}/v1", "model": MODEL, "slots": 2, "digest": model_digest(MODEL)},
        ])
        pipeline = make_pipeline(
            tmp_path / "fleet",
            ollama.url,
            generation_settings=SMALL,
            generator_backend=GeneratorResource(backend="fleet", fleet_json=fleet, timeout_s=10, max_attempts=2),
        )

        def lose_openai() -> None:
            deadline = time.monotonic() + 120
            while openai.calls < 8 and time.monotonic() < deadline:
                time.sleep(0.01)
            openai.kill()

        killer = threading.Thread(target=lose_openai)
        killer.start()
        with instance_for_test(temp_dir=str(tmp_path / "home-fleet")) as instance:
            pipeline.observe_and_build(instance)
            shard = metadata_of(instance, "medqa_explanations", "shard-0")
            endpoints = shard["endpoints"]
        killer.join()
        assert ollama.calls > 0 and openai.calls >= 8, "both servers received work"
    assert set(endpoints) == {"ollama-1", "openai-1"}
    assert {"calls", "prompt_tokens", "completion_tokens"} <= set(endpoints["ollama-1"])
    # No item lost: the release is the one-server release, byte for byte.
    assert release_bytes(pipeline) == reference
