"""The progressive rollout routes over a real SQLite state (TestClient): roles, problem answers for bad input,
and that a refused start changes nothing but the audit log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.unit.test_controller_api import assert_problem, auth, settings, snapshot, tokens  # noqa: F401
from tritonops.control_plane.controller import ApiContext, create_app
from tritonops.control_plane.progressive import RolloutSpec
from tritonops.control_plane.progressive_runs import insert_rollout
from tritonops.control_plane.state import AuditEntry, StateStore
from tritonops.settings import Settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:  # noqa: F811
    with StateStore.open(settings.state_path) as store:
        store.set_live("rf", 1, AuditEntry("test", "promote", "rf", None, 1, "", "ok"))
    with TestClient(create_app(ApiContext(settings))) as test_client:
        yield test_client


BODY = {"version": 2, "steps": "5,25,50,100", "interval": "60s"}


@pytest.mark.parametrize(
    ("body", "status", "code", "detail"),
    [
        ({**BODY, "steps": "5,25,20"}, 422, "invalid_rollout_spec", "rollout steps: expected strictly increasing"),
        ({**BODY, "steps": [0, 50]}, 422, "invalid_rollout_spec", "percentages in (0, 100], got 0"),
        ({**BODY, "steps": "5,101"}, 422, "invalid_rollout_spec", "got 101"),
        ({**BODY, "interval": "soon"}, 422, "invalid_rollout_spec", "rollout interval: expected a duration"),
        ({**BODY, "interval": 0.2}, 422, "invalid_rollout_spec", "got 0.2 s"),
        ({**BODY, "analysis": {"treshold": 2}}, 422, "invalid_policy", "field treshold: Extra inputs"),
        ({**BODY, "version": 9}, 404, "unknown_version", "model 'rf' version 9: no directory"),
        ({**BODY, "version": 1}, 409, "invalid_rollout", "version 1 is already live"),
        ({**BODY, "version": 0}, 422, "invalid_request", "field version"),
    ],
)
def test_bad_starts_are_refused_with_a_problem_and_change_nothing(
    client: TestClient,
    tokens: dict[str, str],  # noqa: F811
    settings: Settings,  # noqa: F811
    body: dict[str, object],
    status: int,
    code: str,
    detail: str,
) -> None:
    before = snapshot(settings)
    response = client.post("/v1/models/rf/rollouts", json=body, headers=auth(tokens["operator"]))
    assert_problem(response, status, code, detail)
    assert snapshot(settings) == before
    with StateStore.open(settings.state_path) as store:
        assert store.db.execute("SELECT COUNT(*) FROM progressive_rollouts").fetchone()[0] == 0


def test_roles_and_the_lifecycle_routes(client: TestClient, tokens: dict[str, str], settings: Settings) -> None:  # noqa: F811
    viewer, operator = auth(tokens["viewer"]), auth(tokens["operator"])
    assert_problem(client.post("/v1/models/rf/rollouts", json=BODY, headers=viewer), 403, "forbidden", "operator")
    assert_problem(client.get("/v1/models/rf/rollouts/current"), 401, "unauthenticated")
    none_yet = client.get("/v1/models/rf/rollouts/current", headers=viewer)
    assert_problem(none_yet, 409, "invalid_rollout", "no progressive")
    with StateStore.open(settings.state_path) as store:
        insert_rollout(store, "rf", RolloutSpec(2, (5.0, 100.0), 60.0), from_version=1, actor="x", reason="", now=1.0)
    assert_problem(client.post("/v1/models/rf/rollouts", json=BODY, headers=operator), 409, "rollout_in_progress")
    current = client.get("/v1/models/rf/rollouts/current", headers=viewer).json()
    assert (current["status"], current["steps"], current["step"], current["version"]) == ("running", [5.0, 100.0], 0, 2)
    assert current["analysis"]["threshold"] == 1 and current["analysis"]["no_data"] == "fail"
    assert_problem(client.post("/v1/models/rf/rollouts/current/pause", headers=viewer), 403, "forbidden")
    assert client.post("/v1/models/rf/rollouts/current/pause", headers=operator).json()["status"] == "paused"
    assert client.post("/v1/models/rf/rollouts/current/resume", headers=operator).json()["status"] == "running"
    aborted = client.post("/v1/models/rf/rollouts/current/abort", json={"reason": "no"}, headers=operator).json()
    assert aborted["status"] == "aborted" and aborted["outcome"] == "aborted by operator-person: no"
    assert_problem(client.post("/v1/models/rf/rollouts/current/abort", headers=operator), 409, "invalid_rollout")
    listed = client.get("/v1/models/rf/rollouts", headers=viewer).json()
    assert [r["status"] for r in listed] == ["aborted"]
