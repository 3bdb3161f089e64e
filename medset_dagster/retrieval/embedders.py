"""Text embedders for the retrieval branch: Cohere (as published) and an offline TF-IDF + SVD stand-in.

Both return float32 rows of unit length, so inner product equals cosine similarity and the
published `IndexFlatL2` ranking is reproduced by an inner-product index.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol, runtime_checkable

import numpy as np

from medset_dagster.common.hashing import sha256_json, stable_json
from medset_dagster.common.retry import RetryPolicy, call_with_retries

logger = logging.getLogger(__name__)

InputType = Literal["search_document", "search_query"]
INPUT_TYPES: tuple[str, ...] = ("search_document", "search_query")

COHERE_MAX_BATCH = 96
"""Texts per embed call accepted by the Cohere API."""
PUBLISHED_BATCH_SIZE = 32
"""Texts per call in the published build (kept for comparison only)."""

COHERE_DIMENSIONS: dict[str, int] = {
    "embed-english-v3.0": 1024,
    "embed-multilingual-v3.0": 1024,
    "embed-english-light-v3.0": 384,
    "embed-multilingual-light-v3.0": 384,
    "embed-v4.0": 1536,
}


class EmbeddingBackendError(RuntimeError):
    """The embedding backend failed for good (after retries, or with an answer we cannot use)."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int | None = None):
        super().__init__(message)
        self.status = status
        self.attempts = attempts


@runtime_checkable
class Embedder(Protocol):
    """What the cache, the index and the retriever need from an embedding model."""

    backend: str
    model: str
    dimension: int
    fingerprint: str  # identifies the exact weights: two embedders with equal fingerprints give equal vectors
    max_batch: int

    def embed(self, texts: Sequence[str], input_type: InputType) -> np.ndarray:
        """float32 array of shape (len(texts), dimension), each row L2-normalised."""
        ...


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length as C-contiguous float32 (what FAISS wants); all-zero rows stay zero."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


def _check_input_type(input_type: str) -> None:
    if input_type not in INPUT_TYPES:
        raise ValueError(f"input_type must be one of {INPUT_TYPES}, got {input_type!r}")


# --------------------------------------------------------------------------------------------------
# Cohere
# --------------------------------------------------------------------------------------------------


