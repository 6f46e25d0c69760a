"""The controller API over a real SQLite state (FastAPI's TestClient, no server process): tokens and roles,
problem answers for bad input, and that a refused request changes nothing but the audit log.

Routes that need a Triton endpoint meet a real closed port (connection refused) or none at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.unit.test_rollout import write_version
from tritonops.control_plane.controller import ApiContext, create_app
from tritonops.control_plane.controller.auth import BadTokenThrottle, bearer_token
from tritonops.control_plane.errors import AuthenticationError, ControlPlaneError, UnknownModelError
from tritonops.control_plane.problem_codes import PROBLEMS, problem_for
from tritonops.control_plane.state import StateStore
from tritonops.control_plane.tokens import Role, authenticate, create_token, ensure_bootstrap, token_hash
from tritonops.errors import TritonOpsError
from tritonops.serving.triton import free_port
from tritonops.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    repository = tmp_path / "repo"
    write_version(repository, "rf", 1)
    write_version(repository, "rf", 2)
    return Settings(repository=repository, state_path=tmp_path / "state.db", admin_token="triton-admin-key-123")


@pytest.fixture
def tokens(settings: Settings) -> dict[str, str]:
    with StateStore.open(settings.state_path) as store:
        return {role.value: create_token(store, f"{role.value}-person", role, actor="test")[0] for role in Role}


@pytest.fixture
def changes() -> list[str]:
    return []


@pytest.fixture
def client(settings: Settings, changes: list[str]) -> Iterator[TestClient]:
    with TestClient(create_app(ApiContext(settings, on_change=changes.append))) as test_client:
        yield test_client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def snapshot(settings: Settings) -> tuple[object, ...]:
    """Everything in the state except the audit log."""
    with StateStore.open(settings.state_path) as store:
        return (store.models(), store.fleet(), store.tokens(), store.policies())


def last_event(settings: Settings) -> tuple[str, str, str | None, str, str]:
    with StateStore.open(settings.state_path) as store:
        event = store.audit(limit=1)[0]
    return event.actor, event.action, event.model, event.result, event.reason


def assert_problem(response: object, status: int, code: str, detail: str = "") -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status and body["code"] == code and body["type"] == f"urn:tritonops:problem:{code}"
    assert isinstance(body["title"], str) and body["title"]
    assert detail in str(body["detail"]), body
    return body


# -- health, docs ---------------------------------------------------------------------------------------
def test_health_readiness_metrics_and_docs_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "checks": {"state": "ok"}}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "# TYPE tritonops_live_version gauge" in metrics.text
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/status", "/v1/models/{model}/promote", "/v1/history", "/v1/feedback", "/v1/tokens"):
        assert path in paths
    assert client.get("/docs").status_code == 200


def test_readiness_fails_with_the_reason_when_a_loop_check_fails(settings: Settings) -> None:
    context = ApiContext(settings, readiness=lambda: {"reconciler": "the reconciler loop is not running"})
    with TestClient(create_app(context)) as test_client:
        body = assert_problem(test_client.get("/readyz"), 503, "not_ready", "reconciler: the reconciler loop")
    assert body["checks"] == {"state": None, "reconciler": "the reconciler loop is not running"}


# -- tokens ---------------------------------------------------------------------------------------------
def test_tokens_are_stored_as_sha256_only_and_listed_by_prefix(settings: Settings, tokens: dict[str, str]) -> None:
    with StateStore.open(settings.state_path) as store:
        rows = store.db.execute("SELECT name, prefix, sha256 FROM tokens ORDER BY name").fetchall()
    assert [r[0] for r in rows] == ["admin-person", "operator-person", "viewer-person"]
    for name, prefix, digest in rows:
        token = tokens[name.removesuffix("-person")]
        assert token.startswith("tops_") and len(token) == 48
        assert prefix == token[:13] and digest == token_hash(token) and token not in (prefix, digest)


def test_authentication_names_what_is_wrong(settings: Settings, tokens: dict[str, str]) -> None:
    with StateStore.open(settings.state_path) as store:
        assert authenticate(store, tokens["operator"]).name == "operator-person"
        with pytest.raises(AuthenticationError, match="not known to this controller"):
            authenticate(store, tokens["operator"][:-1] + "x")
        short, _ = create_token(store, "short-lived", "viewer", actor="test", expires_in_seconds=60)
        later = datetime.now(UTC) + timedelta(seconds=61)
        with pytest.raises(AuthenticationError, match=r"\(short-lived\) expired at"):
            authenticate(store, short, now=later)
    with pytest.raises(AuthenticationError, match="'Bearer <token>', got the scheme 'Basic'"):
        bearer_token("Basic dXNlcjpwYXNz")


def test_bootstrap_token_is_stored_once_as_admin(settings: Settings) -> None:
    with StateStore.open(settings.state_path) as store:
        assert ensure_bootstrap(store, "bootstrap-secret-0123456789") is True
        assert ensure_bootstrap(store, "another-secret-0123456789") is False
        assert authenticate(store, "bootstrap-secret-0123456789").role is Role.ADMIN
        with pytest.raises(AuthenticationError):
            authenticate(store, "another-secret-0123456789")


def test_admin_creates_lists_and_revokes_tokens_over_the_api(client: TestClient, tokens: dict[str, str]) -> None:
    created = client.post("/v1/tokens", headers=auth(tokens["admin"]), json={"name": "ci", "role": "operator"})
    assert created.status_code == 201
    token = created.json()["token"]
    assert created.json()["record"]["created_by"] == "admin-person"
    assert client.get("/v1/whoami", headers=auth(token)).json() == {"name": "ci", "role": "operator"}
    listed = client.get("/v1/tokens", headers=auth(tokens["admin"])).json()
    assert {t["name"]: t["prefix"] for t in listed}["ci"] == token[:13]
    assert all(token not in json.dumps(t) for t in listed)
    assert client.delete("/v1/tokens/ci", headers=auth(tokens["admin"])).status_code == 204
    assert_problem(client.get("/v1/whoami", headers=auth(token)), 401, "unauthenticated", "(ci) was revoked at")
    again = client.post("/v1/tokens", headers=auth(tokens["admin"]), json={"name": "admin-person", "role": "viewer"})
    assert_problem(again, 409, "token", "'admin-person' already exists")


def test_expired_token_is_refused_and_audited(client: TestClient, settings: Settings) -> None:
    with StateStore.open(settings.state_path) as store:
        token, _ = create_token(store, "brief", "operator", actor="test", expires_in_seconds=0.05)
    time.sleep(0.1)
    before = snapshot(settings)
    answer = client.post("/v1/models/rf/promote", headers=auth(token), json={"version": 1})
    assert_problem(answer, 401, "unauthenticated", "token tops_")
    assert "(brief) expired at" in answer.json()["detail"] and answer.headers["www-authenticate"].startswith("Bearer")
    assert snapshot(settings) == before
    actor, action, model, result, reason = last_event(settings)
    assert (actor, action, model, result) == ("anonymous@testclient", "promote", "rf", "refused")
    assert "expired at" in reason


# -- roles and refusals ----------------------------------------------------------------------------------
def test_no_token_or_a_bad_one_is_401_and_audited(client: TestClient, settings: Settings) -> None:
    assert_problem(client.get("/v1/status"), 401, "unauthenticated", "send the header 'Authorization: Bearer")
    assert last_event(settings)[:4] == ("anonymous@testclient", "status", None, "refused")
    assert_problem(client.get("/v1/status", headers=auth("tops_guessed")), 401, "unauthenticated", "not known")


def test_viewer_reads_but_may_not_promote_and_the_refusal_names_the_viewer(
    client: TestClient, settings: Settings, tokens: dict[str, str], changes: list[str]
) -> None:
    assert client.get("/v1/status", headers=auth(tokens["viewer"])).json() == []
    before = snapshot(settings)
    refused = client.post("/v1/models/rf/promote", headers=auth(tokens["viewer"]), json={"version": 2})
    assert_problem(refused, 403, "forbidden", "'viewer-person' (role viewer) may not promote: it needs the operator")
    assert snapshot(settings) == before and changes == []
    actor, action, model, result, reason = last_event(settings)
    assert (actor, action, model, result) == ("viewer-person", "promote", "rf", "refused")
    assert reason.startswith("API refused: token 'viewer-person' (role viewer)")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/v1/fleet", {"endpoint": "127.0.0.1:8001"}),
        ("post", "/v1/tokens", {"name": "x", "role": "admin"}),
        ("put", "/v1/models/rf/policy", {}),
        ("get", "/v1/tokens", None),
    ],
)
def test_operator_may_not_do_admin_things(
    client: TestClient, settings: Settings, tokens: dict[str, str], method: str, path: str, body: object
) -> None:
    before = snapshot(settings)
    answer = client.request(method, path, headers=auth(tokens["operator"]), json=body)
    assert_problem(answer, 403, "forbidden", "needs the admin role")
    assert snapshot(settings) == before
    assert last_event(settings)[0] == "operator-person"


def test_repeated_bad_tokens_from_one_client_wait_longer_and_longer() -> None:
    throttle = BadTokenThrottle(base_delay=0.1, max_delay=1.0)
    delays = [throttle.failure("10.0.0.9", now=float(i)) for i in range(7)]
    assert delays == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert throttle.failure("10.0.0.10", now=7.0) == 0.0  # another client is not slowed
    throttle.success("10.0.0.9")
    assert throttle.failure("10.0.0.9", now=8.0) == 0.0
    assert throttle.failure("10.0.0.10", now=10_000.0) == 0.0  # forgotten after forget_after
    small = BadTokenThrottle(max_clients=3)
    for i in range(10):
        small.failure(f"10.1.0.{i}")
    assert len(small) == 3


def test_the_api_slows_down_a_client_that_keeps_guessing(client: TestClient) -> None:
    started = time.monotonic()
    for _ in range(4):
        assert client.get("/v1/status", headers=auth("tops_wrong")).status_code == 401
    assert time.monotonic() - started >= 0.1 + 0.2 + 0.4 - 0.05


# -- bad input --------------------------------------------------------------------------------------------
def test_malformed_json_is_400_and_changes_nothing(
    client: TestClient, settings: Settings, tokens: dict[str, str]
) -> None:
    before = snapshot(settings)
    headers = {**auth(tokens["operator"]), "Content-Type": "application/json"}
    assert_problem(
        client.post("/v1/models/rf/promote", headers=headers, content=b'{"version": 1,'), 400, "invalid_json"
    )
    assert_problem(
        client.post("/v1/models/rf/promote", headers=auth(tokens["operator"]), content=b"v=1"),
        400,
        "invalid_json",
        "expected a JSON body",
    )
    assert snapshot(settings) == before


def test_schema_errors_name_the_field(client: TestClient, tokens: dict[str, str]) -> None:
    answer = client.post("/v1/models/rf/canary", headers=auth(tokens["operator"]), json={"version": 2, "weight": 1.5})
    body = assert_problem(answer, 422, "invalid_request", "field weight: Input should be less than or equal to 1")
    assert body["errors"] == [{"field": "weight", "message": "Input should be less than or equal to 1", "got": "1.5"}]
    typo = client.post("/v1/models/rf/promote", headers=auth(tokens["operator"]), json={"verison": 2})
    assert_problem(typo, 422, "invalid_request", "field version: Field required")


def test_unknown_model_and_version_are_404(client: TestClient, settings: Settings, tokens: dict[str, str]) -> None:
    before = snapshot(settings)
    unknown = client.post("/v1/models/nosuch/promote", headers=auth(tokens["operator"]), json={"version": 1})
    assert_problem(unknown, 404, "unknown_model", "model 'nosuch' is not known to the model repository")
    missing = client.post("/v1/models/rf/promote", headers=auth(tokens["operator"]), json={"version": 9})
    assert_problem(missing, 404, "unknown_version", "model 'rf' version 9: no directory")
    assert_problem(client.get("/v1/models/nosuch/versions", headers=auth(tokens["viewer"])), 404, "unknown_model")
    assert_problem(client.get("/v1/history?model=neverseen", headers=auth(tokens["viewer"])), 404, "unknown_model")
    assert snapshot(settings) == before


def test_a_policy_with_a_typo_is_refused_naming_the_field(
    client: TestClient, settings: Settings, tokens: dict[str, str]
) -> None:
    typo = {"window_seconds": 60, "error_rate": {"maxx": 0.1}}
    answer = client.put("/v1/models/rf/policy", headers=auth(tokens["admin"]), json=typo)
    assert_problem(answer, 422, "invalid_policy", "field error_rate.maxx: Extra inputs are not permitted")
    assert snapshot(settings)[3] == []
    assert_problem(client.get("/v1/models/rf/policy", headers=auth(tokens["viewer"])), 422, "invalid_policy")


def test_a_huge_body_is_413_before_it_is_read(client: TestClient, settings: Settings, tokens: dict[str, str]) -> None:
    before = snapshot(settings)
    body = b'{"predictions": [' + b'{"request_id": "x", "model": "rf", "version": 1, "label": "no"},' * 80_000
    answer = client.post(
        "/v1/feedback", headers={**auth(tokens["operator"]), "Content-Type": "application/json"}, content=body
    )
    assert_problem(answer, 413, "body_too_large", "the limit is 4194304 bytes")
    assert snapshot(settings) == before
    assert client.get("/healthz").status_code == 200  # still serving


def test_unknown_route_and_method_are_problems(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not_found")
    assert_problem(client.put("/v1/status"), 405, "method_not_allowed")


def test_every_error_family_has_one_stable_code() -> None:
    codes = [code for _, _, code, _ in PROBLEMS]
    assert len(codes) == len(set(codes))
    assert PROBLEMS[-1][0] is TritonOpsError
    assert problem_for(UnknownModelError("m", "x")) == (404, "unknown_model", "Unknown model")
    assert problem_for(ControlPlaneError("x"))[1] == "control_plane"


# -- what operators and admins do ---------------------------------------------------------------------------
def test_fleet_add_list_remove_with_audit_and_a_reconcile_request(
    client: TestClient, settings: Settings, tokens: dict[str, str], changes: list[str]
) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    added = client.post("/v1/fleet", headers=auth(tokens["admin"]), json={"endpoint": endpoint})
    assert added.status_code == 201 and added.json() == {"endpoints": [endpoint]}
    assert changes == ["fleet-add by admin-person"]
    assert client.get("/v1/fleet", headers=auth(tokens["viewer"])).json() == {"endpoints": [endpoint]}
    assert_problem(
        client.post("/v1/fleet", headers=auth(tokens["admin"]), json={"endpoint": "no-port"}),
        422,
        "fleet",
        "expected host:port",
    )
    status = client.get("/v1/status", headers=auth(tokens["viewer"])).json()
    assert status == [{"endpoint": endpoint, "error": None, "models": []}]  # no model to ask about yet
    assert client.delete(f"/v1/fleet/{endpoint}", headers=auth(tokens["admin"])).json() == {"endpoints": []}
    with StateStore.open(settings.state_path) as store:
        actions = [(e.actor, e.action) for e in store.audit() if e.action.startswith("fleet")]
    assert actions == [("admin-person", "fleet-add"), ("admin-person", "fleet-remove")]


def test_promote_against_an_unreachable_fleet_is_refused_with_the_operator_as_actor(
    client: TestClient, settings: Settings, tokens: dict[str, str], changes: list[str]
) -> None:
    client.post("/v1/fleet", headers=auth(tokens["admin"]), json={"endpoint": f"127.0.0.1:{free_port()}"})
    changes.clear()
    answer = client.post(
        "/v1/models/rf/promote", headers=auth(tokens["operator"]), json={"version": 1, "reason": "release"}
    )
    assert_problem(answer, 503, "endpoint_unreachable", "is unreachable")
    assert "triton-admin-key-123" not in answer.text
    with StateStore.open(settings.state_path) as store:
        events = [(e.actor, e.action, e.result, e.reason) for e in store.audit("rf")]
        assert store.model("rf") is None
    assert events == [
        ("operator-person", "promote", "started", "release"),
        ("operator-person", "promote", "refused", "release"),
    ]
    assert changes == []


def test_history_pages_back_with_before(client: TestClient, settings: Settings, tokens: dict[str, str]) -> None:
    for i in range(5):
        client.post("/v1/tokens", headers=auth(tokens["admin"]), json={"name": f"t{i}", "role": "viewer"})
    first = client.get("/v1/history?limit=3", headers=auth(tokens["viewer"])).json()
    ids = [e["id"] for e in first["events"]]
    assert ids == sorted(ids) and len(ids) == 3 and first["next_before"] == ids[0]
    older = client.get(f"/v1/history?limit=3&before={first['next_before']}", headers=auth(tokens["viewer"])).json()
    assert [e["id"] for e in older["events"]] == [ids[0] - 3, ids[0] - 2, ids[0] - 1]
    assert all(e["actor"] == "test" for e in older["events"][:1])


def test_models_and_versions_come_from_the_repository(client: TestClient, tokens: dict[str, str]) -> None:
    models = client.get("/v1/models", headers=auth(tokens["viewer"])).json()
    assert models == [
        {"name": "rf", "versions": [1, 2], "live": None, "canary": None, "canary_weight": 0.0, "policy": None}
    ]
    versions = client.get("/v1/models/rf/versions", headers=auth(tokens["viewer"])).json()
    assert [(v["version"], v["parity_passed"], v["framework"]) for v in versions] == [
        (1, True, "sklearn"),
        (2, True, "sklearn"),
    ]


def test_policies_per_model_and_default(client: TestClient, settings: Settings, tokens: dict[str, str]) -> None:
    stored = client.put(
        "/v1/models/rf/policy", headers=auth(tokens["admin"]), json={"window_seconds": 60, "error_rate": {"max": 0.1}}
    )
    assert stored.status_code == 200 and stored.json()["source"] == "model"
    assert stored.json()["policy"]["window_seconds"] == 60 and stored.json()["policy"]["error_rate"] == {"max": 0.1}
    default = client.put("/v1/policies/default", headers=auth(tokens["admin"]), json={"action": "alert"})
    assert default.json()["policy"]["action"] == "alert"
    assert client.delete("/v1/models/rf/policy", headers=auth(tokens["admin"])).status_code == 204
    shown = client.get("/v1/models/rf/policy", headers=auth(tokens["viewer"])).json()
    assert shown["source"] == "default" and shown["policy"]["action"] == "alert"
    with StateStore.open(settings.state_path) as store:
        assert [(e.actor, e.action) for e in store.audit() if e.action.startswith("policy")] == [
            ("admin-person", "policy-set"),
            ("admin-person", "policy-set"),
            ("admin-person", "policy-delete"),
        ]


def test_feedback_batches_are_all_or_nothing_and_accuracy_follows(
    client: TestClient, settings: Settings, tokens: dict[str, str]
) -> None:
    predictions = [{"request_id": f"r{i}", "model": "rf", "version": 1 + i % 2, "label": "yes"} for i in range(10)]
    labels = [{"request_id": f"r{i}", "true_label": "yes" if i < 7 else "no"} for i in range(10)]
    ok = client.post(
        "/v1/feedback", headers=auth(tokens["operator"]), json={"predictions": predictions, "labels": labels}
    )
    assert ok.json() == {"predictions": 10, "labels": 10}
    retried = client.post("/v1/feedback", headers=auth(tokens["operator"]), json={"predictions": predictions})
    assert retried.json() == {"predictions": 0, "labels": 0}  # a retried batch is not counted twice
    conflict = [
        {"request_id": "r0", "model": "rf", "version": 1, "label": "no"},
        {"request_id": "new", "model": "rf", "version": 1, "label": "no"},
    ]
    refused = client.post("/v1/feedback", headers=auth(tokens["operator"]), json={"predictions": conflict})
    assert_problem(refused, 422, "feedback", "predictions[0]: request_id 'r0' is already recorded")
    orphan = client.post(
        "/v1/feedback", headers=auth(tokens["operator"]), json={"labels": [{"request_id": "never", "true_label": "no"}]}
    )
    assert_problem(orphan, 422, "feedback", "labels[0]: request_id 'never' has no recorded prediction")
    accuracy = client.get("/v1/models/rf/accuracy", headers=auth(tokens["viewer"])).json()
    by_version = {v["version"]: (v["predictions"], v["labelled"], v["correct"]) for v in accuracy["versions"]}
    assert by_version == {1: (5, 5, 4), 2: (5, 5, 3)}  # r0 r2 r4 r6 right, r8 wrong; r1 r3 r5 right, r7 r9 wrong
    assert accuracy["comparison"] is None
    viewer = client.post("/v1/feedback", headers=auth(tokens["viewer"]), json={"predictions": []})
    assert_problem(viewer, 403, "forbidden")
