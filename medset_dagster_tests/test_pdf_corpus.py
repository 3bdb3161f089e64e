"""Document registry, pinned sample PDFs, and fetching against a local HTTP server."""

from __future__ import annotations

import json
import logging
import pickle
import time
from pathlib import Path

import pytest
from pypdf import PdfReader

from medset_dagster.common.hashing import sha256_file, sha256_text
from medset_dagster.retrieval.documents import (
    FULL_DOCUMENTS,
    PINS_FILENAME,
    SAMPLE_DOCUMENTS,
    SAMPLE_PDF_DIR,
    DocumentChecksumError,
    DocumentContentError,
    DocumentDeadlineError,
    DocumentDownloadError,
    DocumentHttpError,
    DocumentSpec,
    DocumentUnavailableError,
    fetch_corpus,
    fetch_document,
    read_pins,
)
from medset_dagster.retrieval.pdf_checks import check_pdf_file
from medset_dagster_tests.fixtures.sample_pdfs import write_sample_pdfs
from medset_dagster_tests.servers.file_server import SLOW, TRICKLE, TRUNCATE, FileServer

PAYLOAD = (SAMPLE_PDF_DIR / SAMPLE_DOCUMENTS[0].filename).read_bytes()
PAYLOAD_SHA = sha256_file(SAMPLE_PDF_DIR / SAMPLE_DOCUMENTS[0].filename)
PAYLOAD_PAGES = len(PdfReader(SAMPLE_PDF_DIR / SAMPLE_DOCUMENTS[0].filename).pages)
OTHER_PDF = (SAMPLE_PDF_DIR / SAMPLE_DOCUMENTS[1].filename).read_bytes()  # a valid PDF, other bytes
LOGIN_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    b"<body><form action='/login'>Password: <input type='password'></form></body></html>\n"
)
FAST = {"backoff_seconds": 0.01, "session_timeout": 5.0}


@pytest.fixture
def server():
    with FileServer({"/doc.pdf": PAYLOAD}) as running:
        yield running


def spec_for(server: FileServer | None, sha256: str | None = None) -> DocumentSpec:
    return DocumentSpec(
        doc_id="test_doc",
        title="Test document",
        filename="doc.pdf",
        url=server.url("/doc.pdf") if server else None,
        sha256=sha256,
        licence="test",
    )


