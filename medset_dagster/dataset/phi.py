"""PHI and PII scan of free text, with a redact-or-drop policy, using Presidio's pattern recognizers.

Detectors need no model and reach no network at run time: Microsoft Presidio's pattern recognizers
(`presidio_analyzer`, used without its NLP engine, so no spaCy model is loaded) for e-mail, phone
numbers (through the `phonenumbers` library, seven digits or more), US social security numbers, IP addresses, URLs, dates
and US healthcare identifiers (NPI, MBI, prescription, claim and prior-authorisation numbers, DEA
numbers); and Presidio `PatternRecognizer`s defined here for what it has no pattern for: medical
record numbers after their label, street addresses, and person names after a title ("Mr.", "Dr.")
or a role ("patient"). E-mail domains are checked against tldextract's bundled public-suffix
snapshot only (Presidio's own check would fetch the list over the network).

Rules on top of the recognizers:
- a date counts only as a date of birth: "born", "DOB", "date of birth" or "birthday" within 40
  characters before it;
- a URL counts only when it carries a personal token: an e-mail address, a query parameter such as
  `id=`, `user=`, `patient=`, `mrn=`, `email=`, `name=`, `token=`, a path segment after `/users/`,
  `/patients/`, `/profile/` or `~`, or a run of six or more digits;
- rows of `public_figure_sources` (default: the encyclopaedia source, wiki_medical_terms) get no
  PERSON or DOB finding: people named there (the physician an eponym honours, a pioneer's birth
  date) are public figures, not patients.

Speed: one vectorised regex pass per field (polars, Rust regex) finds the rows that could hold any
kind at all (an "@", a URL, seven digits in a phone-like run, a title followed by a capitalised word,
...); only those rows, and per kind only those matching that kind's own pre-filter, go through the
recognizers. Findings carry offsets, never the matched text, so logs and metadata stay clean.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Callable, Literal, Mapping, NamedTuple, Sequence

import polars as pl

from medset_dagster.common import markdown

Kind = Literal["EMAIL", "PHONE", "SSN", "MRN", "ID", "DOB", "ADDRESS", "URL", "IP_ADDRESS", "PERSON"]
KINDS: tuple[str, ...] = ("EMAIL", "PHONE", "SSN", "MRN", "ID", "DOB", "ADDRESS", "URL", "IP_ADDRESS", "PERSON")
PLACEHOLDERS: dict[str, str] = {
    "EMAIL": "[EMAIL]", "PHONE": "[PHONE]", "SSN": "[SSN]", "MRN": "[MRN]", "ID": "[ID]", "DOB": "[DOB]",
    "ADDRESS": "[ADDRESS]", "URL": "[URL]", "IP_ADDRESS": "[IP]", "PERSON": "[NAME]",
}
FINDINGS_SCHEMA: dict[str, pl.DataType] = {
    "row_id": pl.String,
    "source": pl.String,
    "field": pl.String,
    "kind": pl.String,
    "start": pl.Int64,
    "end": pl.Int64,
    "score": pl.Float64,
    "recognizer": pl.String,
}
PUBLIC_FIGURE_KINDS = frozenset({"PERSON", "DOB"})

# Pre-filters (Rust regex, for polars): a superset of what each kind's recognizers can accept.
_TITLES = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)"
_ROLES = r"(?:patient|client|resident|Patient|Client|Resident)"
_STREET = r"(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Terrace|Close|Crescent|Square|Highway|Hwy)"
PREFILTERS: dict[str, str] = {
    "EMAIL": r"@",
    "PHONE": r"(?:\d[\s().-]{0,2}){7,}",
    "SSN": r"\b\d{3}[- .]\d{2}[- .]\d{4}\b",
    "MRN": r"(?i:\b(?:mrn|medical record|med rec|hospital (?:number|no)|patient (?:id|number|no)|chart (?:number|no))\b)\D{0,12}\d{5}",
    "ID": r"(?i:\b(?:npi|mbi|medicare|rx|prescription|claim|authori[sz]ation|auth|dea|provider)\b)[^\n]{0,40}\d{5}|\b[12]\d{3}[ -]?\d{3}[ -]?\d{3}\b|\b[A-Z]{2}\d{7}\b|\b\d[A-Z][A-Z0-9]\d-?[A-Z][A-Z0-9]\d-?[A-Z]{2}\d{2}\b",
    "DOB": r"(?i:\b(?:born|dob|d\.o\.b|date of birth|birth ?date|birthday)\b)[^\n]{0,40}\d",
    "ADDRESS": r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}" + _STREET + r"\b",
    "URL": r"(?i:https?://|www\.|\b[a-z0-9-]+\.[a-z]{2,}/)",
    "IP_ADDRESS": r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b|(?i:\b[0-9a-f]{1,4}(?::[0-9a-f]{0,4}){2,7})",
    "PERSON": r"\b" + _TITLES + r"\.?\s+[A-Z][a-z]+|\b" + _ROLES + r"\s+[A-Z][a-z]{2,}",
}

_DOB_CONTEXT = re.compile(r"(?i)\b(?:born|dob|d\.o\.b\.?|date of birth|birth ?date|birthday)\b")
_PERSONAL_URL = re.compile(
    r"(?i)(?:[?&;](?:id|uid|user|username|userid|patient|patient_?id|mrn|email|e-mail|name|token|session|sid|dob|ssn|phone|member)=)"
    r"|(?:/(?:users?|patients?|profiles?|members?|people|u)/[^/?#\s]+)|(?:/~[^/?#\s]+)|(?:\d{6,})|(?:[\w.+-]+@[\w-]+\.[\w.-]+)"
)
# Capitalised words that follow a role word without being a name ("patient Education leaflet").
_NOT_NAMES = frozenset({
    "Education", "Safety", "Care", "Information", "Health", "History", "Questionnaire", "Record", "Records", "Portal",
    "Advocacy", "Advocate", "Rights", "Services", "Group", "Groups", "Satisfaction", "Outcomes", "Reported", "Support",
})


@dataclass(frozen=True)
class PhiConfig:
    """- `policy`: `redact` (default: each finding's span becomes its kind's placeholder, e.g.
      `[PHONE]`) or `drop` (rows with a finding are removed);
    - `kinds`: the kinds scanned (all of `KINDS`);
    - `fields`: the text fields scanned (`input`, `context`, `output`);
    - `public_figure_sources`: sources whose PERSON and DOB findings are waived (`wiki_medical_terms`);
    - `min_score`: minimum recognizer score, 0-1 (0.3: Presidio's "very weak" patterns, scored
      0.01-0.1, are left out unless a validator confirmed them);
    - `phone_regions`: regions whose numbering plans the phone recognizer accepts (ISO 3166 codes)."""

    policy: Literal["redact", "drop"] = "redact"
    kinds: tuple[str, ...] = KINDS
    fields: tuple[str, ...] = ("input", "context", "output")
    public_figure_sources: tuple[str, ...] = ("wiki_medical_terms",)
    min_score: float = 0.3
    phone_regions: tuple[str, ...] = ("US", "GB", "CA", "AU", "IE", "IN")

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown PHI kinds {sorted(unknown)}; known: {KINDS}")
        if self.policy not in ("redact", "drop"):
            raise ValueError(f"policy must be 'redact' or 'drop', got {self.policy!r}")


class PhiResult(NamedTuple):
    """`kept`: rows after the policy (redacted text, or rows with findings dropped), input order;
    `phi_findings`: every finding, columns `FINDINGS_SCHEMA` (offsets into the original text);
    `stats`: see `apply_phi_policy`."""

    kept: pl.DataFrame
    phi_findings: pl.DataFrame
    stats: dict


@dataclass
class _Detector:
    kind: str
    recognizers: list = field(default_factory=list)
    accept: Callable[[str, int, int], bool] | None = None


def _dob_accept(text: str, start: int, end: int) -> bool:
    return bool(_DOB_CONTEXT.search(text[max(0, start - 40) : start]))


def _phone_accept(text: str, start: int, end: int) -> bool:
    """A personal phone number has at least seven digits (not "135-145", a short code or a range)."""
    return sum(c.isdigit() for c in text[start:end]) >= 7


def _url_accept(text: str, start: int, end: int) -> bool:
    return bool(_PERSONAL_URL.search(text[start:end]))


def _person_accept(text: str, start: int, end: int) -> bool:
    words = text[start:end].split()
    return bool(words) and words[-1] not in _NOT_NAMES


@lru_cache(maxsize=8)
def _detectors(phone_regions: tuple[str, ...]) -> dict[str, _Detector]:
    """The recognizers per kind, built once per region set (Presidio is imported here: ~2 s)."""
    import tldextract
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import (
        DateRecognizer,
        EmailRecognizer,
        IpRecognizer,
        MedicalLicenseRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
        UsClaimNumberRecognizer,
        UsMbiRecognizer,
        UsNpiRecognizer,
        UsPrescriptionNumberRecognizer,
        UsPriorAuthorizationNumberRecognizer,
        UsSsnRecognizer,
    )

    offline = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's e-mail recognizer, validating domains against the bundled suffix list only."""

        def validate_result(self, pattern_text: str) -> bool:
            return offline(pattern_text.rsplit("@", 1)[-1]).fqdn != ""

    case_sensitive = re.DOTALL | re.MULTILINE
    mrn = PatternRecognizer(
        supported_entity="MEDICAL_RECORD_NUMBER",
        name="MedicalRecordNumberRecognizer",
        patterns=[Pattern(
            "MRN (labelled)",
            r"(?<=\b(?:MRN|medical record(?:\s+(?:number|no\.?|#))?|med(?:ical)?\s+rec(?:ord)?\s*#|hospital\s+(?:number|no\.?)|"
            r"patient\s+(?:id|number|no\.?)|chart\s+(?:number|no\.?))\s*(?:is\s+|:\s*|#\s*|-\s*)?)[A-Z]{0,3}-?\d{5,12}\b",
            0.6,
        )],
    )
    months = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
    written_date = PatternRecognizer(
        supported_entity="DATE_TIME",
        name="WrittenDateRecognizer",
        patterns=[Pattern(
            "day month year",
            r"\b\d{1,2}(?:st|nd|rd|th)?\s+" + months + r"\.?,?\s+\d{4}\b|\b" + months + r"\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}\b",
            0.6,
        )],
    )
    address = PatternRecognizer(
        supported_entity="STREET_ADDRESS",
        name="StreetAddressRecognizer",
        patterns=[Pattern("street address", r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}" + _STREET + r"\b", 0.5)],
        global_regex_flags=case_sensitive,
    )
    person = PatternRecognizer(
        supported_entity="PERSON",
        name="TitledPersonRecognizer",
        patterns=[
            Pattern("title + name", r"(?<=\b" + _TITLES + r"\.?\s)[A-Z][a-z]+(?:[-\s][A-Z][a-z]+)?\b", 0.5),
            Pattern("role + name", r"(?<=\b" + _ROLES + r"\s)[A-Z][a-z]{2,}(?:\s[A-Z][a-z]+)?\b", 0.4),
        ],
        global_regex_flags=case_sensitive,
    )
    return {
        "EMAIL": _Detector("EMAIL", [OfflineEmailRecognizer()]),
        "PHONE": _Detector("PHONE", [PhoneRecognizer(supported_regions=list(phone_regions))], _phone_accept),
        "SSN": _Detector("SSN", [UsSsnRecognizer()]),
        "MRN": _Detector("MRN", [mrn]),
        "ID": _Detector("ID", [UsNpiRecognizer(), UsMbiRecognizer(), UsPrescriptionNumberRecognizer(), UsClaimNumberRecognizer(),
                                UsPriorAuthorizationNumberRecognizer(), MedicalLicenseRecognizer()]),
        "DOB": _Detector("DOB", [DateRecognizer(), written_date], _dob_accept),
        "ADDRESS": _Detector("ADDRESS", [address]),
        "URL": _Detector("URL", [UrlRecognizer()], _url_accept),
        "IP_ADDRESS": _Detector("IP_ADDRESS", [IpRecognizer()]),
        "PERSON": _Detector("PERSON", [person], _person_accept),
    }


def redact_text(text: str, config: PhiConfig = PhiConfig()) -> str:
    """`text` with every finding of `scan_text` replaced by its kind's placeholder ([PHONE], ...)."""
    spans = [(start, end, kind) for kind, start, end, _score, _name in scan_text(text, config.kinds, config)]
    return _redact(text, spans) if spans else text


def scan_text(text: str, kinds: Sequence[str] = KINDS, config: PhiConfig = PhiConfig()) -> list[tuple[str, int, int, float, str]]:
    """Findings in one string: (kind, start, end, score, recognizer), character offsets, overlaps
    resolved (the higher score wins, then the longer span, then the earlier kind in `KINDS`)."""
    detectors = _detectors(tuple(config.phone_regions))
    found = []
    for kind in kinds:
        detector = detectors[kind]
        for recognizer in detector.recognizers:
            for result in recognizer.analyze(text, recognizer.supported_entities, None):
                if result.score < config.min_score:
                    continue
                if detector.accept is not None and not detector.accept(text, result.start, result.end):
                    continue
                found.append((kind, result.start, result.end, float(result.score), recognizer.name))
    return _resolve_overlaps(found)


def _resolve_overlaps(found: list[tuple[str, int, int, float, str]]) -> list[tuple[str, int, int, float, str]]:
    order = {kind: i for i, kind in enumerate(KINDS)}
    chosen: list[tuple[str, int, int, float, str]] = []
    for finding in sorted(found, key=lambda f: (-f[3], -(f[2] - f[1]), order[f[0]], f[1])):
        if all(finding[2] <= other[1] or finding[1] >= other[2] for other in chosen):
            chosen.append(finding)
    return sorted(chosen, key=lambda f: (f[1], f[2]))


def scan(frame: pl.DataFrame, config: PhiConfig = PhiConfig(), *, id_column: str = "row_id", source_column: str = "source") -> pl.DataFrame:
    """PHI findings of every configured field of `frame` (`id_column`, `source_column`, fields: String).

    Returns columns `FINDINGS_SCHEMA` (`row_id` and `source` named so whatever the input columns),
    ordered by input row, field, then offset. Raises ValueError when a column is missing.
    """
    missing = [c for c in (id_column, source_column, *config.fields) if c not in frame.columns]
    if missing:
        raise ValueError(f"the PHI scan needs columns {missing}; found {frame.columns}")
    combined = "|".join(f"(?:{PREFILTERS[kind]})" for kind in config.kinds)
    public = set(config.public_figure_sources)
    records: list[tuple] = []
    indexed = frame.with_row_index("__row")
    for field_index, field_name in enumerate(config.fields):
        text = pl.col(field_name).cast(pl.String)
        candidates = indexed.filter(text.str.contains(combined).fill_null(False)).select(
            "__row", pl.col(id_column).cast(pl.String), pl.col(source_column).cast(pl.String), text.alias("__text"),
            *[text.str.contains(PREFILTERS[kind]).alias(kind) for kind in config.kinds],
        )
        for row in candidates.iter_rows(named=True):
            kinds = [k for k in config.kinds if row[k] and not (row[source_column] in public and k in PUBLIC_FIGURE_KINDS)]
            if not kinds:
                continue
            for kind, start, end, score, recognizer in scan_text(row["__text"], kinds, config):
                records.append((row["__row"], field_index, row[id_column], row[source_column], field_name, kind, start, end, score, recognizer))
    if not records:
        return pl.DataFrame(schema=FINDINGS_SCHEMA)
    findings = pl.DataFrame(records, schema={"__row": pl.Int64, "__field": pl.Int64, **FINDINGS_SCHEMA}, orient="row")
    return findings.sort("__row", "__field", "start").drop("__row", "__field")


def _redact(text: str, spans: Sequence[tuple[int, int, str]]) -> str:
    pieces, cursor = [], 0
    for start, end, kind in sorted(spans):
        pieces += [text[cursor:start], PLACEHOLDERS[kind]]
        cursor = end
    return "".join(pieces) + text[cursor:]


def apply_phi_policy(frame: pl.DataFrame, findings: pl.DataFrame, config: PhiConfig = PhiConfig(), *, id_column: str = "row_id") -> PhiResult:
    """Apply the policy to `frame` given its `findings` (from `scan`).

    `stats`: `rows_in`, `rows_out`, `rows_with_findings`, `rows_redacted`, `rows_dropped`,
    `findings` (int); `findings_by_source_kind` {source: {kind: findings}}; `rows_by_source` {source:
    rows with a finding}; `policy`; `params` (the configuration). No matched text is included.
    """
    affected_ids = findings[id_column if id_column in findings.columns else "row_id"].unique()
    if config.policy == "drop":
        kept = frame.filter(~pl.col(id_column).cast(pl.String).is_in(affected_ids.implode()))
    else:
        kept = frame
        if not findings.is_empty():
            spans: dict[tuple[str, str], list[tuple[int, int, str]]] = {}
            for row_id, field_name, kind, start, end in findings.select("row_id", "field", "kind", "start", "end").iter_rows():
                spans.setdefault((row_id, field_name), []).append((start, end, kind))
            for field_name in config.fields:
                keys = {row_id: s for (row_id, f), s in spans.items() if f == field_name}
                if not keys:
                    continue
                touched = frame.filter(pl.col(id_column).cast(pl.String).is_in(list(keys))).select(pl.col(id_column).cast(pl.String), field_name)
                replacement = {row_id: _redact(text, keys[row_id]) for row_id, text in touched.iter_rows()}
                kept = kept.with_columns(
                    pl.col(id_column).cast(pl.String).replace_strict(replacement, default=pl.col(field_name), return_dtype=pl.String)
                    .alias(field_name)
                )
    by_pair = findings.group_by("source", "kind").len().sort("source", "kind")
    findings_by_source_kind: dict[str, dict[str, int]] = {}
    for source, kind, count in by_pair.iter_rows():
        findings_by_source_kind.setdefault(source, {})[kind] = count
    rows_with = findings.select("row_id", "source").unique()
    stats = {
        "rows_in": frame.height,
        "rows_out": kept.height,
        "rows_with_findings": rows_with.height,
        "rows_redacted": rows_with.height if config.policy == "redact" else 0,
        "rows_dropped": frame.height - kept.height,
        "findings": findings.height,
        "findings_by_source_kind": findings_by_source_kind,
        "rows_by_source": dict(rows_with.group_by("source").len().sort("source").iter_rows()),
        "policy": config.policy,
        "params": asdict(config),
    }
    return PhiResult(kept, findings, stats)


def scan_and_apply(frame: pl.DataFrame, config: PhiConfig = PhiConfig()) -> PhiResult:
    """`scan` then `apply_phi_policy`: the PHI stage of the dataset (rows: `row_id`, `source`, fields)."""
    return apply_phi_policy(frame, scan(frame, config), config)


def scan_chunks(chunks: pl.DataFrame, config: PhiConfig = PhiConfig(), *, id_column: str = "chunk_id", text_column: str = "text",
                source_column: str = "document") -> pl.DataFrame:
    """PHI findings in retrieval chunks (e.g. `chunk_id`, `document`, `text`): columns
    `FINDINGS_SCHEMA`, `row_id` holding the chunk id, `source` the document and `field` the text
    column's name."""
    return scan(chunks, PhiConfig(**{**asdict(config), "fields": (text_column,)}), id_column=id_column, source_column=source_column)


def findings_markdown(stats: Mapping) -> str:
    """Markdown table of findings per source and kind (counts only, never text)."""
    kinds = sorted({k for per in stats["findings_by_source_kind"].values() for k in per})
    if not kinds:
        return "_no PHI finding_"
    rows = [(source, *[per.get(k, 0) for k in kinds]) for source, per in sorted(stats["findings_by_source_kind"].items())]
    return markdown.table(["source", *kinds], rows)
