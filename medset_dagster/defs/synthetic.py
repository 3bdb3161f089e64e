"""Generation: the four LLM tasks, partitioned into shards, then each source's records.

`<task>` (group `synthetic`, pool `llm`) generates one shard per partition: an item's shard is a
stable hash of its id, so a backfill runs shards in parallel, a failed shard retries alone and a
shard with nothing new finishes from the cache. `source_records/<source>` then joins the shards,
drops repeated questions and writes the records the curated dataset reads.
"""

import inspect
import json
import time
from dataclasses import dataclass
from typing import Callable

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Backoff,
    DataVersion,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    StaticPartitionsDefinition,
    asset,
)

from medset_dagster.common.hashing import sha256_file, sha256_text, shard_of
from medset_dagster.dataset.records import markdown_preview
from medset_dagster.defs.backends import (
    EmbedderResource,
    GenerationSettings,
    GeneratorResource,
)
from medset_dagster.defs.metadata import drop_metadata, table_metadata
from medset_dagster.defs.retrieval import FAISS_INDEX, index_folder
from medset_dagster.defs.storage import PipelineStorage
from medset_dagster.generation import tasks
from medset_dagster.generation.backends import GeneratorUnavailable
from medset_dagster.generation.cache import GenerationCache
from medset_dagster.generation.prompts import TASK_TEMPLATES, task_version
from medset_dagster.generation.runner import GenerationAborted
from medset_dagster.generation.tasks import TaskOutcome, TaskSettings, sample_scenarios
from medset_dagster.sources.loading import SourceStats, with_source

SHARD_COUNT = 4
SHARDS = StaticPartitionsDefinition([f"shard-{i}" for i in range(SHARD_COUNT)])
LLM_RETRY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


@dataclass(frozen=True)
class GenerationTask:
    source_id: str
    asset_name: str
    description: str
    run: Callable[..., TaskOutcome]
    needs_retriever: bool = False


TASKS = (
    GenerationTask(
        "extreme_firstaid_qa_dataset",
        "emergency_scenarios",
        "First-aid questions for austere scenarios, answered by RAG over the emergency-care PDFs (NULL answers dropped).",
        tasks.emergency_scenarios,
        needs_retriever=True,
    ),
    GenerationTask(
        "wiki_medical_terms",
        "medical_term_questions",
        "A question of at most 20 words per Wikipedia medical article, answered from the article only.",
        tasks.wiki_question_answers,
    ),
    GenerationTask(
        "medqa",
        "medqa_explanations",
        "Why the correct option of each MedQA question is right and the others wrong.",
        tasks.explain_medqa,
    ),
    GenerationTask(
        "symptom_to_diagnosis",
        "symptom_diagnoses",
        "One sentence stating the most likely diagnosis for each symptom description.",
        tasks.diagnose_symptoms,
    ),
)


def shard_index(partition_key: str) -> int:
    return int(partition_key.rsplit("-", 1)[1])


def _shard_path(storage: PipelineStorage, source_id: str, shard: int):
    return storage.path("synthetic", source_id, f"shard-{shard}.parquet")


def _shard_stats_path(storage: PipelineStorage, source_id: str, shard: int):
    return storage.path("synthetic", source_id, f"shard-{shard}.stats.json")


def _task_items(task: GenerationTask, storage: PipelineStorage, settings: GenerationSettings) -> pl.DataFrame:
    """Every item of the task with its `shard`, capped by `max_items_per_task` when set."""
    if task.source_id == "extreme_firstaid_qa_dataset":
        items = sample_scenarios(settings.scenario_count, settings.scenario_seed)
    else:
        items = pl.read_parquet(storage.generation_inputs_path(task.source_id))
        items = items.head(settings.max_items_per_task) if settings.max_items_per_task else items
    shards = [shard_of(key, SHARD_COUNT) for key in items["item_id"]]
    return items.with_columns(pl.Series("shard", shards, dtype=pl.Int64))


