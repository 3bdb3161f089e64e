"""A one-machine cluster on 127.0.0.1 for the Celery deployment, from Debian's packages:
Postgres (the Dagster instance), Redis (the Celery broker and result backend) and N
`dagster-celery` workers. What `make cluster-up`, `make cluster-build` and `make cluster-down` run,
and what the tests start (medset_dagster_tests/services.py).

    python deploy/local/cluster.py install          # apt-get install postgresql redis-server if missing
                                                    # (--optional: only warn without apt-get)
    python deploy/local/cluster.py up               # start Postgres and Redis (installing them if missing)
    python deploy/local/cluster.py env              # the variables that reach them, as `export` lines
    python deploy/local/cluster.py build -w 2       # 2 workers, a build through Celery, workers stopped
    python deploy/local/cluster.py down             # stop workers, Redis and Postgres (data kept)

Everything lives under the state folder (`.cluster/`, git-ignored by its own .gitignore; or
`MEDSET_CLUSTER_DIR`): `postgres/` (data folder, log, port), `redis/` (config, log, pid),
`dagster_home/` (DAGSTER_HOME: a link to deploy/postgres/dagster.yaml), `celery/worker.yaml`,
`workers/` (one pid and log per worker), `env` (the variables, mode 0600). Postgres refuses to
run as root, so as root the servers run as the `postgres` and `redis` users (runuser); each takes
a free port, recorded in the state folder.
"""

from __future__ import annotations

import argparse
import glob
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".cluster"
INSTANCE_FILE = REPO_ROOT / "deploy" / "postgres" / "dagster.yaml"
DB_USER = DB_NAME = "medset"


class ServiceError(RuntimeError):
    """A service could not be installed, started or reached; the message says why."""


class AptUnavailable(ServiceError):
    """A Debian package is missing and apt-get is not there to install it."""


# ------------------------------------------------------------------------------------ helpers


