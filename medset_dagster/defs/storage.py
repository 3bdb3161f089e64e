"""Where the pipeline's files live: one setting, so paths can become object-store URIs later."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT / ".medset"


class PipelineStorage(ConfigurableResource):
    """The data folder: source records, generation inputs, caches, the curated dataset, the release."""

    data_dir: str = str(DEFAULT_DATA_DIR)

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    def path(self, *parts: str) -> Path:
        target = self.root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def records_path(self, source_id: str) -> Path:
        return self.path("records", f"{source_id}.parquet")

    def records_stats_path(self, source_id: str) -> Path:
        return self.path("records", f"{source_id}.stats.json")

    def generation_inputs_path(self, source_id: str) -> Path:
        return self.path("generation_inputs", f"{source_id}.parquet")

    def generation_inputs_stats_path(self, source_id: str) -> Path:
        return self.path("generation_inputs", f"{source_id}.stats.json")

    @property
    def curated_path(self) -> Path:
        return self.path("curated", "dataset.parquet")

    @property
    def curation_report_path(self) -> Path:
        return self.path("curated", "curation.json")

    @property
    def release_dir(self) -> Path:
        return self.path("release", "README.md").parent

    @property
    def hf_cache_dir(self) -> Path:
        return self.path("cache", "huggingface", ".keep").parent
