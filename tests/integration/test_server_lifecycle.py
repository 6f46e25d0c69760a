"""The embedded tritonserver: starts, answers, stops cleanly, and fails with one clear error when it can't start."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests

from tests.cli_json import check_json_output
from tritonops.errors import ExitCode
from tritonops.serving.daemon import process_alive
from tritonops.serving.errors import (
    BinaryNotFoundError,
    PortInUseError,
    RepositoryNotFoundError,
    ServerStartError,
)
from tritonops.serving.triton import ServerOptions, TritonServer

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
TRITONOPS = [sys.executable, "-m", "tritonops.control_plane.cli"]


def _tritonserver_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-x", "tritonserver"], capture_output=True, text=True, check=False).stdout
    return {int(pid) for pid in out.split()}


def test_session_server_is_ready_and_reports_its_version(triton_server: TritonServer) -> None:
    ready = requests.get(f"http://{triton_server.http_url}/v2/health/ready", timeout=5)
    assert ready.status_code == 200
    meta = requests.get(f"http://{triton_server.http_url}/v2", timeout=5).json()
    assert meta["name"] == "triton"
    assert meta["version"] == "2.51.0"
    metrics = requests.get(triton_server.metrics_url, timeout=5).text
    assert "nv_cpu_utilization" in metrics


def test_stop_terminates_the_process(tmp_path: Path) -> None:
    server = TritonServer(ServerOptions(model_repository=tmp_path))
    server.start()
    pid = server.pid
    assert pid is not None and process_alive(pid)
    code = server.stop()
    assert code == 0
    assert not process_alive(pid)


def test_missing_binary_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-tritonserver"
    with pytest.raises(BinaryNotFoundError) as info:
        TritonServer(ServerOptions(model_repository=tmp_path, binary=missing)).start()
    assert str(missing) in str(info.value)
    assert "TRITONSERVER_BIN" in str(info.value)


def test_busy_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError) as info:
            TritonServer(ServerOptions(model_repository=tmp_path, grpc_port=port)).start()
    assert info.value.port == port
    assert f"gRPC port {port} is already in use" in str(info.value)


def test_missing_repository_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(RepositoryNotFoundError) as info:
        TritonServer(ServerOptions(model_repository=missing)).start()
    assert str(missing) in str(info.value)


def test_server_dying_during_start_reports_its_log(tmp_path: Path) -> None:
    """A real failure: a model that can't load at start makes tritonserver exit; we report why, quickly."""
    broken = tmp_path / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text('backend: "no_such_backend"\nmax_batch_size: 0\n')
    before = _tritonserver_pids()
    started = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        TritonServer(ServerOptions(model_repository=tmp_path, load_models=["broken"], startup_timeout=60)).start()
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert "exited with code" in message
    assert "no_such_backend" in message  # the log tail names the real cause
    assert _tritonserver_pids() <= before


def test_hung_start_times_out_and_leaves_no_process(tmp_path: Path) -> None:
    """A server that never becomes ready can't be produced with the real binary on demand, so this one fault uses a
    stand-in executable that only sleeps; the point is our timeout and cleanup, not Triton."""
    fake = tmp_path / "bin" / "tritonserver"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexec sleep 300\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    # locate_tritonserver expects <root>/bin/tritonserver with backends beside it
    (tmp_path / "backends" / "python").mkdir(parents=True)
    repo = tmp_path / "repo"
    repo.mkdir()
    server = TritonServer(ServerOptions(model_repository=repo, binary=fake, startup_timeout=2, stop_grace=2))
    started = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        server.start()
    assert time.monotonic() - started < 10
    assert "not ready after 2 s" in str(info.value)
    assert server.process is not None and server.process.poll() is not None