def leftovers(folder: Path) -> list[str]:
    """Temporary files a download may have left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".tmp")))


# -- registry and sample files ---------------------------------------------------------------------


def test_full_registry():
    assert [d.doc_id for d in FULL_DOCUMENTS] == [
        "who_basic_emergency_care_2018",
        "ifrc_first_aid_guidelines",
        "ifrc_first_aid_guidelines_2020",
    ]
    assert [d.filename for d in FULL_DOCUMENTS] == [
        "9789241513081-eng.pdf",
        "ifrc_first_aid_guidelines.pdf",
        "EN_GFARC_GUIDELINES_2020.pdf",
    ]
    assert [d.optional for d in FULL_DOCUMENTS] == [False, True, True]
    assert all(d.sha256 is None and d.licence for d in FULL_DOCUMENTS)  # trust on first use
    # No hash is invented: each note says the publisher's hash is not known here.
    assert all("SHA-256" in d.note and ("not known" in d.note or "unknown" in d.note) for d in FULL_DOCUMENTS)
    assert [d.pages for d in FULL_DOCUMENTS] == [240, None, 476]
    assert "ICRC edition" in FULL_DOCUMENTS[1].note


def test_sample_registry_knows_page_counts():
    assert [(d.pages, check_pdf_file(SAMPLE_PDF_DIR / d.filename).pages) for d in SAMPLE_DOCUMENTS] == [
        (8, 8),
        (7, 7),
    ]


def test_sample_pdfs_verified_in_place_without_pinning():
    paths = fetch_corpus(SAMPLE_DOCUMENTS, SAMPLE_PDF_DIR)
    assert {doc_id: path.name for doc_id, path in paths.items()} == {
        "sample_field_injuries": "sample_field_injuries.pdf",
        "sample_field_environment": "sample_field_environment.pdf",
    }
    assert not (SAMPLE_PDF_DIR / PINS_FILENAME).exists()  # literal hashes need no pin file


def test_sample_pdfs_regenerate_byte_identical(tmp_path):
    written = write_sample_pdfs(tmp_path)
    assert {doc_id: sha256_file(path) for doc_id, path in written.items()} == {
        spec.doc_id: spec.sha256 for spec in SAMPLE_DOCUMENTS
    }


# -- fetching --------------------------------------------------------------------------------------


def test_download_verified_against_literal_hash(server, tmp_path):
    path = fetch_document(spec_for(server, PAYLOAD_SHA), tmp_path, **FAST)
    assert path == tmp_path / "doc.pdf" and sha256_file(path) == PAYLOAD_SHA
    assert server.request_count == 1
    assert not (tmp_path / PINS_FILENAME).exists()


def test_checksum_mismatch_names_document_and_both_hashes(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(DocumentChecksumError) as failure:
        fetch_document(spec_for(server, wrong), tmp_path, **FAST)
    message = str(failure.value)
    assert "test_doc" in message and "doc.pdf" in message
    assert wrong in message and PAYLOAD_SHA in message
    assert not (tmp_path / "doc.pdf").exists() and leftovers(tmp_path) == []


def test_present_file_with_right_hash_not_downloaded(server, tmp_path):
    (tmp_path / "doc.pdf").write_bytes(PAYLOAD)
    fetch_document(spec_for(server, PAYLOAD_SHA), tmp_path, **FAST)
    assert server.request_count == 0


def test_present_file_with_wrong_hash_is_downloaded_again(server, tmp_path):
    (tmp_path / "doc.pdf").write_bytes(b"stale")
    fetch_document(spec_for(server, PAYLOAD_SHA), tmp_path, **FAST)
    assert server.request_count == 1 and sha256_file(tmp_path / "doc.pdf") == PAYLOAD_SHA


def test_retries_after_two_503s(server, tmp_path):
    server.fail_next(2, status=503)
    fetch_document(spec_for(server, PAYLOAD_SHA), tmp_path, **FAST)
    assert server.request_count == 3
    assert sha256_file(tmp_path / "doc.pdf") == PAYLOAD_SHA


def test_retries_after_cut_off_body_and_timeout(server, tmp_path):
    server.fail_next(1, status=TRUNCATE)
    server.fail_next(1, status=SLOW)
    fetch_document(spec_for(server, PAYLOAD_SHA), tmp_path, backoff_seconds=0.01, session_timeout=0.2)
    assert server.request_count == 3
    assert sha256_file(tmp_path / "doc.pdf") == PAYLOAD_SHA and leftovers(tmp_path) == []


def test_gives_up_after_max_attempts_leaving_no_file(server, tmp_path):
    server.fail_next(10, status=TRUNCATE)
    with pytest.raises(DocumentDownloadError, match="test_doc.*3 attempts"):
        fetch_document(spec_for(server, PAYLOAD_SHA), tmp_path, max_attempts=3, **FAST)
    assert server.request_count == 3
    assert not (tmp_path / "doc.pdf").exists() and leftovers(tmp_path) == []


def test_permanent_http_error_not_retried(server, tmp_path):
    spec = DocumentSpec("gone", "Gone", "gone.pdf", server.url("/missing.pdf"), None, "test")
    with pytest.raises(DocumentDownloadError, match="404"):
        fetch_document(spec, tmp_path, **FAST)
    assert server.request_count == 1


def test_pin_written_on_first_download_and_enforced_after(server, tmp_path):
    spec = spec_for(server, sha256=None)
    fetch_document(spec, tmp_path, **FAST)
    pins = read_pins(tmp_path)
    assert pins["test_doc"]["sha256"] == PAYLOAD_SHA and pins["test_doc"]["filename"] == "doc.pdf"
    assert json.loads((tmp_path / PINS_FILENAME).read_text())["test_doc"]["bytes"] == len(PAYLOAD)

    fetch_document(spec, tmp_path, **FAST)  # present and matching the pin: no request
    assert server.request_count == 1

    # The publisher changes the file, and the local copy is damaged: the pin refuses the new bytes.
    server.files["/doc.pdf"] = b"%PDF-1.7 a different edition"
    (tmp_path / "doc.pdf").write_bytes(b"damaged")
    with pytest.raises(DocumentChecksumError) as failure:
        fetch_document(spec, tmp_path, **FAST)
    assert PAYLOAD_SHA in str(failure.value) and sha256_text("%PDF-1.7 a different edition") in str(failure.value)
    assert (tmp_path / "doc.pdf").read_bytes() == b"damaged"  # nothing replaced by unverified bytes
    assert pickle.loads(pickle.dumps(failure.value)).args == failure.value.args
    assert read_pins(tmp_path)["test_doc"]["sha256"] == PAYLOAD_SHA


def test_placed_by_hand_document(tmp_path):
    spec = spec_for(None, sha256=None)
    with pytest.raises(DocumentUnavailableError, match="test_doc.*doc.pdf.*by hand"):
        fetch_document(spec, tmp_path)
    (tmp_path / "doc.pdf").write_bytes(PAYLOAD)
    fetch_document(spec, tmp_path)
    assert read_pins(tmp_path)["test_doc"]["sha256"] == PAYLOAD_SHA
    (tmp_path / "doc.pdf").write_bytes(b"swapped")
    with pytest.raises(DocumentChecksumError, match=PAYLOAD_SHA):
        fetch_document(spec, tmp_path)


# -- refusing what is not the PDF (issue 15: a web page pinned as the guideline book) --------------


def test_html_page_served_as_the_pdf_is_refused_before_pinning(tmp_path):
    # The publisher redirects to a login page; the old code saved and pinned it as the book.
    (tmp_path / PINS_FILENAME).write_text('{"other_doc":{"sha256":"' + "1" * 64 + '"}}\n')
    pins_before = (tmp_path / PINS_FILENAME).read_bytes()
    with FileServer(
        {"/login": LOGIN_PAGE}, redirects={"/doc.pdf": "/login"}, content_types={"/login": "text/html"}
    ) as server:
        with pytest.raises(DocumentContentError) as failure:
            fetch_document(spec_for(server), tmp_path, **FAST)
    message = str(failure.value)
    assert "test_doc" in message and str(tmp_path / "doc.pdf") in message
    assert "an HTML page (starts with '<!DOCTYPE html>')" in message
    assert server.url("/doc.pdf") in message and server.url("/login") in message  # URL and where it led
    assert "browser" in message and "place it at" in message  # what to do
    assert (tmp_path / PINS_FILENAME).read_bytes() == pins_before
    assert not (tmp_path / "doc.pdf").exists() and leftovers(tmp_path) == []
    assert failure.value.downloaded and pickle.loads(pickle.dumps(failure.value)).args == failure.value.args


def test_html_page_found_in_place_is_refused_and_not_pinned(tmp_path):
    (tmp_path / "doc.pdf").write_bytes(LOGIN_PAGE)
    with pytest.raises(DocumentContentError) as failure:
        fetch_document(spec_for(None), tmp_path)
    message = str(failure.value)
    assert "test_doc" in message and str(tmp_path / "doc.pdf") in message and "HTML" in message
    assert f"replace {tmp_path / 'doc.pdf'} with the real book" in message
    assert not (tmp_path / PINS_FILENAME).exists()
    assert (tmp_path / "doc.pdf").read_bytes() == LOGIN_PAGE  # the user's file is not deleted for them


def test_web_page_pinned_by_the_old_code_is_refused_with_how_to_unpin(server, tmp_path):
    # The state issue 15 left behind: an HTML page in place, and its hash in pins.json.
    (tmp_path / "doc.pdf").write_bytes(LOGIN_PAGE)
    login_sha = sha256_text(LOGIN_PAGE.decode())
    (tmp_path / PINS_FILENAME).write_text(json.dumps({"test_doc": {"filename": "doc.pdf", "sha256": login_sha}}))
    with pytest.raises(DocumentContentError) as failure:
        fetch_document(spec_for(server), tmp_path, **FAST)
    message = str(failure.value)
    assert login_sha in message and "HTML" in message
    assert f"delete the entry for 'test_doc' from {tmp_path / PINS_FILENAME}; delete {tmp_path / 'doc.pdf'}" in message
    assert server.url("/doc.pdf") in message and server.request_count == 0

    # Following the advice: the real book is downloaded and pinned.
    (tmp_path / "doc.pdf").unlink()
    (tmp_path / PINS_FILENAME).write_text("{}")
    fetch_document(spec_for(server), tmp_path, **FAST)
    assert read_pins(tmp_path)["test_doc"]["sha256"] == PAYLOAD_SHA


def test_truncated_pdf_is_refused(server, tmp_path):
    server.files["/doc.pdf"] = PAYLOAD[: len(PAYLOAD) // 2]  # complete HTTP answer, half a PDF
    with pytest.raises(DocumentContentError) as failure:
        fetch_document(spec_for(server), tmp_path, **FAST)
    message = str(failure.value)
    assert "test_doc" in message and str(tmp_path / "doc.pdf") in message
    assert "truncated: pypdf could not read its cross-reference table" in message
    assert not (tmp_path / PINS_FILENAME).exists() and not (tmp_path / "doc.pdf").exists()
    assert leftovers(tmp_path) == []

    # The same half file copied into place by hand.
    (tmp_path / "doc.pdf").write_bytes(PAYLOAD[: len(PAYLOAD) // 2])
    with pytest.raises(DocumentContentError, match="truncated"):
        fetch_document(spec_for(server), tmp_path, **FAST)
    assert not (tmp_path / PINS_FILENAME).exists()


def test_empty_file_is_refused(server, tmp_path):
    server.files["/doc.pdf"] = b""
    with pytest.raises(DocumentContentError) as failure:
        fetch_document(spec_for(server), tmp_path, **FAST)
    assert "test_doc" in str(failure.value) and "0 bytes" in str(failure.value)
    assert not (tmp_path / PINS_FILENAME).exists() and not (tmp_path / "doc.pdf").exists()

    (tmp_path / "doc.pdf").write_bytes(b"")
    with pytest.raises(DocumentContentError) as failure:
        fetch_document(spec_for(server), tmp_path, **FAST)
    message = str(failure.value)
    assert "0 bytes" in message and f"delete {tmp_path / 'doc.pdf'} so that it is downloaded again" in message
    assert not (tmp_path / PINS_FILENAME).exists()


def test_page_count_must_match_the_registry(server, tmp_path):
    spec = DocumentSpec("test_doc", "Test document", "doc.pdf", server.url("/doc.pdf"), None, "test", pages=240)
    with pytest.raises(DocumentContentError) as failure:
        fetch_document(spec, tmp_path, **FAST)
    assert f"a PDF with {PAYLOAD_PAGES} pages, but the registry says the book has 240" in str(failure.value)
    assert not (tmp_path / PINS_FILENAME).exists()


def test_not_pdf_check_names_what_was_found(tmp_path):
    cases = {
        b"": "0 bytes",
        LOGIN_PAGE: "an HTML page (starts with '<!DOCTYPE html>')",
        b"\n  <html lang='en'><body>Access denied</body></html>": "an HTML page (starts with \"<html lang='en'>",
        b'{"error": "forbidden"}': "a file without a '%PDF-' header",
        PAYLOAD[:100]: "truncated",
        PAYLOAD: None,
    }
    for index, (content, expected) in enumerate(cases.items()):
        path = tmp_path / f"{index}.pdf"
        path.write_bytes(content)
        problem = check_pdf_file(path).problem
        assert (problem is None) if expected is None else (expected in str(problem)), (content[:20], problem)
    assert check_pdf_file(tmp_path / "5.pdf", expected_pages=PAYLOAD_PAGES).ok


def test_404_names_document_url_status_and_what_to_do(server, tmp_path):
    spec = DocumentSpec("gone", "Gone book", "gone.pdf", server.url("/missing.pdf"), None, "test")
    with pytest.raises(DocumentHttpError) as failure:
        fetch_document(spec, tmp_path, **FAST)
    message = str(failure.value)
    assert "'gone'" in message and server.url("/missing.pdf") in message and "HTTP 404 Not Found" in message
    assert "browser" in message and f"place it at {tmp_path / 'gone.pdf'}" in message
    assert failure.value.status == 404 and server.request_count == 1
    assert pickle.loads(pickle.dumps(failure.value)).args == failure.value.args


def test_pin_mismatch_names_both_hashes_the_pins_file_and_how_to_repin(server, tmp_path):
    spec = spec_for(server)
    fetch_document(spec, tmp_path, **FAST)  # pins PAYLOAD
    server.files["/doc.pdf"] = OTHER_PDF  # a valid PDF, but not the pinned one
    (tmp_path / "doc.pdf").write_bytes(b"damaged")
    with pytest.raises(DocumentChecksumError) as failure:
        fetch_document(spec, tmp_path, **FAST)
    message = str(failure.value)
    pins_file = tmp_path / PINS_FILENAME
    assert "test_doc" in message and str(tmp_path / "doc.pdf") in message and server.url("/doc.pdf") in message
    assert PAYLOAD_SHA in message and sha256_file(SAMPLE_PDF_DIR / SAMPLE_DOCUMENTS[1].filename) in message
    assert f"recorded in {pins_file}" in message
    assert f"delete the entry for 'test_doc' from {pins_file}" in message and "set sha256" in message
    assert pickle.loads(pickle.dumps(failure.value)).args == failure.value.args


def test_registry_hash_mismatch_says_to_change_the_registry(tmp_path):
    (tmp_path / "doc.pdf").write_bytes(OTHER_PDF)
    with pytest.raises(DocumentChecksumError) as failure:
        fetch_document(spec_for(None, PAYLOAD_SHA), tmp_path)
    message = str(failure.value)
    assert "medset_dagster/retrieval/documents.py" in message and "set sha256 of 'test_doc'" in message
    assert f"replace {tmp_path / 'doc.pdf'} with the real book" in message


def test_trickling_server_hits_the_deadline(server, tmp_path):
    server.fail_next(1, status=TRICKLE)  # one byte every 50 ms: each read succeeds, the body never ends
    started = time.monotonic()
    with pytest.raises(DocumentDeadlineError) as failure:
        fetch_document(spec_for(server, PAYLOAD_SHA), tmp_path, deadline_seconds=0.5, **FAST)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 4.0  # bytes keep coming, so only the deadline stops it (the whole body: ~450 s)
    message = str(failure.value)
    assert "test_doc" in message and server.url("/doc.pdf") in message and "0.5 s deadline" in message
    assert server.request_count == 1  # not retried: a second attempt would trickle too
    assert not (tmp_path / "doc.pdf").exists() and leftovers(tmp_path) == []
    assert pickle.loads(pickle.dumps(failure.value)).args == failure.value.args


def test_deadline_covers_the_waits_between_retries(server, tmp_path):
    server.fail_next(10, status=503)
    started = time.monotonic()
    with pytest.raises(DocumentDeadlineError, match="waiting to retry"):
        fetch_document(spec_for(server, PAYLOAD_SHA), tmp_path, deadline_seconds=0.3, backoff_seconds=10.0,
                       session_timeout=5.0)
    assert time.monotonic() - started < 4.0 and server.request_count == 1  # not after the 10 s backoff


def test_notes_go_to_the_log_hook(server, tmp_path):
    notes: list[str] = []
    server.fail_next(1, status=503)
    fetch_document(spec_for(server), tmp_path, log=notes.append, **FAST)
    (tmp_path / "doc.pdf").write_bytes(b"stale")
    fetch_corpus((spec_for(server),), tmp_path, log=notes.append, **FAST)
    assert len(notes) == 3, notes
    assert "attempt 1/4" in notes[0] and "HTTP 503" in notes[0] and "test_doc" in notes[0]
    assert "pinned sha256 " + PAYLOAD_SHA in notes[1] and str(tmp_path / PINS_FILENAME) in notes[1]
    assert "downloading it again" in notes[2] and str(tmp_path / "doc.pdf") in notes[2]


def test_notes_default_to_the_module_logger(server, tmp_path, caplog):
    server.fail_next(1, status=503)
    with caplog.at_level(logging.INFO, logger="medset_dagster.retrieval.documents"):
        fetch_document(spec_for(server), tmp_path, **FAST)
    records = [r for r in caplog.records if r.name == "medset_dagster.retrieval.documents"]
    assert [(r.levelno, "attempt 1/4" in r.message or "pinned" in r.message) for r in records] == [
        (logging.WARNING, True),
        (logging.INFO, True),
    ]
