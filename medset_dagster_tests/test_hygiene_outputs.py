"""LLM output validation (issue 9): the cases' raw model outputs through the real tasks, and more
inputs of each kind through `validate_outputs`. A scripted generator returns the raw
`message.content` strings; the runner, cache, JSON parsing and validation are the real ones."""

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from medset_dagster.generation import GenerationCache
from medset_dagster.generation.backends import GenerationRequest, GenerationResult, diagnose_json_output
from medset_dagster.generation.tasks import TaskSettings, emergency_scenarios, explain_medqa
from medset_dagster.generation.validation import OutputRules, validate_outputs
from medset_dagster.retrieval.embedders import LocalTfidfEmbedder
from medset_dagster.retrieval.vector_index import RetrievedChunk, Retriever, build_index

CASES = Path(__file__).parent / "cases" / "text_hygiene"


def case(folder: str) -> list[dict]:
    return json.loads((CASES / folder / "input_model_outputs.json").read_text())


class ScriptedGenerator:
    """Answers each request with `script(request)` as the raw message content."""

    backend, model, max_in_flight, digest = "scripted", "scripted", 2, "scripted"

    def __init__(self, script):
        self.script = script
        self.lock = threading.Lock()

    def check_ready(self) -> None:
        pass

    def generate(self, request: GenerationRequest) -> GenerationResult:
        raw = self.script(request)
        parsed, error = diagnose_json_output(raw, request.schema)
        return GenerationResult(raw, parsed, "stop", 1, 1, 0.0, 1, error)


def user_message(request: GenerationRequest) -> str:
    return request.messages[-1]["content"]


@pytest.fixture
def cache(tmp_path):
    with GenerationCache(tmp_path / "generations.sqlite") as opened:
        yield opened


def medqa_items(references: list[tuple[str, str]]) -> pl.DataFrame:
    """One MedQA item per (options, correct option), numbered questions."""
    return pl.DataFrame(
        {
            "item_id": [f"q{i}" for i in range(len(references))],
            "input": [f"Question {i}: which is the best choice?" for i in range(len(references))],
            "context": [options for options, _ in references],
            "reference": [correct for _, correct in references],
        }
    )


VITAMINS = "A) Thiamine\nB) Niacin\nC) Folate\nD) Vitamin B12"


def run_medqa(raws: list[str], references: list[tuple[str, str]], cache):
    items = medqa_items(references)
    by_question = {f"Question {i}:": raw for i, raw in enumerate(raws)}

    def script(request):
        return next(raw for key, raw in by_question.items() if key in user_message(request))

    return explain_medqa(items, ScriptedGenerator(script), cache, TaskSettings())


# --- the cases through the tasks ------------------------------------------------------------------


def test_case_06_chat_tokens_and_think_blocks_removed_and_counted(cache):
    raws = [entry["raw"] for entry in case("06_llm_chat_tokens_and_think_blocks_kept")]
    outcome = run_medqa(raws, [(VITAMINS, "A) Thiamine")] * 2, cache)
    assert outcome.records["output"].to_list() == [
        "Thiamine (A) is correct: chronic alcohol use depletes thiamine and the triad of confusion, ataxia and "
        "nystagmus is Wernicke encephalopathy. Niacin, folate and B12 deficiency do not cause this acute triad.",
        "Thiamine (A) is correct because Wernicke encephalopathy follows thiamine depletion in chronic alcohol use; "
        "the other vitamins cause pellagra, anaemia or neuropathy instead.",
    ]
    assert outcome.dropped == {}
    assert outcome.repaired == {"chat_markup_removed": 1, "reasoning_removed": 1}


def test_case_07_only_real_openers_are_removed(cache):
    entries = case("07_llm_preamble_stripper_eats_real_words")
    raws = [entry["raw"] for entry in entries]
    saphenous = ("A) Lifelong warfarin\nB) Compression and NSAIDs\nC) Vein stripping\nD) Thrombolysis", "B) Compression and NSAIDs")
    burn = ("A) Cool running water\nB) Silver sulfadiazine\nC) Skin graft\nD) Antibiotics", "A) Cool running water")
    outcome = run_medqa(raws, [(VITAMINS, "A) Thiamine")] * 3 + [saphenous, burn], cache)
    explanations = [json.loads(raw)["explanation"] for raw in raws]
    assert outcome.records["output"].to_list() == [
        explanations[0],  # "Great care is needed here: ..." unchanged
        "thiamine (A) is correct because this is Wernicke encephalopathy; niacin, folate and B12 deficiencies present differently.",
        "Thiamine (A) is correct because this is Wernicke encephalopathy; niacin, folate and B12 deficiencies present differently.",
        explanations[3],  # "Great saphenous vein ..." unchanged
        explanations[4],  # "Of course not every burn ..." unchanged
    ]
    assert outcome.repaired == {"preamble_removed": 2}