def _generation_metadata(outcomes: list[TaskOutcome], generator, records: pl.DataFrame, seconds: float, source_id: str) -> dict:
    reports = [report for outcome in outcomes for report in outcome.reports]
    dropped: dict[str, int] = {}
    for outcome in outcomes:
        for reason, count in outcome.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
    latencies_p50 = [r.latency_p50 for r in reports if r.latency_p50 is not None]
    latencies_p95 = [r.latency_p95 for r in reports if r.latency_p95 is not None]
    generated = sum(r.generated for r in reports)
    failed: dict[str, int] = {}
    for report in reports:
        for reason, count in report.failed_by_reason.items():
            failed[reason] = failed.get(reason, 0) + count
    return {
        "dagster/row_count": records.height,
        "items_requested": sum(r.requested for r in reports),
        "generated": generated,
        "from_cache": sum(r.from_cache for r in reports),
        "failed": sum(failed.values()),
        "failed_by_reason": MetadataValue.json(failed),
        "llm_calls": sum(r.calls for r in reports),
        "prompt_tokens": sum(r.prompt_tokens for r in reports),
        "completion_tokens": sum(r.completion_tokens for r in reports),
        "latency_p50_s": round(max(latencies_p50), 3) if latencies_p50 else 0.0,
        "latency_p95_s": round(max(latencies_p95), 3) if latencies_p95 else 0.0,
        "items_per_minute": round(generated / seconds * 60, 2) if seconds > 0 else 0.0,
        "backend": generator.backend,
        "model": generator.model,
        "model_digest": generator.digest or "",
        "prompt_template_hash": task_version(source_id),
        "templates": MetadataValue.json({t.name: t.version for t in TASK_TEMPLATES[source_id]}),
        **drop_metadata(dropped),
        "preview": MetadataValue.md(markdown_preview(records.drop("item_id"), 3)),
        "seconds": round(seconds, 3),
    }


def generation_task_asset(task: GenerationTask, backend_kind: str) -> AssetsDefinition:
    deps = [FAISS_INDEX] if task.needs_retriever else [AssetKey(["generation_inputs", task.source_id])]
    tasks_source = inspect.getsource(tasks)

    @asset(
        name=task.asset_name,
        group_name="synthetic",
        partitions_def=SHARDS,
        pool="llm",
        deps=deps,
        kinds={"llm", backend_kind, "parquet"},
        description=task.description,
        # A prompt or parameter change changes the template hash: exactly this task goes stale.
        code_version=f"{task_version(task.source_id)}-{sha256_text(tasks_source)[:8]}",
        retry_policy=LLM_RETRY,
        tags={"source": task.source_id},
    )
    def _asset(
        context: AssetExecutionContext,
        generator_backend: GeneratorResource,
        generation_settings: GenerationSettings,
        embedder: EmbedderResource,
        storage: PipelineStorage,
    ) -> MaterializeResult:
        started = time.perf_counter()
        generator = generator_backend.build()
        try:
            generator.check_ready()
        except GeneratorUnavailable as error:
            raise Failure(description=str(error), allow_retries=False) from error

        def progress(done: int, total: int, rate: float, eta_s: float | None) -> None:
            context.log.info(f"{task.asset_name}: {done}/{total} items, {rate * 60:.1f}/min, ETA {eta_s or 0:.0f}s")

        settings = TaskSettings(max_tokens_cap=generation_settings.max_tokens_cap, on_progress=progress)
        extra = {}
        if task.needs_retriever:
            from medset_dagster.retrieval.embedding_cache import EmbeddingCache
            from medset_dagster.retrieval.vector_index import Retriever

            folder = index_folder(storage)
            query_cache = EmbeddingCache(storage.path("cache", "embeddings.sqlite"))
            extra["retriever"] = Retriever.from_folder(folder, embedder.for_queries(folder), query_cache=query_cache)
            extra["top_k"] = generation_settings.retrieval_top_k
        items = _task_items(task, storage, generation_settings)
        outcomes, frames = [], []
        with GenerationCache(storage.path("cache", "generations.sqlite")) as cache:
            for key in context.partition_keys:
                shard = shard_index(key)
                shard_items = items.filter(pl.col("shard") == shard).drop("shard")
                try:
                    outcome = task.run(shard_items, generator, cache, settings=settings, **extra)
                except GenerationAborted as error:
                    raise Failure(description=f"{task.asset_name} {key}: {error}. Completed items are cached; rerun to resume.") from error
                outcome.records.write_parquet(_shard_path(storage, task.source_id, shard))
                _shard_stats_path(storage, task.source_id, shard).write_text(
                    json.dumps({"items": shard_items.height, "kept": outcome.records.height, "dropped": outcome.dropped})
                )
                outcomes.append(outcome)
                frames.append(outcome.records)
        records = pl.concat(frames)
        metadata = _generation_metadata(outcomes, generator, records, time.perf_counter() - started, task.source_id)
        # What the dataset card and build.json record about this task's generation.
        storage.path("synthetic", task.source_id, "generation.json").write_text(
            json.dumps(
                {
                    "source_id": task.source_id,
                    "backend": generator.backend,
                    "model": generator.model,
                    "digest": generator.digest,
                    "items_requested": items.height,
                    "items_kept": records.height,
                    "max_tokens_cap": generation_settings.max_tokens_cap,
                }
            )
        )
        return MaterializeResult(metadata=metadata, data_version=DataVersion(sha256_text(records.write_json())))

    return _asset


