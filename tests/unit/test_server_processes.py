"""Finding and ending the processes of one server start, with real processes.

A copy of ``sleep`` executed from inside a run directory stands in for a backend stub (it is found the same way: its
executable lies inside the run directory); the real stubs are covered in tests/integration/test_server_crash.py.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tritonops.serving.processes import (
    RUN_DIR,
    LaunchRecord,
    ProcessIdentity,
    end_leftovers,
    new_run_dir,
    run_processes,
)

SLEEP = shutil.which("sleep") or "/bin/sleep"


def _stand_in_stub(run_dir: Path) -> subprocess.Popen[bytes]:
    stub = run_dir / "backends" / "python" / "triton_python_backend_stub"
    stub.parent.mkdir(parents=True)
    shutil.copy2(SLEEP, stub)
    return subprocess.Popen([str(stub), "120"], start_new_session=True)


def test_identity_tells_a_live_process_from_a_reused_pid_and_a_dead_one() -> None:
    with subprocess.Popen([SLEEP, "60"]) as process:
        identity = ProcessIdentity.of(process.pid)
        assert identity.exe == str(Path(SLEEP).resolve())
        assert identity.alive() and identity.describe() is None
        reused = ProcessIdentity(process.pid, identity.create_time - 50, identity.exe)
        assert f"pid {process.pid} was started at" in (reused.describe() or "")
        other = ProcessIdentity(process.pid, identity.create_time, "/opt/tritonserver/bin/tritonserver")
        assert other.describe() == f"pid {process.pid} is now {identity.exe}, not /opt/tritonserver/bin/tritonserver"
        process.kill()
        process.wait()
    assert identity.describe() == f"process {identity.pid} is not running"


def test_a_new_run_directory_is_recorded_as_in_use_by_its_launcher(tmp_path: Path) -> None:
    run_dir = new_run_dir(tmp_path)
    assert run_dir.parent == tmp_path / RUN_DIR
    record = LaunchRecord.read(run_dir)
    assert record is not None and record.server is None and record.in_use()
    assert new_run_dir(tmp_path) != run_dir  # never the same directory twice
    assert end_leftovers(tmp_path) == []  # both still being prepared by this process: left alone
    assert run_dir.is_dir()


def test_leftovers_of_a_dead_server_are_ended_and_their_directory_removed(tmp_path: Path) -> None:
    run_dir = new_run_dir(tmp_path)
    with subprocess.Popen([SLEEP, "60"]) as server:
        server_identity = ProcessIdentity.of(server.pid)
        server.kill()
        server.wait()
    me = ProcessIdentity(1, 0.0, "/gone")  # a launcher that is gone too
    LaunchRecord(me, server_identity, str(run_dir)).write()
    stub = _stand_in_stub(run_dir)
    try:
        deadline = time.monotonic() + 5
        while not run_processes(run_dir) and time.monotonic() < deadline:
            time.sleep(0.05)  # until the copy has exec'd
        assert [p.pid for p in run_processes(run_dir)] == [stub.pid]
        assert end_leftovers(tmp_path, grace=2) == [stub.pid]
        assert stub.wait(5) is not None
        assert not run_dir.exists()
    finally:
        stub.kill()
        stub.wait()


def test_a_run_whose_server_is_alive_is_left_alone(tmp_path: Path) -> None:
    run_dir = new_run_dir(tmp_path)
    with subprocess.Popen([SLEEP, "60"]) as server:
        LaunchRecord(ProcessIdentity(1, 0.0, "/gone"), ProcessIdentity.of(server.pid), str(run_dir)).write()
        stub = _stand_in_stub(run_dir)
        try:
            assert end_leftovers(tmp_path) == []
            assert stub.poll() is None and server.poll() is None and run_dir.is_dir()
            assert sorted(p.pid for p in run_processes(run_dir)) == sorted([server.pid, stub.pid])
        finally:
            stub.kill()
            stub.wait()
            server.kill()


@pytest.mark.parametrize("content", ["", "{not json", '{"launcher": 1}'])
def test_an_unreadable_record_counts_as_a_dead_run(tmp_path: Path, content: str) -> None:
    run_dir = tmp_path / RUN_DIR / "old"
    run_dir.mkdir(parents=True)
    (run_dir / "launch.json").write_text(content)
    assert LaunchRecord.read(run_dir) is None
    assert end_leftovers(tmp_path) == []
    assert not run_dir.exists()
    assert psutil.pid_exists(1)
