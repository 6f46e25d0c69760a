"""Shared by the end-to-end tests: the real controller (``tritonops controller start``) as a subprocess, and the
real CLI run against it in remote mode."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tritonops.serving.triton import free_port

TRITONOPS = str(Path(sys.executable).parent / "tritonops")
NO_STATE = "/nonexistent/tritonops-remote-cli/state.db"
"""The state path a remote-mode CLI gets: it must never need it (opening it would fail: the folder can't exist)."""


def client_env(**extra: str) -> dict[str, str]:
    """The environment of a client on another machine: no state, no repository, no Triton admin key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITONOPS_")}
    env.update(TRITONOPS_STATE=NO_STATE, TRITONOPS_REPOSITORY="/nonexistent/tritonops-remote-cli/repo", COLUMNS="300")
    env.update(extra)
    return env


@dataclass
class Controller:
    """A running ``tritonops controller start`` and what a client needs to reach it."""

    url: str
    bootstrap: str
    process: subprocess.Popen[bytes]
    log: Path
    outputs: list[str] = field(default_factory=list)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def cli(self, *args: str, token: str, expect: int = 0, timeout: float = 300) -> str:
        """The real CLI in remote mode (TRITONOPS_URL + TRITONOPS_TOKEN); checks the exit code."""
        done = subprocess.run(
            [TRITONOPS, *args],
            env=client_env(TRITONOPS_URL=self.url, TRITONOPS_TOKEN=token),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = done.stdout + done.stderr
        self.outputs.append(output)
        assert done.returncode == expect, f"tritonops {' '.join(args)} exited {done.returncode}:\n{output}"
        return output

    def token(self, name: str, role: str) -> str:
        """A new API token made with the bootstrap (admin) token through the CLI; printed once, on its own line."""
        output = self.cli("token", "create", name, "--role", role, token=self.bootstrap)
        (token,) = [line.strip() for line in output.splitlines() if line.strip().startswith("tops_")]
        return token

    def api(self, method: str, path: str, token: str | None = None, **kwargs: object) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.RequestException:  # not listening yet
        return False


@contextmanager
def running_controller(
    root: Path,
    repository: Path,
    state: Path,
    admin_token: str | None,
    *extra_args: str,
    environment: Mapping[str, str] | None = None,
) -> Iterator[Controller]:
    """Start the controller on a free port with a fresh bootstrap token (plus ``environment``, e.g.
    ``TRITONOPS_WEBHOOKS``); SIGTERM it at the end (it must stop)."""
    port = free_port()
    bootstrap = "tops_" + secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITONOPS_")}
    env.update(
        TRITONOPS_REPOSITORY=str(repository),
        TRITONOPS_STATE=str(state),
        TRITONOPS_BOOTSTRAP_TOKEN=bootstrap,
        TRITONOPS_ACTOR="controller",
    )
    if admin_token:
        env["TRITONOPS_ADMIN_TOKEN"] = admin_token
    env.update(environment or {})
    log = root / f"controller-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [TRITONOPS, "controller", "start", "--host", "127.0.0.1", "--port", str(port), *extra_args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    controller = Controller(f"http://127.0.0.1:{port}", bootstrap, process, log)
    try:
        deadline = time.monotonic() + 90
        while not _ready(controller.url):
            assert process.poll() is None, f"the controller exited {process.returncode}:\n{controller.log_tail()}"
            assert time.monotonic() < deadline, f"the controller never got ready:\n{controller.log_tail()}"
            time.sleep(0.3)
        yield controller
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
