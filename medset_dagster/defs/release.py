"""Release (group `release`): the release folder, its card and manifest, and the publish to the Hub.

`release_files` writes the data files into a new folder `releases/<run id>/`; `dataset_card`
adds the card, charts and `build.json` to it and only then switches the `release` pointer to it,
so a reader sees the old release or the new one, never a mix.

`hub_release` is not materialized by Dagster: it is reported by the `publish_hub_release` job,
which refuses a release that is not the product of the current upstream materializations with
passing blocking checks, and verifies every file against `build.json` before uploading. Bulk
"Materialize all" / "Materialize unsynced" in the UI therefore never publish.
"""


from typing import Callable, Optional

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    Config,
    ConfigurableResource,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    asset,
    job,
    op,
)

from medset_dagster.common.files import NoSpaceLeftError
from medset_dagster.common.hub_client import HubTimeouts
from medset_dagster.dataset.curation import CurationPolicy
from medset_dagster.defs.automation import REBUILD_WHEN_STALE
from medset_dagster.defs.dataset import (
    DECONTAMINATED,
    NEAR_DEDUPLICATED,
    PHI_SCRUBBED,
    RELEASE_DATASET,
)
from medset_dagster.defs.metadata import files_table, latest_metadata
from medset_dagster.defs.resources import PipelineStorage
from medset_dagster.defs.staleness import release_blockers
from medset_dagster.defs.versions import code_version
from medset_dagster.release import build_manifest, card, export, licensing
from medset_dagster.release.build_manifest import (
    DocumentEntry,
    GenerationInfo,
    RetrievalInfo,
    generation_task,
    source_entries,
    write_manifest,
)
from medset_dagster.release.card import CardInputs, ExcludedSource, render_card
from medset_dagster.release.folders import (
    new_release_folder,
    prune_releases,
    publish_current,
)
from medset_dagster.release.hub_release import (
    HubPublishError,
    ReleaseFolderError,
    publish_release,
)
from medset_dagster.release.licensing import (
    LicenceConflictError,
    derive_release_licence,
)
from medset_dagster.sources.registry import dataset_sources, excluded_sources

FILES_SCHEMA = {"release_dir": pl.String, "path": pl.String, "bytes": pl.Int64, "sha256": pl.String}
HUB_RELEASE = AssetKey("hub_release")


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
    # Every Hub request waits at most `timeout_s` for an answer; a publish starts no new attempt
    # after `deadline_s`: a Hub that never answers fails the publish after a bounded wait.
    timeout_s: float = 60.0
    deadline_s: float = 600.0


class ReleaseConfig(Config):
    """`max_rows_per_shard`: rows per Parquet shard of the release (ceil(rows / it) shards, at least one)."""

    max_rows_per_shard: int = 50_000


@asset(
    group_name="release",
    ins={"dataset": AssetIn(key=RELEASE_DATASET)},
    kinds={"parquet", "json"},
    description="The release's data: `data/train-*.parquet` shards in the Hub layout and the JSON array, in a new release folder.",
    code_version=code_version(export),
    automation_condition=REBUILD_WHEN_STALE,
)
def release_files(context: AssetExecutionContext, config: ReleaseConfig, storage: PipelineStorage, dataset: pl.LazyFrame):
    """Reads the release dataset (`phi_scrubbed_dataset`) and writes its Parquet shards and JSON array into
    a new folder `releases/<run id>/`; the value is the file listing (FILES_SCHEMA), one row per file."""
    folder = new_release_folder(storage.releases_dir, context.run_id)
    try:
        files = export.write_release_data(dataset, folder, config.max_rows_per_shard)
    except NoSpaceLeftError as error:
        raise Failure(str(error), allow_retries=False) from error
    listing = pl.DataFrame([(str(folder), f.path, f.bytes, f.sha256) for f in files], schema=FILES_SCHEMA, orient="row")
    per_source = dict(dataset.group_by("source").len().sort("source").collect().iter_rows())
    return MaterializeResult(
        value=listing,
        metadata={
            "dagster/row_count": sum(per_source.values()),
            "files": files_table((f.path, f.bytes, f.sha256) for f in files),
            "release_dir": MetadataValue.path(str(folder)),
            "shards": len(files) - 1,
            # The counts of the last release that passed its checks: what the steady-count gate compares with.
            "per_source_counts": MetadataValue.json(per_source),
        },
        data_version=DataVersion(hub_release_hash(files)),
    )


