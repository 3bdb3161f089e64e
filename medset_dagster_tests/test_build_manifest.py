"""The build manifest: file hashes, and a content hash that ignores run ids, commits and timestamps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medset_dagster.common.hashing import sha256_file
from medset_dagster.dataset.curation import CurationPolicy
from medset_dagster.release.build_manifest import (
    CODE_URL_SETTING,
    MANIFEST_NAME,
    UNKNOWN_COMMIT,
    BuildManifest,
    DocumentEntry,
    GenerationInfo,
    RetrievalInfo,
    SourceEntry,
    build_manifest,
    code_url,
    commit_year,
    compute_file_hashes,
    generation_task,
    git_commit,
    public_url,
    reproduce_command,
    reproduce_settings,
    source_entries,
    write_manifest,
)
from medset_dagster.release.licensing import LicenceDecision
from medset_dagster.sources.registry import dataset_sources


def make_release(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1 fake shard PAR1")
    (root / "medical_training_dataset.json").write_text('[{"input":"q","context":"","output":"a","source":"medqa"}]')
    (root / "README.md").write_text("---\nlicense: other\n---\n# card\n")
    (root / "images" / "source_mix.png").write_bytes(b"\x89PNG fake")
    (root / ".cache").mkdir()
    (root / ".cache" / "leftover").write_text("tooling, not release content")
    return root


@pytest.fixture
def lock_file(tmp_path: Path) -> Path:
    path = tmp_path / "uv.lock"
    path.write_text("version = 1\n")
    return path


def manifest_for(release: Path, lock_file: Path, **overrides) -> BuildManifest:
    args = dict(
        release_dir=release,
        version="0.1.0",
        licence=LicenceDecision("other", [], ["per-source terms"]),
        sources=source_entries(dataset_sources(), {"medqa": 1}, revisions_loaded={"medqa": "c" * 64}),
        curation=CurationPolicy(),
        documents=[DocumentEntry("doc", "doc.pdf", "ab" * 32, "CC0-1.0", "A document")],
        generation=GenerationInfo("llama_cpp", "smollm2", None, [generation_task("medqa", 2, 1)]),
        retrieval=RetrievalInfo(512, 128, 50, {"backend": "local-tfidf-svd", "model": "m", "fingerprint": "f", "dimension": 8}, "flat_ip"),
        rows=1,
        dagster_run_id="run-1",
        created_at="2025-01-01T00:00:00Z",
        code_version="code-1",
        lock_file=lock_file,
        commit="a" * 40,
        command="MEDSET_PROFILE=sample make build",
        code_url="https://git.example.org/medset",
    )
    args.update(overrides)
    return build_manifest(**args)


def test_files_listed_with_their_sha256_except_manifest_and_hidden(tmp_path: Path) -> None:
    release = make_release(tmp_path / "release")
    (release / MANIFEST_NAME).write_text("{}")
    files = compute_file_hashes(release)
    assert sorted(files) == [
        "README.md",
        "data/train-00000-of-00001.parquet",
        "images/source_mix.png",
        "medical_training_dataset.json",
    ]
    for rel, entry in files.items():
        assert entry == {"bytes": (release / rel).stat().st_size, "sha256": sha256_file(release / rel)}


def test_content_hash_ignores_run_id_commit_and_timestamps(tmp_path: Path, lock_file: Path) -> None:
    release = make_release(tmp_path / "release")
    first = manifest_for(release, lock_file)
    second = manifest_for(
        release, lock_file, dagster_run_id="run-2", commit="b" * 40, created_at="2026-06-30T12:00:00Z", code_version="code-2"
    )
    assert first.content_hash == second.content_hash
    assert first.to_json() != second.to_json()


def test_content_hash_changes_with_data_bytes_and_licence(tmp_path: Path, lock_file: Path) -> None:
    release = make_release(tmp_path / "release")
    before = manifest_for(release, lock_file)
    (release / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1 other shard PAR1")
    after = manifest_for(release, lock_file)
    assert after.content_hash != before.content_hash
    relicensed = manifest_for(release, lock_file, licence="gpl-3.0")
    assert relicensed.content_hash != after.content_hash


def test_lock_file_hash(tmp_path: Path, lock_file: Path) -> None:
    release = make_release(tmp_path / "release")
    assert manifest_for(release, lock_file).lock_file_sha256 == sha256_file(lock_file)
    assert manifest_for(release, tmp_path / "missing.lock").lock_file_sha256 is None


def test_repo_lock_file_is_hashed_by_default(tmp_path: Path) -> None:
    release = make_release(tmp_path / "release")
    repo_root = Path(__file__).resolve().parents[1]
    manifest = manifest_for(release, None, repo_root=repo_root)
    assert manifest.lock_file_sha256 == sha256_file(repo_root / "uv.lock")


def test_written_manifest_is_sorted_json_with_the_recorded_fields(tmp_path: Path, lock_file: Path) -> None:
    release = make_release(tmp_path / "release")
    manifest = manifest_for(release, lock_file)
    path = write_manifest(manifest, release)
    text = path.read_text()
    data = json.loads(text)
    assert path == release / MANIFEST_NAME
    assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert data["content_hash"] == manifest.content_hash
    assert data["dagster_run_id"] == "run-1"
    assert data["git_commit"] == "a" * 40
    assert data["created_by"].startswith("medset_dagster ")
    assert data["curation"] == {"name": "card", "seed": 42, "min_chars": 10, "max_chars": 1500,
                                "global_dedup": True, "length_filter": True}
    medqa = next(s for s in data["sources"] if s["source_id"] == "medqa")
    assert medqa == {"source_id": "medqa", "hub_repo": "truehealth/medqa", "config": None,
                     "revision_loaded": "c" * 64, "loaded_from": "local_mirror",
                     "revision_pinned": "e8fc5634288cca740bdd1c8c973f3f41b0171085", "hub_head": None,
                     "licence": "none declared; upstream MedQA: MIT", "rows": 1}
    assert data["command"] == "MEDSET_PROFILE=sample make build"
    assert data["code_url"] == "https://git.example.org/medset"
    task = data["generation"]["tasks"][0]
    assert task["task"] == "medqa" and task["items_requested"] == 2 and task["items_kept"] == 1
    assert task["parameters"]["medqa_explanation"]["temperature"] == 0.3
    assert data["retrieval"]["embedder"]["dimension"] == 8
    assert data["documents"] == [{"doc_id": "doc", "filename": "doc.pdf", "sha256": "ab" * 32,
                                  "licence": "CC0-1.0", "title": "A document"}]
    # Writing the manifest does not change the content it describes.
    assert compute_file_hashes(release) == manifest.files


def test_manifest_refuses_a_folder_that_changed_since(tmp_path: Path, lock_file: Path) -> None:
    release = make_release(tmp_path / "release")
    manifest = manifest_for(release, lock_file)
    (release / "images" / "length_histogram.png").write_bytes(b"\x89PNG late")
    with pytest.raises(ValueError, match="changed since the manifest was built"):
        write_manifest(manifest, release)


def test_inputs_may_be_plain_dicts(tmp_path: Path, lock_file: Path) -> None:
    release = make_release(tmp_path / "release")
    manifest = manifest_for(
        release,
        lock_file,
        sources=[{"source_id": "s", "hub_repo": "o/r", "config": None, "revision_loaded": "1" * 40, "loaded_from": "hub",
                  "revision_pinned": "1" * 40, "licence": "mit", "rows": 3}],
        documents=[{"doc_id": "d", "filename": "d.pdf", "sha256": "00", "licence": "CC0-1.0"}],
        generation={"backend": "ollama", "model": "gemma3n:e4b", "digest": "sha256:x",
                    "tasks": [{"task": "medqa", "template_version": "v", "items_requested": 1, "items_kept": 1}]},
        retrieval={"chunk_size": 512, "chunk_overlap": 128, "chunk_min_chars": 50,
                   "embedder": {"backend": "cohere"}, "index_kind": "flat_ip"},
        curation={"name": "published", "seed": 7, "min_chars": 10, "max_chars": 1500},
    )
    assert manifest.sources[0]["rows"] == 3
    assert manifest.generation["tasks"][0]["template_version"] == "v"
    assert manifest.curation["length_filter"] is False


def test_source_entries_keep_loaded_and_pinned_revisions_apart() -> None:
    """build.json used to hold the registry's pin for generated sources, whose items were read from a mirror."""
    mirror, commit = "d" * 64, "e" * 40
    entries = {e.source_id: e for e in source_entries(
        dataset_sources(), {"medqa": 2, "wiki_medical_terms": 1},
        revisions_loaded={"medqa": mirror, "wiki_medical_terms": commit}, hub_heads={"wiki_medical_terms": "f" * 40},
    )}
    assert (entries["medqa"].revision_loaded, entries["medqa"].loaded_from) == (mirror, "local_mirror")
    assert entries["medqa"].revision_pinned == "e8fc5634288cca740bdd1c8c973f3f41b0171085"
    assert (entries["wiki_medical_terms"].revision_loaded, entries["wiki_medical_terms"].loaded_from) == (commit, "hub")
    assert entries["wiki_medical_terms"].hub_head == "f" * 40
    # No recorded load: no revision loaded, never the pin in its place.
    assert (entries["symptom_to_diagnosis"].revision_loaded, entries["symptom_to_diagnosis"].loaded_from) == (None, None)
    assert entries["symptom_to_diagnosis"].revision_pinned == "722cfb0e11f8ae37339c7f573b5e10429b94df49"
    assert entries["extreme_firstaid_qa_dataset"].revision_pinned is None
    with pytest.raises(ValueError, match="neither a Hub commit sha"):
        source_entries(dataset_sources(), {}, revisions_loaded={"medqa": "local mirror of e8fc563"})
    with pytest.raises(ValueError, match="is not a Hub commit sha"):
        SourceEntry("s", "o/r", None, "d" * 64, None, "mit", 1, loaded_from="hub")
    with pytest.raises(ValueError, match="must be given together"):
        SourceEntry("s", "o/r", None, "d" * 64, None, "mit", 1)


