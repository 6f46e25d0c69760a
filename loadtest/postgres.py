"""A throwaway PostgreSQL cluster (Debian's ``initdb``/``pg_ctl``) for tests and benchmarks of the HA state.

The cluster listens on 127.0.0.1 on a free port, requires a password (SCRAM) for TCP connections, and is removed
when stopped. PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` system user and
every server command runs through ``runuser``; its directory is then made with ``tempfile.mkdtemp`` (a root-only
pytest tmp_path is not reachable by that user) and removed by ``stop``.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tritonops.loadtest.local_server import LocalServer
from tritonops.serving.triton import free_port
from tritonops.settings import StateLocation

SUPERUSER = "tritonops"
_RUN_AS = "postgres"


def postgresql_bin() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian layout)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise FileNotFoundError("no PostgreSQL server installed (Debian package `postgresql`: apt-get install it)")
    return found[-1].parent


class PostgresCluster(LocalServer):
    """``with PostgresCluster() as pg:`` a running server; ``pg.new_database()`` a fresh database's location."""

    def __init__(self, directory: Path | None = None) -> None:
        self._as_root = os.geteuid() == 0
        self._own_directory = directory is None or self._as_root
        base = Path(tempfile.mkdtemp(prefix="tritonops-pg-")) if self._own_directory else directory
        assert base is not None
        self.directory = base
        self.data = base / "data"
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self._databases = 0

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(postgresql_bin() / argv[0]), *argv[1:]]
        if self._as_root:
            command = ["runuser", "-u", _RUN_AS, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)

    def start(self) -> PostgresCluster:
        password_file = self.directory / "password"
        password_file.write_text(self.password)
        if self._as_root:
            user = pwd.getpwnam(_RUN_AS)
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            os.chown(password_file, user.pw_uid, user.pw_gid)
        password_file.chmod(0o600)
        done = self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=scram-sha-256", f"--pwfile={password_file}",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        password_file.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.directory / "log")
        done = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        if done.returncode != 0:
            log = (self.directory / "log").read_text() if (self.directory / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()} {log[-2000:]}")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def location(self, database: str = "postgres") -> StateLocation:
        return StateLocation(url=self.url(database), password=self.password)

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(database), password=self.password, autocommit=True)

    def new_database(self) -> StateLocation:
        """A new, empty database in this cluster."""
        self._databases += 1
        name = f"t{self._databases}_{secrets.token_hex(3)}"
        with self.connect() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.location(name)

    def stop(self) -> None:
        """Stop the cluster at once (``-m immediate``) and remove it if this object made its directory."""
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
