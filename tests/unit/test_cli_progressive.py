"""``tritonops rollout``: it needs the controller and says so; bad steps, intervals and analysis files are refused
on the command line, before any controller is asked (each with the field named and its exit code)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tritonops.errors import ExitCode

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITONOPS_")}
    env.update(PYTHONPATH=str(REPO_ROOT), COLUMNS="200", TRITONOPS_STATE=str(tmp_path / "state.db"))
    command = [sys.executable, "-m", "tritonops", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args",
    [["rollout", "rf", "2", "--steps", "5,50"], ["rollout", "start", "rf", "2", "--steps", "50"],
     ["rollout", "status", "rf"], ["rollout", "pause", "rf"], ["rollout", "resume", "rf"], ["rollout", "abort", "rf"]],
)  # fmt: skip
def test_rollout_needs_the_controller_and_says_so(tmp_path: Path, args: list[str]) -> None:
    done = _cli(tmp_path, *args)
    assert done.returncode == ExitCode.CONFIGURATION, done.stderr
    assert "a progressive rollout runs in the controller" in done.stderr and "TRITONOPS_URL" in done.stderr
    assert not (tmp_path / "state.db").exists()


def test_bad_input_is_refused_before_the_controller_is_asked(tmp_path: Path) -> None:
    unreachable = ("--url", "http://127.0.0.1:9")  # nothing listens there: a request would fail differently
    steps = _cli(tmp_path, *unreachable, "rollout", "rf", "2", "--steps", "5,25,20")
    assert steps.returncode == ExitCode.CONTROL_PLANE
    assert "rollout steps: expected strictly increasing percentages, got 20 after 25" in steps.stderr
    interval = _cli(tmp_path, *unreachable, "rollout", "rf", "2", "--steps", "5,50", "--interval", "soon")
    assert "rollout interval: expected a duration such as 60s, 2m or 1h, got 'soon'" in interval.stderr
    typo = tmp_path / "analysis.yaml"
    typo.write_text("treshold: 2\n")
    analysis = _cli(tmp_path, *unreachable, "rollout", "rf", "2", "--steps", "5,50", "--analysis", str(typo))
    assert analysis.returncode == ExitCode.CONFIGURATION
    assert "field treshold: Extra inputs are not permitted" in analysis.stderr
    missing = _cli(tmp_path, *unreachable, "rollout", "rf", "2")
    assert missing.returncode == ExitCode.USAGE and "--steps" in missing.stderr