def hub_release_hash(files) -> str:
    """The data version of `release_files`: 24 hex digits of the SHA-256 of the sorted (path, sha256) pairs
    of `files` (`ReleaseFile`s), so the same bytes give the same version."""
    from medset_dagster.common.hashing import sha256_json

    return sha256_json(sorted((f.path, f.sha256) for f in files))[:24]


def _generation_info(facts: dict, funnel: dict) -> GenerationInfo | None:
    generated = [(source, f) for source, f in facts.items() if f.get("task")]
    if not generated:
        return None
    first = generated[0][1]
    return GenerationInfo(
        backend=first.get("backend", ""),
        model=first.get("model", ""),
        digest=first.get("model_digest") or None,
        tasks=[
            generation_task(
                source,
                funnel.get(source, {}).get("after_sample_cap", 0),
                funnel.get(source, {}).get("after_generation", 0),
                max_tokens_cap=f.get("max_tokens_cap") or None,
            )
            for source, f in generated
        ],
    )


@asset(
    group_name="release",
    ins={"dataset": AssetIn(key=RELEASE_DATASET), "release_files": AssetIn(), "emergency_care_documents": AssetIn()},
    deps=["pdf_chunks", "faiss_index"],
    kinds={"markdown"},
    description="The dataset card (README.md with charts) and build.json, after a licence check; then the release folder becomes current.",
    code_version=code_version(card.sections, card.processing, card.header, card.charts, build_manifest, licensing),
    automation_condition=REBUILD_WHEN_STALE,
)
def dataset_card(
    context: AssetExecutionContext,
    release_settings: ReleaseSettings,
    storage: PipelineStorage,
    dataset: pl.DataFrame,
    release_files: pl.DataFrame,
    emergency_care_documents: pl.DataFrame,
) -> MaterializeResult:
    """Reads the release dataset, the folder `release_files` wrote, the documents and upstream metadata;
    writes README.md, its charts and build.json there, then makes the folder the current release.
    A licence conflict that is not acknowledged fails the asset (no retry)."""
    folder = release_files["release_dir"][0]
    curated = latest_metadata(context.instance, "curated_dataset")
    released = latest_metadata(context.instance, RELEASE_DATASET)
    counts = {source: rows for source, rows in released["per_source_counts"].items() if rows}
    facts = curated.get("source_facts", {})
    funnel = {row["source"]: row for row in released["funnel_json"]}
    specs = dataset_sources()
    rag = [spec.source_id for spec in specs if spec.role == "rag"]
    licences = {spec.source_id: spec.licence for spec in sorted(specs, key=lambda s: s.source_id) if spec.source_id in counts}
    derived_from = {}
    documents = emergency_care_documents.to_dicts()
    for source in rag:
        if source in counts and documents:
            # The RAG answers carry the terms of the documents actually retrieved from.
            licences.update({d["doc_id"]: d["licence"] for d in documents})
            derived_from[source] = [d["doc_id"] for d in documents]
    try:
        decision = derive_release_licence(
            licences, release_settings.licence, release_settings.acknowledge_licence_conflict, derived_from=derived_from
        )
    except LicenceConflictError as error:
        raise Failure(description=f"licence check failed: {error}", allow_retries=False) from error
    sources = source_entries(
        specs,
        counts,
        # What each load recorded (generated sources: their generation inputs' load), never the pin.
        revisions_loaded={s: f["revision_loaded"] for s, f in facts.items() if f.get("revision_loaded")},
        hub_heads={s: f["hub_head"] for s, f in facts.items() if f.get("hub_head")},
        # Every section states the decision's terms: a generated source carries its documents' licences.
        licences={s: terms.licence for s, terms in decision.sources.items()},
    )
    document_rows = [
        DocumentEntry(doc_id=d["doc_id"], filename=d["filename"], sha256=d["sha256"], licence=d["licence"], title=d["title"])
        for d in documents
    ]
    chunks = latest_metadata(context.instance, "pdf_chunks")
    index = latest_metadata(context.instance, "faiss_index")
    top_k = next((f.get("retrieval_top_k") for s, f in facts.items() if s in rag and f.get("retrieval_top_k")), None)
    retrieval = (
        RetrievalInfo(
            chunk_size=chunks["chunk_size"],
            chunk_overlap=chunks["chunk_overlap"],
            chunk_min_chars=chunks["chunk_min_chars"],
            embedder=index["embedder"],
            index_kind=index["kind"],
            top_k=top_k or 0,
            chunks=index["vectors"],
            min_similarity=next((f.get("retrieval_min_similarity") for s, f in facts.items() if s in rag and f.get("retrieval_min_similarity") is not None), None),
        )
        if chunks and index
        else None
    )
    policy = CurationPolicy(**curated["policy_settings"])
    generation = _generation_info(facts, funnel)
    commit = build_manifest.git_commit()
    command = build_manifest.reproduce_command(
        release_settings.profile,
        policy.name,
        build_manifest.reproduce_settings(
            release_settings.profile,
            backend=generation.backend if generation else None,
            model=generation.model if generation else None,
            scenarios=next((int(funnel[s].get("rows_read", 0)) for s in rag if s in funnel), None),
            licence=release_settings.licence,
            acknowledge_licence_conflict=release_settings.acknowledge_licence_conflict,
        ),
    )
    code_url = build_manifest.code_url()
    inputs = CardInputs(
        pretty_name=release_settings.pretty_name,
        version="1",
        repo_id=release_settings.repo_id,
        licence=decision,
        sources=sources,
        excluded=[ExcludedSource(s.source_id, s.hub_repo, s.excluded_reason or "") for s in excluded_sources()],
        funnel=released["funnel_json"],
        quality=quality_facts(context.instance),
        policy=policy,
        generation=generation,
        retrieval=retrieval,
        documents=document_rows,
        profile=release_settings.profile,
        citation_year=build_manifest.commit_year(commit=commit) if commit != build_manifest.UNKNOWN_COMMIT else None,
        code_url=code_url,
        command=command,
    )
    try:
        written = render_card(inputs, dataset.drop("row_id", strict=False), folder)
        manifest = build_manifest.build_manifest(
            release_dir=folder,
            version="1",
            licence=decision,
            sources=sources,
            curation=policy,
            documents=document_rows,
            generation=generation,
            retrieval=retrieval,
            rows=dataset.height,
            quality=inputs.quality,
            dagster_run_id=context.run_id,
            commit=commit,
            command=command,
            code_url=code_url,
        )
        write_manifest(manifest, folder)
    except NoSpaceLeftError as error:
        raise Failure(str(error), allow_retries=False) from error
    # The folder is complete: make it the current release, atomically.
    publish_current(storage.release_dir, folder)
    pruned = prune_releases(storage.releases_dir, storage.release_dir)
    if pruned:
        context.log.info(f"removed {len(pruned)} old release folders: {', '.join(p.name for p in pruned)}")
    return MaterializeResult(
        metadata={
            "licence": decision.licence,
            "licence_notes": MetadataValue.md("\n".join(f"- {n}" for n in decision.notes) or "_none_"),
            "content_hash": manifest.content_hash,
            "files": MetadataValue.json(sorted(manifest.files)),
            "card": MetadataValue.path(str(written[0])),
            "release_dir": MetadataValue.path(str(folder)),
        },
        data_version=DataVersion(manifest.content_hash),
    )