def test_case_08_repetition_loop_dropped(cache):
    raws = [entry["raw"] for entry in case("08_llm_repetition_loop_kept")]
    outcome = run_medqa(raws, [(VITAMINS, "A) Thiamine")], cache)
    assert outcome.records.height == 0
    assert outcome.dropped == {"repetitive": 1}


@dataclass
class FixedRetriever:
    """Every question gets the same chunks (the case's snake-bite chunk)."""

    chunks: list[RetrievedChunk]

    def retrieve_many(self, queries, k=5, *, min_score=None):
        return [[c for c in self.chunks[:k] if min_score is None or c.score >= min_score] for _ in queries]


SNAKE = RetrievedChunk("c1", 0.71, "doc", 3, 3, "Snake bite: keep the person still and calm, remove rings, immobilise the limb.")


def run_scenarios(entries: list[dict], cache, retriever, **options):
    scenarios = pl.DataFrame(
        {"item_id": [f"s{i}" for i in range(len(entries))], "draw": list(range(len(entries))),
         "topic": [f"topic {i}" for i in range(len(entries))], "situation": ["a remote place"] * len(entries)}
    )
    questions = {f"topic {i}": entry["question"] for i, entry in enumerate(entries)}
    answers = {entry["question"]: entry["answer"] for entry in entries}

    def script(request):
        message = user_message(request)
        if request.task == "scenario_question":
            return json.dumps({"question": next(q for key, q in questions.items() if f"topic: {key}\n" in message)})
        return json.dumps({"answer": next(a for q, a in answers.items() if f"Question: {q}" in message)})

    return emergency_scenarios(scenarios, ScriptedGenerator(script), cache, retriever, TaskSettings(), **options)


def test_case_10_every_non_answer_is_insufficient_context(cache):
    entries = case("10_rag_prose_non_answer_kept")
    outcome = run_scenarios(entries, cache, FixedRetriever([SNAKE]))
    assert outcome.records.select("input", "output").rows() == [(entries[4]["question"], entries[4]["answer"])]
    assert outcome.records["context"].to_list() == [SNAKE.text]
    assert outcome.dropped == {"insufficient_context": 4}


def test_a_question_whose_best_chunk_is_below_the_minimum_similarity_gets_no_answer(cache):
    entries = case("10_rag_prose_non_answer_kept")[4:]
    weak = RetrievedChunk("c2", 0.12, "doc", 1, 1, "Unrelated text about radio batteries.")
    outcome = run_scenarios(entries, cache, FixedRetriever([weak]))
    assert outcome.records.height == 0 and outcome.dropped == {"no_relevant_context": 1}
    relaxed = run_scenarios(entries, cache, FixedRetriever([weak]), min_similarity=0.1)
    assert relaxed.records["context"].to_list() == [weak.text]


def test_a_query_that_embeds_to_a_zero_vector_retrieves_nothing():
    texts = ["Apply firm pressure to a bleeding wound.", "Cool a burn under running water.", "Splint a broken arm."]
    embedder = LocalTfidfEmbedder(dimension=2).fit(texts)
    retriever = Retriever(build_index(embedder.embed(texts, "search_document"), ["a", "b", "c"]), pl.DataFrame(
        {"chunk_id": ["a", "b", "c"], "doc_id": "d", "page_start": 1, "page_end": 1, "text": texts}), embedder)
    assert retriever.retrieve_many(["What is the capital of France?", "How do I cool a burn?"], k=2)[0] == []
    assert retriever.retrieve("How do I cool a burn?", k=1)[0].chunk_id == "b"
    assert [hit.chunk_id for hit in retriever.retrieve("How do I cool a burn?", k=3, min_score=0.99)] == ["b"]


# --- more inputs of each kind, through validate_outputs ----------------------------------------------


def validated(outputs: list[str | None], rules: OutputRules = OutputRules(), **columns) -> list[tuple]:
    frame = pl.DataFrame({"output": outputs, **columns}, schema_overrides={"output": pl.String})
    return validate_outputs(frame, rules).select("output", "drop_reason").rows()


def test_chat_markup_of_other_templates_and_unclosed_reasoning():
    rows = validated([
        "<start_of_turn>model\nKeep the wound clean and covered.<end_of_turn>\n<start_of_turn>user\nThanks",
        "Cool the burn under running water for twenty minutes.<|im_end|>",
        "Raise the legs if the person feels faint.<eos>",
        "<|start_header_id|>assistant<|end_header_id|>Check breathing before anything else.<|eot_id|>",
        "The person needs fluids</think>Give small sips of water often.",
        "Give small sips of water often. <think>Maybe I should also mention salts, but",
        "<think>Let me think about the bite. It could be venomous and",
        "<thinking>Short.</thinking>",
    ])
    assert rows == [
        ("Keep the wound clean and covered.", None),
        ("Cool the burn under running water for twenty minutes.", None),
        ("Raise the legs if the person feels faint.", None),
        ("Check breathing before anything else.", None),
        ("Give small sips of water often.", None),
        ("Give small sips of water often.", None),
        (None, "reasoning_only"),
        (None, "reasoning_only"),
    ]


