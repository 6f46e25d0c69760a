"""`tritonops top`: rows built from the metrics reader's numbers and the desired state, and the real command
against the real demo stack under load."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from rich.console import Console

from tests.deploy.conftest import CANARY, MODEL, DemoStack, Load, running_load
from tritonops.control_plane.cli.top import COLUMNS, build_rows, drift_verdict, render, role_of
from tritonops.control_plane.drift import DriftReport
from tritonops.control_plane.metrics import VersionStats
from tritonops.control_plane.rollout import canary as start_canary
from tritonops.control_plane.state import ModelState, StateStore

STATES = {"rf": ModelState(name="rf", live=3, canary=4, canary_weight=0.25)}


def _stats(model: str, version: str, **counts: float) -> VersionStats:
    return VersionStats(model=model, version=version, seconds=2.0, **counts)


def test_roles_come_from_the_desired_state() -> None:
    assert role_of("rf", "3", STATES) == "live"
    assert role_of("rf__canary", "4", STATES) == "canary 25%"
    assert role_of("rf", "2", STATES) == "-"  # an old version still loaded somewhere
    assert role_of("gb", "1", STATES) == "-"  # not managed by the control plane


def _report(rows: float) -> DriftReport:
    return DriftReport(
        model="rf", version=3, window_seconds=60.0, features=(), prediction=None, drift_share=0.5,
        min_rows=100, rows=rows,
    )  # fmt: skip


def test_drift_verdicts() -> None:
    assert drift_verdict(None) == "-"
    assert drift_verdict(_report(rows=10)) == "few rows (10)"
    assert drift_verdict(_report(rows=500)) == "ok"


def test_rows_are_sorted_and_carry_numbers() -> None:
    stats = {
        ("rf__canary", "4"): _stats("rf__canary", "4", success=20, cache_hits=5, cache_misses=15),
        ("rf", "10"): _stats("rf", "10", success=8),
        ("rf", "3"): _stats("rf", "3", success=90, failure=5, invalid=5, inferences=400, executions=50),
    }
    rows = build_rows(stats, STATES, {("rf", "3"): _report(rows=500)})
    assert [(r.model, r.version, r.role, r.drift) for r in rows] == [
        ("rf", "3", "live", "ok"),
        ("rf", "10", "-", "-"),
        ("rf__canary", "4", "canary 25%", "-"),
    ]
    console = Console(width=200, record=True)
    console.print(render(rows, "test"))
    text = console.export_text()
    assert all(column in text for column in COLUMNS)
    live = next(line for line in text.splitlines() if "live" in line)
    assert "47.5" in live  # (90 + 5) requests / 2 s
    assert "10.53%" in live  # (5 failures + 5 invalid) / 95 requests
    assert "8.0" in live  # 400 rows / 50 executions
    assert "25%" in next(line for line in text.splitlines() if "rf__canary" in line)  # 5 hits / 20 lookups


@pytest.mark.integration
def test_top_once_shows_the_demo_model_under_load(demo_stack: DemoStack) -> None:
    # the session's stack is shared: the panel-query test lets `watch` abort the canary, so start it again here
    with StateStore.open(demo_stack.settings.state) as store:
        state = store.model(MODEL)
    if state is None or state.canary is None:
        start_canary(demo_stack.settings, MODEL, 2, 0.5, actor="tests", reason="test_top needs a running canary")
    env = dict(os.environ)
    env.update(
        TRITONOPS_STATE=str(demo_stack.settings.state_path),
        TRITONOPS_REPOSITORY=str(demo_stack.settings.repository),
        COLUMNS="220",
    )
    command = [sys.executable, "-m", "tritonops.control_plane.cli", "top", "--once", "--interval", "2",
               "--metrics-url", demo_stack.server.metrics_url]  # fmt: skip
    with running_load(demo_stack.server, Load(), seconds=20) as load:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert load.ok > 50
    live = [line for line in result.stdout.splitlines() if re.search(rf"\b{MODEL}\s.*\blive\b", line)]
    assert len(live) == 1, result.stdout
    cells = [c.strip() for c in re.split(r"[│|]", live[0]) if c.strip()]
    assert cells[:3] == [MODEL, "1", "live"], cells
    assert float(cells[3].replace(",", "")) > 10  # req/s over the 2 s window
    assert cells[4].endswith("%") and cells[-1] != "-"  # an error rate, and a drift verdict for live
    assert "1/1 endpoints" in result.stdout
    canary = [line for line in result.stdout.splitlines() if re.search(rf"\b{CANARY}\s.*\bcanary 50%", line)]
    assert len(canary) == 1, result.stdout
    cells = [c.strip() for c in re.split(r"[│|]", canary[0]) if c.strip()]
    assert cells[:3] == [CANARY, "2", "canary 50%"], cells
    # the backend's cache (4 distinct rows sent again and again) and Triton's summary p99, which its cache hid
    assert cells[10].endswith("%") and int(cells[10][:-1]) >= 50, cells
    assert cells[6] != "-", cells
