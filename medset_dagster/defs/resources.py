"""The one storage setting every asset shares: where the pipeline writes its files."""


from pathlib import Path

from dagster import ConfigurableResource

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT / ".medset"


class PipelineStorage(ConfigurableResource):
    """The data folder (`MEDSET_DATA_DIR`, default `.medset/` in the repo).

    Tables between assets live under `assets/` (the IO manager's); files that are files by nature
    live beside them: `cache/` (LLM generations and embeddings, SQLite), `retrieval/` (the FAISS
    index folder, the local embedder), `pdfs/` (downloaded books), `huggingface/` (the `datasets`
    cache), `releases/<id>/` (each release folder) and `release` (the pointer to the current one).
    Keeping every path behind this one setting lets it become an object-store URI later.
    """

    data_dir: str = str(DEFAULT_DATA_DIR)

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    def folder(self, *parts: str) -> Path:
        """`root/parts...`, created if missing."""
        target = self.root.joinpath(*parts)
        target.mkdir(parents=True, exist_ok=True)
        return target

    @property
    def tables_dir(self) -> Path:
        return self.folder("assets")

    def scratch_file(self, name: str) -> Path:
        """A path under `tables_dir/.scratch/` (same filesystem as the tables, so the IO manager can
        move a finished file into place with one rename); an old file of that name is removed."""
        path = self.folder("assets", ".scratch") / name
        path.unlink(missing_ok=True)
        return path

    @property
    def cache_dir(self) -> Path:
        return self.folder("cache")

    @property
    def generation_cache_path(self) -> Path:
        return self.cache_dir / "generations.sqlite"

    @property
    def embedding_cache_path(self) -> Path:
        return self.cache_dir / "embeddings.sqlite"

    @property
    def hf_cache_dir(self) -> Path:
        return self.folder("huggingface")

    @property
    def pdf_dir(self) -> Path:
        return self.folder("pdfs")

    @property
    def index_dir(self) -> Path:
        return self.folder("retrieval", "index")

    @property
    def embedder_dir(self) -> Path:
        return self.folder("retrieval", "embedder")

    @property
    def releases_dir(self) -> Path:
        return self.folder("releases")

    @property
    def release_dir(self) -> Path:
        """The current release: a symlink switched atomically to a complete folder in `releases/`."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / "release"
