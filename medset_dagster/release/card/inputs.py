"""What the dataset card states, as plain data: the inputs every section reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medset_dagster.release.build_manifest import (
    DocumentEntry,
    GenerationInfo,
    RetrievalInfo,
    SourceEntry,
    coerce,
    policy_dict,
)
from medset_dagster.release.licensing import LicenceDecision

README_NAME = "README.md"
SOURCE_MIX_IMAGE = "images/source_mix.png"
LENGTH_HISTOGRAM_IMAGE = "images/length_histogram.png"
ORIGINAL_REPO = "ericrisco/medical-training-dataset"
HUB = "https://huggingface.co"


@dataclass(frozen=True)
class ExcludedSource:
    """A source the card names and the build never used: its registry `source_id`, `hub_repo` (or None),
    and the `reason` the card states (the registry's `excluded_reason`)."""

    source_id: str
    hub_repo: str | None
    reason: str


@dataclass(frozen=True)
class CardInputs:
    """Everything the card states, as plain data (dataclasses or dicts of the same shape)."""

    pretty_name: str
    version: str
    repo_id: str | None  # the Hub dataset repo; None for a local (dry-run) release
    licence: LicenceDecision
    # Per source: repo, config, revision loaded and pinned, licence (the decision's terms), rows, description.
    sources: list[SourceEntry]
    excluded: list[ExcludedSource]
    funnel: list[dict[str, Any]]  # curation.funneltable(...).to_dicts(): source + FUNNEL_STAGES, TOTAL last
    policy: dict[str, Any]  # curation policy: name, seed, min_chars, max_chars (a CurationPolicy is accepted)
    generation: GenerationInfo | None
    retrieval: RetrievalInfo | None
    documents: list[DocumentEntry]
    profile: str  # "sample" or "full"
    # What the quality stages removed (defs.release.quality_facts): near_duplicates, decontamination, phi.
    quality: dict[str, Any] | None = None
    citation_author: str = "medset_dagster contributors"
    # An input, not the clock (the year of the build's git commit): the card must not change by itself.
    citation_year: int | None = None
    code_url: str | None = None  # where the build code can be read (build_manifest.code_url)
    command: str | None = None  # the command that rebuilds the release (build_manifest.reproduce_command)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "sources", [coerce(SourceEntry, s) for s in self.sources])
        set_(self, "excluded", [coerce(ExcludedSource, e) for e in self.excluded])
        set_(self, "documents", [coerce(DocumentEntry, d) for d in self.documents])
        set_(self, "funnel", [dict(row) for row in self.funnel])
        set_(self, "policy", policy_dict(self.policy))
        if self.generation is not None:
            set_(self, "generation", coerce(GenerationInfo, self.generation))
        if self.retrieval is not None:
            set_(self, "retrieval", coerce(RetrievalInfo, self.retrieval))
