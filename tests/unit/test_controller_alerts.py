"""The controller's alert receiver (``/v1/hooks/alertmanager``) and its webhook triggers, over a real SQLite state
(FastAPI's TestClient) and a real HTTP receiver: every alert audited under the calling token, actions per policy,
a canary alias counted for its model, drift verdicts turned into one trigger per live version."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.test_rollout import write_version
from tritonops.control_plane.controller import ApiContext, create_app
from tritonops.control_plane.controller.dispatch import WebhookDispatcher, drift_trigger
from tritonops.control_plane.drift import PREDICTION, BinnedReference, DriftConfig, drift_report
from tritonops.control_plane.guardrails import Step
from tritonops.control_plane.state import AuditEntry, ModelState, StateStore
from tritonops.control_plane.tokens import Role, create_token
from tritonops.control_plane.webhooks import DeliveryLog
from tritonops.serving.triton import free_port
from tritonops.settings import Settings


@pytest.fixture
def received() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server that records each webhook body."""
    bodies: list[dict[str, Any]] = []
    port = free_port()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}/hook", bodies
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(tmp_path: Path, received: tuple[str, list[dict[str, Any]]]) -> Settings:
    repository = tmp_path / "repo"
    for version in (1, 2):
        write_version(repository, "rf", version)
    hooks = tmp_path / "webhooks.yaml"
    hooks.write_text(f"webhooks:\n  - name: retrain\n    url: {received[0]}\n    events: [alert, drift]\n")
    settings = Settings(repository=repository, state_path=tmp_path / "state.db", admin_token=None, webhooks_path=hooks)
    with StateStore.open(settings.state) as store:
        entry = AuditEntry("test", "promote", "rf", None, 1, "", "ok")
        store.set_live("rf", 1, entry)
        store.set_live("rf", 2, entry)
    return settings


@pytest.fixture
def tokens(settings: Settings) -> dict[str, str]:
    with StateStore.open(settings.state) as store:
        return {
            "alertmanager": create_token(store, "alertmanager", Role.OPERATOR, actor="test")[0],
            "viewer": create_token(store, "dashboard", Role.VIEWER, actor="test")[0],
            "admin": create_token(store, "admin", Role.ADMIN, actor="test")[0],
        }


def _alert(name: str, model: str, status: str = "firing") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "model": model, "version": "2", "severity": "critical"},
        "annotations": {"summary": f"{model} v2: 40% of requests fail"},
        "startsAt": "2026-12-01T22:00:00Z",
        "fingerprint": f"fp-{name}-{model}",
    }


def _post(client: TestClient, token: str, *alerts: dict[str, Any]) -> Any:
    body = {"version": "4", "status": "firing", "receiver": "tritonops-controller", "alerts": list(alerts)}
    return client.post("/v1/hooks/alertmanager", headers={"Authorization": f"Bearer {token}"}, json=body)