def _run(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(cmd), env=dict(env) if env is not None else None, cwd=cwd, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise ServiceError(f"`{shlex.join(cmd)}` failed ({result.returncode}): {(result.stderr or result.stdout).strip()[-2000:]}")
    return result


def _as_user(user: str, cmd: Sequence[str]) -> list[str]:
    """`cmd` run as `user` when we are root (Postgres refuses root), else as ourselves."""
    return ["runuser", "-u", user, "--", *cmd] if os.geteuid() == 0 else list(cmd)


def _own(path: Path, user: str, mode: int) -> None:
    """Give `path` to `user` (when root) with `mode`."""
    if os.geteuid() == 0:
        shutil.chown(path, user, user)
    path.chmod(mode)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def postgres_bin_dir() -> Path | None:
    """The newest installed Postgres server's bin folder (Debian: /usr/lib/postgresql/<v>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parents[1].name))
    return Path(found[-1]).parent if found else None


def ensure_debian_package(package: str, present) -> None:
    """Install `package` with apt-get unless `present()`; `apt-get update` once if the install
    fails on stale lists. Raises `AptUnavailable` without apt-get, `ServiceError` if it fails."""
    if present():
        return
    apt = shutil.which("apt-get")
    if apt is None:
        raise AptUnavailable(f"the Debian package {package} is not installed and apt-get is not available to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-q", "--no-install-recommends", package]
    if _run(install, env=env, check=False).returncode != 0:
        _run([apt, "update", "-q"], env=env)
        _run(install, env=env)
    if not present():
        raise ServiceError(f"apt-get installed {package} but its programs are still missing")


def ensure_packages() -> None:
    """postgresql and redis-server, installed if missing."""
    ensure_debian_package("postgresql", lambda: postgres_bin_dir() is not None)
    ensure_debian_package("redis-server", lambda: shutil.which("redis-server") is not None)


# ----------------------------------------------------------------------------------- Postgres


@dataclass
class PostgresService:
    """A Postgres data folder under `root`, served on 127.0.0.1 at a free port."""

    root: Path
    user: str = "postgres"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "postgres.log"

    def _bin(self, name: str) -> str:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise ServiceError("Postgres is not installed: run `python deploy/local/cluster.py install`")
        return str(bin_dir / name)

    def running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return _run(_as_user(self.user, [self._bin("pg_ctl"), "-D", str(self.data_dir), "status"]), cwd=self.root, check=False).returncode == 0

    def env(self) -> dict[str, str]:
        """What deploy/postgres/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": self.port_file.read_text().strip(),
            "DAGSTER_PG_USERNAME": DB_USER,
            "DAGSTER_PG_PASSWORD": self.password_file.read_text().strip(),
            "DAGSTER_PG_DB": DB_NAME,
        }

    def _initdb(self) -> None:
        password = secrets.token_urlsafe(18)
        _write_private(self.password_file, password)
        for folder in (self.data_dir, self.log_file.parent, self.root / "run"):
            folder.mkdir(parents=True, exist_ok=True)
            _own(folder, self.user, 0o700)
        pwfile = self.root / "run" / "initdb.pw"
        pwfile.write_text(password)
        _own(pwfile, self.user, 0o600)
        try:
            _run(
                _as_user(self.user, [
                    self._bin("initdb"), "-D", str(self.data_dir), "-U", DB_USER, f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C",
                ]),
                cwd=self.root,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> dict[str, str]:
        """Start (initialising the data folder the first time); returns `env()`."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        if self.running():
            return self.env()
        fresh = not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            self._initdb()
        port = free_port()
        self.port_file.write_text(str(port))
        options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root / 'run'}"
        _run(
            _as_user(self.user, [self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60", "-o", options, "start"]),
            cwd=self.root,
        )
        env = self.env()
        if fresh:
            client_env = {**os.environ, "PGPASSWORD": env["DAGSTER_PG_PASSWORD"]}
            _run([self._bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", DB_USER, DB_NAME], env=client_env)
        return env

    def stop(self) -> None:
        """Stop the server (fast shutdown); the data folder stays."""
        if self.running():
            _run(_as_user(self.user, [self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]), cwd=self.root)


# -------------------------------------------------------------------------------------- Redis


@dataclass
class RedisService:
    """A Redis server (no persistence) under `root`, on 127.0.0.1 at a free port, with a password."""

    root: Path
    user: str = "redis"

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def pid_file(self) -> Path:
        return self.root / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "redis.log"

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self._pid()
        return pid is not None and _pid_alive(pid) and self.ping()

    def url(self, db: int = 0) -> str:
        password = self.password_file.read_text().strip()
        return f"redis://:{password}@127.0.0.1:{self.port_file.read_text().strip()}/{db}"

    def ping(self) -> bool:
        """AUTH and PING answered."""
        try:
            password, port = self.password_file.read_text().strip(), int(self.port_file.read_text().strip())
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                conn.sendall(f"AUTH {password}\r\nPING\r\n".encode())
                reply = b""
                while b"PONG" not in reply and len(reply) < 4096:
                    chunk = conn.recv(256)
                    if not chunk:
                        break
                    reply += chunk
                return b"+PONG" in reply
        except (OSError, ValueError):
            return False

    def start(self) -> str:
        """Start the server; returns its URL (database 0)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.running():
            return self.url()
        user = self.user if os.geteuid() == 0 and _user_exists(self.user) else None
        if user:
            _own(self.root, user, 0o700)
        else:
            self.root.chmod(0o700)
        password = secrets.token_urlsafe(18)
        port = free_port()
        _write_private(self.password_file, password)
        self.port_file.write_text(str(port))
        config = self.root / "redis.conf"
        _write_private(config, "\n".join([
            "bind 127.0.0.1", f"port {port}", "protected-mode yes", f"requirepass {password}",
            "daemonize yes", f"pidfile {self.pid_file}", f"logfile {self.log_file}", f"dir {self.root}",
            'save ""', "appendonly no", "",
        ]))
        if user:
            shutil.chown(config, user, user)
        server = shutil.which("redis-server")
        if server is None:
            raise ServiceError("redis-server is not installed: run `python deploy/local/cluster.py install`")
        _run(_as_user(user, [server, str(config)]) if user else [server, str(config)], cwd=self.root)
        deadline = time.monotonic() + 30
        while not self.ping():
            if time.monotonic() > deadline:
                raise ServiceError(f"Redis did not answer on port {port} within 30 s:\n{_tail(self.log_file)}")
            time.sleep(0.1)
        return self.url()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then wait for it to exit)."""
        pid = self._pid()
        if pid is None or not _pid_alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def migrate_instance(env: Mapping[str, str]) -> None:
    """Create or upgrade the instance's tables in Postgres once (`dagster instance migrate`), so
    workers starting together do not race to create them."""
    dagster = Path(sys.executable).parent / "dagster"
    _run([str(dagster), "instance", "migrate"], env={**os.environ, **env}, cwd=REPO_ROOT)


# ------------------------------------------------------------------------------------ workers


@dataclass
class Worker:
    """A `dagster-celery` worker process group (its own session), its queues and its log."""

    name: str
    queues: tuple[str, ...]
    pid: int
    log_file: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _pid_alive(self.pid)

    def stop(self, timeout_s: float = 60) -> None:
        """SIGTERM to the group (warm shutdown: a running step finishes), SIGKILL after `timeout_s`."""
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if self.process is not None:
                    self.process.poll()
                try:
                    os.killpg(self.pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.2)


def worker_queues(index: int, llm_workers: int, pool_queues: Mapping[str, str]) -> tuple[str, ...]:
    """Every worker takes the default queue; the first `llm_workers` also take the pools' queues
    (on several machines: the workers next to each LLM endpoint group take its queue)."""
    from medset_dagster.defs.executors import DEFAULT_QUEUE

    return (DEFAULT_QUEUE, *sorted(set(pool_queues.values()))) if index < llm_workers else (DEFAULT_QUEUE,)


def start_workers(state_dir: Path, count: int, env: Mapping[str, str], *, llm_workers: int = 1, ready_timeout_s: float = 180) -> list[Worker]:
    """Start `count` workers (one process each, one step at a time) with `env`; wait until each is
    ready. Pids and logs go to `state_dir/workers/`."""
    import yaml

    from medset_dagster.defs.executors import celery_worker_config, pool_queues

    config = state_dir / "celery" / "worker.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(celery_worker_config(env), sort_keys=False))
    folder = state_dir / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)  # dagster-celery runs `celery` from PATH
    worker_env = {**env, "PATH": bin_dir + os.pathsep + env.get("PATH", os.environ.get("PATH", ""))}
    workers = []
    try:
        for index in range(count):
            name = f"medset-w{index + 1}"
            queues = worker_queues(index, llm_workers, pool_queues(env))
            log_file = folder / f"{name}.log"
            command = [
                sys.executable, "-m", "dagster_celery.cli", "worker", "start", "-A", "dagster_celery.app",
                # One -q with a comma list: celery's -Q keeps only the last of repeated options.
                "-y", str(config), "-n", name, "-q", ",".join(queues),
                "--", "--concurrency=1", "--without-gossip", "--without-mingle",
            ]
            with open(log_file, "w") as log:
                process = subprocess.Popen(command, env=worker_env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            (folder / f"{name}.pid").write_text(str(process.pid))
            workers.append(Worker(name, queues, process.pid, log_file, process))
        for worker in workers:
            _wait_ready(worker, ready_timeout_s)
    except BaseException:
        stop_workers(workers)
        raise
    return workers


def _wait_ready(worker: Worker, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if " ready." in worker.log_file.read_text(errors="replace"):
            return
        if not worker.alive():
            raise ServiceError(f"worker {worker.name} exited before it was ready:\n{_tail(worker.log_file)}")
        time.sleep(0.25)
    raise ServiceError(f"worker {worker.name} was not ready within {timeout_s:.0f} s:\n{_tail(worker.log_file)}")


def stop_workers(workers: Sequence[Worker]) -> None:
    """Stop each worker's process group."""
    for worker in workers:
        worker.stop()
        pid_file = worker.log_file.with_suffix(".pid")
        pid_file.unlink(missing_ok=True)


