# Everything a fresh machine with Python 3.11 and make needs. Set-up that is already satisfied
# is skipped, so a second `make build` works with no network.
PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export DAGSTER_HOME := $(CURDIR)
export MEDSET_PROFILE ?= sample

.PHONY: setup build test dev benchmarks clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The lock pins every version; llama-cpp-python builds from source once (about 6 minutes), then
# uv's cache serves the wheel.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced

## Build the dataset: materialize every asset of the build_dataset job on the active profile.
build: setup
	$(VENV)/bin/dagster job execute -m medset_dagster.definitions -j build_dataset
	@echo "Release folder: $${MEDSET_DATA_DIR:-$(CURDIR)/.medset}/release"

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
