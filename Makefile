# Everything a fresh machine with Python 3.11 and make needs. Set-up that is already satisfied
# is skipped, so a second `make build` works with no network.
PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export DAGSTER_HOME := $(CURDIR)/.dagster
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

PORT ?= 3000
MEDSET := $(VENV)/bin/python -m medset_dagster

## Build the dataset on the active profile: observe the sources (their revisions become data
## versions), then run build_dataset (shard by shard), release card included. The runs appear in
## the UI under the code location's jobs.
build: setup
	$(MEDSET) build

## Publish the current release (sample profile, or no MEDSET_HUB_REPO: a dry run). Refuses a
## release that is stale or whose blocking checks did not pass.
publish: setup
	$(MEDSET) publish

## Run the test suite.
test: setup
	$(VENV)/bin/python -m pytest -q

## The web UI on http://127.0.0.1:$(PORT) (same as `dg dev`).
dev: setup
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(PORT)

## Scripts that print their figures (not tests): curation, retrieval, generation, the LLM fleet,
## text hygiene and the quality stages.
benchmarks: setup
	$(VENV)/bin/python benchmarks/curation.py
	$(VENV)/bin/python benchmarks/retrieval.py
	$(VENV)/bin/python benchmarks/generation.py
	$(VENV)/bin/python benchmarks/fleet.py
	$(VENV)/bin/python benchmarks/hygiene.py
	$(VENV)/bin/python benchmarks/quality.py

clean:
	find .dagster -mindepth 1 ! -name dagster.yaml -exec rm -rf {} + 2>/dev/null || true
	rm -rf .medset