def test_killed_parent_leaves_no_orphan(tmp_path: Path) -> None:
    """SIGKILL the Python process that started tritonserver: the kernel takes the server down with it."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tritonops.serving.triton import ServerOptions, TritonServer\n"
        f"s = TritonServer(ServerOptions(model_repository=Path({str(tmp_path)!r}))).start()\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT) as parent:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert process_alive(server_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 15
    while process_alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(server_pid)


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([*TRITONOPS, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=90)


def test_cli_detached_start_status_stop(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    started = _run_cli(
        "server",
        "start",
        "--detach",
        "-r",
        str(repo),
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--metrics-port",
        "0",
        cwd=tmp_path,
    )
    assert started.returncode == 0, started.stderr
    assert "tritonserver ready" in started.stdout
    assert "libtcmalloc" in started.stdout.split("malloc   ")[1].splitlines()[0]  # the default: tcmalloc
    assert "backend histogram (summaries off)" in started.stdout
    record = (tmp_path / ".tritonops" / "server.json").read_text()
    import json

    info = json.loads(record)
    ready = requests.get(f"http://127.0.0.1:{info['http_port']}/v2/health/ready", timeout=5)
    assert ready.status_code == 200

    status = _run_cli("server", "status", cwd=tmp_path)
    assert status.returncode == 0
    assert "running, ready" in status.stdout
    as_json = check_json_output("server status", _run_cli("server", "status", "--json", cwd=tmp_path).stdout)
    assert as_json["pid"] == info["pid"] and as_json["running"] and as_json["ready"]
    assert as_json["http_port"] == info["http_port"] and as_json["repository"] == str(repo.resolve())

    stopped = _run_cli("server", "stop", cwd=tmp_path)
    assert stopped.returncode == 0
    assert not process_alive(info["pid"])
    after = _run_cli("server", "status", cwd=tmp_path)
    assert after.returncode == ExitCode.SERVING
    assert "no detached server recorded" in after.stderr


def test_cli_foreground_ctrl_c_stops_the_server(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [*TRITONOPS, "server", "start", "-r", str(repo), "--http-port", "0", "--grpc-port", "0"]
    command += ["--metrics-port", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    assert proc.stdout is not None
    banner: list[str] = []
    for line in proc.stdout:
        banner.append(line)
        if "press Ctrl-C" in line:
            break
    text = "".join(banner)
    pid = int(text.split("(pid ")[1].split(")")[0])
    http = text.split("HTTP     http://")[1].split()[0]
    assert requests.get(f"http://{http}/v2/health/ready", timeout=5).status_code == 200
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "stopped (exit code 0)" in out
    assert not process_alive(pid)


def test_cli_missing_repository_exits_with_one_line(tmp_path: Path) -> None:
    result = _run_cli("server", "start", "-r", str(tmp_path / "missing"), cwd=tmp_path)
    assert result.returncode == ExitCode.SERVING
    assert "model repository" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    result = _run_cli("no-such-command", cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE
    assert "No such command 'no-such-command'" in result.stderr
    assert "Traceback" not in result.stderr
    repo = tmp_path / "repo"
    repo.mkdir()
    bad = _run_cli("server", "start", "-r", str(repo), "--allocator", "jemalloc", cwd=tmp_path)
    assert bad.returncode == ExitCode.USAGE and "Traceback" not in bad.stderr
    said = " ".join(bad.stderr.replace("│", " ").split())  # rich draws the message in a box
    assert "Invalid value for '--allocator'" in said  # typer 0.29 puts "Value error, " between the two
    assert "'jemalloc' is not one of 'auto', 'tcmalloc', 'system'" in said


def test_server_stays_ready_across_a_version_switch(triton_server: TritonServer, triton_repository: Path) -> None:
    """Readiness means "up and serving": unloading the version a switch replaced must not mark the server unready
    (with Triton's strict readiness it would, and a load balancer would drop a healthy server)."""
    import tritonclient.grpc as grpcclient

    from examples.train import train_numeric_pipeline
    from tritonops.converters import convert_sklearn
    from tritonops.model_config import read_pbtxt, to_json, with_specific_versions

    trained = train_numeric_pipeline(n_rows=120, n_features=4)
    for _ in range(2):
        convert_sklearn(trained.model, trained.frame, name="readiness", repository=triton_repository)
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    ready_url = f"http://{triton_server.http_url}/v2/health/ready"
    try:
        for version in (1, 2):
            config = read_pbtxt(triton_repository / "readiness" / str(version) / "config.pbtxt")
            client.load_model("readiness", config=to_json(with_specific_versions(config, [version])))
            assert client.is_model_ready("readiness", str(version))
            assert requests.get(ready_url, timeout=5).status_code == 200
        assert not client.is_model_ready("readiness", "1")  # v1 was unloaded by the switch
    finally:
        client.unload_model("readiness")
        client.close()


def _mapped_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text(encoding="utf-8")


def _serve_one_request(server: TritonServer, rows: np.ndarray) -> str:
    """Infer once on the model 'malloc' and return the metrics page that follows."""
    import tritonclient.http as httpclient

    with httpclient.InferenceServerClient(server.http_url) as client:
        tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        labels = client.infer("malloc", [tensor]).as_numpy("label")
    assert labels is not None and labels.shape == (len(rows), 1)
    return requests.get(server.metrics_url, timeout=5).text


def test_default_server_runs_on_tcmalloc_without_latency_summaries_and_both_can_be_switched(tmp_path: Path) -> None:
    from examples.train import train_numeric_pipeline
    from tritonops.converters import convert_sklearn
    from tritonops.converters.repository import publish_live
    from tritonops.serving.allocator import find_tcmalloc

    tcmalloc = find_tcmalloc()
    assert tcmalloc is not None, "tcmalloc is not installed: run `make setup` (Debian package libtcmalloc-minimal4)"
    trained = train_numeric_pipeline(n_rows=120, n_features=4)
    convert_sklearn(trained.model, trained.frame, name="malloc", repository=tmp_path)
    publish_live(tmp_path, "malloc", 1)  # loaded at start from disk, as after a promote
    rows = trained.frame.to_numpy(dtype=np.float32)[:3]

    with TritonServer(ServerOptions(model_repository=tmp_path, load_models=["malloc"])) as server:
        assert server.pid is not None and server.preloaded_allocator == tcmalloc
        metrics = _serve_one_request(server, rows)
        stubs = [p for p in psutil.Process(server.pid).children(recursive=True) if "stub" in p.name()]
        assert len(stubs) == 2, stubs  # the model's two CPU instances, each a stub that inherited the preload
        for pid in [server.pid, *(p.pid for p in stubs)]:
            assert str(tcmalloc) in _mapped_libraries(pid), pid
        assert 'nv_inference_request_duration_us{model="malloc",version="1"}' in metrics  # counters stay
        assert "nv_inference_request_summary_us" not in metrics

    options = ServerOptions(
        model_repository=tmp_path, load_models=["malloc"], latency_summaries=True, allocator="system"
    )
    with TritonServer(options) as server:
        assert server.pid is not None and server.preloaded_allocator is None
        metrics = _serve_one_request(server, rows)
        assert "libtcmalloc" not in _mapped_libraries(server.pid)
        assert 'nv_inference_request_summary_us{model="malloc",version="1",quantile="0.99"}' in metrics
