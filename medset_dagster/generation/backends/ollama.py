"""Ollama through the official `ollama` client, with bounded retries (exponential backoff + jitter)."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from medset_dagster.common.hashing import sha256_json
from medset_dagster.generation.backends.common import (
    CLIENT_ERROR,
    CONNECTION_ERROR,
    MODEL_NOT_FOUND,
    RATE_LIMITED,
    SERVER_ERROR,
    TIMEOUT,
    AttemptFailed,
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    GeneratorUnavailable,
    HttpGenerator,
    generate_with_retries,
    parsed_result,
)

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_OLLAMA_MODEL = "gemma3n:e4b"


def _model_names_match(wanted: str, listed: str) -> bool:
    """Ollama names without a tag mean `:latest`."""

    def norm(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return norm(wanted) == norm(listed)


class OllamaGenerator(HttpGenerator):
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

    def check_ready(self) -> None:
        """Fail fast, with the fix in the message, if the server or the model is missing.

        Lists the server's models (within `ready_timeout_s` seconds) and records the model's digest.
        Raises `GeneratorUnavailable` with reason `CONNECTION_ERROR` when the server does not
        answer, `MODEL_NOT_FOUND` when it lacks the model.
        """
        import httpx
        import ollama

        if self._probe is None:
            # Its own client so a hung server fails the check in seconds, not after `timeout_s`.
            self._probe = ollama.Client(host=self.host, timeout=self._ready_timeout_s)
        probe = self._probe
        try:
            listing = probe.list()
        except (ConnectionError, httpx.HTTPError, ollama.ResponseError, ValueError) as err:  # ValueError: not JSON
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
                f"(models present: {present}). Run `ollama pull {self.model}`.",
                reason=MODEL_NOT_FOUND,
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

    def attempt(self, request: GenerationRequest) -> GenerationResult:
        """One chat call, no retry: the result (`error` None, `latency_s` and `attempts` 0 for the
        caller to fill), or `AttemptFailed` naming the reason, with the HTTP status if any."""
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
                raise AttemptFailed(
                    MODEL_NOT_FOUND, f"{err} - run `ollama pull {self.model}`", retryable=False, status=404
                ) from None
            if status == 429:
                raise AttemptFailed(RATE_LIMITED, str(err), retryable=True, status=429) from None
            if status >= 500 or status < 0:
                raise AttemptFailed(SERVER_ERROR, str(err), retryable=True, status=status) from None
            raise AttemptFailed(CLIENT_ERROR, str(err), retryable=False, status=status) from None
        except httpx.TimeoutException as err:
            raise AttemptFailed(
                TIMEOUT, f"no answer within {self.timeout_s}s ({type(err).__name__})", retryable=True
            ) from None
        except (ConnectionError, httpx.TransportError) as err:
            raise AttemptFailed(CONNECTION_ERROR, f"{type(err).__name__}: {err}", retryable=True) from None
        except ValueError as err:  # a 200 whose body is not a chat response (pydantic validation)
            raise AttemptFailed(SERVER_ERROR, f"unreadable response: {err}", retryable=True) from None

        text = response.message.content or ""
        finish = response.done_reason or "stop"
        prompt_tokens = response.prompt_eval_count or 0
        completion_tokens = response.eval_count or 0
        return parsed_result(text, finish, prompt_tokens, completion_tokens, request.schema)

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """One item with up to `max_attempts` tries; never raises for a per-item failure."""
        return generate_with_retries(
            lambda: self.attempt(request),
            max_attempts=self.max_attempts,
            backoff_initial_s=self.backoff_initial_s,
            backoff_max_s=self.backoff_max_s,
            sleep=self._sleep,
        )