def generated_records_asset(task: GenerationTask, upstream: AssetsDefinition) -> AssetsDefinition:
    """`source_records/<source>`: every shard's records joined, repeated questions dropped."""

    @asset(
        name=task.source_id,
        key_prefix="source_records",
        group_name="sources",
        deps=[upstream.key],
        kinds={"polars", "parquet"},
        description=f"Records of `{task.source_id}` from all shards of `{task.asset_name}`, repeated questions dropped.",
        code_version=sha256_text(inspect.getsource(generated_records_asset))[:16],
        tags={"source": task.source_id},
    )
    def _asset(context: AssetExecutionContext, generation_settings: GenerationSettings, storage: PipelineStorage) -> MaterializeResult:
        frames, dropped, items = [], {}, 0
        for shard in range(SHARD_COUNT):
            path = _shard_path(storage, task.source_id, shard)
            if not path.exists():
                raise Failure(description=f"{task.asset_name} shard-{shard} has not been materialized yet: materialize all its partitions first.")
            stats = json.loads(_shard_stats_path(storage, task.source_id, shard).read_text())
            items += stats["items"]
            for reason, count in stats["dropped"].items():
                dropped[reason] = dropped.get(reason, 0) + count
            frames.append(pl.read_parquet(path))
        generated = pl.concat(frames).sort("item_id")
        records = generated.unique(subset=["input"], keep="first", maintain_order=True)
        if generated.height - records.height:
            dropped["duplicate_input"] = generated.height - records.height
        records = with_source(records.drop("item_id"), task.source_id)
        if task.source_id == "extreme_firstaid_qa_dataset":
            rows_read = items
        else:
            rows_read = SourceStats.from_json(storage.generation_inputs_stats_path(task.source_id).read_text()).rows_read
        stats = SourceStats(
            source_id=task.source_id, rows_read=rows_read, rows_mapped=generated.height, rows_kept=records.height, dropped=dropped
        )
        path = storage.records_path(task.source_id)
        records.write_parquet(path)
        storage.records_stats_path(task.source_id).write_text(stats.to_json())
        return MaterializeResult(
            metadata={
                **table_metadata(records, path),
                "items_generated_for": items,
                "rows_kept": records.height,
                **drop_metadata(dropped),
            },
            data_version=DataVersion(sha256_file(path)),
        )

    return _asset


def synthetic_assets(backend_kind: str) -> tuple[list[AssetsDefinition], list[AssetsDefinition]]:
    """(generation task assets, their source_records assets), in TASKS order."""
    generation = [generation_task_asset(task, backend_kind) for task in TASKS]
    records = [generated_records_asset(task, asset_def) for task, asset_def in zip(TASKS, generation)]
    return generation, records
