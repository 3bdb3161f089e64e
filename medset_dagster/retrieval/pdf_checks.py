"""Is a file the PDF it should be? A check that names what the file is instead (an HTML page, a
truncated download, an encrypted or empty PDF), used before a document is pinned or read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader

# A PDF's `%PDF-` header and its final `%%EOF` marker must lie within this many bytes of the start and
# the end of the file (the tolerance PDF readers apply to leading and trailing junk).
PDF_MARKER_WINDOW = 1024


@dataclass(frozen=True)
class PdfCheck:
    """`pages`: the page count pypdf read (None if it could not); `problem`: what is wrong, in words
    ("an HTML page (starts with '<!DOCTYPE html>')", "0 bytes", ...), or None for a good PDF."""

    pages: int | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_pdf_file(path: str | Path, expected_pages: int | None = None) -> PdfCheck:
    """Check that `path` is a readable PDF with at least one page (and `expected_pages` if given).

    Checks, in order: not empty; a `%PDF-` header in the first `PDF_MARKER_WINDOW` bytes (else the
    content is named: HTML page, other text, binary); pypdf opens it and counts its pages (an
    encrypted file must open with the empty password, as text extraction requires); the `%%EOF` marker
    in the last `PDF_MARKER_WINDOW` bytes (else it is truncated, even if pypdf rebuilt part of it);
    pages >= 1 and == `expected_pages`. Never raises for bad content; OSError if the file cannot be read.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return PdfCheck(None, "0 bytes (an empty file)")
    with open(path, "rb") as handle:
        head = handle.read(PDF_MARKER_WINDOW)
        handle.seek(max(0, size - PDF_MARKER_WINDOW))
        tail = handle.read()
    if b"%PDF-" not in head:
        return PdfCheck(None, _describe_non_pdf(head, size))
    pages, unreadable = _count_pages(path)
    if b"%%EOF" not in tail:
        if unreadable:
            return PdfCheck(None, f"truncated: pypdf could not read its cross-reference table (the file is "
                                  f"{size} bytes and ends without the '%%EOF' marker; {unreadable})")
        return PdfCheck(pages, f"truncated: the file is {size} bytes and ends without the '%%EOF' marker "
                               f"(pypdf could rebuild only {pages} pages from what is there)")
    if unreadable:
        return PdfCheck(None, f"a PDF that pypdf cannot read ({unreadable}); {size} bytes")
    assert pages is not None
    if pages < 1:
        return PdfCheck(pages, f"a PDF with no pages ({size} bytes)")
    if expected_pages is not None and pages != expected_pages:
        return PdfCheck(pages, f"a PDF with {pages} pages, but the registry says the book has "
                               f"{expected_pages} (a different edition, or an incomplete file)")
    return PdfCheck(pages, None)


def _count_pages(path: Path) -> tuple[int | None, str | None]:
    """(page count, None), or (None, why pypdf could not read it)."""
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            return None, "encrypted: it needs a password"
        return len(reader.pages), None
    except Exception as exc:  # noqa: BLE001 - pypdf reports damage through many exception types
        return None, f"pypdf: {type(exc).__name__}: {exc}"


def _describe_non_pdf(head: bytes, size: int) -> str:
    """What a file without a `%PDF-` header looks like, from its first bytes."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    first_line = text.split(b"\n", 1)[0].strip()[:40]
    try:
        shown = repr(first_line.decode("utf-8"))
    except UnicodeDecodeError:
        shown = repr(first_line)
    lowered = text.lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head")) or b"<html" in lowered:
        return f"an HTML page (starts with {shown}), not a PDF; {size} bytes"
    if lowered.startswith((b"<?xml", b"<")):
        return f"an XML or markup document (starts with {shown}), not a PDF; {size} bytes"
    return f"a file without a '%PDF-' header in its first {PDF_MARKER_WINDOW} bytes (starts with {shown}); {size} bytes"
