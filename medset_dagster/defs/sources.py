"""Sources (group `sources`): one observation and one asset per Hub source, made from the registry.

- `hub_datasets/<id>` observe the source: the Hub commit sha (sample: the mirror's content hash)
  is its data version, so a change upstream marks what was built from it unsynced.
- `source_records/<id>` hold the records of a source whose rows map straight to the dataset.
- `generation_inputs/<id>` hold the items a generation task consumes.
- `excluded_sources/<id>` document the sources the card names and the build never used.
Each factory takes the registry entry and keeps it with the asset it builds.
"""


import json
import time
import warnings
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
    BetaWarning,
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

from medset_dagster.common.files import atomic_write_text, is_no_space
from medset_dagster.common.hashing import sha256_text
from medset_dagster.defs.automation import NIGHTLY_OBSERVATION, REBUILD_WHEN_STALE
from medset_dagster.defs.metadata import (
    drop_metadata,
    latest_observation,
    table_metadata,
)
from medset_dagster.defs.resources import PipelineStorage
from medset_dagster.defs.versions import code_version
from medset_dagster.sources import loading
from medset_dagster.sources.hub_revisions import (
    HubRevisionError,
    current_revision,
    local_mirror_revision,
)
from medset_dagster.sources.loading import (
    SourceError,
    SourceUnavailable,
    load_native_rows,
    map_source,
    with_item_ids,
    with_source,
)
from medset_dagster.sources.registry import (
    SourceSpec,
    benchmark_sources,
    excluded_sources,
    generation_input_sources,
    hub_sources,
    record_sources,
)

# Network steps may hit a transient outage the client's own retries did not outlast.
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
        """(data version, metadata) of the source as it stands now.

        Metadata: `revision_pinned` (the registry's), `hub_head` (the Hub's current commit, full
        profile) or `mirror_content_hash` (sample), `policy`, and whether upstream moved.
        """
        if self.is_local:
            digest = local_mirror_revision(Path(self.mirror_root) / spec.hub_repo)
            return digest, {"mirror_content_hash": digest, "revision_pinned": spec.revision, "policy": self.policy(spec)}
        head = current_revision(spec.hub_repo, token=self.token, endpoint=self.endpoint)
        if self.policy(spec) == "track":
            return head, {"hub_head": head, "revision_pinned": spec.revision, "policy": "track"}
        pinned = self.pinned_revision(spec, head)
        moved = head != pinned
        return pinned, {
            "hub_head": head,
            "revision_pinned": pinned,
            "policy": "pinned",
            "upstream_moved": moved,
            "note": f"The Hub is at {head[:12]}; the pinned {pinned[:12]} is still loaded."
            if moved
            else "The Hub is at the pinned revision.",
        }

    pins_file: Optional[str] = None

    def pinned_revision(self, spec: SourceSpec, head: str | None = None) -> str:
        """The registry's pin; for a source pinned by first observation (`pinned_by`), the head seen
        the first time, recorded in `pins_file` (like the PDFs' pins) and kept from then on."""
        if spec.revision or spec.pinned_by == "registry":
            if not spec.revision:
                raise SourceError(f"{spec.source_id}: the registry pins no revision; set `revision` in medset_dagster/sources/registry.py")
            return spec.revision
        if not self.pins_file:
            raise SourceError(f"{spec.source_id} is pinned by first observation but HubDatasets.pins_file is not set")
        path = Path(self.pins_file)
        pins = json.loads(path.read_text()) if path.is_file() else {}
        if spec.source_id not in pins:
            if head is None:
                raise SourceError(f"{spec.source_id} is pinned by first observation: observe hub_datasets/{spec.source_id} first")
            pins[spec.source_id] = {"hub_repo": spec.hub_repo, "revision": head}
            atomic_write_text(path, json.dumps(pins, indent=2, sort_keys=True) + "\n")
        return pins[spec.source_id]["revision"]

    def revision_to_load(self, spec: SourceSpec, observed: str | None) -> str | None:
        """The Hub revision a load reads: the pin, or (policy `track`) the latest observed head."""
        if self.is_local:
            return spec.revision
        if self.policy(spec) == "pinned":
            return self.pinned_revision(spec)
        if observed is None:
            raise SourceError(f"{spec.source_id} tracks the Hub's newest revision: observe hub_datasets/{spec.source_id} first")
        return observed

    def load(self, spec: SourceSpec, revision: str | None, storage: PipelineStorage) -> tuple[pl.DataFrame, str]:
        """(native rows, the revision loaded): a Hub sha, or the mirror's content hash."""
        if self.is_local:
            loaded = local_mirror_revision(Path(self.mirror_root) / spec.hub_repo)
            # `datasets` keys a local folder's cache by config name, not content: one cache per
            # mirror content, or an edited mirror would load its old rows.
            cache_dir = storage.hf_cache_dir / "mirrors" / loaded[:16]
        else:
            self._check_endpoint()
            loaded, cache_dir = str(revision), storage.hf_cache_dir
        rows = load_native_rows(
            spec,
            hub_root=Path(self.mirror_root) if self.mirror_root else None,
            revision=revision,
            cache_dir=cache_dir,
            token=self.token,
        )
        return rows, loaded

    def _check_endpoint(self) -> None:
        """`datasets` reads HF_ENDPOINT once, at import: a different `endpoint` here would observe
        one Hub and load from another."""
        from huggingface_hub import constants

        if self.endpoint and self.endpoint.rstrip("/") != constants.ENDPOINT.rstrip("/"):
            raise SourceError(
                f"HubDatasets.endpoint is {self.endpoint} but the Hub client loads from {constants.ENDPOINT}: "
                "set HF_ENDPOINT in the environment (before the code location starts) instead of the resource field."
            )


