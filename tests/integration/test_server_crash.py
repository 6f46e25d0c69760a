"""The embedded server after crashes, for real: SIGKILL of tritonserver and of the foreground CLI, stale pid files.

Each test drives the real CLI (`python -m tritonops.control_plane.cli`) against a real tritonserver with one model
loaded, so the Python backend stubs exist and can outlive a killed server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from tritonops.errors import ExitCode
from tritonops.serving.processes import ProcessIdentity
from tritonops.serving.triton import ServerOptions, TritonServer, free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
TRITONOPS = [sys.executable, "-m", "tritonops.control_plane.cli"]
MODEL = "crash"
TOKEN = "s3cret-admin-key-for-the-crash-tests"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.train import train_numeric_pipeline
    from tritonops.converters import convert_sklearn
    from tritonops.converters.repository import publish_live

    repo = tmp_path_factory.mktemp("crash_repo")
    trained = train_numeric_pipeline(n_rows=120, n_features=4)
    convert_sklearn(trained.model, trained.frame, name=MODEL, repository=repo)
    publish_live(repo, MODEL, 1)  # `server start -m` loads it from disk, as after a promote
    return repo


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITONOPS_ADMIN_TOKEN")}
    return {**env, "PYTHONPATH": str(REPO_ROOT), **extra}


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TRITONOPS, *args], capture_output=True, text=True, cwd=cwd, env=env or _env(), timeout=120)


def _ports() -> list[str]:
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    http, grpc, metrics = sorted(ports)
    return ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]


def _stubs(server_pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(server_pid).children(recursive=True) if "stub" in p.name()]


def _alive(processes: list[psutil.Process]) -> list[int]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process.pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def _wait_gone(processes: list[psutil.Process], timeout: float) -> float:
    started = time.monotonic()
    while _alive(processes) and time.monotonic() - started < timeout:
        time.sleep(0.05)
    return time.monotonic() - started


def test_start_right_after_kill_9_of_the_server_just_works(repository: Path, tmp_path: Path) -> None:
    ports = _ports()
    first = _cli("server", "start", "--detach", "-r", str(repository), "-m", MODEL, *ports, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    record = json.loads((tmp_path / ".tritonops" / "server.json").read_text())
    server = psutil.Process(record["pid"])
    stubs = _stubs(server.pid)
    assert len(stubs) == 2, stubs  # the model's two CPU instances
    server.send_signal(signal.SIGKILL)
    server.wait(10)

    started = time.monotonic()
    second = _cli("server", "start", "--detach", "-r", str(repository), "-m", MODEL, *ports, cwd=tmp_path)
    restart_seconds = time.monotonic() - started
    print(f"restart after kill -9 to ready: {restart_seconds:.2f} s")
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr + second.stdout
    assert restart_seconds < 30
    assert not _alive(stubs)
    new = json.loads((tmp_path / ".tritonops" / "server.json").read_text())
    http = ports[1]
    assert requests.get(f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready", timeout=5).status_code == 200
    new_stubs = _stubs(new["pid"])
    assert len(new_stubs) == 2
    run_dirs = list((tmp_path / ".tritonops" / "server" / "run").iterdir())
    assert len(run_dirs) == 1  # the dead start's directory is gone, only this start's remains

    stopped = _cli("server", "stop", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped tritonserver pid {new['pid']}" in stopped.stdout
    assert _wait_gone(new_stubs, 10) < 10
    assert not (tmp_path / ".tritonops" / "server" / "run").exists() or not any(
        (tmp_path / ".tritonops" / "server" / "run").iterdir()
    )


def test_a_start_ends_the_stubs_a_killed_server_left_and_never_writes_over_them(
    repository: Path, tmp_path: Path
) -> None:
    """The stubs exit on their own about a second after their server's pid is gone, but live on while it is a
    zombie: here its parent (this test) does not reap it, as a container's pid 1 that reaps nothing would not. The
    next start of the same work directory ends them, names their pids, and runs from a fresh stub copy."""
    work = tmp_path / "work"
    options = ServerOptions(model_repository=repository, load_models=[MODEL], work_dir=work)
    first = TritonServer(options, detach=True).start()
    assert first.process is not None and first.run_dir is not None
    old_run = first.run_dir
    stubs = _stubs(first.process.pid)
    assert len(stubs) == 2
    os.kill(first.process.pid, signal.SIGKILL)  # not reaped: a zombie
    time.sleep(3)
    assert len(_alive(stubs)) == 2  # what the issue found: the stubs outlive their server

    second = TritonServer(options)
    started = time.monotonic()
    try:
        second.start()
        print(f"start over leftovers to ready: {time.monotonic() - started:.2f} s")
        assert sorted(second.ended_leftovers) == sorted(stub.pid for stub in stubs)
        assert not _alive(stubs)
        assert not old_run.exists()
        assert second.run_dir is not None and second.run_dir != old_run
        new_stubs = _stubs(second.process.pid if second.process else 0)
        assert len(new_stubs) == 2
        assert all(Path(stub.exe()).is_relative_to(second.run_dir) for stub in new_stubs)
    finally:
        second.stop()
        first.process.wait()
    assert not _alive(new_stubs)
    assert not list((work / "run").iterdir())


def test_sigkilled_foreground_start_takes_its_server_and_stubs_down(repository: Path, tmp_path: Path) -> None:
    command = [*TRITONOPS, "server", "start", "-r", str(repository), "-m", MODEL, *_ports()]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=tmp_path, env=_env()) as cli:
        assert cli.stdout is not None
        banner = []
        for line in cli.stdout:
            banner.append(line)
            if "press Ctrl-C" in line:
                break
        pid = int("".join(banner).split("(pid ")[1].split(")")[0])
        server = psutil.Process(pid)
        stubs = _stubs(pid)
        assert len(stubs) == 2
        cli.send_signal(signal.SIGKILL)
        cli.wait()
    seconds = _wait_gone([server, *stubs], 30)
    print(f"foreground CLI SIGKILLed: server and stubs gone after {seconds:.2f} s")
    assert not _alive([server, *stubs])
    assert seconds < 5


def test_stop_never_signals_a_process_that_is_not_the_recorded_server(tmp_path: Path) -> None:
    """A pid file whose pid now belongs to another program (a reused pid): reported, removed, nothing signalled."""
    pid_file = tmp_path / ".tritonops" / "server.json"
    pid_file.parent.mkdir()
    with subprocess.Popen(["sleep", "60"]) as stranger:
        identity = ProcessIdentity.of(stranger.pid)
        fields = {
            "pid": stranger.pid,
            "host": "127.0.0.1",
            "http_port": 1,
            "grpc_port": 2,
            "metrics_port": 3,
            "repository": str(tmp_path),
            "log_path": str(tmp_path / "log"),
            "started_at": time.time(),
            "work_dir": str(tmp_path / ".tritonops" / "server"),
        }
        # the same pid, but started at another time / from another executable than the recorded server
        for create_time, exe in ((identity.create_time - 100, identity.exe), (identity.create_time, "/usr/bin/x")):
            pid_file.write_text(json.dumps({**fields, "create_time": create_time, "exe": exe}))
            status = _cli("server", "status", cwd=tmp_path)
            assert status.returncode == ExitCode.SERVING
            shown = " ".join(status.stdout.split())
            assert "not running" in shown and "stale pid file" in shown
            stopped = _cli("server", "stop", cwd=tmp_path)
            assert stopped.returncode == 0, stopped.stderr
            said = " ".join(stopped.stdout.split())  # the console wraps long lines
            assert f"stale pid file {Path('.tritonops/server.json')}" in said
            assert "nothing signalled, file removed" in said
            assert not pid_file.exists()
            assert stranger.poll() is None  # never signalled
        stranger.kill()
    # and a pid that is gone altogether
    pid_file.write_text(json.dumps({**fields, "create_time": identity.create_time, "exe": identity.exe}))
    stopped = _cli("server", "stop", cwd=tmp_path)
    assert stopped.returncode == 0
    assert f"process {identity.pid} is not running" in " ".join(stopped.stdout.split())
    assert not pid_file.exists()


def test_admin_key_is_in_no_environment_of_the_server_or_its_stubs(repository: Path, tmp_path: Path) -> None:
    """Triton 2.51 takes the admin key only on its command line (docs/operations.md, "Admin key"); the mitigation
    tested here: neither tritonserver nor a backend stub has TRITONOPS_ADMIN_TOKEN(_FILE), or any other
    TRITONOPS_* secret, in its environment."""
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    env = _env(TRITONOPS_ADMIN_TOKEN_FILE=str(token_file), TRITONOPS_STATE_PASSWORD="pg-" + TOKEN)
    env.pop("OPENBLAS_NUM_THREADS", None)  # a caller's own setting would win over the server's default
    started = _cli("server", "start", "--detach", "-r", str(repository), "-m", MODEL, *_ports(), cwd=tmp_path, env=env)
    assert started.returncode == 0, started.stderr
    assert "locked (admin-key)" in started.stdout and TOKEN not in started.stdout + started.stderr
    pid = json.loads((tmp_path / ".tritonops" / "server.json").read_text())["pid"]
    try:
        stubs = _stubs(pid)
        assert len(stubs) == 2
        for process in (psutil.Process(pid), *stubs):
            environ = Path(f"/proc/{process.pid}/environ").read_bytes()
            assert TOKEN.encode() not in environ, process
            assert b"TRITONOPS_ADMIN_TOKEN" not in environ and b"TRITONOPS_STATE_PASSWORD" not in environ, process
        for stub in stubs:  # the stubs' command lines don't carry it either; only tritonserver's does
            assert TOKEN.encode() not in Path(f"/proc/{stub.pid}/cmdline").read_bytes()
            # what the server adds for its stubs (serving.triton.STUB_ENVIRONMENT): one OpenBLAS thread
            assert "OPENBLAS_NUM_THREADS=1" in Path(f"/proc/{stub.pid}/environ").read_text().split("\0")
        assert TOKEN.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()  # why: see docs/operations.md
    finally:
        assert _cli("server", "stop", cwd=tmp_path).returncode == 0