def quality_facts(instance) -> dict:
    """What the quality stages removed, as the card and build.json state it: near-duplicates,
    decontamination (source x benchmark), PHI findings (source x kind, never the text)."""
    near = latest_metadata(instance, NEAR_DEDUPLICATED).get("stats", {})
    decon = latest_metadata(instance, DECONTAMINATED).get("stats", {})
    found = latest_metadata(instance, PHI_SCRUBBED).get("stats", {})
    return {
        "near_duplicates": {k: near.get(k) for k in ("removed", "clusters", "removed_by_source", "largest_clusters", "params")},
        "decontamination": {k: decon.get(k) for k in ("removed", "removed_by_source", "removed_by_source_benchmark", "index", "params")},
        "phi": {k: found.get(k) for k in ("policy", "findings", "rows_with_findings", "rows_redacted", "rows_dropped", "findings_by_source_kind")},
    }


HUB_RELEASE_SPEC = AssetSpec(
    key=HUB_RELEASE,
    deps=[dataset_card],
    group_name="release",
    kinds={"huggingface"},
    description=(
        "The release on the Hub repo in MEDSET_HUB_REPO: one atomic commit, tagged. Reported by the "
        "`publish_hub_release` job (`make publish`), never by a bulk materialization."
    ),
)


def publish_hub_release_job(asset_graph: Callable[[], object]):
    """The `publish_hub_release` job. `asset_graph()` gives the code location's asset graph when the
    run carries no repository (a run executed in process from a job definition, as tests do)."""

    def graph_of(context: OpExecutionContext):
        try:
            return context.repository_def.asset_graph
        except Exception:  # dagster raises CheckError when the run carries no repository
            return asset_graph()

    @op(
        name="publish_to_hub",
        description="Refuse a stale or unchecked release, verify every file against build.json, then publish it (a dry run without a repo).",
        tags={"kind": "huggingface"},
    )
    def publish_hub_release_op(context: OpExecutionContext, release_settings: ReleaseSettings, storage: PipelineStorage) -> None:
        blockers = release_blockers(context.instance, graph_of(context), AssetKey("dataset_card"))
        if blockers:
            raise Failure(
                "The release is not the product of the current pipeline, so it is not published: "
                + "; ".join(blockers)
                + ". Run `make build` (or materialize the stale assets and dataset_card in the UI), then publish again.",
                allow_retries=False,
            )
        publish_current_release(context, release_settings, storage)

    @job(
        name="publish_hub_release",
        description="Publish the current release to the Hub (a dry run without MEDSET_HUB_REPO), after checking it is current and its checks passed.",
    )
    def publish_hub_release():
        publish_hub_release_op()

    return publish_hub_release


