"""The CLI in remote mode against the controller's real API (uvicorn on a free port, a real SQLite state; no Triton:
the commands here don't need one, or meet a real closed port). Each command runs as a subprocess with only
TRITONOPS_URL and a token, no state file: the same output as in local mode on the same state, problem answers
mapped back to the same exit codes, the token never printed, ``--actor`` refused.

The controller with real Tritons, under load, is tests/e2e/test_controller_clients.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from tests.cli_json import check_json_output
from tests.unit.test_rollout import write_version
from tritonops.control_plane.controller import ApiContext, create_app
from tritonops.control_plane.state import StateStore
from tritonops.control_plane.tokens import Role, create_token
from tritonops.errors import ExitCode
from tritonops.serving.triton import free_port
from tritonops.settings import Settings

pytestmark = pytest.mark.integration

TRITONOPS = str(Path(sys.executable).parent / "tritonops")


@dataclass
class Api:
    url: str
    settings: Settings
    tokens: dict[str, str]

    def cli(self, *args: str, who: str = "admin", expect: int = 0, local: bool = False) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRITONOPS_")}
        env["COLUMNS"] = "250"
        if local:  # the same command on the same state, no controller
            env.update(
                TRITONOPS_STATE=str(self.settings.state_path), TRITONOPS_REPOSITORY=str(self.settings.repository)
            )
        else:
            env.update(TRITONOPS_URL=self.url, TRITONOPS_STATE="/nonexistent/tritonops/state.db")
            if who:
                env["TRITONOPS_TOKEN"] = self.tokens[who]
        done = subprocess.run([TRITONOPS, *args], env=env, capture_output=True, text=True, timeout=120)
        output = done.stdout + done.stderr
        assert done.returncode == expect, f"tritonops {' '.join(args)} exited {done.returncode}:\n{output}"
        assert all(token not in output for token in self.tokens.values())
        return output


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("cli_remote")
    write_version(root / "repo", "rf", 1)
    write_version(root / "repo", "rf", 2)
    settings = Settings(repository=root / "repo", state_path=root / "state.db", admin_token="triton-key-0c1d")
    with StateStore.open(settings.state) as store:
        tokens = {role.value: create_token(store, f"{role.value}-person", role, actor="test")[0] for role in Role}
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(ApiContext(settings)), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Api(f"http://127.0.0.1:{port}", settings, tokens)
    finally:
        server.should_exit = True
        thread.join(10)


def test_fleet_and_tokens_through_the_api(api: Api) -> None:
    closed = f"127.0.0.1:{free_port()}"
    assert f"added {closed}" in api.cli("fleet", "add", closed)
    assert api.cli("fleet", "list").split() == [closed] == api.cli("fleet", "list", local=True).split()
    assert "already in the fleet" in api.cli("fleet", "add", closed, expect=ExitCode.CONTROL_PLANE)
    created = api.cli("token", "create", "ci-bot", "--role", "operator", "--expires", "1d")
    (token,) = [line for line in created.splitlines() if line.startswith("tops_")]
    api.tokens["ci"] = token.strip()
    listed = api.cli("token", "list")
    assert "ci-bot" in listed and "operator" in listed and "admin-person" in listed
    assert listed.splitlines()[3:] == api.cli("token", "list", local=True).splitlines()[3:]  # rows alike
    assert "revoked ci-bot" in api.cli("token", "revoke", "ci-bot")
    assert "(ci-bot) was revoked at" in api.cli("fleet", "list", who="ci", expect=ExitCode.ACCESS)
    api.cli("fleet", "remove", closed)


def test_refusals_keep_their_exit_codes_and_are_audited_with_the_callers_name(api: Api) -> None:
    output = api.cli("promote", "rf", "1", who="viewer", expect=ExitCode.ACCESS)
    assert "token 'viewer-person' (role viewer) may not promote: it needs the operator role or higher" in output
    output = api.cli("promote", "rf", "7", who="operator", expect=ExitCode.CONTROL_PLANE)
    assert "model 'rf' version 7: no directory" in output
    output = api.cli("promote", "rf", "1", who="operator", expect=ExitCode.CONTROL_PLANE)
    assert "the fleet is empty" in output
    output = api.cli("canary", "rf", "2", "--weight", "1.5", who="operator", expect=ExitCode.CONTROL_PLANE)
    assert output == api.cli("canary", "rf", "2", "--weight", "1.5", local=True, expect=ExitCode.CONTROL_PLANE)
    refused = api.cli("rollback", "rf", "--actor", "mallory", expect=ExitCode.CONFIGURATION)
    assert "--actor: not taken in remote mode" in refused
    assert "TRITONOPS_TOKEN: no API token" in api.cli("status", who="", expect=ExitCode.CONFIGURATION)
    history = api.cli("history", "rf")
    assert history == api.cli("history", "rf", local=True)  # the same table either way
    assert "viewer-person" in history and "operator-person" in history and "refused" in history
    with StateStore.open(api.settings.state) as store:
        refused = [e for e in store.audit("rf") if e.result == "refused"]
    assert [(e.actor, e.action) for e in refused][:1] == [("viewer-person", "promote")]
    assert all(e.actor != "mallory" for e in refused)


def test_feedback_and_accuracy_through_the_api(api: Api) -> None:
    for i, (predicted, truth) in enumerate([("yes", "yes"), ("no", "yes"), ("yes", "yes")]):
        api.cli("feedback", "prediction", f"req-{i}", "rf", "1", predicted, who="operator")
        api.cli("feedback", "label", f"req-{i}", truth, who="operator")
    unknown = api.cli("feedback", "label", "req-9", "yes", who="operator", expect=ExitCode.CONTROL_PLANE)
    assert "has no recorded prediction" in unknown
    remote = api.cli("feedback", "accuracy", "rf", who="viewer")
    assert "0.6667" in remote and remote == api.cli("feedback", "accuracy", "rf", local=True)


def test_policies_through_the_api(api: Api, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("error_rate:\n  max: 0.02\n")
    assert "policy of rf stored" in api.cli("policy", "set", "rf", str(policy))
    shown = api.cli("policy", "show", "rf", who="viewer")
    assert '"max": 0.02' in shown and shown == api.cli("policy", "show", "rf", local=True)
    typo = tmp_path / "typo.yaml"
    typo.write_text("eror_rate:\n  max: 0.02\n")
    assert "eror_rate" in api.cli("policy", "set", "rf", str(typo), expect=ExitCode.CONFIGURATION)
    assert "may not" in api.cli("policy", "set", "rf", str(policy), who="operator", expect=ExitCode.ACCESS)
    assert "policy of rf removed" in api.cli("policy", "delete", "rf")


def test_an_unreachable_controller_is_named() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITONOPS_")}
    env.update(TRITONOPS_TOKEN="tops_unused-token-value")
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run([TRITONOPS, "--url", url, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == ExitCode.CONTROL_PLANE and f"controller {url} did not answer" in done.stderr


def test_json_through_the_api_is_the_local_view(api: Api) -> None:
    """``--json`` in remote mode parses the controller's answer into the same view: same schema, same values."""
    closed = f"127.0.0.1:{free_port()}"
    api.cli("fleet", "add", closed)
    api.cli("promote", "rf", "1", who="operator", expect=ExitCode.CONTROL_PLANE)  # unreachable: refused, audited
    try:
        for args, command in [
            (("history", "rf", "--json"), "history"),
            (("fleet", "list", "--json"), "fleet list"),
            (("token", "list", "--json"), "token list"),
            (("feedback", "accuracy", "rf", "--json"), "feedback accuracy"),
        ]:
            remote = check_json_output(command, api.cli(*args))
            assert remote == check_json_output(command, api.cli(*args, local=True)), command
        status = check_json_output("status", api.cli("status", "--json"))
        assert [e["endpoint"] for e in status["endpoints"]] == [closed]
        assert status == check_json_output("status", api.cli("status", "--json", local=True))
        remote = check_json_output("reconcile", api.cli("reconcile", "--dry-run", "--json"))
        assert remote["dry_run"] is True and [e["endpoint"] for e in remote["endpoints"]] == [closed]
        assert remote == check_json_output("reconcile", api.cli("reconcile", "--dry-run", "--json", local=True))
    finally:
        api.cli("fleet", "remove", closed)
