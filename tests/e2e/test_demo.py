"""`make demo`'s story, shortened (--quick), so the demo can't rot: every step must pass on the real stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_quick_demo_runs_every_step(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--quick", "--workdir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert len(re.findall(r"^ok in [\d.]+ s", output, flags=re.MULTILINE)) == 13
    assert "FAILED" not in output
    # the numbers each step reports come from real measurements
    assert re.search(r"parity passed for each", output)
    assert re.search(r"canary share \d+\.\d% of \d+ requests; v2 promoted", output)
    assert re.search(r"drifted features: .*f03", output)
    assert re.search(r"watch exit 10; after rollback \d+ ok, 0 failed", output)
    assert re.search(r"\d[\d,]* requests, 0 failed", output)
    assert re.search(r"http://127\.0\.0\.1:\d+ ready in [\d.]+ s; tokens: demo-operator, demo-viewer", output)
    assert "viewer refused (exit 11), audited as demo-viewer" in output
    assert "controller exit code 0, tritonserver exit code 0" in output
