"""Real services for the deployment tests, on 127.0.0.1: Postgres (the Dagster instance), Redis
(the Celery broker and result backend) and `dagster-celery` workers, started through
deploy/local/cluster.py, the code `make cluster-up` runs, in a temporary state folder.

The Debian packages (postgresql, redis-server) are installed with apt-get when missing; the
tests skip, saying why, only when apt-get itself is unavailable.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from medset_dagster.defs.resources import REPO_ROOT

CLUSTER_SCRIPT = REPO_ROOT / "deploy" / "local" / "cluster.py"


def cluster_module() -> ModuleType:
    """deploy/local/cluster.py as a module (it is a script, not part of the package)."""
    name = "medset_deploy_cluster"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, CLUSTER_SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@dataclass
class Services:
    """A running Postgres and Redis, and the environment that reaches them (DAGSTER_HOME on the
    Postgres instance file, DAGSTER_PG_*, MEDSET_CELERY_BROKER)."""

    cluster: object
    env: dict[str, str]

    @property
    def state_dir(self) -> Path:
        return self.cluster.state_dir

    @contextmanager
    def workers(self, count: int, env: Mapping[str, str], *, llm_workers: int = 1) -> Iterator[list]:
        """`count` dagster-celery workers with `env` (plus ours), stopped on exit; the first
        `llm_workers` also take the LLM queues."""
        module = cluster_module()
        started = module.start_workers(self.state_dir, count, {**env, **self.env}, llm_workers=llm_workers)
        try:
            yield started
        finally:
            module.stop_workers(started)


@pytest.fixture(scope="session")
def cluster_services() -> Iterator[Services]:
    """Postgres and Redis for the session, in a temporary state folder, stopped and deleted after."""
    module = cluster_module()
    try:
        module.ensure_packages()
    except module.AptUnavailable as error:
        pytest.skip(f"Postgres and Redis are needed and cannot be installed: {error}")
    # Not under pytest's tmp_path: its folders are private (0700) and the servers run as the
    # postgres and redis users, which must reach their folders.
    state_dir = Path(tempfile.mkdtemp(prefix="medset-cluster-"))
    cluster = module.Cluster(state_dir)
    try:
        env = cluster.up()
        yield Services(cluster, env)
    finally:
        cluster.down()
        shutil.rmtree(state_dir, ignore_errors=True)
