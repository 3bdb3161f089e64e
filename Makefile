# Everything a fresh machine with Python 3.11 and make needs. Set-up that is already satisfied
# is skipped, so a second `make build` works with no network.
PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export DAGSTER_HOME := $(CURDIR)/.dagster
export MEDSET_PROFILE ?= sample

.PHONY: setup build publish test dev benchmarks rehearsal clean cluster-packages cluster-up cluster-build cluster-down

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

## Run the test suite (the Celery build test starts Postgres and Redis: installed first if missing).
test: setup cluster-packages
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

## The Celery deployment on this machine (deploy/local/cluster.py; state in the git-ignored .cluster/).
CLUSTER := $(VENV)/bin/python deploy/local/cluster.py
WORKERS ?= 2

## Install postgresql and redis-server with apt-get if missing (without apt-get: a warning, and
## the tests that need them skip).
cluster-packages: setup
	$(CLUSTER) install --optional

## Start Postgres (the Dagster instance, deploy/postgres/dagster.yaml) and Redis (the Celery broker)
## on 127.0.0.1 at free ports; `source .cluster/env` gives a shell their settings.
cluster-up: setup
	$(CLUSTER) up

## Build through the Celery executor against them: $(WORKERS) local workers (the first also on the
## `llm` queue) started, the build, the workers stopped.
cluster-build: cluster-up
	$(CLUSTER) build --workers $(WORKERS)

## Stop the workers, Redis and Postgres (Postgres keeps its data in .cluster/).
cluster-down:
	$(PYTHON) deploy/local/cluster.py down

## The full-profile rehearsal: synthetic mirrors of every source at real size on a loopback Hub (LFS),
## loopback Cohere and Ollama with latency and slot caps; then build, publish, a no-change rerun and a
## tracked source's head moving, each through `python -m medset_dagster` with MEDSET_PROFILE=full in
## a temporary data folder and instance. Prints counts, calls, stage times, RSS (about 25 minutes).
## Options through REHEARSAL_ARGS, e.g. REHEARSAL_ARGS="--scale 0.05 --scenarios 50 --llm-latency 0".
REHEARSAL_ARGS ?=
rehearsal: setup
	$(VENV)/bin/python benchmarks/rehearsal.py $(REHEARSAL_ARGS)

clean:
	find .dagster -mindepth 1 ! -name dagster.yaml -exec rm -rf {} + 2>/dev/null || true
	rm -rf .medset
