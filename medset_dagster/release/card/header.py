"""The card's YAML header: the Hub's metadata fields (licence ids, size category, configs)."""

from __future__ import annotations

import re
from typing import Any

from medset_dagster.release.card.inputs import README_NAME, CardInputs
from medset_dagster.release.export import DATA_DIR

TASK_CATEGORIES = ["question-answering", "text-generation"]
TAGS = [
    "medical",
    "healthcare",
    "first-aid",
    "emergency-medicine",
    "medical-qa",
    "clinical-reasoning",
    "disaster-response",
]
# Licence ids the Hub accepts in `license:`; anything else is declared `other` with a name and link.
HUB_LICENCE_IDS = frozenset({
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0",
    "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0",
    "etalab-2.0", "eupl-1.1", "eupl-1.2", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1",
    "lgpl-3.0", "isc", "lppl-1.3c", "ms-pl", "mpl-2.0", "odc-by", "odbl", "openrail++", "osl-3.0", "postgresql",
    "ofl-1.1", "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr", "unknown", "other",
})
# Our normalised ids (licensing.py) that the Hub spells differently.
HUB_ALIASES = {"odbl-1.0": "odbl"}
# (upper bound exclusive, Hub size category)
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)
# Fixed so the PNG bytes depend on the data only.

def size_category(rows: int) -> str:
    """The Hub's `size_categories` value for `rows` (SIZE_CATEGORIES): "n<1K" below 1,000, then one
    category per power of ten (a bound itself falls in the category above), "n>1T" from 10^12 rows."""
    for bound, name in SIZE_CATEGORIES:
        if rows < bound:
            return name
    return "n>1T"


def licence_link(licence_id: str) -> str | None:
    """A canonical URL for a licence id we may declare as `other`."""
    cc = re.fullmatch(r"cc-(by(?:-(?:nc|sa|nd))*)-(\d\.\d)(?:-([a-z]+))?", licence_id)
    if cc:
        port = f"{cc.group(3)}/" if cc.group(3) else ""
        return f"https://creativecommons.org/licenses/{cc.group(1)}/{cc.group(2)}/{port}"
    gpl = re.fullmatch(r"(a|l)?gpl-(\d\.\d)", licence_id)
    if gpl:
        return f"https://www.gnu.org/licenses/{gpl.group(1) or ''}gpl-{gpl.group(2)}.html"
    return None


def hub_licence_fields(licence: str) -> dict[str, str]:
    """`license:` and, for ids the Hub does not know, `license_name` / `license_link`."""
    licence = HUB_ALIASES.get(licence, licence)
    if licence == "other":
        # Per-source terms: the card's licence section is the licence text (a link to a file in the repo).
        return {"license": "other", "license_name": "per-source-terms", "license_link": README_NAME}
    if licence in HUB_LICENCE_IDS:
        return {"license": licence}
    name = re.sub(r"[^a-z0-9.-]+", "-", licence.lower()).strip("-") or "custom"
    return {"license": "other", "license_name": name, "license_link": licence_link(name) or README_NAME}


def _card_data(card: CardInputs, rows: int) -> Any:
    from huggingface_hub import DatasetCardData

    return DatasetCardData(
        pretty_name=card.pretty_name,
        language=["en"],
        task_categories=list(TASK_CATEGORIES),
        size_categories=[size_category(rows)],
        tags=list(TAGS) + (["synthetic"] if card.generation is not None else []),
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": f"{DATA_DIR}/train-*"}]}],
        **hub_licence_fields(card.licence.licence),
    )


def card_header(card: CardInputs, rows: int) -> str:
    """The README's YAML front matter between `---` lines, newline-terminated: pretty name, language, task
    categories, `size_category(rows)`, tags (`synthetic` when generated), the `data/train-*` config and
    the licence fields (`hub_licence_fields`)."""
    return "---\n" + _card_data(card, rows).to_yaml().rstrip("\n") + "\n---\n"
