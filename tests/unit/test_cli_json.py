"""``--json``: the documented schema is current, and the real commands' output matches it.

The commands that need no Triton run here against a real state file; drift, models, top and the rollout actions
are checked where their servers run (tests/e2e/test_watch_rollback.py, tests/integration/test_convert_cli.py,
tests/deploy/test_top.py, tests/e2e/test_rollout_e2e.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.cli_json import SCHEMA_FILE, check_json_output
from tests.unit.test_cli import JSON_COMMANDS
from tritonops.control_plane.feedback import FeedbackStore
from tritonops.control_plane.state import AuditEntry, StateStore
from tritonops.control_plane.views import OUTPUTS, schema_document
from tritonops.errors import ExitCode
from tritonops.serving.daemon import ServerRecord

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITONOPS_")}
    env.update(PYTHONPATH=str(REPO_ROOT), TRITONOPS_STATE=str(tmp_path / "state.db"))
    command = [sys.executable, "-m", "tritonops", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_the_schema_file_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_document(), (
        "an output model changed: regenerate with `python -m tritonops.control_plane.views > docs/cli-schema.json`"
        " and update docs/cli.md (renaming or removing a field breaks scripts)"
    )


def test_every_json_command_has_a_documented_schema() -> None:
    documented = {*OUTPUTS, "models show"}
    covered = {command for key in documented for command in key.replace(" --once", "").split(" | ")}
    assert covered == JSON_COMMANDS
    doc = (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for key, model in OUTPUTS.items():
        assert f"`{key}`" in doc, key
        for field in model.model_fields:
            assert f"`{field}`" in doc, f"docs/cli.md does not describe {key}.{field}"


def test_state_commands_print_their_documented_json(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    endpoint = "127.0.0.1:9"  # nothing listens on the discard port: status and reconcile report it unreachable
    with StateStore.open(state) as store:
        store.add_endpoint(endpoint, AuditEntry("ci", "fleet-add", None, None, None, "", "ok", endpoint))
        store.record(AuditEntry("ci", "promote", "rf", None, 2, "first", "refused", "gate [parity] refused it"))
        store.set_live("rf", 1, AuditEntry("ci", "desired-state", "rf", None, 1, "", "ok"))
        store.set_canary("rf", 2, 0.25, AuditEntry("ci", "desired-state", "rf", 1, 2, "", "ok"))
    with FeedbackStore(state) as feedback:
        for i, (version, predicted, truth) in enumerate([(1, "a", "a"), (1, "b", "a"), (2, "a", "a")]):
            feedback.record_prediction(f"r{i}", "rf", version, predicted)
            feedback.record_feedback(f"r{i}", truth)

    history = check_json_output("history", _cli(tmp_path, "history", "rf", "--json").stdout)
    assert history["model"] == "rf"
    assert [(e["action"], e["result"], e["to_version"]) for e in history["events"]][:1] == [("promote", "refused", 2)]
    assert history["events"][0]["detail"] == "gate [parity] refused it"

    fleet = check_json_output("fleet list", _cli(tmp_path, "fleet", "list", "--json").stdout)
    assert fleet == {"endpoints": [endpoint]}

    status = check_json_output("status", _cli(tmp_path, "status", "--json").stdout)
    [only] = status["endpoints"]
    assert only["endpoint"] == endpoint and "unreachable" in only["error"] and only["models"] == []

    accuracy = check_json_output("feedback accuracy", _cli(tmp_path, "feedback", "accuracy", "rf", "--json").stdout)
    assert [(v["version"], v["labelled"], v["correct"], v["accuracy"]) for v in accuracy["versions"]] == [
        (1, 2, 1, 0.5),
        (2, 1, 1, 1.0),
    ]
    comparison = accuracy["comparison"]
    assert comparison["live_version"] == 1 and comparison["canary_version"] == 2
    assert comparison["enough_labels"] is False

    done = _cli(tmp_path, "reconcile", "--dry-run", "--json")
    assert done.returncode == ExitCode.CONTROL_PLANE and "reconcile did not finish" in done.stderr
    reconcile = check_json_output("reconcile", done.stdout)
    assert reconcile["ok"] is False and reconcile["dry_run"] is True and reconcile["action_count"] == 0
    assert reconcile["endpoints"][0]["endpoint"] == endpoint and "unreachable" in reconcile["endpoints"][0]["errors"][0]


def test_server_status_json_reports_a_dead_server_and_exits_serving(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pid_file = tmp_path / "server.json"
    record = ServerRecord(
        gone.pid, "127.0.0.1", 8000, 8001, 8002, str(tmp_path), str(tmp_path / "log"), time.time(),
        create_time=time.time(), exe=sys.executable, work_dir=str(tmp_path),
    )  # fmt: skip
    record.write(pid_file)
    done = _cli(tmp_path, "server", "status", "--pid-file", str(pid_file), "--json")
    assert done.returncode == ExitCode.SERVING and f"tritonserver pid {gone.pid} is not running" in done.stderr
    status = check_json_output("server status", done.stdout)
    assert status["pid"] == gone.pid and status["running"] is False and status["ready"] is False
    assert status["stale"] and str(gone.pid) in status["stale"]
    assert json.loads(done.stdout)["grpc_port"] == 8001


def test_controller_status_and_fleet_ready_print_their_documented_json(tmp_path: Path) -> None:
    from tritonops.control_plane.lease import Lease

    state = tmp_path / "state.db"
    with StateStore.open(state) as store:
        store.set_live("rf", 1, AuditEntry("ci", "desired-state", "rf", None, 1, "", "ok"))
        nobody = check_json_output("controller status", _cli(tmp_path, "controller", "status", "--json").stdout)
        assert nobody == {
            "state": str(state), "holder": None, "epoch": None, "leads": False,
            "renewed_seconds_ago": None, "expires_in_seconds": None,
        }  # fmt: skip
        assert Lease(store, "replica-a", ttl=60).acquire_or_renew()
    led = check_json_output("controller status", _cli(tmp_path, "controller", "status", "--json").stdout)
    assert led["holder"] == "replica-a" and led["leads"] is True and led["epoch"] >= 1
    assert 0 < led["expires_in_seconds"] <= 60 and led["renewed_seconds_ago"] >= 0

    endpoint = "127.0.0.1:9"  # rf is in no repository here: it cannot be served, said in the JSON and the exit code
    probe = _cli(tmp_path, "fleet", "ready", endpoint, "--json")
    assert probe.returncode == ExitCode.CONTROL_PLANE, probe.stderr
    ready = check_json_output("fleet ready", probe.stdout)
    assert ready["endpoint"] == endpoint and ready["serving"] is False and len(ready["missing"]) == 1, ready
    assert "'rf'" in ready["missing"][0] and f"{endpoint} does not serve the desired state" in probe.stderr


def test_policy_show_prints_its_documented_json(tmp_path: Path) -> None:
    from tritonops.control_plane.guardrails import parse_policy_data
    from tritonops.control_plane.policies import store_policy

    with StateStore.open(tmp_path / "state.db") as store:
        policy = parse_policy_data({"error_rate": {"max": 0.02}}, "test")
        store_policy(store, "*", policy, actor="ci", repository=tmp_path / "repository")
    bare = json.loads(_cli(tmp_path, "policy", "show").stdout)
    shown = check_json_output("policy show", _cli(tmp_path, "policy", "show", "--json").stdout)
    assert shown == {"policies": bare} and shown["policies"]["*"]["error_rate"]["max"] == 0.02
