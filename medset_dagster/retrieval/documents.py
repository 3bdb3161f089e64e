"""The PDF corpus behind the RAG branch: which documents, where they come from, and how they are pinned.

Integrity is by SHA-256, and no file is accepted or pinned before it has been checked to be the PDF it
should be (`check_pdf_file`): a `%PDF-` header, readable by pypdf to its end (`%%EOF`), at least one
page, and exactly `DocumentSpec.pages` pages where the registry knows the count. An HTML login page, an
empty file or a cut-off download is refused with `DocumentContentError`, whether it was downloaded or
found in place, and nothing is pinned.

A spec with a literal `sha256` is always checked against it. The real books' hashes could not be read
when this registry was written (no network), so their specs have `sha256=None` and use **trust on
first use**: the first fetch that passes the PDF check records the file's hash in `pins.json` in the
download folder, and every later fetch enforces that pin. A file whose bytes differ from its pin is
never accepted silently: a re-download is attempted (URL documents) and must match the pin, otherwise
`DocumentChecksumError` says which file, both hashes, where the pin is recorded and how to re-pin. To
accept a deliberately changed file, delete its entry from `pins.json` (or put the new hash in the spec)
and run again. A pin recorded before the PDF check existed may hold the hash of a web page: such a file
still matches its pin but fails the check, and the error says to delete the pin entry and the file.

Progress notes (first-use pins, re-downloads, retries) go to the `log` callable given to
`fetch_document`/`fetch_corpus` (e.g. a Dagster `context.log.warning`), or to this module's logger.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from medset_dagster.common.files import atomic_write_text
from medset_dagster.common.hashing import sha256_file, stable_json
from medset_dagster.common.retry import RetryPolicy, call_with_retries
from medset_dagster.retrieval.pdf_checks import check_pdf_file

logger = logging.getLogger(__name__)

# Receives one human-readable note at a time (e.g. Dagster's `context.log.warning`).
Log = Callable[[str], None]

PINS_FILENAME = "pins.json"
SAMPLE_PDF_DIR = Path(__file__).resolve().parent.parent / "sample_data" / "pdfs"
# Where literal hashes live, as named in error messages.
REGISTRY_FILE = "medset_dagster/retrieval/documents.py"
USER_AGENT = "medset_dagster (dataset rebuild; pinned PDF download)"
# Transient HTTP statuses worth retrying; any other non-2xx status fails at once.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Whole-download deadline, seconds, across all attempts and the waits between them. The books in the
# registry are a few megabytes: a working link needs well under a minute; a server still sending after
# ten minutes is stalled or trickling.
DEFAULT_DEADLINE_SECONDS = 600.0


@dataclass(frozen=True)
class DocumentSpec:
    """One PDF of the corpus. `url` None: the file is placed by hand (or generated) and only verified.

    `sha256` is the publisher's file hash when known (hex), else None (pinned on first use). `pages`
    is the page count when known; a file with any other count is refused.
    """

    doc_id: str
    title: str
    filename: str
    url: str | None
    sha256: str | None
    licence: str
    optional: bool = False
    note: str = ""
    pages: int | None = None


FULL_DOCUMENTS: tuple[DocumentSpec, ...] = (
    DocumentSpec(
        doc_id="who_basic_emergency_care_2018",
        title="Basic Emergency Care: approach to the acutely ill and injured (WHO/ICRC, 2018)",
        filename="9789241513081-eng.pdf",
        url="https://iris.who.int/bitstream/handle/10665/275635/9789241513081-eng.pdf",
        sha256=None,
        licence="CC BY-NC-SA 3.0 IGO",
        pages=240,
        note=(
            "240 pages. The publisher's SHA-256 is not known here: the file could not be downloaded "
            "when this registry was written (no network), so sha256 stays None and the hash is pinned "
            "on first use, after the PDF and page-count check (see module docstring). Once a verified "
            "copy exists, put its hash here."
        ),
    ),
    DocumentSpec(
        doc_id="ifrc_first_aid_guidelines",
        title="IFRC first aid guidelines (as named on the dataset card)",
        filename="ifrc_first_aid_guidelines.pdf",
        url=None,
        sha256=None,
        licence="CC BY-NC-SA 3.0 IGO (if, as believed, the ICRC edition of Basic Emergency Care)",
        # Optional: with no known URL a required entry would fail every full build; its content is
        # believed to be the WHO book's, which is required.
        optional=True,
        note=(
            "The card's second file. Its origin was not recorded; sources.md says it was most likely the "
            "ICRC edition of Basic Emergency Care, i.e. the same book as who_basic_emergency_care_2018. "
            "No download URL is known: place the published build's file in the download folder under "
            "this name. Its SHA-256 and page count are unknown (the file was never available here), so "
            "it must pass the PDF check and its hash is pinned on first use."
        ),
    ),
    DocumentSpec(
        doc_id="ifrc_first_aid_guidelines_2020",
        title="International First Aid, Resuscitation and Education Guidelines 2020 (IFRC)",
        filename="EN_GFARC_GUIDELINES_2020.pdf",
        url="https://www.ifrc.org/sites/default/files/2022-02/EN_GFARC_GUIDELINES_2020.pdf",
        sha256=None,
        licence="IFRC: non-commercial copying permitted with acknowledgement of the source",
        optional=True,
        pages=476,
        note=(
            "476 pages. Not used by the published build (it came later); optional extension. The "
            "publisher's SHA-256 is not known here (no network when this registry was written), so it "
            "is pinned on first use after the PDF and page-count check."
        ),
    ),
)

SAMPLE_DOCUMENTS: tuple[DocumentSpec, ...] = (
    DocumentSpec(
        doc_id="sample_field_injuries",
        title="Field First Aid Notes: Bleeding, Wounds and Injuries",
        filename="sample_field_injuries.pdf",
        url=None,
        sha256="562a423871653dd8a656318462b829f173fa39acda15c7451ad65f5c45ce4005",
        licence="CC0-1.0",
        pages=8,
        note="Original text written for this project; generated by medset_dagster_tests/fixtures/sample_pdfs.py.",
    ),
    DocumentSpec(
        doc_id="sample_field_environment",
        title="Field First Aid Notes: Burns, Bites, Poisons and Improvised Care",
        filename="sample_field_environment.pdf",
        url=None,
        sha256="e5cd347174c30094a2bb8472bbaa7ee8ff306034e573fc688370e33dadc3c867",
        licence="CC0-1.0",
        pages=7,
        note="Original text written for this project; generated by medset_dagster_tests/fixtures/sample_pdfs.py.",
    ),
)


# ---------------------------------------------------------------------------------------------------
# Errors. Each message names the document, the file, what was found and what to do. The custom
# signatures are made picklable by `__reduce__` (Dagster may run steps in other processes).


class DocumentError(Exception):
    """Base class: a corpus document could not be obtained or trusted."""


def _registry_entry(spec: DocumentSpec) -> str:
    return f"the document registry (sha256 of {spec.doc_id!r} in {REGISTRY_FILE})"


def _where_pinned(spec: DocumentSpec, pins_file: Path) -> str:
    """Where the expected hash of `spec` is recorded, in words."""
    if spec.sha256:
        return f"{_registry_entry(spec)}; {pins_file} is not used for this document"
    return f"{pins_file} (pinned on first use)"


class DocumentContentError(DocumentError):
    """The file is not a readable PDF with the expected pages (an HTML page, empty, truncated, ...).

    Raised before anything is pinned, moved into place or accepted. `found` says what the file is
    instead; `downloaded` tells a refused download (discarded, `path` left as it was) from a file found
    in place at `path`; `pinned_sha256` is set when the file's hash equals the recorded pin or registry
    hash, i.e. the pin itself was taken from this bad file; `pdf_pages` is the page count when the file
    is a readable PDF with the wrong number of pages; `served_from` is the URL after redirects.
    """

    def __init__(
        self,
        spec: DocumentSpec,
        path: Path,
        found: str,
        downloaded: bool,
        pins_file: Path,
        pinned_sha256: str | None = None,
        served_from: str | None = None,
        pdf_pages: int | None = None,
    ) -> None:
        self.spec, self.path, self.found, self.downloaded = spec, path, found, downloaded
        self.pins_file, self.pinned_sha256, self.served_from = pins_file, pinned_sha256, served_from
        self.pdf_pages = pdf_pages
        source = f"the download from {spec.url}" if downloaded else f"the file {path}"
        if downloaded and served_from and served_from != spec.url:
            source += f" (redirected to {served_from})"
        parts = [f"document {spec.doc_id!r} ({spec.title}): {source} is not the PDF the registry expects: "
                 f"it is {found}."]
        if downloaded:
            parts.append(f"It was discarded, not saved to {path}, and nothing was pinned.")
        else:
            parts.append("It was not accepted and nothing was pinned.")
        steps: list[str] = []
        if pinned_sha256 is not None and spec.sha256:
            parts.append(f"Its sha256 {pinned_sha256} is the one set in {_registry_entry(spec)}, so that "
                         f"entry is wrong.")
            steps.append(f"correct sha256 of {spec.doc_id!r} in {REGISTRY_FILE} to the real book's hash (or "
                         f"set it to None to pin on first use)")
        elif pinned_sha256 is not None:
            parts.append(f"Its sha256 {pinned_sha256} is the one pinned for {spec.doc_id!r} in {pins_file}: "
                         f"that pin was taken from this bad file (pins recorded before files were checked "
                         f"to be PDFs).")
            steps.append(f"delete the entry for {spec.doc_id!r} from {pins_file}")
        steps.append(self._file_step())
        parts.append("What to do: " + "; ".join(steps) + "; then run again.")
        super().__init__(" ".join(parts))

    def _file_step(self) -> str:
        """What to do about the file itself."""
        spec, path = self.spec, self.path
        if self.pdf_pages is not None:
            where = f"{spec.url} now serves" if self.downloaded else f"{path} is"
            return (f"if {where} another edition you mean to use, set pages of {spec.doc_id!r} in "
                    f"{REGISTRY_FILE} to {self.pdf_pages}; otherwise place the real book ({spec.title}) at "
                    f"{path}" + ("" if self.downloaded else " in its place"))
        if spec.url is None:
            return (f"replace {path} with the real book ({spec.title}); no download URL is known for it, "
                    f"so it must be placed by hand")
        if self.downloaded:
            return (f"open {spec.url} in a browser: if it shows a web page (login, error, cookie notice) "
                    f"rather than the book, the publisher has moved or restricted it, so set the url of "
                    f"{spec.doc_id!r} in {REGISTRY_FILE} to its new address, or download the book by hand "
                    f"and place it at {path} (it is checked and pinned on the next run)")
        return (f"delete {path} so that it is downloaded again from {spec.url}, or place the real book "
                f"({spec.title}) there")

    def __reduce__(self):
        return type(self), (self.spec, self.path, self.found, self.downloaded, self.pins_file,
                            self.pinned_sha256, self.served_from, self.pdf_pages)


class DocumentChecksumError(DocumentError):
    """The file's SHA-256 differs from the expected one (the registry's literal, else the pin).

    `origin` is the URL the bytes were downloaded from (the download was discarded and `path` left as
    it was), or None for the file found at `path`. `found` describes the file when it is not even a
    readable PDF.
    """

    def __init__(
        self,
        spec: DocumentSpec,
        expected: str,
        actual: str,
        origin: str | None,
        path: Path,
        pins_file: Path,
        found: str | None = None,
    ) -> None:
        self.spec, self.expected, self.actual, self.origin = spec, expected, actual, origin
        self.path, self.pins_file, self.found = path, pins_file, found
        what = f"the download from {origin}" if origin else f"the file {path}"
        message = (
            f"checksum mismatch for document {spec.doc_id!r} ({spec.filename}): {what} has sha256 "
            f"{actual}, but sha256 {expected} is expected, as recorded in {_where_pinned(spec, pins_file)}."
        )
        if found is not None:
            message += f" It is not even a readable PDF: found {found}."
        message += f" It was discarded; {path} was left as it was." if origin else " The file was not accepted."
        if spec.sha256:
            repin = (f"set sha256 of {spec.doc_id!r} in {REGISTRY_FILE} to {actual} (or to None, to pin on "
                     f"first use in {pins_file})")
        else:
            repin = (f"delete the entry for {spec.doc_id!r} from {pins_file} (or set sha256 of "
                     f"{spec.doc_id!r} in {REGISTRY_FILE} to {actual})")
        if origin:
            otherwise = f"the server sends a damaged or substituted file: check {origin} in a browser, or "
            otherwise += f"place the real book at {path} by hand."
        elif spec.url:
            otherwise = f"the file was damaged or substituted: delete {path} and run again to download it afresh."
        else:
            otherwise = f"the file was damaged or substituted: replace {path} with the real book ({spec.title})."
        message += (f" What to do: if the publisher deliberately changed the file and you trust the new one, "
                    f"re-pin it: {repin}, then run again. Otherwise {otherwise}")
        super().__init__(message)

    def __reduce__(self):
        return type(self), (self.spec, self.expected, self.actual, self.origin, self.path, self.pins_file,
                            self.found)


class DocumentUnavailableError(DocumentError):
    """No URL to download from and no file in place (documents that must be placed by hand)."""


class DocumentDownloadError(DocumentError):
    """The download failed for good: retries exhausted, or a subclass below. Nothing was saved."""


class DocumentHttpError(DocumentDownloadError):
    """The server answered a permanent HTTP error (any non-2xx status other than `RETRY_STATUSES`)."""

    def __init__(self, spec: DocumentSpec, url: str, status: int, reason: str, path: Path) -> None:
        self.spec, self.url, self.status, self.reason, self.path = spec, url, status, reason, path
        if status in (401, 403):
            cause = "the server refuses access to it"
        elif status in (404, 410):
            cause = "the server has no file at that address (moved or removed)"
        else:
            cause = "the server refused the request"
        super().__init__(
            f"document {spec.doc_id!r} ({spec.title}): downloading {url} failed with HTTP {status}"
            f"{' ' + reason if reason else ''}: {cause}. Nothing was saved to {path}. What to do: open "
            f"{url} in a browser; if the book has moved, set the url of {spec.doc_id!r} in {REGISTRY_FILE} "
            f"to its new address, or download the book by hand and place it at {path} (it is checked and "
            f"pinned on the next run)."
        )

    def __reduce__(self):
        return type(self), (self.spec, self.url, self.status, self.reason, self.path)


class DocumentDeadlineError(DocumentDownloadError):
    """The whole download (all attempts and the waits between them) outlasted its deadline."""

    def __init__(
        self, spec: DocumentSpec, url: str, deadline_seconds: float, received: int | None, path: Path
    ) -> None:
        """`received`: bytes of the attempt that was stopped; None when the deadline passed while waiting
        to retry after earlier failures."""
        self.spec, self.url, self.deadline_seconds, self.received, self.path = (
            spec, url, deadline_seconds, received, path)
        progress = (f"{received} bytes had arrived when it was stopped" if received is not None
                    else "it ran out while waiting to retry after earlier failures")
        super().__init__(
            f"document {spec.doc_id!r} ({spec.title}): downloading {url} did not finish within the "
            f"{deadline_seconds:g} s deadline ({progress}). Nothing was "
            f"saved to {path}. What to do: the server is stalled or sending very slowly; run again later, "
            f"raise deadline_seconds, or download the book by hand and place it at {path}."
        )

    def __reduce__(self):
        return type(self), (self.spec, self.url, self.deadline_seconds, self.received, self.path)


# ---------------------------------------------------------------------------------------------------
# Is it the PDF?


def _require_pdf(
    spec: DocumentSpec,
    file: Path,
    target: Path,
    *,
    downloaded: bool,
    pinned_sha256: str | None,
    served_from: str | None = None,
) -> int:
    """The page count of `file` (the download's temporary file, or `target` itself), else raise
    `DocumentContentError` naming `target`."""
    check = check_pdf_file(file, spec.pages)
    if check.problem is not None:
        wrong_count = check.pages if check.pages and spec.pages and check.pages != spec.pages else None
        raise DocumentContentError(spec, target, check.problem, downloaded, target.parent / PINS_FILENAME,
                                   pinned_sha256, served_from, wrong_count)
    assert check.pages is not None
    return check.pages


# ---------------------------------------------------------------------------------------------------
# Pins (trust on first use)


def read_pins(folder: Path) -> dict[str, dict[str, object]]:
    """The pins recorded in `folder/pins.json`: doc_id -> {filename, sha256 (hex), bytes (size), pages,
    url}; {} when there is no such file. A file that is not JSON raises `json.JSONDecodeError`."""
    path = folder / PINS_FILENAME
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


@contextlib.contextmanager
def _pins_lock(folder: Path) -> Iterator[None]:
    """Serialise read-modify-write of pins.json across processes (Dagster may fetch in parallel)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: single-process use only
        yield
        return
    with open(folder / f".{PINS_FILENAME}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _record_pin(
    folder: Path, spec: DocumentSpec, sha256: str, size: int, pages: int, origin: str | None, report: _Report
) -> None:
    """Pin a first-seen hash (`size` in bytes). Refuses to overwrite a different existing pin."""
    pins_file = folder / PINS_FILENAME
    with _pins_lock(folder):
        pins = read_pins(folder)
        existing = pins.get(spec.doc_id, {}).get("sha256")
        if existing not in (None, sha256):
            raise DocumentChecksumError(spec, str(existing), sha256, origin, folder / spec.filename, pins_file)
        pins[spec.doc_id] = {"filename": spec.filename, "sha256": sha256, "bytes": size, "pages": pages,
                             "url": spec.url}
        atomic_write_text(pins_file, stable_json(pins) + "\n")
    report(logging.INFO, f"document {spec.doc_id!r}: pinned sha256 {sha256} of {folder / spec.filename} "
                         f"({size} bytes, {pages} pages) on first use in {pins_file}")


def expected_sha256(spec: DocumentSpec, folder: Path) -> str | None:
    """The hash a file must have: the spec's literal, else its pin, else None (first use)."""
    if spec.sha256:
        return spec.sha256
    pin = read_pins(folder).get(spec.doc_id)
    return str(pin["sha256"]) if pin else None


# ---------------------------------------------------------------------------------------------------
# Notes for the caller

_Report = Callable[[int, str], None]


def _reporter(log: Log | None) -> _Report:
    """`report(level, message)`: to `log` when given (every level), else to the module logger."""

    def report(level: int, message: str) -> None:
        if log is None:
            logger.log(level, message)
        else:
            log(message)

    return report


# ---------------------------------------------------------------------------------------------------
# Fetch


def fetch_document(
    spec: DocumentSpec,
    folder: str | Path,
    *,
    session_timeout: float = 60.0,
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
    max_attempts: int = 4,
    backoff_seconds: float = 1.0,
    client: httpx.Client | None = None,
    log: Log | None = None,
) -> Path:
    """Make `folder/spec.filename` present, a readable PDF and verified; returns its path.

    A file already present with the expected hash (and passing `check_pdf_file`) is returned without
    any request. Otherwise it is downloaded into a temporary file in the same folder (bounded retries,
    exponential backoff `backoff_seconds * 2**n` seconds on timeouts, connection errors, 429 and 5xx),
    checked, and only then moved into place with `os.replace`, so a refused or interrupted download
    never leaves a file under the final name. With no expected hash (first use) the checked file's hash
    is written to `pins.json` first.

    Times are seconds: `session_timeout` bounds connecting and each wait for data; `deadline_seconds`
    (default `DEFAULT_DEADLINE_SECONDS`, 600) bounds the whole download, all attempts and backoff
    waits included. The deadline is checked as data arrives, so the fetch gives up at most one
    `session_timeout` after it (a read already waiting is not interrupted).

    `log` receives each note as one string: the first-use pin, a re-download after a mismatch, each
    retry. None (default) sends them to this module's logger.

    Raises `DocumentContentError` (not a readable PDF with the expected pages: nothing pinned),
    `DocumentChecksumError` (hash differs from the registry or pin), `DocumentUnavailableError` (no URL
    and no file), `DocumentHttpError` (permanent HTTP status), `DocumentDeadlineError` (deadline
    passed), `DocumentDownloadError` (retries exhausted); all are `DocumentError`s.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / spec.filename
    pins_file = folder / PINS_FILENAME
    report = _reporter(log)
    expected = expected_sha256(spec, folder)

    if target.exists():
        actual = sha256_file(target)
        if expected is None or actual == expected:
            pages = _require_pdf(spec, target, target, downloaded=False,
                                 pinned_sha256=actual if actual == expected else None)
            if expected is None:
                _record_pin(folder, spec, actual, target.stat().st_size, pages, None, report)
            return target
        if spec.url is None:
            raise DocumentChecksumError(spec, expected, actual, None, target, pins_file,
                                        check_pdf_file(target).problem)
        report(logging.WARNING,
               f"document {spec.doc_id!r}: {target} has sha256 {actual}, not the expected {expected} "
               f"recorded in {_where_pinned(spec, pins_file)}; downloading it again from {spec.url}")
    elif spec.url is None:
        raise DocumentUnavailableError(
            f"document {spec.doc_id!r} ({spec.filename}) has no download URL and is not present in "
            f"{folder}; place the file there by hand"
        )

    assert spec.url is not None
    own_client = client is None
    http = client or httpx.Client(
        timeout=session_timeout, follow_redirects=True, headers={"User-Agent": USER_AGENT}
    )
    deadline = time.monotonic() + deadline_seconds
    try:
        download = _download_with_retries(
            http, spec, target, session_timeout, deadline, deadline_seconds, max_attempts, backoff_seconds, report
        )
    finally:
        if own_client:
            http.close()
    try:
        if expected is not None and download.sha256 != expected:
            raise DocumentChecksumError(spec, expected, download.sha256, spec.url, target, pins_file,
                                        check_pdf_file(download.tmp).problem)
        pages = _require_pdf(spec, download.tmp, target, downloaded=True,
                             pinned_sha256=expected, served_from=download.final_url)
        if expected is None:
            _record_pin(folder, spec, download.sha256, download.size, pages, spec.url, report)
        os.replace(download.tmp, target)
    finally:
        download.tmp.unlink(missing_ok=True)  # no-op once moved into place
    return target


@dataclass(frozen=True)
class _Download:
    tmp: Path  # the temporary file in the target's folder
    sha256: str
    size: int  # bytes
    final_url: str  # after redirects


class _TransientError(Exception):
    pass


def _download_with_retries(
    http: httpx.Client,
    spec: DocumentSpec,
    target: Path,
    session_timeout: float,
    deadline: float,
    deadline_seconds: float,
    max_attempts: int,
    backoff_seconds: float,
    report: _Report,
) -> _Download:
    assert spec.url is not None
    url = spec.url

    def on_retry(attempt: int, error: BaseException, wait_s: float) -> None:
        report(logging.WARNING, f"document {spec.doc_id!r}: attempt {attempt}/{max_attempts} to download {url} "
                                f"failed ({error}); retrying in {wait_s:.2f} s")

    def sleep(seconds: float) -> None:  # never wait past the deadline; the next attempt then reports it
        time.sleep(max(0.0, min(seconds, deadline - time.monotonic())))

    def attempt() -> _Download:
        return _download_once(http, spec, url, target, session_timeout, deadline, deadline_seconds)

    policy = RetryPolicy(attempts=max_attempts, initial_s=backoff_seconds, maximum_s=60.0, jitter_s=0.0)
    try:
        return call_with_retries(
            attempt, policy, lambda error: isinstance(error, _TransientError), on_retry=on_retry, sleep=sleep
        )
    except _TransientError as exc:
        raise DocumentDownloadError(
            f"document {spec.doc_id!r} ({spec.filename}): giving up after {max_attempts} attempts to download "
            f"{url} (last failure: {exc}). Nothing was saved to {target}. What to do: the server or the "
            f"network keeps failing; run again later, or download the book by hand and place it at {target}."
        ) from exc


def _download_once(
    http: httpx.Client,
    spec: DocumentSpec,
    url: str,
    target: Path,
    session_timeout: float,
    deadline: float,
    deadline_seconds: float,
) -> _Download:
    """Stream one attempt into a temp file next to `target`. Cleans up on failure."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DocumentDeadlineError(spec, url, deadline_seconds, None, target)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as handle, http.stream(
            "GET", url, timeout=httpx.Timeout(min(session_timeout, remaining))
        ) as response:
            if response.status_code in RETRY_STATUSES:
                raise _TransientError(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                raise DocumentHttpError(spec, url, response.status_code, response.reason_phrase, target)
            # Without a chunk size, blocks come as they arrive, so the deadline is checked even when
            # a server trickles a few bytes at a time.
            for block in response.iter_bytes():
                handle.write(block)
                digest.update(block)
                size += len(block)
                if time.monotonic() > deadline:
                    raise DocumentDeadlineError(spec, url, deadline_seconds, size, target)
            final_url = str(response.url)
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        # TransportError covers refused connections and bodies cut short (RemoteProtocolError).
        tmp.unlink(missing_ok=True)
        if time.monotonic() >= deadline:
            raise DocumentDeadlineError(spec, url, deadline_seconds, size, target) from exc
        raise _TransientError(f"{type(exc).__name__}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _Download(tmp, digest.hexdigest(), size, final_url)


def fetch_corpus(
    specs: tuple[DocumentSpec, ...],
    folder: str | Path,
    *,
    include_optional: bool = False,
    log: Log | None = None,
    **kwargs: object,
) -> dict[str, Path]:
    """Fetch every required document (and optional ones if asked); doc_id -> verified path.

    `log` and `kwargs` (`session_timeout`, `deadline_seconds`, ...) go to `fetch_document`; the first
    `DocumentError` stops the fetch.
    """
    return {
        spec.doc_id: fetch_document(spec, folder, log=log, **kwargs)  # type: ignore[arg-type]
        for spec in specs
        if include_optional or not spec.optional
    }
