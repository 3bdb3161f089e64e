"""The one declarative registry of the dataset's sources.

Every fact about a source lives here: Hub id, config, split, pinned revision, licence, the native
columns its mapper needs, how the records are made, and the row count the published build had.
Adding a source takes one entry here and one mapping function in `mappers.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import polars as pl

from medset_dagster.sources import mappers

# What a source contributes: finished records, items for an LLM task, nothing (excluded), or the
# items of an evaluation benchmark that the dataset must not contain (benchmark: decontamination).
SourceRole = Literal["records", "generation_inputs", "rag", "excluded", "benchmark"]
# How a revision is pinned: here, in `revision`; or by trust on first use: the first full-profile
# observation's commit is recorded and used from then on, and a later commit is a new revision.
RevisionPin = Literal["registry", "first_observation"]


@dataclass(frozen=True)
class SourceSpec:
    source_id: str
    role: SourceRole
    description: str
    licence: str
    hub_repo: str | None = None
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    data_files: str | None = None
    loader_options: dict[str, str] = field(default_factory=dict)
    # Native columns the mapper reads; a missing one fails the source's asset naming it.
    required_columns: tuple[str, ...] = ()
    mapper: Callable[[pl.DataFrame], pl.DataFrame] | None = None
    # Exact dedup on this mapped column, within the source (the published per-source rule).
    dedup_on: str | None = None
    published_rows: int | None = None
    excluded_reason: str | None = None
    pinned_by: RevisionPin = "registry"

    @property
    def loads_from_hub(self) -> bool:
        return self.role in ("records", "generation_inputs")


SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        source_id="medical_o1_verifiable_problem",
        role="records",
        description="Evidence-based medical problems with verifiable answers",
        licence="apache-2.0",
        hub_repo="FreedomIntelligence/medical-o1-verifiable-problem",
        revision="46d5175eb74fdef3516d51d52e8c40db04bbdf35",
        required_columns=("Open-ended Verifiable Question", "Ground-True Answer"),
        mapper=mappers.map_medical_o1_verifiable_problem,
        dedup_on="input",
        published_rows=40_316,
    ),
    SourceSpec(
        source_id="medical_o1_reasoning_sft",
        role="records",
        description="Clinical reasoning and diagnostic processes",
        licence="apache-2.0",
        hub_repo="FreedomIntelligence/medical-o1-reasoning-SFT",
        config="en",
        revision="fc2c9e8a37b38f38da6d449564a8c350b244aef4",
        required_columns=("Question", "Complex_CoT", "Response"),
        mapper=mappers.map_medical_o1_reasoning_sft,
        published_rows=19_704,
    ),
    SourceSpec(
        source_id="medqa",
        role="generation_inputs",
        description="General medical Q&A with multiple choice explanations",
        licence="none declared (upstream MedQA: MIT)",
        hub_repo="truehealth/medqa",
        revision="e8fc5634288cca740bdd1c8c973f3f41b0171085",
        required_columns=("question", "options", "answer"),
        mapper=mappers.medqa_generation_inputs,
        dedup_on="input",
        published_rows=10_177,
    ),
    SourceSpec(
        source_id="wiki_medical_terms",
        role="generation_inputs",
        description="Medical terminology definitions and explanations",
        licence="gpl-3.0",
        hub_repo="gamino/wiki_medical_terms",
        revision="7eb458284a4cf38dd8baf9f2697b46682b9e168b",
        required_columns=("page_title", "page_text"),
        mapper=mappers.wiki_generation_inputs,
        dedup_on="context",
        published_rows=9_528,
    ),
    SourceSpec(
        source_id="symptom_to_diagnosis",
        role="generation_inputs",
        description="Symptom analysis and differential diagnosis",
        licence="apache-2.0",
        hub_repo="gretelai/symptom_to_diagnosis",
        revision="722cfb0e11f8ae37339c7f573b5e10429b94df49",
        required_columns=("input_text", "output_text"),
        mapper=mappers.symptom_generation_inputs,
        dedup_on="input",
        published_rows=849,
    ),
    SourceSpec(
        source_id="synthetic_disaster_reports",
        role="records",
        description="Disaster response scenarios and resource planning",
        licence="unknown",
        hub_repo="paulelliotco/synthetic-disaster-reports",
        revision="6b1c51f0d706ab286e2ea8831ae738b03f4eec24",
        required_columns=("disaster_type", "severity_level", "responder_notes", "resource_needs"),
        mapper=mappers.map_synthetic_disaster_reports,
        dedup_on="input",
        published_rows=1_000,
    ),
    SourceSpec(
        source_id="medicationqa",
        role="records",
        description="Medication information and drug interactions",
        licence="none declared",
        hub_repo="truehealth/medicationqa",
        revision="f8ae96155ac234a54aaf2b70ca4e02d22cfe31af",
        required_columns=("Question", "Answer"),
        mapper=mappers.map_medicationqa,
        published_rows=690,
    ),
    SourceSpec(
        source_id="diseases_symptoms",
        role="records",
        description="Disease symptomatology and diagnostic criteria",
        licence="none declared",
        hub_repo="QuyenAnhDE/Diseases_Symptoms",
        revision="d06f2b069db182e43b55f1ca454589f66530eb26",
        required_columns=("Name", "Symptoms", "Treatments"),
        mapper=mappers.map_diseases_symptoms,
        dedup_on="input",
        published_rows=394,
    ),
    SourceSpec(
        source_id="first_aid_dataset",
        role="records",
        description="Basic first aid procedures",
        licence="unknown",
        hub_repo="badri55/First_aid__dataset",
        revision="2e6b21cec15c74df188a04a2a347bbe9fb25fb3e",
        data_files="first_aid1.json",
        loader_options={"field": "intents"},
        required_columns=("patterns", "responses"),
        mapper=mappers.map_first_aid_dataset,
        dedup_on="input",
        published_rows=26,
    ),
    SourceSpec(
        source_id="extreme_firstaid_qa_dataset",
        role="rag",
        description="Emergency first aid procedures using RAG over the emergency-care PDFs",
        licence="derived (PDFs: CC BY-NC-SA 3.0 IGO)",
        dedup_on="input",
        published_rows=1_641,
    ),
    SourceSpec(
        source_id="ii_medical_reasoning_sft",
        role="excluded",
        description="Additional medical reasoning (named on the card)",
        licence="unknown",
        hub_repo="Intelligent-Internet/II-Medical-Reasoning-SFT",
        excluded_reason=(
            "Named on the card but never used by the published build: 2.2 M rows (about 9 GB) "
            "and no script maps it."
        ),
    ),
    SourceSpec(
        source_id="cameo",
        role="excluded",
        description="Named on the card as clinical case studies",
        licence="unknown",
        hub_repo="amu-cai/CAMEO",
        excluded_reason=(
            "Named on the card but never used: it is a speech-emotion audio corpus, "
            "not clinical cases."
        ),
    ),
    # Evaluation benchmarks (issue 10): the test splits medical models are scored on. Their items
    # are indexed for decontamination; no row of the dataset may share a 13-gram with them.
    SourceSpec(
        source_id="medqa_usmle_test",
        role="benchmark",
        description="MedQA (USMLE, 4 options), test split",
        licence="cc-by-4.0",
        hub_repo="GBaker/MedQA-USMLE-4-options",
        split="test",
        revision="0fb93dd23a7339b6dcd27e241cb9b5eca62d4d18",
        required_columns=("question", "options", "answer"),
        mapper=mappers.medqa_usmle_items,
    ),
    SourceSpec(
        source_id="medmcqa_validation",
        role="benchmark",
        description="MedMCQA, validation split (its test split has no answers)",
        licence="apache-2.0",
        hub_repo="openlifescienceai/medmcqa",
        split="validation",
        revision="91c6572c454088bf71b679ad90aa8dffcd0d5868",
        required_columns=("id", "question", "opa", "opb", "opc", "opd", "cop"),
        mapper=mappers.medmcqa_items,
    ),
    SourceSpec(
        source_id="pubmedqa_labeled",
        role="benchmark",
        description="PubMedQA, expert-labelled set (pqa_labeled, 1,000 items)",
        licence="mit",
        hub_repo="qiaojin/PubMedQA",
        config="pqa_labeled",
        split="train",
        pinned_by="first_observation",
        required_columns=("pubid", "question", "long_answer"),
        mapper=mappers.pubmedqa_items,
    ),
    *(
        SourceSpec(
            source_id=f"mmlu_{subject}",
            role="benchmark",
            description=f"MMLU {subject.replace('_', ' ')}, test split",
            licence="mit",
            hub_repo="cais/mmlu",
            config=subject,
            split="test",
            revision="c30699e8356da336a370243923dbaf21066bb9fe",
            required_columns=("question", "choices", "answer"),
            mapper=mappers.mmlu_items,
        )
        for subject in (
            "anatomy",
            "clinical_knowledge",
            "college_biology",
            "college_medicine",
            "medical_genetics",
            "professional_medicine",
        )
    ),
)

SOURCES_BY_ID: dict[str, SourceSpec] = {spec.source_id: spec for spec in SOURCES}
# Roles whose sources contribute rows to the dataset.
DATASET_ROLES: frozenset[str] = frozenset({"records", "generation_inputs", "rag"})
# Every id that may appear in the `source` column of the dataset.
DATASET_SOURCE_IDS: frozenset[str] = frozenset(s.source_id for s in SOURCES if s.role in DATASET_ROLES)


def hub_sources() -> tuple[SourceSpec, ...]:
    """The sources loaded from the Hub (records or generation inputs), in registry order."""
    return tuple(spec for spec in SOURCES if spec.loads_from_hub)


def record_sources() -> tuple[SourceSpec, ...]:
    return tuple(spec for spec in SOURCES if spec.role == "records")


def generation_input_sources() -> tuple[SourceSpec, ...]:
    return tuple(spec for spec in SOURCES if spec.role == "generation_inputs")


def benchmark_sources() -> tuple[SourceSpec, ...]:
    """The evaluation benchmarks indexed for decontamination, in registry order."""
    return tuple(spec for spec in SOURCES if spec.role == "benchmark")


def dataset_source_priority() -> tuple[str, ...]:
    """The dataset's source ids in registry order: the default priority of the near-duplicate keep
    rule (`dataset/near_duplicates.py`), best first."""
    return tuple(spec.source_id for spec in SOURCES if spec.role in DATASET_ROLES)
