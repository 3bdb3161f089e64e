"""Sources: one asset per Hub source, made from the registry.

Record sources (`source_records/<id>`) write the dataset's rows; LLM sources
(`generation_inputs/<id>`) write the normalised items their generation task consumes.
"""


import inspect
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Backoff,
    ConfigurableResource,
    DataVersion,
    Failure,
    Jitter,
    MaterializeResult,
    ObserveResult,
    RetryPolicy,
    asset,
    observable_source_asset,
)

from medset_dagster.common.hashing import sha256_file, sha256_text, stable_json
from medset_dagster.defs.metadata import drop_metadata, table_metadata
from medset_dagster.defs.storage import PipelineStorage
from medset_dagster.sources.hub_revisions import current_revision, local_mirror_revision
from medset_dagster.sources.loading import (
    SourceError,
    load_native_rows,
    map_source,
    with_item_ids,
    with_source,
)
from medset_dagster.sources.registry import (
    SOURCES,
    SourceSpec,
    generation_input_sources,
    hub_sources,
    record_sources,
)

NETWORK_RETRY = RetryPolicy(max_retries=2, delay=5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


class HubDatasets(ConfigurableResource):
    """Where source datasets are read from: the Hub (`mirror_root` unset) or a local mirror folder.

    Revision policy per source: `pinned` (default) loads the registry's revision and only reports
    when the Hub has moved on; `track` (sources listed in `track`) loads the newest observed one.
    """

    mirror_root: Optional[str] = None
    token: Optional[str] = None
    endpoint: Optional[str] = None
    track: list[str] = []

    @property
    def is_local(self) -> bool:
        return self.mirror_root is not None

    def policy(self, spec: SourceSpec) -> str:
        return "track" if spec.source_id in self.track else "pinned"

    def observe(self, spec: SourceSpec) -> tuple[str, dict]:
        """(data version, metadata) of the source as it stands now."""
        if self.is_local:
            digest = local_mirror_revision(Path(self.mirror_root) / spec.hub_repo)
            return digest, {"mirror_content_hash": digest, "pinned_revision": spec.revision, "policy": self.policy(spec)}
        head = current_revision(spec.hub_repo, token=self.token, endpoint=self.endpoint)
        if self.policy(spec) == "track":
            return head, {"hub_head": head, "policy": "track"}
        moved = head != spec.revision
        return spec.revision, {
            "hub_head": head,
            "pinned_revision": spec.revision,
            "policy": "pinned",
            "upstream_moved": moved,
            "note": f"The Hub is at {head[:12]}; the pinned {spec.revision[:12]} is still loaded." if moved else "The Hub is at the pinned revision.",
        }

    def revision_to_load(self, spec: SourceSpec, storage: PipelineStorage) -> Optional[str]:
        if self.is_local or self.policy(spec) == "pinned":
            return spec.revision
        observed = storage.path("observations", f"{spec.source_id}.json")
        if not observed.exists():
            raise SourceError(f"{spec.source_id} tracks the Hub's newest revision: observe hub_datasets/{spec.source_id} first")
        return json.loads(observed.read_text())["data_version"]

    def load(self, spec: SourceSpec, storage: PipelineStorage) -> pl.DataFrame:
        return load_native_rows(
            spec,
            hub_root=Path(self.mirror_root) if self.mirror_root else None,
            revision=self.revision_to_load(spec, storage),
            cache_dir=storage.hf_cache_dir,
            token=self.token,
        )

    def revision_label(self, spec: SourceSpec, storage: PipelineStorage) -> str:
        if self.is_local:
            return f"local mirror of {spec.revision}"
        return str(self.revision_to_load(spec, storage))


def observation_key(spec: SourceSpec) -> AssetKey:
    return AssetKey(["hub_datasets", spec.source_id])


def hub_dataset_observation(spec: SourceSpec):
    """The source's current revision as its data version: a change marks its downstream unsynced."""

    @observable_source_asset(
        key=observation_key(spec),
        group_name="sources",
        description=f"`{spec.hub_repo}` as it stands on the Hub (sample profile: a content hash of the local mirror).",
        metadata={"hub_repo": spec.hub_repo, "pinned_revision": spec.revision, "licence": spec.licence},
    )
    def _observe(hub_datasets: HubDatasets, storage: PipelineStorage) -> ObserveResult:
        data_version, metadata = hub_datasets.observe(spec)
        storage.path("observations", f"{spec.source_id}.json").write_text(json.dumps({"data_version": data_version, **metadata}))
        return ObserveResult(data_version=DataVersion(data_version), metadata=metadata)

    return _observe


def _code_version(spec: SourceSpec) -> str:
    """Changes when what defines the source's output changes: its mapper or its registry entry."""
    mapper_source = inspect.getsource(spec.mapper) if spec.mapper else ""
    fields = {name: value for name, value in vars(spec).items() if name != "mapper"}  # a function's repr has its address
    return sha256_text(mapper_source + stable_json(fields))[:16]


def _source_metadata(spec: SourceSpec, stats, frame: pl.DataFrame, path: Path, seconds: float) -> dict:
    return {
        **table_metadata(frame, path),
        "rows_read": stats.rows_read,
        "rows_mapped": stats.rows_mapped,
        "rows_kept": stats.rows_kept,
        **drop_metadata(stats.dropped),
        "hub_repo": spec.hub_repo,
        "config": spec.config or "default",
        "revision": stats.revision,
        "licence": spec.licence,
        "published_rows": spec.published_rows,
        "seconds": round(seconds, 3),
    }


def _load_and_map(context: AssetExecutionContext, spec: SourceSpec, hub: HubDatasets, storage: PipelineStorage):
    started = time.perf_counter()
    try:
        rows = hub.load(spec, storage)
        mapped, stats = map_source(spec, rows)
    except SourceError as error:
        # A renamed column or an unreadable source is not transient: fail without retrying.
        raise Failure(description=str(error), allow_retries=False) from error
    stats.revision = hub.revision_label(spec, storage)
    context.log.info(f"{spec.source_id}: read {stats.rows_read}, kept {stats.rows_kept}, dropped {stats.dropped}")
    return mapped, stats, time.perf_counter() - started


@dataclass(frozen=True)
class SourceOutput:
    """What a Hub source's asset writes: finished records, or items for its LLM task."""

    key_prefix: str
    what: str
    finish: Callable[[pl.DataFrame, str], pl.DataFrame]
    paths: Callable[[PipelineStorage, str], tuple[Path, Path]]


RECORDS = SourceOutput(
    "source_records",
    "mapped to input/context/output/source",
    with_source,
    lambda storage, source_id: (storage.records_path(source_id), storage.records_stats_path(source_id)),
)
GENERATION_INPUTS = SourceOutput(
    "generation_inputs",
    "normalised into items for its LLM task",
    with_item_ids,
    lambda storage, source_id: (storage.generation_inputs_path(source_id), storage.generation_inputs_stats_path(source_id)),
)


def hub_source_asset(spec: SourceSpec, output: SourceOutput) -> AssetsDefinition:
    @asset(
        name=spec.source_id,
        key_prefix=output.key_prefix,
        group_name="sources",
        deps=[observation_key(spec)],
        kinds={"huggingface", "polars", "parquet"},
        description=f"{spec.description}. `{spec.hub_repo}` {output.what}.",
        code_version=_code_version(spec),
        retry_policy=NETWORK_RETRY,
        tags={"source": spec.source_id},
    )
    def _asset(context: AssetExecutionContext, hub_datasets: HubDatasets, storage: PipelineStorage) -> MaterializeResult:
        mapped, stats, seconds = _load_and_map(context, spec, hub_datasets, storage)
        frame = output.finish(mapped, spec.source_id)
        path, stats_path = output.paths(storage, spec.source_id)
        frame.write_parquet(path)
        stats_path.write_text(stats.to_json())
        return MaterializeResult(
            metadata=_source_metadata(spec, stats, frame, path, seconds),
            data_version=DataVersion(sha256_file(path)),
        )

    return _asset


HUB_OBSERVATIONS = [hub_dataset_observation(spec) for spec in hub_sources()]
SOURCE_RECORD_ASSETS = [hub_source_asset(spec, RECORDS) for spec in record_sources()]
GENERATION_INPUT_ASSETS = [hub_source_asset(spec, GENERATION_INPUTS) for spec in generation_input_sources()]


# Named on the card, never loaded: shown in the UI with the reason rather than left as silent gaps.
EXCLUDED_SOURCE_SPECS = [
    AssetSpec(
        key=["excluded_sources", spec.source_id],
        group_name="sources",
        description=f"Excluded: {spec.excluded_reason}",
        metadata={"hub_repo": spec.hub_repo, "excluded_reason": spec.excluded_reason, "licence": spec.licence},
        kinds={"huggingface"},
    )
    for spec in SOURCES
    if spec.role == "excluded"
]
