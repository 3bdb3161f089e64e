# Everything a fresh machine with Python 3.11 and make needs. Set-up that is already satisfied
# is skipped, so a second `make build` works with no network.
PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export DAGSTER_HOME := $(CURDIR)
export MEDSET_PROFILE ?= sample

.PHONY: setup build publish test dev benchmarks clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The lock pins every version; llama-cpp-python builds from source once (about 6 minutes), then
# uv's cache serves the wheel.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced

DAGSTER_JOB := $(VENV)/bin/dagster job execute -m medset_dagster.definitions

## Build the dataset on the active profile: observe the sources (their revisions become data
## versions), then materialize every asset of build_dataset, release card included.
build: setup
	$(DAGSTER_JOB) -j observe_sources
	$(DAGSTER_JOB) -j build_dataset
	@echo "Release folder: $${MEDSET_DATA_DIR:-$(CURDIR)/.medset}/release"

## Publish the release (sample profile, or no MEDSET_HUB_REPO: a dry run into the release folder).
publish: setup
	$(DAGSTER_JOB) -j publish_dataset

## Run the test suite.
test: setup
	$(VENV)/bin/python -m pytest -q

## The web UI on http://127.0.0.1:3000 (same as `dg dev`).
dev: setup
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

benchmarks: setup
	$(VENV)/bin/python benchmarks/curation.py
	$(VENV)/bin/python benchmarks/retrieval.py
	$(VENV)/bin/python benchmarks/generation.py

clean:
	rm -rf .dagster .medset
