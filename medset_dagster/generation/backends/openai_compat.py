"""Any OpenAI-compatible chat-completions server (vLLM, llama.cpp's server, TGI) through the
official `openai` client, with the same failure reasons and retries as the Ollama backend.

Structured output is asked for with `response_format={"type": "json_schema", ...}`, which vLLM,
llama.cpp's server and TGI turn into constrained decoding; the answer is still checked against the
schema (`diagnose_json_output`), as every backend does.

Model identity (the `digest`, part of every cache key). These servers report no content digest
for their weights, so the identity is, in order:
  1. the digest the operator configures (`digest=`), used verbatim: e.g. the sha256 of the GGUF
     file, the Hub commit of the weights, or, to share cache entries with Ollama servers holding
     the same weights, the Ollama digest of that model;
  2. otherwise `openai-model:<id>`, with `<id>` the model id exactly as `/v1/models` lists it.
     Weights swapped behind an unchanged id are then not noticed: configure a digest to make the
     identity exact.
Either way `check_ready` requires the model id to be listed by `/v1/models`.
"""

from __future__ import annotations

import email.utils
import os
import re
import time
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

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

# Self-hosted servers accept any key; the client library insists on one. Never OPENAI_API_KEY by
# default: a key for api.openai.com has no business being sent to a self-hosted server.
NO_API_KEY = "no-key"
SERVED_ID_PREFIX = "openai-model:"
_SCHEMA_NAME = re.compile(r"[^A-Za-z0-9_-]")


