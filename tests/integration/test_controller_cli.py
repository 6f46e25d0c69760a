"""The controller's commands as a user runs them: ``controller start --detach`` / ``stop``, ``token create|list|
revoke``, ``policy set|show|delete``; the real CLI in subprocesses over a real SQLite state, no Triton needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.unit.test_rollout import write_version
from tritonops.serving.triton import free_port

TRITONOPS = [sys.executable, "-m", "tritonops"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    write_version(tmp_path / "repo", "rf", 1)
    environment = {
        **os.environ,
        "TRITONOPS_STATE": str(tmp_path / "state.db"),
        "TRITONOPS_REPOSITORY": str(tmp_path / "repo"),
        "TRITONOPS_ACTOR": "cli-admin",
        "COLUMNS": "200",
    }
    for variable in ("TRITONOPS_FLEET", "TRITONOPS_URL", "TRITONOPS_TOKEN", "TRITONOPS_BOOTSTRAP_TOKEN"):
        environment.pop(variable, None)
    return environment


def cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TRITONOPS, *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_token_create_prints_it_once_and_list_shows_only_the_prefix(env: dict[str, str]) -> None:
    created = cli(env, "token", "create", "ci-bot", "--role", "operator", "--expires", "30d")
    assert created.returncode == 0, created.stderr
    token = next(line for line in created.stdout.splitlines() if line.startswith("tops_"))
    listed = cli(env, "token", "list")
    assert "ci-bot" in listed.stdout and token[:13] in listed.stdout and token not in listed.stdout
    again = cli(env, "token", "create", "ci-bot", "--role", "viewer")
    assert again.returncode != 0 and "token 'ci-bot' already exists" in again.stderr
    bad_role = cli(env, "token", "create", "x", "--role", "root")
    assert bad_role.returncode != 0 and "role: expected one of viewer, operator, admin, got 'root'" in bad_role.stderr
    assert cli(env, "token", "revoke", "ci-bot").returncode == 0
    twice = cli(env, "token", "revoke", "ci-bot")
    assert twice.returncode != 0 and "token 'ci-bot' is not an active token" in twice.stderr


def test_policy_set_show_delete_and_a_typo(env: dict[str, str], tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text("window_seconds: 60\nerror_rate: {max: 0.1}\n")
    assert cli(env, "policy", "set", "rf", str(good)).returncode == 0
    shown = json.loads(cli(env, "policy", "show", "rf").stdout)
    assert shown["rf"]["window_seconds"] == 60 and shown["rf"]["error_rate"] == {"max": 0.1}
    typo = tmp_path / "typo.yaml"
    typo.write_text("window_second: 60\n")
    refused = cli(env, "policy", "set", "rf", str(typo))
    assert refused.returncode != 0 and "field window_second: Extra inputs are not permitted" in refused.stderr
    unknown = cli(env, "policy", "set", "nosuch", str(good))
    assert unknown.returncode != 0 and "model 'nosuch' is not known to the model repository" in unknown.stderr
    assert cli(env, "policy", "set", "*", str(good)).returncode == 0
    assert cli(env, "policy", "delete", "rf").returncode == 0
    assert set(json.loads(cli(env, "policy", "show").stdout)) == {"*"}


def test_controller_start_detach_serves_and_stop_ends_it(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {**env, "TRITONOPS_BOOTSTRAP_TOKEN": "bootstrap-for-the-cli-test-0123"}
    started = cli(env, "controller", "start", "--port", str(port), "--detach", cwd=tmp_path)
    assert started.returncode == 0, started.stdout + started.stderr
    record = json.loads((tmp_path / ".tritonops" / "controller.json").read_text())
    assert record["url"] == f"http://127.0.0.1:{port}"
    try:
        assert requests.get(f"{record['url']}/readyz", timeout=10).status_code == 200
        who = requests.get(
            f"{record['url']}/v1/whoami",
            headers={"Authorization": "Bearer bootstrap-for-the-cli-test-0123"},
            timeout=10,
        )
        assert who.json() == {"name": "bootstrap", "role": "admin"}
    finally:
        stopped = cli(env, "controller", "stop", cwd=tmp_path)
    assert stopped.returncode == 0 and f"stopped controller pid {record['pid']}" in stopped.stdout
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{record['url']}/healthz", timeout=5)
    log = Path(record["log_path"]).read_text()
    assert "controller stopped by signal 15" in log and "bootstrap-for-the-cli-test-0123" not in log
