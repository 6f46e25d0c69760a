"""The controller's loop without servers: periodic tasks, one failing task never stops another, the reconciler's
backoff for an endpoint that does not answer (a real closed port) and its immediate retry once it answers."""

from __future__ import annotations

import time
from pathlib import Path

from tritonops.control_plane.controller.loop import PeriodicTask, TaskRunner, every
from tritonops.control_plane.controller.reconciler import Reconciler
from tritonops.control_plane.rollout import fleet_add
from tritonops.control_plane.state import StateStore
from tritonops.serving.triton import free_port
from tritonops.settings import Settings


def test_a_failing_task_is_logged_and_the_others_keep_running() -> None:
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    runner = TaskRunner(
        "test", [PeriodicTask("broken", every(0.01), broken), PeriodicTask("ok", every(0.01), lambda: ran.append("ok"))]
    )
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while len(ran) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        runner.stop()
    broken_task = runner.tasks[0]
    assert len(ran) >= 3 and broken_task.failures >= 3 and broken_task.last_error == "RuntimeError: boom"
    assert not runner.alive


def test_wake_runs_a_task_before_its_interval() -> None:
    ran: list[float] = []
    runner = TaskRunner("test", [PeriodicTask("slow", every(3600), lambda: ran.append(time.monotonic()))])
    runner.start()
    try:
        time.sleep(0.2)
        assert len(ran) == 1
        runner.wake("slow")
        deadline = time.monotonic() + 5
        while len(ran) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        runner.stop()
    assert len(ran) == 2 and ran[1] - ran[0] < 3


def test_an_unreachable_endpoint_backs_off_doubling(tmp_path: Path) -> None:
    settings = Settings(repository=tmp_path / "repo", state_path=tmp_path / "state.db", admin_token=None)
    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens: connection refused
    fleet_add(settings, endpoint, actor="test")
    with StateStore.open(settings.state) as store:  # a model to reconcile, so the endpoint is really asked
        store.db.execute(
            "INSERT INTO models (name, live_version, canary_version, canary_weight, updated_at) "
            "VALUES ('rf', 1, NULL, 0, 'now')"
        )
    reconciler = Reconciler(settings, backoff_base=0.5, backoff_max=1.5)
    waits = []
    for _ in range(3):
        report = reconciler.run("test")
        assert report is not None and report.endpoints[0].errors
        waits.append(reconciler.backing_off()[endpoint])
        assert reconciler.run("again, at once") is None  # backing off: nothing to try yet
        time.sleep(waits[-1] + 0.05)
    assert 0.3 < waits[0] <= 0.5 and 0.8 < waits[1] <= 1.0 and 1.3 < waits[2] <= 1.5  # doubling, capped
    reconciler.close()


def test_the_probe_marks_down_endpoints_and_keeps_no_client_for_them(tmp_path: Path) -> None:
    settings = Settings(repository=tmp_path / "repo", state_path=tmp_path / "state.db", admin_token=None)
    down = [f"127.0.0.1:{free_port()}" for _ in range(2)]  # nothing listens: connection refused
    for endpoint in down:
        fleet_add(settings, endpoint, actor="test")
    reconciler = Reconciler(settings, probe_every=0.5)
    for _ in range(2):
        reconciler._probe()
        # both probed in one turn; each is dialled afresh next time rather than through a channel in backoff
        assert reconciler._down == set(down) and reconciler._clients == {}
        assert reconciler._take_request() is None  # a server that is down is not reconciled by the probe
    reconciler.close()