def recorded_workers(state_dir: Path) -> list[Worker]:
    """Workers recorded under `state_dir/workers/` (started by another process)."""
    workers = []
    for pid_file in sorted((state_dir / "workers").glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            continue
        workers.append(Worker(pid_file.stem, (), pid, pid_file.with_suffix(".log")))
    return workers


# ------------------------------------------------------------------------------------ cluster


@dataclass
class Cluster:
    """Postgres, Redis and the Dagster home under one state folder."""

    state_dir: Path = DEFAULT_STATE_DIR

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.postgres = PostgresService(self.state_dir / "postgres")
        self.redis = RedisService(self.state_dir / "redis")

    @property
    def dagster_home(self) -> Path:
        return self.state_dir / "dagster_home"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "env"

    def _prepare(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)  # the postgres and redis users reach their folders through it
        (self.state_dir / ".gitignore").write_text("# Local cluster state (deploy/local/cluster.py).\n*\n")
        self.dagster_home.mkdir(exist_ok=True)
        link = self.dagster_home / "dagster.yaml"
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(INSTANCE_FILE)

    def up(self) -> dict[str, str]:
        """Install if missing, start Postgres and Redis, write and return the environment."""
        ensure_packages()
        self._prepare()
        env = {"DAGSTER_HOME": str(self.dagster_home), **self.postgres.start(), "MEDSET_CELERY_BROKER": self.redis.start()}
        migrate_instance(env)
        _write_private(self.env_file, "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items()))
        return env

    def env(self) -> dict[str, str]:
        """How to reach a running cluster (from the state folder): DAGSTER_HOME on the Postgres
        instance file, DAGSTER_PG_*, MEDSET_CELERY_BROKER. Not MEDSET_EXECUTOR: a shell that
        sources these and builds without workers would wait for them forever."""
        if not (self.postgres.running() and self.redis.running()):
            raise ServiceError(f"the cluster in {self.state_dir} is not running: `make cluster-up` first")
        return {"DAGSTER_HOME": str(self.dagster_home), **self.postgres.env(), "MEDSET_CELERY_BROKER": self.redis.url()}

    def down(self) -> None:
        """Stop recorded workers, Redis and Postgres; the Postgres data folder stays."""
        stop_workers(recorded_workers(self.state_dir))
        self.redis.stop()
        self.postgres.stop()

    def build(self, workers: int, llm_workers: int = 1, args: Sequence[str] = ()) -> int:
        """Start `workers` workers, run `python -m medset_dagster build` through Celery, stop them;
        returns the build's exit code."""
        if not 1 <= llm_workers <= workers:
            # A queue nobody consumes leaves its steps waiting forever.
            raise ServiceError(f"{workers} workers with {llm_workers} on the LLM queues: at least one worker must take them")
        env = {**os.environ, **self.env(), "MEDSET_EXECUTOR": "celery"}
        started = start_workers(self.state_dir, workers, env, llm_workers=llm_workers)
        try:
            print("workers: " + ", ".join(f"{w.name} ({', '.join(w.queues)})" for w in started), flush=True)
            began = time.perf_counter()
            code = subprocess.call([sys.executable, "-m", "medset_dagster", "build", *args], env=env, cwd=REPO_ROOT)
            print(f"cluster build: exit {code} in {time.perf_counter() - began:.1f} s through {workers} Celery workers", flush=True)
            return code
        finally:
            stop_workers(started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python deploy/local/cluster.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["install", "up", "env", "build", "down"])
    parser.add_argument("-w", "--workers", type=int, default=2, help="workers for `build` (default 2)")
    parser.add_argument("--llm-workers", type=int, default=1, help="workers that also take the LLM queues (default 1)")
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("MEDSET_CLUSTER_DIR", DEFAULT_STATE_DIR)))
    parser.add_argument("--optional", action="store_true", help="install: only warn when apt-get is unavailable (the tests then skip)")
    parser.add_argument("build_args", nargs="*", help="arguments for `python -m medset_dagster build` (after --)")
    args = parser.parse_args(argv)
    cluster = Cluster(args.state_dir)
    try:
        if args.command == "install":
            try:
                ensure_packages()
            except AptUnavailable as error:
                if not args.optional:
                    raise
                print(f"cluster: {error}; the tests that need Postgres and Redis will skip", file=sys.stderr)
        elif args.command == "up":
            env = cluster.up()
            print(f"Postgres on 127.0.0.1:{env['DAGSTER_PG_PORT']}, Redis on 127.0.0.1:{cluster.redis.port_file.read_text().strip()}; "
                  f"DAGSTER_HOME={env['DAGSTER_HOME']}. For a shell: source {cluster.env_file}")
        elif args.command == "env":
            print("".join(f"export {key}={shlex.quote(value)}\n" for key, value in cluster.env().items()), end="")
        elif args.command == "build":
            return cluster.build(args.workers, args.llm_workers, args.build_args)
        elif args.command == "down":
            cluster.down()
            print(f"cluster in {cluster.state_dir} stopped (Postgres data kept; delete the folder to start afresh)")
    except ServiceError as error:
        print(f"cluster: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