class _RetryableFailure(Exception):
    """One failed attempt that is worth repeating; carries what the retry loop needs to know."""

    def __init__(self, description: str, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(description)
        self.description = description
        self.status = status
        self.retry_after_s = retry_after_s


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None when absent or unreadable."""
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
    return max(0.0, when.timestamp() - time.time())


class CohereEmbedder:
    """Cohere v2 embed through the official SDK, with our own bounded retries.

    The SDK's retries are switched off (`max_retries=0`) so that `max_attempts` is the real bound and
    `calls` counts every HTTP request. 429 waits for Retry-After; 5xx, timeouts and connection errors back
    off exponentially with full jitter; other statuses and malformed bodies fail at once.
    """

    backend = "cohere"

    def __init__(
        self,
        api_key: str,
        model: str = "embed-english-v3.0",
        base_url: str | None = None,
        timeout_s: float = 30,
        max_attempts: int = 5,
        max_batch: int = COHERE_MAX_BATCH,
        *,
        dimension: int | None = None,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        max_retry_after_s: float = 120.0,
    ):
        import cohere  # imported here so the local embedder works without touching the SDK

        if not api_key:
            raise EmbeddingBackendError("No Cohere API key given: set COHERE_API_KEY")
        if not 1 <= max_batch <= COHERE_MAX_BATCH:
            raise ValueError(f"max_batch must be within 1..{COHERE_MAX_BATCH} (the API limit), got {max_batch}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if dimension is None:
            if model not in COHERE_DIMENSIONS:
                raise ValueError(f"Unknown dimension for Cohere model {model!r}: pass dimension=")
            dimension = COHERE_DIMENSIONS[model]
        self.model = model
        self.fingerprint = model  # Cohere does not expose weight versions; the model name is the best identity
        self.dimension = dimension
        self.max_batch = max_batch
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.calls = 0  # HTTP requests made, retries included
        self.__api_key = api_key  # name-mangled and never formatted into text
        self._client = cohere.ClientV2(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)

    def __repr__(self) -> str:
        return (
            f"CohereEmbedder(model={self.model!r}, base_url={self.base_url!r}, api_key='***', "
            f"max_batch={self.max_batch}, max_attempts={self.max_attempts}, calls={self.calls})"
        )

    def _redact(self, text: str) -> str:
        """Remove the key from text that came from elsewhere (an echoed header, a proxy's error page)."""
        return text.replace(self.__api_key, "***")

    def embed(self, texts: Sequence[str], input_type: InputType) -> np.ndarray:
        _check_input_type(input_type)
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [self._embed_batch(texts[i : i + self.max_batch], input_type) for i in range(0, len(texts), self.max_batch)]
        return np.concatenate(parts, axis=0)

    def _embed_batch(self, texts: list[str], input_type: InputType) -> np.ndarray:
        def on_retry(attempt: int, failure: BaseException, wait_s: float) -> None:
            logger.warning(
                "Cohere embed attempt %d/%d failed (%s); retrying in %.2fs",
                attempt, self.max_attempts, getattr(failure, "description", failure), wait_s,
            )

        policy = RetryPolicy(
            attempts=self.max_attempts,
            initial_s=self.backoff_initial_s,
            maximum_s=self.backoff_max_s,
            jitter_s=self.backoff_initial_s,
        )
        try:
            return call_with_retries(
                lambda: self._attempt(texts, input_type),
                policy,
                lambda error: isinstance(error, _RetryableFailure),
                # The server said when (Retry-After); waiting less only earns another 429.
                wait_hint=lambda error: min(error.retry_after_s, self.max_retry_after_s)
                if getattr(error, "retry_after_s", None) is not None
                else None,
                on_retry=on_retry,
            )
        except _RetryableFailure as last:
            raise EmbeddingBackendError(
                self._redact(
                    f"Cohere embed of {len(texts)} texts with model {self.model!r} failed after "
                    f"{self.max_attempts} attempts; last error: {last.description}"
                ),
                status=last.status,
                attempts=self.max_attempts,
            ) from None

    def _attempt(self, texts: list[str], input_type: InputType) -> np.ndarray:
        """One HTTP request. Raises _RetryableFailure for transient trouble, EmbeddingBackendError otherwise."""
        import httpx
        from cohere.core.api_error import ApiError

        self.calls += 1
        try:
            response = self._client.embed(
                model=self.model,
                input_type=input_type,
                texts=texts,
                embedding_types=["float"],
                request_options={"max_retries": 0, "timeout": self.timeout_s},
            )
        except ApiError as error:
            self._raise_for_status(error)
        except httpx.TimeoutException as error:
            raise _RetryableFailure(f"timed out after {self.timeout_s}s ({type(error).__name__})") from None
        except httpx.TransportError as error:
            raise _RetryableFailure(f"connection error ({type(error).__name__})") from None
        return self._vectors_from(response, len(texts))

    def _raise_for_status(self, error: Any) -> NoReturn:
        status = getattr(error, "status_code", None)
        headers = {str(k).lower(): v for k, v in (getattr(error, "headers", None) or {}).items()}
        if status is not None and 200 <= status < 300:
            # The SDK wraps a 2xx body it could not decode as JSON into an ApiError.
            raise EmbeddingBackendError(
                f"Cohere embed returned HTTP {status} with a malformed body (not JSON)", status=status, attempts=1
            ) from None
        if status == 429:
            raise _RetryableFailure("HTTP 429 rate limited", status, _parse_retry_after(headers.get("retry-after")))
        if status is not None and status >= 500:
            raise _RetryableFailure(f"HTTP {status} server error", status)
        if status in (401, 498):
            raise EmbeddingBackendError(
                f"Cohere rejected the API key (HTTP {status}): check COHERE_API_KEY", status=status, attempts=1
            ) from None
        body = self._redact(str(getattr(error, "body", "")))[:300]
        raise EmbeddingBackendError(
            f"Cohere embed failed with HTTP {status} (not retried): {body}", status=status, attempts=1
        ) from None

    def _vectors_from(self, response: Any, expected: int) -> np.ndarray:
        embeddings = getattr(response, "embeddings", None)
        rows = getattr(embeddings, "float_", None)
        if rows is None:
            raise EmbeddingBackendError("Cohere embed response is malformed: no 'embeddings.float' array", status=200)
        if len(rows) != expected:
            raise EmbeddingBackendError(
                f"Cohere embed response is malformed: {len(rows)} embeddings for {expected} texts", status=200
            )
        try:
            matrix = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError):
            raise EmbeddingBackendError("Cohere embed response is malformed: embeddings are not numeric", status=200) from None
        if matrix.shape != (expected, self.dimension) or not np.isfinite(matrix).all():
            raise EmbeddingBackendError(
                f"Cohere embed response is malformed: shape {matrix.shape}, expected ({expected}, {self.dimension}) finite",
                status=200,
            )
        return l2_normalise(matrix)


# --------------------------------------------------------------------------------------------------
# Local TF-IDF + truncated SVD
# --------------------------------------------------------------------------------------------------


class LocalTfidfEmbedder:
    """Offline embedder (latent semantic analysis) for the sample profile and tests: no weights to download.

    Fitted on the chunk corpus and saved next to the index so that questions are embedded with the same
    vocabulary and projection. `input_type` is accepted for the interface and ignored. A text with no word
    from the fitted vocabulary embeds to the zero vector (it scores 0 against every chunk).
    """

    backend = "local-tfidf-svd"
    FILE_FORMAT = 1

    def __init__(self, dimension: int = 256, *, max_features: int | None = 100_000, random_state: int = 0, max_batch: int = 4096):
        self.requested_dimension = dimension
        self.max_features = max_features
        self.random_state = random_state
        self.max_batch = max_batch
        self.dimension = dimension
        self.fingerprint = ""
        self._vectorizer: Any = None
        self._svd: Any = None

    @property
    def model(self) -> str:
        return f"tfidf-1-2gram-sublinear+svd{self.dimension}"

    @property
    def is_fitted(self) -> bool:
        return self._svd is not None

    def __repr__(self) -> str:
        state = f"fingerprint={self.fingerprint[:12]!r}" if self.is_fitted else "unfitted"
        return f"LocalTfidfEmbedder(dimension={self.dimension}, {state})"

    def _params(self) -> dict[str, Any]:
        return {
            "requested_dimension": self.requested_dimension,
            "max_features": self.max_features,
            "random_state": self.random_state,
        }

    def fit(self, texts: Sequence[str]) -> LocalTfidfEmbedder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = list(texts)
        if len(texts) < 2:
            raise ValueError("LocalTfidfEmbedder needs at least 2 texts to fit")
        vectorizer = TfidfVectorizer(
            ngram_range=(1, 2), sublinear_tf=True, stop_words="english", max_features=self.max_features, dtype=np.float64
        )
        tfidf = vectorizer.fit_transform(texts)
        # SVD needs fewer components than both documents and terms; small corpora get a smaller space.
        dimension = min(self.requested_dimension, tfidf.shape[0] - 1, tfidf.shape[1] - 1)
        if dimension < 1:
            raise ValueError("Corpus too small for LocalTfidfEmbedder (needs at least 2 distinct documents and terms)")
        svd = TruncatedSVD(n_components=dimension, algorithm="randomized", n_iter=7, random_state=self.random_state)
        svd.fit(tfidf)
        self._vectorizer, self._svd, self.dimension = vectorizer, svd, dimension
        self.fingerprint = self._compute_fingerprint()
        return self

    def _compute_fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(stable_json(self._params()).encode())
        digest.update(sha256_json(self._vectorizer.vocabulary_).encode())
        digest.update(np.ascontiguousarray(self._vectorizer.idf_, dtype=np.float64).tobytes())
        digest.update(np.ascontiguousarray(self._svd.components_, dtype=np.float64).tobytes())
        return digest.hexdigest()

    def embed(self, texts: Sequence[str], input_type: InputType = "search_document") -> np.ndarray:
        _check_input_type(input_type)
        if not self.is_fitted:
            raise RuntimeError("LocalTfidfEmbedder is not fitted: call fit(corpus) or load(path) first")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return l2_normalise(self._svd.transform(self._vectorizer.transform(texts)))

    def save(self, path: str | Path) -> Path:
        """Write the fitted pipeline with joblib; the file is code (pickle): load only files you wrote."""
        import joblib
        import sklearn

        if not self.is_fitted:
            raise RuntimeError("Cannot save an unfitted LocalTfidfEmbedder")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        payload = {
            "format": self.FILE_FORMAT,
            "sklearn_version": sklearn.__version__,
            "params": self._params(),
            "max_batch": self.max_batch,
            "dimension": self.dimension,
            "fingerprint": self.fingerprint,
            "vectorizer": self._vectorizer,
            "svd": self._svd,
        }
        joblib.dump(payload, temporary)
        temporary.replace(path)  # readers never see a half-written file
        return path

    @classmethod
    def load(cls, path: str | Path) -> LocalTfidfEmbedder:
        import joblib

        payload = joblib.load(Path(path))
        if payload.get("format") != cls.FILE_FORMAT:
            raise ValueError(f"{path}: unsupported LocalTfidfEmbedder file format {payload.get('format')!r}")
        params = payload["params"]
        embedder = cls(
            params["requested_dimension"],
            max_features=params["max_features"],
            random_state=params["random_state"],
            max_batch=payload["max_batch"],
        )
        embedder._vectorizer, embedder._svd, embedder.dimension = payload["vectorizer"], payload["svd"], payload["dimension"]
        embedder.fingerprint = embedder._compute_fingerprint()
        if embedder.fingerprint != payload["fingerprint"]:
            # e.g. a different scikit-learn unpickled the state differently: queries would not match the index.
            raise ValueError(f"{path}: fitted state does not match its recorded fingerprint")
        return embedder