@pytest.mark.parametrize(
    ("profile", "policy", "settings", "command"),
    [
        ("sample", "card", {}, "MEDSET_PROFILE=sample make build"),
        ("sample", "card", reproduce_settings("sample", backend="llama_cpp", model="SmolLM2"), "MEDSET_PROFILE=sample make build"),
        ("sample", "card", reproduce_settings("sample", backend="ollama", model="gemma3n:e4b"),
         "MEDSET_PROFILE=sample MEDSET_GENERATOR=ollama make build"),
        ("sample", "published", {}, "make setup && MEDSET_PROFILE=sample .venv/bin/python -m medset_dagster build --policy published"),
        ("full", "card", reproduce_settings("full", backend="ollama", model="llama3:8b", scenarios=1000, licence="other"),
         "MEDSET_PROFILE=full MEDSET_OLLAMA_MODEL=llama3:8b MEDSET_RELEASE_LICENCE=other MEDSET_SCENARIOS=1000 make build"),
        ("full", "card", reproduce_settings("full", licence="cc by 4.0", acknowledge_licence_conflict=True),
         "MEDSET_PROFILE=full MEDSET_ACKNOWLEDGE_LICENCE_CONFLICT=1 MEDSET_RELEASE_LICENCE='cc by 4.0' make build"),
    ],
)
def test_reproduce_command(profile: str, policy: str, settings: dict, command: str) -> None:
    assert reproduce_command(profile, policy, settings) == command


