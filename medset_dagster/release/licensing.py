"""Derive the licence a release may honestly declare from the licences of the sources it contains.

The published build declared CC-BY-4.0 although one source is GPL-3.0 and the PDFs behind the
first-aid rows are non-commercial (CC BY-NC-SA 3.0 IGO, and IFRC's own "non-commercial copying with
acknowledgement"). This module refuses that: a declared licence granting more than a source allows
raises `LicenceConflictError`, unless the conflict is acknowledged, in which case the decision carries
the conflicts for the dataset card to state.

Model (deliberately small, not legal advice):
- permissive (apache-2.0, mit, cc-by-4.0...): content may be re-released under any licence that keeps
  attribution;
- share-alike / copyleft (gpl-3.0, cc-by-sa-*, cc-by-nc-sa-*): adaptations only under the licences in
  `relicense_to`;
- non-commercial: only under licences that also forbid commercial use; custom terms (not a published
  licence text) cannot be relicensed at all, so their rows keep their own terms;
- no-derivatives: adaptations may not be shared;
- unclear (unknown, none declared, unrecognised): never a conflict with a licence the user declares,
  always listed in the notes.
A single licence is derived only when it honestly covers every source; otherwise `other`, with the
terms per source for the card to state (the rows of each source stay separate, an aggregate). A
source whose terms are unclear has no established redistribution rights, so no licence covers its
rows: the derived licence is then `other` (or `unknown` when no source has known terms at all).

The decision carries one `SourceLicence` per source (`LicenceDecision.sources`): the terms its rows
carry, worded once, which every section of the card and `build.json` state as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

Kind = Literal["permissive", "copyleft", "non_commercial", "no_derivatives", "unclear", "derived"]

CC_VERSIONS = ("1.0", "2.0", "2.5", "3.0", "4.0")
# Permissive ids and how much they ask: a lower rank is absorbed into a higher one (MIT into Apache).
PERMISSIVE_RANK = {
    "cc0-1.0": 0, "pddl": 0, "unlicense": 0,
    "mit": 1, "bsd-2-clause": 1, "bsd-3-clause": 1, "isc": 1, "zlib": 1, "bsl-1.0": 1,
    "apache-2.0": 2, "odc-by": 2, "cdla-permissive-1.0": 2, "cdla-permissive-2.0": 2,
}
ALIASES = {
    "apache": "apache-2.0", "apache2": "apache-2.0", "apache-license-2.0": "apache-2.0", "apache-2": "apache-2.0",
    "mit-license": "mit", "bsd": "bsd-3-clause", "cc0": "cc0-1.0", "odbl": "odbl-1.0", "odc-odbl": "odbl-1.0",
    "odc-by-1.0": "odc-by", "public-domain": "pddl",
}
UNCLEAR = {"", "unknown", "none", "n/a", "na", "unspecified", "unlicensed", "other", "see-card", "?"}
NC_WORDS = ("non-commercial", "noncommercial", "non commercial", "research only", "research-only", "academic use")


class LicenceConflictError(ValueError):
    """The declared licence grants more than some sources allow."""

    def __init__(self, declared: str, conflicts: list[tuple[str, str, str]]):
        self.declared = declared
        self.conflicts = conflicts
        listed = "; ".join(f"{source} ({licence}): {why}" for source, licence, why in conflicts)
        super().__init__(
            f"Declared licence {declared!r} conflicts with {len(conflicts)} source(s): {listed}. "
            "Declare a licence these sources allow (or none, for the derived default), drop the sources, "
            "or acknowledge the conflict so the dataset card states it."
        )


@dataclass(frozen=True)
class LicenceTerms:
    """A licence string as `classify_licence` reads it: `raw` as written, `id`, `kind`, the share-alike,
    non-commercial and no-derivatives flags, `standard` and `relicense_to` (see the field comments)."""

    raw: str
    id: str | None  # normalised identifier when recognised ("gpl-3.0", "cc-by-nc-sa-3.0-igo")
    kind: Kind
    share_alike: bool = False
    non_commercial: bool = False
    no_derivatives: bool = False
    standard: bool = True  # a published licence text; False for custom terms, which cannot be relicensed
    relicense_to: tuple[str, ...] = ()  # share-alike: the licences an adaptation may be released under

    @property
    def unclear(self) -> bool:
        return self.kind == "unclear"


@dataclass(frozen=True)
class SourceLicence:
    """The terms one source's rows carry in the release.

    `licence`: the statement every section states (the source's own licence string; for a source
    generated from others, e.g. the RAG answers from the PDFs, their licences and ids);
    `established`: False when redistribution rights for its rows are not established (unclear
    terms, or a generated source whose inputs are not given or unclear); `derived_from`: the ids it
    was generated from, in the order given.
    """

    licence: str
    established: bool
    derived_from: tuple[str, ...] = ()


@dataclass
class LicenceDecision:
    """The licence a release declares (`licence`, a normalised id, `other` or `unknown`), the
    acknowledged conflicts as (source, its licence, why), notes for the card, and the terms of
    each source (`sources`: source id -> `SourceLicence`; empty when built by hand)."""

    licence: str
    conflicts: list[tuple[str, str, str]] = field(default_factory=list)  # (source, licence, why)
    notes: list[str] = field(default_factory=list)
    sources: dict[str, SourceLicence] = field(default_factory=dict)

    def unestablished(self) -> list[str]:
        """Ids of the sources whose redistribution rights are not established, in the given order."""
        return [source for source, terms in self.sources.items() if not terms.established]


def _key(text: str) -> str:
    key = re.sub(r"[\s_]+", "-", text.strip().lower())
    key = re.sub(r"-?licen[cs]e-?", "-", key).strip("-")
    return ALIASES.get(key, key)


def classify_licence(raw: str | None) -> LicenceTerms:
    """Read a licence string as found on a source (SPDX-like id, CC name, or free text)."""
    raw = (raw or "").strip()
    low = raw.lower()
    if low.startswith("derived"):
        # "derived (PDFs: CC BY-NC-SA 3.0 IGO)": the registry names the inputs' licence inline.
        inner = re.search(r"\((.*)\)", raw)
        if inner:
            terms = classify_licence(inner.group(1).split(":")[-1])
            if terms.kind not in ("unclear", "derived"):
                return replace(terms, raw=raw)
        return LicenceTerms(raw, None, "derived")
    if low in UNCLEAR or low.startswith(("none declared", "no licence", "no license", "unknown")):
        return LicenceTerms(raw, None, "unclear")
    # A trailing remark ("CC BY-NC-SA 3.0 IGO (if, as believed, the ICRC edition)") is not the licence.
    key = _key(re.sub(r"\s*\(.*\)\s*$", "", raw))

    if key in PERMISSIVE_RANK:
        return LicenceTerms(raw, key, "permissive")

    cc = re.fullmatch(r"cc-?(by(?:-(?:nc|sa|nd))*)(?:-(\d\.\d))?(?:-([a-z]{2,3}))?", key)
    if cc:
        elements, version, port = cc.group(1).split("-"), cc.group(2) or "4.0", cc.group(3)
        ident = f"cc-{cc.group(1)}-{version}" + (f"-{port}" if port else "")
        nc, sa, nd = "nc" in elements, "sa" in elements, "nd" in elements
        if nd:
            return LicenceTerms(raw, ident, "no_derivatives", non_commercial=nc, no_derivatives=True)
        if sa:
            # ShareAlike: the same licence, or a later version with the same elements (all CC SA licences
            # say so); CC also declared BY-SA 4.0 one-way compatible with GPL-3.0.
            later = [f"cc-{cc.group(1)}-{v}" for v in CC_VERSIONS if v > version]
            targets = (ident, *later) + (("gpl-3.0",) if ident == "cc-by-sa-4.0" else ())
            return LicenceTerms(raw, ident, "non_commercial" if nc else "copyleft", share_alike=True,
                                non_commercial=nc, relicense_to=targets)
        if nc:
            return LicenceTerms(raw, ident, "non_commercial", non_commercial=True)
        return LicenceTerms(raw, ident, "permissive")

    gpl = re.fullmatch(r"(a|l)?gpl-?v?(\d(?:\.\d)?)(?:\.0)?(-only|-or-later|\+)?", key)
    if gpl:
        family, version, later = gpl.group(1) or "", gpl.group(2), gpl.group(3) in ("-or-later", "+")
        version = version if "." in version else f"{version}.0"
        ident = f"{family}gpl-{version}"
        targets = [ident]
        if later and family != "l" and version < "3.0":
            targets.append(f"{family}gpl-3.0")
        if family == "l":  # the LGPL lets an adaptation be released under the GPL instead
            targets += ["gpl-2.0", "gpl-3.0"] if version.startswith("2") else ["gpl-3.0"]
        return LicenceTerms(raw, ident, "copyleft", share_alike=True, relicense_to=tuple(targets))

    if key in ("odbl-1.0", "cdla-sharing-1.0", "gfdl", "eupl-1.2"):
        return LicenceTerms(raw, key, "copyleft", share_alike=True, relicense_to=(key,))

    if any(word in low for word in NC_WORDS):
        return LicenceTerms(raw, None, "non_commercial", non_commercial=True, standard=False)
    return LicenceTerms(raw, None, "unclear")


def _conflict(source: LicenceTerms, declared: LicenceTerms) -> str | None:
    """Why releasing `source` content under `declared` is not allowed, or None if it is."""
    if source.kind in ("unclear", "derived"):
        return None
    if source.id is not None and source.id == declared.id:
        return None
    if source.no_derivatives:
        return "no-derivatives: adaptations of it may not be shared under any licence"
    if source.share_alike and declared.id not in source.relicense_to:
        allowed = " or ".join(source.relicense_to)
        kind = "copyleft" if source.kind == "copyleft" else "share-alike"
        return f"{kind}: adaptations must be released under {allowed}"
    if source.non_commercial and not declared.non_commercial:
        return f"non-commercial: forbids the commercial use that {declared.raw} permits"
    if not source.standard:
        return f"custom terms: they cannot be relicensed under {declared.raw}"
    return None


def _incompatible(a: LicenceTerms, b: LicenceTerms) -> bool:
    """True when no single licence can carry both (each needs terms the other cannot take)."""
    if a.share_alike and b.share_alike:
        return not set(a.relicense_to) & set(b.relicense_to)
    # A copyleft licence that allows commercial use cannot take non-commercial content (and vice versa).
    return any(
        sa.share_alike and other.non_commercial and not any("-nc" in t for t in sa.relicense_to)
        for sa, other in ((a, b), (b, a))
    )


def _resolve_derived(
    terms: dict[str, LicenceTerms], derived_from: Mapping[str, Sequence[str]]
) -> tuple[dict[str, list[str]], list[str]]:
    """Inputs of each derived source, and notes for derived sources whose inputs are not given."""
    inputs: dict[str, list[str]] = {}
    notes: list[str] = []
    for source, t in terms.items():
        if t.kind != "derived":
            continue
        given = list(derived_from.get(source, ()))
        unknown = [name for name in given if name not in terms]
        if unknown:
            raise ValueError(f"derived_from[{source!r}] names sources not in the release: {unknown}")
        if given:
            inputs[source] = given
            notes.append(f"{source} is derived from {', '.join(given)}: it carries their terms.")
        else:
            notes.append(f"{source} is marked derived but its inputs are not given: its terms are unclear.")
    return inputs, notes


def _unclear(terms: dict[str, LicenceTerms], inputs: dict[str, list[str]]) -> list[str]:
    """Sources with no established terms: unclear ones, generated ones whose inputs are not given
    or are unclear themselves."""
    return [
        s for s, t in terms.items()
        if t.unclear or (t.kind == "derived" and (s not in inputs or any(terms[i].unclear for i in inputs[s])))
    ]


def terms_per_source(terms: dict[str, LicenceTerms], inputs: dict[str, list[str]]) -> dict[str, SourceLicence]:
    """Source id -> the terms its rows carry, worded once for every section of the card.

    A generated source with given inputs reads "<their licences> (generated from <their ids>)",
    e.g. "CC0-1.0 (generated from sample_field_injuries, sample_field_environment)"; any other
    source keeps its own licence string ("none declared" when it is empty).
    """
    unclear = set(_unclear(terms, inputs))
    out: dict[str, SourceLicence] = {}
    for source, t in terms.items():
        if source in inputs:
            names = inputs[source]
            licences = list(dict.fromkeys(terms[name].raw or "none declared" for name in names))
            statement = f"{' and '.join(licences)} (generated from {', '.join(names)})"
        else:
            statement = t.raw or "none declared"
        out[source] = SourceLicence(statement, source not in unclear, tuple(inputs.get(source, ())))
    return out


def _unclear_note(terms: dict[str, LicenceTerms], inputs: dict[str, list[str]]) -> list[str]:
    unclear = [f"{s} ({terms[s].raw or 'empty'})" for s in _unclear(terms, inputs)]
    if not unclear:
        return []
    return [
        "Licence unclear for: " + ", ".join(unclear) + ". Redistribution rights for these rows are not "
        "established."
    ]


def _terms_note(terms: dict[str, LicenceTerms], inputs: dict[str, list[str]]) -> str:
    parts = [
        f"{s}: " + (f"terms of {' and '.join(inputs[s])}" if s in inputs else t.raw)
        for s, t in terms.items()
        if t.kind != "unclear" and (t.kind != "derived" or s in inputs)
    ]
    return "Terms per source: " + "; ".join(parts) + "."


def derive_release_licence(
    source_licences: Mapping[str, str],
    declared: str | None,
    acknowledge_conflict: bool,
    *,
    derived_from: Mapping[str, Sequence[str]] | None = None,
) -> LicenceDecision:
    """The licence a release of these sources may declare.

    `source_licences`: source id -> licence string. `derived_from`: a `derived` source -> the ids of
    the sources it was generated from (e.g. the Q&A set -> the PDFs), so it carries their terms.
    With `declared` None the most restrictive single licence covering every source is chosen, or
    `other` when none does (a source with unclear terms is covered by none; all unclear: `unknown`).
    With `declared` set, every source it cannot carry is a conflict: raised as
    `LicenceConflictError` unless `acknowledge_conflict`; unclear sources are listed, not conflicts.
    The decision's `sources` holds the terms of every key of `source_licences`.

    Raises `ValueError` when `derived_from` names a source that is not in `source_licences`.
    """
    derived_from = derived_from or {}
    terms = {source: classify_licence(licence) for source, licence in source_licences.items()}
    # Explicit inputs win over whatever the licence string says about a generated source.
    terms |= {s: LicenceTerms(source_licences[s], None, "derived") for s in derived_from if s in terms}
    inputs, derived_notes = _resolve_derived(terms, derived_from)
    unclear_notes = _unclear_note(terms, inputs)
    known = {s: t for s, t in terms.items() if t.kind not in ("unclear", "derived")}

    if declared is not None and declared.strip():
        decision = _check_declared(declared.strip(), terms, known, inputs, acknowledge_conflict, derived_notes + unclear_notes)
    else:
        decision = _default(terms, known, inputs, derived_notes + unclear_notes)
    decision.sources = terms_per_source(terms, inputs)
    return decision


def _check_declared(
    declared: str,
    terms: dict[str, LicenceTerms],
    known: dict[str, LicenceTerms],
    inputs: dict[str, list[str]],
    acknowledge_conflict: bool,
    notes: list[str],
) -> LicenceDecision:
    target = classify_licence(declared)
    licence = target.id or declared
    if target.unclear:
        # `other` / `unknown` claim no permissions of their own: the card's per-source terms decide.
        return LicenceDecision(licence, [], [f"Declared {licence!r}: the card must give the terms of each source.",
                                             _terms_note(terms, inputs), *notes])
    conflicts: list[tuple[str, str, str]] = []
    for source, t in known.items():
        if why := _conflict(t, target):
            conflicts.append((source, t.raw, why))
    for source, sources_in in inputs.items():
        via = [f"from {name} ({terms[name].raw}): {why}" for name in sources_in if (why := _conflict(terms[name], target))]
        if via:
            licence_of = "derived from " + ", ".join(f"{name} ({terms[name].raw})" for name in sources_in)
            conflicts.append((source, licence_of, "generated " + "; ".join(via)))
    if not conflicts:
        return LicenceDecision(licence, [], [f"Declared {licence}: every source with known terms allows it.", *notes])
    if not acknowledge_conflict:
        raise LicenceConflictError(licence, conflicts)
    statement = (
        f"Declared {licence} although {len(conflicts)} source(s) do not allow it; the dataset card must state: "
        + "; ".join(f"{s} [{lic}]: {why}" for s, lic, why in conflicts)
        + f". Rows from these sources are not available under {licence}."
    )
    return LicenceDecision(licence, conflicts, [statement, *notes])


def _default(
    terms: dict[str, LicenceTerms], known: dict[str, LicenceTerms], inputs: dict[str, list[str]], notes: list[str]
) -> LicenceDecision:
    if not known:
        return LicenceDecision("unknown", [], ["No source has known licence terms: declared unknown.", *notes])

    no_derivs = [s for s, t in known.items() if t.no_derivatives]
    custom = [s for s, t in known.items() if not t.standard]
    clashes = sorted({s for a, ta in known.items() for b, tb in known.items() if a < b and _incompatible(ta, tb) for s in (a, b)})
    share_alike = {s: t for s, t in known.items() if t.share_alike}
    non_commercial = {s: t for s, t in known.items() if t.non_commercial}

    reasons: list[str] = []
    if no_derivs:
        reasons.append(f"{', '.join(no_derivs)} forbid sharing adaptations (no-derivatives); those rows should be dropped")
    if clashes:
        reasons.append(
            "no single licence satisfies " + ", ".join(f"{s} ({known[s].raw})" for s in clashes)
            + " together: copyleft terms require their own licence, which cannot carry the others' restrictions"
        )
    if custom:
        reasons.append(", ".join(f"{s} ({known[s].raw})" for s in custom) + ": custom terms, which cannot be relicensed")
    unclear = _unclear(terms, inputs)
    if unclear:
        reasons.append(
            ", ".join(unclear) + " have no established redistribution rights (licence unclear), so no licence "
            "can be declared for their rows"
        )

    if not reasons and share_alike:
        candidates: list[str] | None = None
        for t in share_alike.values():
            candidates = list(t.relicense_to) if candidates is None else [c for c in candidates if c in t.relicense_to]
        if non_commercial:
            candidates = [c for c in candidates or [] if "-nc" in c]
        if candidates:
            choice = candidates[0]
            others = [f"{s} ({t.raw})" for s, t in known.items() if s not in share_alike]
            why = (
                f"{choice}: " + ", ".join(f"{s} is {t.raw}" for s, t in share_alike.items())
                + ", whose share-alike terms require adaptations to stay under it"
                + (f"; {', '.join(others)} allow re-release under it" if others else "")
                + "."
            )
            return LicenceDecision(choice, [], [why, *notes])
        reasons.append("the share-alike sources have no licence in common")

    if not reasons and non_commercial:
        ids = {t.id for t in non_commercial.values()}
        if len(ids) == 1:
            choice = ids.pop()
            assert choice is not None
            return LicenceDecision(choice, [], [
                f"{choice}: " + ", ".join(non_commercial) + " forbid commercial use; the other sources allow "
                "re-release under it.", *notes,
            ])
        reasons.append("the non-commercial sources use different licences")

    if not reasons:
        ranked = sorted(PERMISSIVE_RANK.get(t.id or "", 2) for t in known.values())
        top = {t.id for t in known.values() if PERMISSIVE_RANK.get(t.id or "", 2) == ranked[-1]}
        if len(top) == 1:
            choice = top.pop()
            assert choice is not None
            return LicenceDecision(choice, [], [
                f"{choice}: all sources with known terms are permissive and allow re-release under it; keep "
                "their attribution notices.", *notes,
            ])
        reasons.append("the permissive sources use different licences, each needing its own notice")

    why = "other: " + "; ".join(reasons) + ". Each source's rows keep that source's terms."
    if non_commercial:
        # The rows that carry non-commercial terms: those of the sources and of what was generated from them.
        nc_rows = [s for s in terms if s in non_commercial or any(i in non_commercial for i in inputs.get(s, ()))]
        why += " No commercial use of the rows from " + ", ".join(nc_rows) + "."
    return LicenceDecision("other", [], [why, _terms_note(terms, inputs), *notes])
