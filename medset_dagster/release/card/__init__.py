"""The dataset card (`README.md`) and its two charts, written for people reading the dataset on the Hub.

The card states what the build really did: the sources at their revisions and licences, the excluded
sources and why, the curation funnel, how generation and retrieval were done (and, for the sample
profile, that its generations are only for trying the pipeline), and the licence the sources allow,
naming any acknowledged conflict plainly.

It holds no run id or timestamp (they belong in `build.json`), and the charts are rendered with fixed
size, dpi, style and no software metadata, so identical content gives identical bytes and the
manifest's `content_hash` does not change on a rebuild.
"""


from __future__ import annotations

from pathlib import Path

import polars as pl

from medset_dagster.common.files import atomic_write_text
from medset_dagster.release.card.charts import (
    render_length_histogram,
    render_source_mix,
)
from medset_dagster.release.card.inputs import (
    LENGTH_HISTOGRAM_IMAGE,
    README_NAME,
    SOURCE_MIX_IMAGE,
    CardInputs,
    ExcludedSource,
)
from medset_dagster.release.card.sections import card_markdown

__all__ = ["CardInputs", "ExcludedSource", "card_markdown", "render_card"]


def render_card(card: CardInputs, dataset: pl.DataFrame, release_dir: Path) -> list[Path]:
    """Write README.md, images/source_mix.png and images/length_histogram.png; return their paths."""
    release_dir = Path(release_dir)
    release_dir.mkdir(parents=True, exist_ok=True)
    text = card_markdown(card, dataset)  # validates the inputs before anything is written
    policy = card.policy
    bounds = (int(policy["min_chars"]), int(policy["max_chars"])) if policy.get("length_filter") else None
    mix = render_source_mix(dataset, release_dir / SOURCE_MIX_IMAGE)
    hist = render_length_histogram(dataset, release_dir / LENGTH_HISTOGRAM_IMAGE, bounds)
    readme = atomic_write_text(release_dir / README_NAME, text)
    return [readme, mix, hist]