def git(repo: Path, *args: str, **env: str) -> str:
    import os
    import subprocess

    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **env}).stdout.strip()


def test_code_url_and_citation_year_come_from_the_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "f").write_text("x")
    git(repo, "add", "f")
    dated = {"GIT_AUTHOR_DATE": "2019-07-01T12:00:00+00:00", "GIT_COMMITTER_DATE": "2019-07-01T12:00:00+00:00",
             "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
             "GIT_COMMITTER_EMAIL": "t@example.org"}
    git(repo, "commit", "-qm", "one", **dated)
    assert commit_year(repo) == 2019  # the commit's year, whatever today's is
    assert commit_year(tmp_path) is None  # not a repository
    # No remote: the setting, else nothing.
    assert code_url(repo, env={}) is None
    assert code_url(repo, env={CODE_URL_SETTING: "https://example.org/medset"}) == "https://example.org/medset"
    # A local path is not a link; a remote URL is, without its credentials or ".git".
    git(repo, "remote", "add", "backup", "/srv/git/medset")
    assert code_url(repo, env={}) is None
    git(repo, "remote", "add", "origin", "https://user:hf_secret@git.example.org/team/medset.git")
    assert code_url(repo, env={CODE_URL_SETTING: "https://example.org/other"}) == "https://git.example.org/team/medset"
    assert public_url("git@git.example.org:team/medset.git") == "https://git.example.org/team/medset"


def test_git_commit(tmp_path: Path) -> None:
    repo_root = Path(__file__).resolve().parents[1]
    commit = git_commit(repo_root)
    assert commit == UNKNOWN_COMMIT or len(commit) == 40
    assert git_commit(tmp_path) == UNKNOWN_COMMIT  # not a repository


def test_card_and_manifest_rebuilt_with_another_run_give_the_same_content_hash(tmp_path: Path, lock_file: Path) -> None:
    import polars as pl

    from medset_dagster.release.card import CardInputs, ExcludedSource, render_card
    from medset_dagster.release.export import write_release_data
    from medset_dagster.sources.registry import excluded_sources

    dataset = pl.DataFrame({
        "input": [f"What should I do about injury {i}?" for i in range(12)],
        "context": ["" for _ in range(12)],
        "output": [f"Apply firm pressure and seek care ({i})." for i in range(12)],
        "source": ["medqa"] * 7 + ["medicationqa"] * 5,
    })
    hashes = []
    for run in ("run-a", "run-b"):
        release = tmp_path / run
        write_release_data(dataset, release)
        counts = {"medqa": 7, "medicationqa": 5}
        licence = LicenceDecision("unknown", [], ["No source has known licence terms: declared unknown."])
        card = CardInputs(
            pretty_name="Medical Q&A", version="0.1.0", repo_id=None, licence=licence,
            sources=source_entries(dataset_sources(), counts), excluded=[ExcludedSource(s.source_id, s.hub_repo, s.excluded_reason or "") for s in excluded_sources()], funnel=[], policy=CurationPolicy(),
            generation=None, retrieval=None, documents=[], profile="sample",
        )
        render_card(card, dataset, release)
        manifest = manifest_for(release, lock_file, licence=licence, dagster_run_id=run, created_at=run)
        write_manifest(manifest, release)
        assert "README.md" in manifest.files and "images/source_mix.png" in manifest.files
        hashes.append(manifest.content_hash)
    assert hashes[0] == hashes[1]
