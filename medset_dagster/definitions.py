"""The code location: the pipeline's map, from sources to release."""

from __future__ import annotations

from dagster import Definitions

from medset_dagster.core.registry import record_sources
from medset_dagster.defs.dataset import CURATED_DATASET_CHECKS, curated_dataset_asset, release_files
from medset_dagster.defs.jobs import build_dataset, nightly_build
from medset_dagster.defs.profiles import active_profile, resources_for
from medset_dagster.defs.sources import EXCLUDED_SOURCE_SPECS, GENERATION_INPUT_ASSETS, SOURCE_RECORD_ASSETS

# Every asset that writes records for one `source` of the dataset, with that source's id.
RECORD_PRODUCERS = [(asset.key, spec.source_id) for asset, spec in zip(SOURCE_RECORD_ASSETS, record_sources())]

curated_dataset = curated_dataset_asset(RECORD_PRODUCERS)

defs = Definitions(
    assets=[
        *SOURCE_RECORD_ASSETS,
        *GENERATION_INPUT_ASSETS,
        *EXCLUDED_SOURCE_SPECS,
        curated_dataset,
        release_files,
    ],
    asset_checks=CURATED_DATASET_CHECKS,
    jobs=[build_dataset],
    schedules=[nightly_build],
    resources=resources_for(active_profile()),
)