def test_alerts_are_audited_and_acted_on_per_policy_for_their_model_only(
    settings: Settings, tokens: dict[str, str], received: tuple[str, list[dict[str, Any]]]
) -> None:
    dispatcher = WebhookDispatcher(settings)
    dispatcher.start()
    with TestClient(create_app(ApiContext(settings, dispatcher=dispatcher))) as client:
        policy = {"alerts": {"TritonHighErrorRatio": "rollback", "ModelDriftDetected": "retrain"}}
        assert client.put("/v1/models/rf/policy", headers={"Authorization": f"Bearer {tokens['admin']}"},
                          json=policy).status_code == 200  # fmt: skip
        refused = _post(client, tokens["viewer"], _alert("TritonHighErrorRatio", "rf"))
        assert refused.status_code == 403

        answer = _post(
            client,
            tokens["alertmanager"],
            _alert("TritonHighErrorRatio", "rf__canary"),  # a canary's alias counts for its model
            _alert("ModelDriftDetected", "rf"),
            _alert("TritonHighErrorRatio", "gb"),  # another model, no policy: recorded only
            _alert("TritonDown", "rf", status="resolved"),
        )
    dispatcher.stop()
    assert answer.status_code == 200, answer.text
    outcomes = [(o["alert"], o["model"], o["action"], o["result"]) for o in answer.json()["outcomes"]]
    assert outcomes[1:] == [
        ("ModelDriftDetected", "rf", "retrain", "ok"),
        ("TritonHighErrorRatio", "gb", "record", "ok"),
        ("TritonDown", "rf", "record", "ok"),
    ]
    rollback = answer.json()["outcomes"][0]
    # rf rolled back as its policy says: saved as desired state (the fleet here is empty, so no endpoint has it
    # yet and the answer says so, not "failed" or "refused"; reconcile applies it once endpoints exist)
    assert rollback["action"] == "rollback" and rollback["result"] == "saved, not applied"
    assert rollback["detail"] == (
        "live 2 -> 1; saved, not applied: the fleet is empty (reconcile applies it once endpoints exist)"
    )

    with StateStore.open(settings.state) as store:
        events = store.audit()
        assert store.model("rf") == ModelState("rf", 1, None, 0.0)
    (decided,) = [e for e in events if e.action == "desired-state" and e.actor == "alertmanager"]
    rolled = [(e.result, e.detail) for e in events if e.action == "rollback" and e.actor == "alertmanager"]
    assert rolled == [("started", ""), ("ok", rollback["detail"])]  # the audit says ok, not refused
    assert decided.reason.startswith("alert TritonHighErrorRatio: rf__canary v2") and decided.to_version == 1
    alerts = [(e.actor, e.action, e.model, e.reason) for e in events if e.action.startswith("alert-")]
    assert alerts == [
        ("alertmanager", "alert-firing", "rf", "TritonHighErrorRatio"),
        ("alertmanager", "alert-firing", "rf", "ModelDriftDetected"),
        ("alertmanager", "alert-firing", "gb", "TritonHighErrorRatio"),
        ("alertmanager", "alert-resolved", "rf", "TritonDown"),
    ]
    assert [e for e in events if e.action == "alert" and e.actor == "dashboard" and e.result == "refused"]
    (delivered,) = received[1]
    assert (
        delivered["trigger"] == "alert" and delivered["model"] == "rf" and delivered["live_version"] == 1
    )  # after the rollback
    assert delivered["evidence"]["alert"] == "ModelDriftDetected"


def _step(rows_moved: float) -> Step:
    labels = ("low", "mid", "high")
    references = [BinnedReference(f"f{i}", "numeric", labels, (0.3, 0.4, 0.3), 1000) for i in range(2)]
    references.append(BinnedReference(PREDICTION, "categorical", ("a", "b"), (0.5, 0.5), 1000))
    moved = {"low": 300.0 - rows_moved, "mid": 400.0, "high": 300.0 + rows_moved}
    report = drift_report("rf", 2, references, {"f0": moved, "f1": moved}, {"a": 500.0, "b": 500.0},
                          DriftConfig(min_rows=100), 600.0)  # fmt: skip
    return Step(time.time(), ModelState("rf", 2, None, 0.0), (), {}, {}, drift={"live": report})


def test_a_drift_verdict_triggers_once_per_live_version(
    settings: Settings, received: tuple[str, list[dict[str, Any]]]
) -> None:
    assert drift_trigger(_step(0.0)) is None
    trigger = drift_trigger(_step(250.0))
    assert trigger is not None and trigger.dedup_key == "rf:v2:drift" and trigger.event == "drift"
    assert set(trigger.evidence["drifted_features"]) == {"f0", "f1"}  # type: ignore[arg-type]
    dispatcher = WebhookDispatcher(settings)
    dispatcher.start()
    for _ in range(3):  # the guardrails see the same episode at every step
        dispatcher.on_step(_step(250.0))
    dispatcher.stop()
    (body,) = received[1]
    assert body["trigger"] == "drift" and body["evidence"]["dataset_drift"] is True
    with DeliveryLog(settings.state) as deliveries:
        assert sorted(e.outcome for e in deliveries.entries("rf")) == ["ok", "skipped", "skipped"]
