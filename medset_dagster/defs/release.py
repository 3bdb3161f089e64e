"""Release: the dataset card and build manifest, then the publish to the Hub (group `release`)."""

import inspect
import json
from pathlib import Path
from typing import Optional

import polars as pl
from dagster import (
    AssetExecutionContext,
    ConfigurableResource,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from medset_dagster.common.hashing import sha256_text
from medset_dagster.release import build_manifest as build_manifest_module
from medset_dagster.release import dataset_card as dataset_card_module
from medset_dagster.release import hub_release as hub_publish
from medset_dagster.release import licensing
from medset_dagster.dataset.curation import CurationPolicy
from medset_dagster.defs.dataset import release_files
from medset_dagster.defs.metadata import files_table
from medset_dagster.defs.storage import PipelineStorage
from medset_dagster.release.build_manifest import (
    DocumentEntry,
    GenerationInfo,
    RetrievalInfo,
    build_manifest,
    generation_task,
    source_entries,
    write_manifest,
)
from medset_dagster.release.dataset_card import (
    CardInputs,
    excluded_sources,
    render_card,
)
from medset_dagster.release.hub_release import HubPublishError, publish_release
from medset_dagster.release.licensing import (
    LicenceConflictError,
    derive_release_licence,
)
from medset_dagster.sources.registry import SOURCES_BY_ID

RAG_SOURCE = "extreme_firstaid_qa_dataset"


class ReleaseSettings(ConfigurableResource):
    """Where and under which licence to publish. Without `repo_id` the publish is a dry run."""

    repo_id: Optional[str] = None
    token: Optional[str] = None
    endpoint: Optional[str] = None
    private: bool = True
    licence: Optional[str] = None  # None: derived from the sources
    acknowledge_licence_conflict: bool = False
    pretty_name: str = "Medical Training Dataset (medset_dagster rebuild)"
    profile: str = "sample"


def _json(path: Path, default=None):
    return json.loads(path.read_text()) if path.exists() else default


def _generation_info(storage: PipelineStorage) -> Optional[GenerationInfo]:
    runs = [_json(p) for p in sorted(storage.root.glob("synthetic/*/generation.json"))]
    runs = [r for r in runs if r]
    if not runs:
        return None
    return GenerationInfo(
        backend=runs[0]["backend"],
        model=runs[0]["model"],
        digest=runs[0]["digest"],
        tasks=[
            generation_task(r["source_id"], r["items_requested"], r["items_kept"], max_tokens_cap=r.get("max_tokens_cap"))
            for r in runs
        ],
    )


def _retrieval_info(storage: PipelineStorage) -> Optional[RetrievalInfo]:
    chunking = _json(storage.path("retrieval", "chunking.json"))
    index = _json(storage.path("retrieval", "index", "index.json"))
    if not chunking or not index:
        return None
    return RetrievalInfo(
        chunk_size=chunking["chunk_size"],
        chunk_overlap=chunking["chunk_overlap"],
        chunk_min_chars=chunking["min_chars"],
        embedder=index["embedder"],
        index_kind=index["kind"],
        chunks=index["count"],
    )


@asset(
    deps=[release_files],
    group_name="release",
    kinds={"markdown"},
    description="The dataset card (README.md with charts) and build.json, after a licence check over the sources included.",
    code_version=sha256_text("".join(inspect.getsource(m) for m in (dataset_card_module, build_manifest_module, licensing)))[:16],
)
def dataset_card(context: AssetExecutionContext, release_settings: ReleaseSettings, storage: PipelineStorage) -> MaterializeResult:
    dataset = pl.read_parquet(storage.curated_path)
    report = _json(storage.curation_report_path)
    counts = {source: rows for source, rows in report["per_source_counts"].items() if rows}
    documents = _json(storage.path("retrieval", "documents.json"), [])
    licences = {source: SOURCES_BY_ID[source].licence for source in counts}
    derived_from = {}
    if RAG_SOURCE in counts and documents:
        # The RAG answers carry the terms of the documents actually retrieved from.
        licences.update({d["doc_id"]: d["licence"] for d in documents})
        derived_from[RAG_SOURCE] = [d["doc_id"] for d in documents]
    try:
        decision = derive_release_licence(
            licences,
            release_settings.licence,
            release_settings.acknowledge_licence_conflict,
            derived_from=derived_from,
        )
    except LicenceConflictError as error:
        raise Failure(description=f"licence check failed: {error}", allow_retries=False) from error
    revisions = {
        source: (_json(storage.records_stats_path(source), {}) or {}).get("revision") or SOURCES_BY_ID[source].revision
        for source in counts
        if SOURCES_BY_ID[source].hub_repo
    }
    observed = {
        source: (_json(storage.path("observations", f"{source}.json"), {}) or {}).get("hub_head")
        for source in counts
    }
    sources = source_entries(counts, revisions_loaded=revisions, revisions_observed={k: v for k, v in observed.items() if v})
    document_rows = [
        DocumentEntry(doc_id=d["doc_id"], filename=d["filename"], sha256=d["sha256"], licence=d["licence"], title=d["title"])
        for d in documents
    ]
    generation = _generation_info(storage)
    retrieval = _retrieval_info(storage)
    policy = CurationPolicy(**report["policy"])
    card = CardInputs(
        pretty_name=release_settings.pretty_name,
        version="1",
        repo_id=release_settings.repo_id,
        licence=decision,
        sources=sources,
        excluded=excluded_sources(),
        funnel=report["funnel"],
        policy=policy,
        generation=generation,
        retrieval=retrieval,
        documents=document_rows,
        profile=release_settings.profile,
    )
    written = render_card(card, dataset, storage.release_dir)
    manifest = build_manifest(
        release_dir=storage.release_dir,
        version="1",
        licence=decision,
        sources=sources,
        curation=policy,
        documents=document_rows,
        generation=generation,
        retrieval=retrieval,
        rows=dataset.height,
        dagster_run_id=context.run_id,
    )
    write_manifest(manifest, storage.release_dir)
    return MaterializeResult(
        metadata={
            "licence": decision.licence,
            "licence_notes": MetadataValue.md("\n".join(f"- {n}" for n in decision.notes) or "_none_"),
            "content_hash": manifest.content_hash,
            "files": MetadataValue.json(sorted(manifest.files)),
            "card": MetadataValue.path(str(written[0])),
        },
        data_version=DataVersion(manifest.content_hash),
    )


@asset(
    deps=[dataset_card],
    group_name="release",
    kinds={"huggingface"},
    description="One atomic commit of the release to the Hub repo in MEDSET_HUB_REPO, tagged; a dry run without one.",
    code_version=sha256_text(inspect.getsource(hub_publish))[:16],
)
def hub_release(context: AssetExecutionContext, release_settings: ReleaseSettings, storage: PipelineStorage) -> MaterializeResult:
    manifest = _json(storage.release_dir / "build.json")
    tag = f"release-{manifest['content_hash'][:12]}"
    try:
        outcome = publish_release(
            storage.release_dir,
            repo_id=release_settings.repo_id,
            token=release_settings.token,
            endpoint=release_settings.endpoint,
            private=release_settings.private,
            version_tag=tag,
            log=context.log.info,
        )
    except HubPublishError as error:
        raise Failure(description=str(error), allow_retries=getattr(error, "transient", False)) from error
    metadata = {
        "status": outcome.status,
        "repo_id": outcome.repo_id or "(dry run: set MEDSET_HUB_REPO to publish)",
        "tag": outcome.tag or tag,
        "content_hash": outcome.content_hash,
        "files": files_table((f.path, f.size, f.sha256) for f in outcome.files),
        "release_dir": MetadataValue.path(str(storage.release_dir)),
    }
    if outcome.commit_url:
        metadata["commit"] = MetadataValue.url(outcome.commit_url)
    if outcome.status == "unchanged":
        context.log.info("The Hub already holds this release (same content hash): no commit made.")
    return MaterializeResult(metadata=metadata, data_version=DataVersion(outcome.content_hash))


RELEASE_ASSETS = [dataset_card, hub_release]
