"""The signatures the guardrail watcher relies on, and the real CLI's refusals
(no server needed: an empty fleet and bad arguments are refused before any endpoint is contacted)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import tritonops.control_plane

TRITONOPS = str(Path(sys.executable).parent / "tritonops")


def test_watch_facing_signatures() -> None:
    rollback = inspect.signature(tritonops.control_plane.rollback)
    assert list(rollback.parameters) == ["settings", "model", "actor", "to", "reason", "connect"]
    assert rollback.parameters["actor"].kind is inspect.Parameter.KEYWORD_ONLY
    abort = inspect.signature(tritonops.control_plane.abort_canary)
    assert list(abort.parameters) == ["settings", "model", "actor", "reason", "connect"]
    assert abort.parameters["reason"].default == ""


def _cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "TRITONOPS_STATE": str(tmp_path / "state.db"),
        "TRITONOPS_REPOSITORY": str(tmp_path / "repo"),
        "TRITONOPS_ADMIN_TOKEN": "cli-secret-0f9e",
        "TRITONOPS_ACTOR": "ci-bot",
        "COLUMNS": "250",
    }
    done = subprocess.run([TRITONOPS, *args], env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def test_cli_refusals_exit_non_zero_with_one_clear_line_and_are_audited(tmp_path: Path) -> None:
    code, output = _cli(tmp_path, "promote", "rf", "1", "--reason", "first")
    assert code == 4 and "error: model 'rf' is not known to the model repository" in output
    assert output.count("\n") == 1  # one line: the library's log lines stay silent without a handler
    code, output = _cli(tmp_path, "fleet", "add", "http://triton:8001")
    assert code == 4 and "expected host:port of a Triton gRPC endpoint" in output
    code, output = _cli(tmp_path, "history", "rf")
    assert code == 0
    assert "ci-bot" in output and "refused" in output and "not known to the model" in output and "first" in output
    code, output = _cli(tmp_path, "canary", "rf", "2", "--weight", "1.5")
    assert code == 4 and "canary weight: expected a number in (0, 1], got 1.5" in output
    assert "cli-secret-0f9e" not in output