def observation_key(spec: SourceSpec) -> AssetKey:
    """`hub_datasets/<source_id>`: the observation whose data version is the source's Hub commit sha
    (sample profile: the local mirror's content hash)."""
    return AssetKey(["hub_datasets", spec.source_id])


def hub_dataset_observation(spec: SourceSpec):
    """The source's current revision as its data version; observed at 02:00 UTC by automation."""

    # Observable source assets are beta in Dagster 1.13; the API is the documented way to give a
    # source a data version, so its warning is silenced here rather than printed at every import.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)

        @observable_source_asset(
            key=observation_key(spec),
            group_name="sources",
            # Kinds are tags on a source asset (its decorator takes no `kinds`).
            tags={"dagster/kind/huggingface": ""},
            description=f"`{spec.hub_repo}` as it stands on the Hub (sample profile: a content hash of the local mirror).",
            metadata={"hub_repo": spec.hub_repo, "revision_pinned": spec.revision, "licence": spec.licence},
            automation_condition=NIGHTLY_OBSERVATION,
        )
        def _observe(hub_datasets: HubDatasets) -> ObserveResult:
            try:
                data_version, metadata = hub_datasets.observe(spec)
            except (HubRevisionError, FileNotFoundError) as error:
                raise Failure(f"{spec.source_id}: {error}", allow_retries=False) from error
            return ObserveResult(data_version=DataVersion(data_version), metadata=metadata)

    return _observe


@dataclass(frozen=True)
class SourceOutput:
    """What a Hub source's asset holds: finished records, or items for its generation task."""

    key_prefix: str
    what: str
    finish: Callable[[pl.DataFrame, str], pl.DataFrame]


RECORDS = SourceOutput("source_records", "mapped to input/context/output/source", with_source)
GENERATION_INPUTS = SourceOutput("generation_inputs", "normalised into items for its generation task", with_item_ids)
BENCHMARK_ITEMS = SourceOutput(
    "benchmark_items",
    "mapped to benchmark items (item_id, question, options, answer) for decontamination",
    lambda frame, source_id: frame.with_columns(pl.lit(source_id).alias("benchmark")),
)


