"""Every prompt the pipeline sends, in one versioned place.

A template's `version` is a hash of its text, output schema and sampling parameters: a change to
any of them changes the version, which is part of every cache key and of the generating asset's
`code_version`, so exactly that task's items are regenerated and its downstream marked stale.
The wording is ours; the tasks and parameters follow the published build (sources.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from medset_dagster.common.hashing import sha256_json
from medset_dagster.generation.backends import GenerationParams, GenerationRequest

# Sentinel the answer step returns when the retrieved context cannot answer the question.
NULL_ANSWER = "NULL"


def _string_schema(field: str, description: str) -> dict:
    return {
        "type": "object",
        "properties": {field: {"type": "string", "description": description}},
        "required": [field],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt: `name` (the request's task), the `system` and `user` texts (`user` filled by str.format
    from the item's fields), the JSON output field and its description, and the sampling `params`
    (`max_tokens` in tokens). `version`: 12 hex digits over all of them but the name."""

    name: str
    system: str
    user: str  # str.format template over the item's fields
    output_field: str
    output_description: str
    params: GenerationParams

    @property
    def schema(self) -> dict:
        return _string_schema(self.output_field, self.output_description)

    @property
    def version(self) -> str:
        return sha256_json(
            {"system": self.system, "user": self.user, "schema": self.schema, "params": self.params.__dict__}
        )[:12]

    def request(self, *, max_tokens_cap: int | None = None, seed: int | None = None, **fields: str) -> GenerationRequest:
        """The rendered request. `max_tokens_cap` lowers the token budget (a profile setting);
        `seed` varies sampling between items that share a prompt (repeated scenario draws)."""
        params = self.params
        if max_tokens_cap is not None and max_tokens_cap < params.max_tokens:
            params = replace(params, max_tokens=max_tokens_cap)
        if seed is not None:
            params = replace(params, seed=seed)
        return GenerationRequest(
            task=self.name,
            messages=[
                {"role": "system", "content": self.system},
                {"role": "user", "content": self.user.format(**fields)},
            ],
            schema=self.schema,
            params=params,
        )


SCENARIO_QUESTION = PromptTemplate(
    name="scenario_question",
    system=(
        "You are an experienced humanitarian field medic. You write the questions that people in "
        "austere, dangerous places actually ask about first aid."
    ),
    user=(
        "Situation: {situation}\nFirst-aid topic: {topic}\n\n"
        "Write one realistic, concise and practical first-aid question that someone in this situation "
        "might ask. Return only the question."
    ),
    output_field="question",
    output_description="one first-aid question, ending with a question mark",
    params=GenerationParams(temperature=0.7, max_tokens=350),
)

SCENARIO_ANSWER = PromptTemplate(
    name="scenario_answer",
    system=(
        "You answer first-aid questions using only the reference text you are given. If the text "
        f"does not contain what is needed, or the question makes no sense, answer exactly {NULL_ANSWER}."
    ),
    user=(
        "Reference text:\n{context}\n\nQuestion: {question}\n\n"
        "Give clear, practical steps drawn from the reference text, in at most four sentences."
    ),
    output_field="answer",
    output_description=f"the answer grounded in the reference text, or {NULL_ANSWER}",
    params=GenerationParams(temperature=0.2, max_tokens=350),
)

WIKI_QUESTION = PromptTemplate(
    name="wiki_question",
    system="You are a physician preparing study questions from encyclopaedia articles.",
    user=(
        "Article title: {title}\nArticle:\n{article}\n\n"
        "Write one question a doctor might ask that this article alone answers. At most 20 words."
    ),
    output_field="question",
    output_description="one question of at most 20 words",
    params=GenerationParams(temperature=0.4, max_tokens=500),
)

WIKI_ANSWER = PromptTemplate(
    name="wiki_answer",
    system="You answer medical questions concisely, using only the article you are given, with no preamble.",
    user="Article:\n{article}\n\nQuestion: {question}",
    output_field="answer",
    output_description="a concise answer taken from the article",
    params=GenerationParams(temperature=0.4, max_tokens=500),
)

MEDQA_EXPLANATION = PromptTemplate(
    name="medqa_explanation",
    system=(
        "You are a clinical expert who teaches for licensing exams. Explain concisely, without "
        "disclaimers."
    ),
    user=(
        "Question: {question}\nOptions:\n{options}\nCorrect answer: {answer}\n\n"
        "Explain why the correct answer is right and why each other option is wrong."
    ),
    output_field="explanation",
    output_description="why the correct option is right and the others are wrong",
    params=GenerationParams(temperature=0.3, max_tokens=3000),
)

SYMPTOM_DIAGNOSIS = PromptTemplate(
    name="symptom_diagnosis",
    system="You are a doctor speaking to a colleague.",
    user=(
        "A patient says: \"{symptoms}\"\nThe diagnosis is: {diagnosis}\n\n"
        "In one sentence that begins \"Based on these symptoms, the most likely diagnosis is\", state it."
    ),
    output_field="sentence",
    output_description="one sentence stating the most likely diagnosis",
    params=GenerationParams(temperature=0.3, max_tokens=300),
)

TASK_TEMPLATES: dict[str, tuple[PromptTemplate, ...]] = {
    "extreme_firstaid_qa_dataset": (SCENARIO_QUESTION, SCENARIO_ANSWER),
    "wiki_medical_terms": (WIKI_QUESTION, WIKI_ANSWER),
    "medqa": (MEDQA_EXPLANATION,),
    "symptom_to_diagnosis": (SYMPTOM_DIAGNOSIS,),
}


def task_version(source_id: str) -> str:
    """The version of all templates a task uses, for cache keys and code versions."""
    return sha256_json([t.version for t in TASK_TEMPLATES[source_id]])[:12]


# The published build's scenario grid: 9 topics x 23 austere situations.
SCENARIO_TOPICS: tuple[str, ...] = (
    "severe bleeding",
    "open wounds",
    "fractures",
    "serious burns",
    "animal bite",
    "poisonous plant",
    "poisonous mushroom",
    "crush injuries",
    "improvised care without medical supplies",
)
SCENARIO_SITUATIONS: tuple[str, ...] = (
    "a war zone",
    "a refugee camp",
    "after an earthquake",
    "a flood",
    "a remote island",
    "a desert",
    "high in the mountains",
    "the arctic",
    "a wildfire",
    "a collapsed building",
    "a hurricane shelter",
    "a jungle trek",
    "a shipwreck lifeboat",
    "a mine collapse",
    "a blizzard-stranded car",
    "a landslide-hit village",
    "a tsunami-struck coast",
    "a cave rescue",
    "a volcanic eruption zone",
    "a besieged city without power",
    "a drought-stricken rural area",
    "a disease outbreak camp",
    "a nomadic camp far from any clinic",
)