def publish_current_release(context: OpExecutionContext, release_settings: ReleaseSettings, storage: PipelineStorage) -> None:
    """Verify the current release folder and publish it; report `hub_release` with the outcome."""
    folder = storage.release_dir
    card_metadata = latest_metadata(context.instance, "dataset_card")
    tag = f"release-{str(card_metadata.get('content_hash', ''))[:12]}"
    try:
        outcome = publish_release(
            folder,
            repo_id=release_settings.repo_id,
            token=release_settings.token,
            endpoint=release_settings.endpoint,
            private=release_settings.private,
            version_tag=tag,
            log=context.log.info,
            timeouts=HubTimeouts(read_s=release_settings.timeout_s, write_s=release_settings.timeout_s, pool_s=release_settings.timeout_s),
            deadline_s=release_settings.deadline_s,
        )
    except ReleaseFolderError as error:
        raise Failure(description=str(error), allow_retries=False) from error
    except HubPublishError as error:
        raise Failure(description=str(error), allow_retries=error.transient) from error
    if outcome.content_hash != card_metadata.get("content_hash"):
        raise Failure(
            f"the release folder {folder} holds content {outcome.content_hash[:12]}, not the latest card's "
            f"{str(card_metadata.get('content_hash'))[:12]}: rebuild the release.",
            allow_retries=False,
        )
    metadata = {
        "status": outcome.status,
        "repo_id": outcome.repo_id or "(dry run: set MEDSET_HUB_REPO to publish)",
        "tag": outcome.tag or tag,
        "content_hash": outcome.content_hash,
        "files": files_table((f.path, f.bytes, f.sha256) for f in outcome.files),
        "release_dir": MetadataValue.path(str(folder.resolve())),
    }
    if outcome.commit_url:
        metadata["commit"] = MetadataValue.url(outcome.commit_url)
    if outcome.status == "unchanged":
        context.log.info("The Hub already holds this release (same content hash): no commit made.")
    context.log_event(AssetMaterialization(asset_key=HUB_RELEASE, metadata=metadata))


RELEASE_ASSETS = [release_files, dataset_card]