def test_openers_removed_as_a_whole_and_first_words_kept():
    rows = validated([
        "Certainly, here's the answer: press on the wound with a clean cloth.",
        "Sure! Press on the wound with a clean cloth.",
        "Here is a concise explanation of the choice: heparin (C) prevents clot growth.",
        "Great vessels can bleed heavily, so press hard and call for help.",
        "Of course, not every cut needs stitches; clean it and cover it.",
        "Here are the main signs of shock: pale skin, a fast pulse and confusion.",
        "Okay so the splint goes on before moving the person.",
    ])
    assert [output for output, _ in rows] == [
        "press on the wound with a clean cloth.",
        "Press on the wound with a clean cloth.",
        "heparin (C) prevents clot growth.",
        "Great vessels can bleed heavily, so press hard and call for help.",
        "Of course, not every cut needs stitches; clean it and cover it.",
        "Here are the main signs of shock: pale skin, a fast pulse and confusion.",
        "Okay so the splint goes on before moving the person.",
    ]


def test_repetition_loops_of_a_phrase_or_a_sentence_dropped_normal_prose_kept():
    rows = validated([
        "Apply pressure to the wound, " * 10 + "then call for help.",
        "very " * 30 + "important.",
        "Cool the burn. " * 4,
        "Thiamine (A) is correct because chronic alcohol use depletes thiamine; niacin (B) is wrong because "
        "pellagra differs, folate (C) is wrong because it causes anaemia, and B12 (D) is wrong because it causes neuropathy.",
        "Keep the person warm. Keep the person warm.",  # half repeated: not "most of the text"
    ])
    assert [reason for _, reason in rows] == ["repetitive", "repetitive", "repetitive", None, None]


def test_answers_not_in_english_dropped_english_jargon_kept():
    rows = validated([
        "Gardez la personne immobile et calme, retirez les bagues et appelez les secours rapidement.",
        "Mantenga a la persona quieta y tranquila, quite los anillos y pida ayuda rápidamente.",
        "Halten Sie die Person ruhig, entfernen Sie Ringe und rufen Sie schnell Hilfe.",
        "保持患者安静，取下戒指，并尽快寻求帮助。",
        "Acute respiratory acidosis with hypercapnia",
        "Superficial thrombophlebitis of the great saphenous vein.",
    ])
    assert [reason for _, reason in rows] == ["not_english"] * 4 + [None, None]


def test_null_sentinel_anywhere_and_prose_non_answers():
    rules = OutputRules(null_sentinel=True, grounded=True)
    rows = validated([
        "Null.",
        "(NULL)",
        "I am not sure. null",
        "I cannot answer this question based on the provided context.",
        "There is no information about jellyfish stings in the text.",
        "Frostbite is not mentioned in the reference text, so no steps can be given.",
        "Cool the sting with seawater and remove tentacles with a card.",
        "Nullify nothing: press firmly on the wound.",
    ], rules)
    assert [reason for _, reason in rows] == ["insufficient_context"] * 6 + [None, None]


def test_medqa_explanations_must_name_the_correct_option_and_no_other():
    outputs = [
        "Heparin (C) is correct because it stops the clot from growing.",
        "The correct answer is C: heparin stops the clot from growing.",
        "Heparin is the first treatment because it stops the clot from growing.",
        "Option B is correct: aspirin is enough for this patient.",
        "Warfarin is correct here, while heparin (C) is only a bridge.",
        "Anticoagulation stops the clot from growing in this patient.",
    ]
    options = "A) Aspirin\nB) Aspirin and clopidogrel\nC) Heparin\nD) Warfarin"
    rows = validated(outputs, OutputRules(reference="medqa_option"), reference=["C) Heparin"] * 6, options=[options] * 6)
    assert [reason for _, reason in rows] == [None, None, None, "contradicts_reference", "contradicts_reference", "contradicts_reference"]


def test_diagnosis_sentences_must_name_the_label():
    rows = validated(
        ["Based on these symptoms, the most likely diagnosis is chickenpox.",
         "Based on these symptoms, the most likely diagnosis is Urinary Tract Infection.",
         "Based on these symptoms, the most likely diagnosis is measles."],
        OutputRules(reference="label"),
        reference=["chicken pox", "urinary tract infection", "chicken pox"],
    )
    assert [reason for _, reason in rows] == [None, None, "contradicts_reference"]
