"""Outbound webhooks against a real HTTP receiver: signatures verified by the receiver, retries with backoff, one
delivery per dedup key, cooldown, the Airflow preset's request shape, and the delivery log on both state engines."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.webhook_receiver import SECRET, Receiver, serve_receiver
from tritonops.control_plane.errors import WebhookError
from tritonops.control_plane.state import StateStore
from tritonops.control_plane.webhooks import (
    DeliveryLog,
    Trigger,
    WebhookConfig,
    deliver,
    load_webhooks,
)
from tritonops.serving.triton import free_port
from tritonops.settings import StateLocation


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as running:
        yield running


def _trigger(key: str = "churn:3:drift:1") -> Trigger:
    evidence = {"drifted_features": {"tenure_months": {"psi": 0.41}}, "window_seconds": 900}
    return Trigger("churn", 3, "drift", "dataset drift", evidence, {"report": "http://ctl/v1/models/churn/drift"}, key)


def test_signed_delivery_is_retried_until_it_succeeds_then_deduplicated_and_cooled_down(
    receiver: Receiver, tmp_path: Path, state_location: StateLocation
) -> None:
    (tmp_path / "secret").write_text(SECRET + "\n")
    hook = WebhookConfig(
        name="retrain", url=receiver.url + "/hook", secret_file=tmp_path / "secret", backoff_seconds=0.01
    )  # type: ignore[arg-type]
    receiver.script = [500, 500, 200]
    with DeliveryLog(state_location) as deliveries:
        (result,) = deliver(_trigger(), [hook], deliveries)
        assert (result.outcome, result.attempts, result.status_code) == ("ok", 3, 200)
        assert len(receiver.seen) == 3 and all(s["signed"] for s in receiver.seen)
        body = receiver.seen[-1]["body"]
        assert body["model"] == "churn" and body["live_version"] == 3 and body["trigger"] == "drift"
        assert body["evidence"]["drifted_features"]["tenure_months"]["psi"] == 0.41
        assert receiver.seen[-1]["event"] == "drift" and receiver.seen[-1]["path"] == "/hook"

        (again,) = deliver(_trigger(), [hook], deliveries)  # the same drift episode
        assert again.outcome == "skipped" and "already delivered" in again.detail
        (cooling,) = deliver(_trigger("churn:3:drift:2"), [hook], deliveries)  # a new episode, within cooldown
        assert cooling.outcome == "skipped" and cooling.detail.startswith("cooldown:")
        assert len(receiver.seen) == 3

        log = deliveries.entries("churn")
        assert [(e.outcome, e.attempts) for e in log] == [("skipped", 0), ("skipped", 0), ("ok", 3)]
        assert sum(e.outcome == "ok" for e in log) == 1


def test_airflow_preset_triggers_a_dag_run_with_the_evidence_as_conf(receiver: Receiver, tmp_path: Path) -> None:
    (tmp_path / "password").write_text("airflow-pass")
    hook = WebhookConfig(
        name="airflow",
        url=receiver.url,
        preset="airflow",
        dag_id="retrain_churn",
        username="tritonops",
        password_file=tmp_path / "password",
    )  # type: ignore[arg-type]
    with DeliveryLog(tmp_path / "state.db") as deliveries:
        (result,) = deliver(_trigger(), [hook], deliveries)
    assert result.outcome == "ok"
    (request,) = receiver.seen
    assert request["path"] == "/api/v1/dags/retrain_churn/dagRuns"
    assert request["authorization"] == "Basic " + base64.b64encode(b"tritonops:airflow-pass").decode()
    assert request["body"]["dag_run_id"].startswith("tritonops-churn-")
    conf = request["body"]["conf"]
    assert conf["model"] == "churn" and conf["trigger"] == "drift" and conf["evidence"]["window_seconds"] == 900


def test_client_errors_fail_at_once_and_an_unreachable_receiver_fails_after_every_attempt(
    receiver: Receiver, tmp_path: Path
) -> None:
    bad = WebhookConfig(name="bad", url=receiver.url, backoff_seconds=0.0)  # type: ignore[arg-type]
    gone = WebhookConfig(
        name="gone", url=f"http://127.0.0.1:{free_port()}", max_attempts=3, backoff_seconds=0.0, timeout_seconds=2
    )  # type: ignore[arg-type]
    receiver.script = [404]
    with DeliveryLog(tmp_path / "state.db") as deliveries:
        first, second = deliver(Trigger("churn", 3, "manual", "asked"), [bad, gone], deliveries)
    assert (first.outcome, first.attempts, first.status_code) == ("failed", 1, 404)
    assert (second.outcome, second.attempts, second.status_code) == ("failed", 3, None)
    assert "ConnectionError" in second.detail


def test_hooks_only_get_their_events_and_models(receiver: Receiver, tmp_path: Path) -> None:
    drift_only = WebhookConfig(name="d", url=receiver.url, events=("drift",), models=("fraud",))  # type: ignore[arg-type]
    with DeliveryLog(tmp_path / "state.db") as deliveries:
        assert deliver(_trigger(), [drift_only], deliveries) == []  # churn is not fraud
    assert receiver.seen == []


def test_a_webhooks_file_with_a_typo_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.yaml"
    path.write_text("webhooks:\n  - name: a\n    url: http://x\n    evnts: [drift]\n")
    with pytest.raises(WebhookError, match=r"webhooks\.0\.evnts: Extra inputs are not permitted"):
        load_webhooks(path)
    path.write_text("webhooks:\n  - name: a\n    url: http://x\n    preset: airflow\n")
    with pytest.raises(WebhookError, match=r"preset airflow needs dag_id"):
        load_webhooks(path)
    path.write_text("webhooks:\n  - name: a\n    url: http://x\n  - name: a\n    url: http://y\n")
    with pytest.raises(WebhookError, match=r"repeated: \['a'\]"):
        load_webhooks(path)
    path.write_text("webhooks:\n  - name: retrain\n    url: http://x/hook\n    events: [drift, alert]\n")
    (hook,) = load_webhooks(path)
    assert hook.events == ("drift", "alert") and str(hook.url) == "http://x/hook"


def test_retrain_cli_calls_the_hooks_audits_and_logs(receiver: Receiver, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(SECRET)
    hooks = tmp_path / "webhooks.yaml"
    hooks.write_text(
        f"webhooks:\n  - name: retrain\n    url: {receiver.url}/retrain\n    secret_file: {tmp_path / 'secret'}\n"
    )
    env = {
        **os.environ,
        "TRITONOPS_STATE": str(tmp_path / "state.db"),
        "TRITONOPS_WEBHOOKS": str(hooks),
        "TRITONOPS_ACTOR": "alice",
    }

    def cli(*args: str, environment: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tritonops", *args], env=environment, capture_output=True, text=True, timeout=60
        )

    done = cli("retrain", "churn", "--reason", "new labels arrived", "--json")
    assert done.returncode == 0, done.stderr
    assert [r["outcome"] for r in json.loads(done.stdout)] == ["ok"]
    (request,) = receiver.seen
    assert request["signed"] and request["body"]["trigger"] == "manual" and request["body"]["model"] == "churn"
    assert request["body"]["reason"] == "new labels arrived" and request["body"]["evidence"]["requested_by"] == "alice"

    logged = json.loads(cli("webhooks", "log", "churn", "--json").stdout)
    assert [(e["hook"], e["outcome"], e["event"]) for e in logged] == [("retrain", "ok", "manual")]
    with StateStore.open(tmp_path / "state.db") as store:
        (event,) = [e for e in store.audit("churn") if e.action == "retrain"]
    assert event.actor == "alice" and event.result == "ok" and event.reason == "new labels arrived"

    unset = {k: v for k, v in env.items() if k != "TRITONOPS_WEBHOOKS"}
    missing = cli("retrain", "churn", "--reason", "x", environment=unset)
    assert missing.returncode != 0 and "no webhooks configured: set TRITONOPS_WEBHOOKS" in missing.stderr
    assert "Traceback" not in missing.stderr