def hub_source_asset(spec: SourceSpec, output: SourceOutput) -> AssetsDefinition:
    """`<output.key_prefix>/<source_id>`: the source loaded, mapped, its drops counted, deduped."""
    target = f"`{spec.task}`" if spec.task else "decontamination" if spec.role == "benchmark" else "the curated dataset"

    @asset(
        name=spec.source_id,
        key_prefix=output.key_prefix,
        group_name="sources",
        deps=[observation_key(spec)],
        kinds={"huggingface", "polars", "parquet"},
        description=f"{spec.description}. `{spec.hub_repo}` {output.what}, for {target}.",
        # Changes when what defines the output changes: the loader, the mapper or the registry entry.
        code_version=code_version(loading, spec.mapper, extra={k: v for k, v in vars(spec).items() if k != "mapper"}),
        retry_policy=NETWORK_RETRY,
        automation_condition=REBUILD_WHEN_STALE,
        tags={"source": spec.source_id},
    )
    def _asset(context: AssetExecutionContext, hub_datasets: HubDatasets, storage: PipelineStorage):
        started = time.perf_counter()
        observed, _ = latest_observation(context.instance, observation_key(spec))
        try:
            revision = hub_datasets.revision_to_load(spec, observed)
            rows, loaded = hub_datasets.load(spec, revision, storage)
            mapped, stats = map_source(spec, rows)
        except SourceError as error:
            # A renamed column or an unreadable file is not transient: fail without retrying.
            raise Failure(description=str(error), allow_retries=False) from error
        except SourceUnavailable as error:
            raise Failure(description=str(error), allow_retries=True) from error
        except Exception as error:
            if is_no_space(error):
                raise Failure(
                    f"{spec.source_id}: no space left on device for the Hub dataset cache {storage.hf_cache_dir}: {error}",
                    allow_retries=False,
                ) from error
            raise
        frame = output.finish(mapped, spec.source_id)
        if frame.is_empty():
            raise Failure(
                f"{spec.source_id}: 0 rows left from {stats.rows_read} read "
                f"(drops: {', '.join(f'{r} {n}' for r, n in stats.dropped.items()) or 'none'}); check {spec.hub_repo}.",
                allow_retries=False,
            )
        context.log.info(f"{spec.source_id}: read {stats.rows_read}, kept {stats.rows_kept}, dropped {stats.dropped}")
        metadata = {
            **table_metadata(frame),
            "rows_read": stats.rows_read,
            "after_mapping": stats.rows_mapped,
            "after_source_dedup": stats.rows_kept,
            **drop_metadata(stats.dropped),
            "hub_repo": spec.hub_repo,
            "config": spec.config or "default",
            "split": spec.split,
            "revision_loaded": loaded,
            "revision_pinned": spec.revision or "",
            "licence": spec.licence,
            "published_rows": spec.published_rows or 0,
            "seconds": round(time.perf_counter() - started, 3),
        }
        return MaterializeResult(value=frame, metadata=metadata, data_version=DataVersion(frame_version(frame)))

    return _asset


def frame_version(frame: pl.DataFrame) -> str:
    """A content hash of a table: equal rows give an equal data version, so nothing downstream
    turns stale when a rebuild changed nothing."""
    return sha256_text(frame.write_ndjson())[:24]


HUB_OBSERVATIONS = [hub_dataset_observation(spec) for spec in (*hub_sources(), *benchmark_sources())]
SOURCE_RECORD_ASSETS = {spec.source_id: hub_source_asset(spec, RECORDS) for spec in record_sources()}
GENERATION_INPUT_ASSETS = {spec.source_id: hub_source_asset(spec, GENERATION_INPUTS) for spec in generation_input_sources()}
BENCHMARK_ITEM_ASSETS = {spec.source_id: hub_source_asset(spec, BENCHMARK_ITEMS) for spec in benchmark_sources()}

# Named on the card, never loaded: shown in the UI with the reason rather than left as silent gaps.
EXCLUDED_SOURCE_SPECS = [
    AssetSpec(
        key=["excluded_sources", spec.source_id],
        group_name="sources",
        description=f"Excluded: {spec.excluded_reason}",
        metadata={"hub_repo": spec.hub_repo, "excluded_reason": spec.excluded_reason, "licence": spec.licence},
        kinds={"huggingface"},
    )
    for spec in excluded_sources()
]
