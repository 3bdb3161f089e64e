"""Document registry, pinned sample PDFs, and fetching against a local HTTP server."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from medset_dagster.common.hashing import sha256_file, sha256_text
from medset_dagster.retrieval.documents import (
    FULL_DOCUMENTS,
    PINS_FILENAME,
    SAMPLE_DOCUMENTS,
    SAMPLE_PDF_DIR,
    DocumentChecksumError,
    DocumentDownloadError,
    DocumentSpec,
    DocumentUnavailableError,
    fetch_corpus,
    fetch_document,
    read_pins,
)
from medset_dagster_tests.fixtures.sample_pdfs import write_sample_pdfs
from medset_dagster_tests.servers.file_server import SLOW, TRUNCATE, FileServer

PAYLOAD = (SAMPLE_PDF_DIR / SAMPLE_DOCUMENTS[0].filename).read_bytes()
PAYLOAD_SHA = sha256_file(SAMPLE_PDF_DIR / SAMPLE_DOCUMENTS[0].filename)
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
    assert "ICRC edition" in FULL_DOCUMENTS[1].note


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