def openai_base_url(url: str) -> str:
    """The client's base URL for a server: `url` itself when it has a path (e.g. `.../v1`), else
    `url` + `/v1`. `http://gpu-1:8000` -> `http://gpu-1:8000/v1`. Raises ValueError for a URL
    without scheme or host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL with a host: {url!r}")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def resolve_api_key(api_key: str | None, api_key_env: str | None) -> str:
    """The key to send: `api_key` if given, else the value of the environment variable named
    `api_key_env`, else a placeholder (self-hosted servers ignore it). Raises ValueError when
    `api_key_env` names a variable that is unset or empty."""
    if api_key:
        return api_key
    if api_key_env:
        value = os.environ.get(api_key_env)
        if not value:
            raise ValueError(f"environment variable {api_key_env} (the API key) is unset or empty")
        return value
    return NO_API_KEY


def _retry_after_s(headers: Any) -> float | None:
    """Seconds from `Retry-After` (a number or an HTTP date) or `retry-after-ms`; None if absent."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class OpenAICompatGenerator(HttpGenerator):
    """One OpenAI-compatible server through the official `openai` client, with bounded retries
    (exponential backoff + jitter, the server's `Retry-After` honoured).

    `base_url` is the server's root or its `/v1` base (`http://gpu-1:8000` or `.../v1`); `model`
    the model id as the server serves it (`/v1/models`). `digest` is the operator's identity for
    the weights (see the module doc); `api_key` / `api_key_env` the key, if the server wants one.
    Timeouts are seconds. The client's own retries are off: this class retries, so that failure
    reasons and attempt counts are the same as with Ollama. Raises ValueError for a bad URL or an
    unset `api_key_env` variable.
    """

    backend = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str | None = None,
        digest: str | None = None,
        timeout_s: float = 120.0,
        max_attempts: int = 4,
        max_in_flight: int = 4,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        ready_timeout_s: float = 10.0,
        strict_schema: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import openai

        self.base_url = openai_base_url(base_url)
        self.model = model
        self.configured_digest = digest or None
        self.timeout_s = timeout_s
        self.max_attempts = max(1, int(max_attempts))
        self.max_in_flight = max(1, int(max_in_flight))
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.strict_schema = strict_schema
        self._ready_timeout_s = min(ready_timeout_s, timeout_s)
        self._sleep = sleep
        self._api_key = resolve_api_key(api_key, api_key_env)
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=self._api_key, timeout=timeout_s, max_retries=0
        )
        self._probe: Any = None  # a short-timeout client for check_ready, made on first use
        self._digest: str | None = None
        self.served_model_id: str | None = None

    def check_ready(self) -> None:
        """List the server's models (within `ready_timeout_s` seconds), require `model` among them
        and record the identity. Raises `GeneratorUnavailable` with reason `CONNECTION_ERROR` when
        the server does not answer, `MODEL_NOT_FOUND` when it does not serve the model."""
        import openai

        if self._probe is None:
            # Its own client so a hung server fails the check in seconds, not after `timeout_s`.
            self._probe = openai.OpenAI(
                base_url=self.base_url, api_key=self._api_key, timeout=self._ready_timeout_s, max_retries=0
            )
        try:
            listed = [str(m.id) for m in self._probe.models.list()]
        except openai.APIStatusError as err:
            raise GeneratorUnavailable(
                f"The server at {self.base_url} answered {err.status_code} to GET /models: it is not an "
                f"OpenAI-compatible server, or the URL lacks its API prefix ({err.message}).",
                reason=MODEL_NOT_FOUND if err.status_code == 404 else CONNECTION_ERROR,
            ) from None
        except openai.APIConnectionError as err:
            raise GeneratorUnavailable(
                f"No OpenAI-compatible server is answering at {self.base_url} ({type(err).__name__}: {err}). "
                "Start it (vLLM, llama.cpp's llama-server, TGI) or correct the endpoint URL."
            ) from None
        except (openai.APIError, ValueError, AttributeError, TypeError) as err:  # a 200 that is no model list
            raise GeneratorUnavailable(
                f"The server at {self.base_url} answered GET /models with something that is not an OpenAI "
                f"model list ({type(err).__name__}: {err}): is the URL that of an OpenAI-compatible server?"
            ) from None
        if self.model not in listed:
            present = ", ".join(sorted(str(i) for i in listed)) or "none"
            raise GeneratorUnavailable(
                f"Model {self.model!r} is not served at {self.base_url} (models listed: {present}). "
                "Use the id exactly as /v1/models lists it (vLLM: --served-model-name; llama-server: --alias).",
                reason=MODEL_NOT_FOUND,
            )
        self.served_model_id = self.model
        self._digest = self.configured_digest or f"{SERVED_ID_PREFIX}{self.model}"

    def _response_format(self, request: GenerationRequest) -> dict[str, Any]:
        name = _SCHEMA_NAME.sub("_", request.task)[:64] or "output"
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": request.schema, "strict": self.strict_schema},
        }

    def _call(self, request: GenerationRequest, params: GenerationParams) -> Any:
        from openai.types.chat import ChatCompletion

        body = {
            "model": self.model,
            "messages": request.messages,
            "response_format": self._response_format(request),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": params.seed,
            "stream": False,
        }
        # The client's documented `post` with the typed response, rather than
        # `chat.completions.create`: the latter first walks every message and the whole JSON schema
        # to transform typed params (measured 0.5 ms of CPU per request, the client's largest cost
        # at fleet rates) and changes nothing in a body made of plain JSON values like this one.
        # Errors, timeouts and the response model are the same.
        return self._client.post("/chat/completions", body=body, cast_to=ChatCompletion)

    def attempt(self, request: GenerationRequest) -> GenerationResult:
        """One chat-completions call, no retry: the result (`error` None, `latency_s` and
        `attempts` 0 for the caller to fill), or `AttemptFailed` naming the reason, with the HTTP
        status and the server's `Retry-After` (seconds) if any."""
        import openai

        try:
            response = self._call(request, request.params)
        except openai.APITimeoutError as err:
            raise AttemptFailed(
                TIMEOUT, f"no answer within {self.timeout_s}s ({type(err).__name__})", retryable=True
            ) from None
        except openai.APIConnectionError as err:
            cause = err.__cause__ or err
            raise AttemptFailed(CONNECTION_ERROR, f"{type(cause).__name__}: {cause}", retryable=True) from None
        except openai.APIStatusError as err:
            status = err.status_code
            wait = _retry_after_s(err.response.headers)
            if status == 404:
                raise AttemptFailed(
                    MODEL_NOT_FOUND, f"{err.message} - is {self.model!r} served at {self.base_url}?",
                    retryable=False, status=404,
                ) from None
            if status == 429:
                raise AttemptFailed(RATE_LIMITED, err.message, retryable=True, status=429, retry_after_s=wait) from None
            if status >= 500:
                raise AttemptFailed(SERVER_ERROR, err.message, retryable=True, status=status, retry_after_s=wait) from None
            raise AttemptFailed(CLIENT_ERROR, f"{status}: {err.message}", retryable=False, status=status) from None
        except (openai.APIError, ValueError) as err:  # a 200 whose body is not a chat completion
            raise AttemptFailed(SERVER_ERROR, f"unreadable response: {err}", retryable=True) from None

        try:
            choice = response.choices[0]
            text = choice.message.content or ""
            finish = choice.finish_reason or "stop"
            usage = response.usage
            prompt_tokens = int(usage.prompt_tokens or 0) if usage is not None else 0
            completion_tokens = int(usage.completion_tokens or 0) if usage is not None else 0
        except (AttributeError, IndexError, TypeError, ValueError) as err:
            raise AttemptFailed(
                SERVER_ERROR, f"unreadable response ({type(err).__name__}): {str(response)[:200]!r}", retryable=True
            ) from None
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
