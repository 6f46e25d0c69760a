"""End to end: two real tritonservers (admin API locked) are the fleet, the real ``tritonops`` CLI runs as a
subprocess, real converted models, and a load generator sends unversioned HTTP requests to both servers the whole
time. It must see 0 failed requests through promote 1 -> 2, deploy, canary, promote 3, rollback, a server restart
plus reconcile, and every failure case (unreachable endpoint, a version that fails to load, a smoke mismatch, a
concurrent promote, a promote SIGKILLed half way, a wrong or missing admin key).

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
from typing import Any

import pytest
import requests
import tritonclient.grpc as grpcclient

from examples.train import train_numeric_pipeline
from tests.cli_json import check_json_output
from tritonops.clients import TritonClient
from tritonops.contract.manifest import load_manifest
from tritonops.control_plane import rollout
from tritonops.control_plane.state import StateStore
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.errors import ExitCode
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import ServerOptions, TritonServer, free_port, port_is_free
from tritonops.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ACTION = "deploy | promote | canary | rollback"

TOKEN = "e2e-admin-" + secrets.token_hex(8)
MODEL = "rf"
SEEDS = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4}
TRITONOPS = str(Path(sys.executable).parent / "tritonops")
ADMIN_GRPC = {"triton-grpc-protocol-admin-key": TOKEN}


# -- the load generator: a raw HTTP client per server, unversioned requests ------------------------------
@dataclass
class TargetRecord:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    transitions: list[tuple[float, str]] = field(default_factory=list)
    """(monotonic time, version) each time the answering version changed."""


class LoadGenerator:
    """One thread per server posting ``/v2/models/<model>/infer`` (no version) as fast as 2 shared cores allow."""

    def __init__(self, targets: dict[str, str], body: dict[str, object]) -> None:
        self.records = {name: TargetRecord() for name in targets}
        self._urls = dict(targets)
        self._paused = {name: threading.Event() for name in targets}
        self._idle = {name: threading.Event() for name in targets}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(name, body), daemon=True) for name in targets]
        for thread in self._threads:
            thread.start()

    def _run(self, name: str, body: dict[str, object]) -> None:
        record = self.records[name]
        session = requests.Session()
        while not self._stop.is_set():
            if self._paused[name].is_set():
                session.close()  # the client closes first: no TIME_WAIT left on the server's port
                self._idle[name].set()
                time.sleep(0.01)
                continue
            try:
                url = f"http://{self._urls[name]}/v2/models/{MODEL}/infer"
                response = session.post(url, json=body, timeout=10)
                if response.status_code != 200:
                    record.failures.append(f"{time.monotonic():.2f} HTTP {response.status_code} {response.text}")
                else:
                    version = str(response.json()["model_version"])
                    if not record.transitions or record.transitions[-1][1] != version:
                        record.transitions.append((time.monotonic(), version))
                    record.ok += 1
            except requests.RequestException as exc:
                record.failures.append(f"{time.monotonic():.2f} {type(exc).__name__}: {exc}")
            time.sleep(0.003)  # leave the shared cores some room
        session.close()

    def pause(self, name: str) -> None:
        """Take a server out of rotation, as a load balancer's health check would before a restart."""
        self._idle[name].clear()
        self._paused[name].set()
        assert self._idle[name].wait(15)

    def resume(self, name: str, url: str) -> None:
        self._urls[name] = url
        self._paused[name].clear()

    def versions_since(self, name: str, since: float) -> set[str]:
        record = self.records[name]
        before = [v for t, v in record.transitions if t <= since][-1:]
        return set(before) | {v for t, v in record.transitions if t > since}

    def first_time(self, name: str, version: str, since: float) -> float | None:
        return next((t for t, v in self.records[name].transitions if t >= since and v == version), None)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


# -- the fleet --------------------------------------------------------------------------------------------
@dataclass
class Fleet:
    repository: Path
    state_path: Path
    servers: dict[str, TritonServer]
    env: dict[str, str]
    body: dict[str, object]
    outputs: list[str] = field(default_factory=list)
    load: LoadGenerator | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def endpoint(self, name: str) -> str:
        return self.servers[name].grpc_url

    def cli(self, *args: str, expect: int = 0, env: dict[str, str] | None = None) -> str:
        """Run the real ``tritonops`` CLI; check its exit code; return stdout + stderr."""
        done = subprocess.run(
            [TRITONOPS, *args],
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        output = done.stdout + done.stderr
        self.outputs.append(output)
        assert done.returncode == expect, f"tritonops {' '.join(args)} exited {done.returncode}:\n{output}"
        return output

    def cli_json(self, output: str, *args: str) -> Any:
        """Run ``tritonops ARGS --json``; return its stdout checked against the ``output`` schema (docs/cli.md)."""
        done = subprocess.run([TRITONOPS, *args, "--json"], env=self.env, capture_output=True, text=True, timeout=240)
        self.outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, f"tritonops {' '.join(args)} --json exited {done.returncode}:\n{done.stderr}"
        return check_json_output(output, done.stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [TRITONOPS, *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def collect(self, process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
        output, _ = process.communicate(timeout=timeout)
        self.outputs.append(output)
        return process.returncode, output

    def desired(self) -> tuple[int | None, int | None]:
        with StateStore.open(self.state_path) as store:
            state = store.model(MODEL)
            return (state.live, state.canary) if state else (None, None)

    def audit(self) -> list[tuple[str, str, int | None, int | None]]:
        with StateStore.open(self.state_path) as store:
            return [(e.action, e.result, e.from_version, e.to_version) for e in store.audit(MODEL)]

    def serving(self, name: str) -> tuple[list[int], bool]:
        """Versions of the live model ready on server ``name``, and whether a canary alias is ready there."""
        client = grpcclient.InferenceServerClient(self.endpoint(name))
        try:
            ready = [v for v in range(1, 6) if client.is_model_ready(MODEL, str(v))]
            return ready, bool(client.is_model_ready(f"{MODEL}__canary"))
        finally:
            client.close()


def _convert_versions(repository: Path) -> None:
    options = ConversionOptions(
        serving=ServingOptions(instance_count=1, preferred_batch_sizes=(16,), max_batch_size=64),
        parity_rows=200,
        native_export=False,
    )
    for version, seed in SEEDS.items():
        trained = train_numeric_pipeline(n_rows=300, n_features=8, seed=seed)
        written = convert_sklearn(trained.model, trained.frame, name=MODEL, repository=repository, options=options)
        assert written.version == version
    # v4 fails to load: its ONNX file is damaged (a real file on disk, real ONNX Runtime refusing it)
    (repository / MODEL / "4" / "model.onnx").write_bytes(b"this is not an onnx model")
    # v5 answers differently from what its manifest promises: the smoke gate must catch it
    manifest_path = repository / MODEL / "5" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    labels = manifest["reference"]["expected"]["labels"]
    classes = manifest["classes"]
    labels[0] = next(c for c in classes if c != labels[0])
    manifest_path.write_text(json.dumps(manifest))


def _request_body(repository: Path) -> dict[str, object]:
    manifest = load_manifest(repository / MODEL / "1")
    features = sorted(manifest.features, key=lambda f: f.column)
    row = [float(manifest.reference.sample[f.name][0] or 0.0) for f in features]
    return {"inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row}]}


def _start(repository: Path, work: Path, ports: tuple[int, int, int] | None = None) -> TritonServer:
    http, grpc, metrics = ports or (free_port(), free_port(), free_port())
    options = ServerOptions(
        model_repository=repository,
        admin_token=TOKEN,
        work_dir=work,
        http_port=http,
        grpc_port=grpc,
        metrics_port=metrics,
    )
    deadline = time.monotonic() + 30
    while not all(port_is_free(p) for p in (http, grpc, metrics)) and time.monotonic() < deadline:
        time.sleep(0.5)  # a restarted server reuses its ports
    return TritonServer(options).start()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("rollout_e2e")
    repository = root / "repository"
    repository.mkdir()
    _convert_versions(repository)
    servers = {"A": _start(repository, root / "a"), "B": _start(repository, root / "b")}
    env = {
        **os.environ,
        "TRITONOPS_REPOSITORY": str(repository),
        "TRITONOPS_STATE": str(root / "state.db"),
        "TRITONOPS_ADMIN_TOKEN": TOKEN,
        "TRITONOPS_ACTOR": "e2e",
        "COLUMNS": "300",
    }
    env.pop("TRITONOPS_ADMIN_TOKEN_FILE", None)
    built = Fleet(repository, root / "state.db", servers, env, _request_body(repository))
    try:
        yield built
    finally:
        if built.load is not None:
            built.load.stop()
        for server in built.servers.values():
            server.stop()
        print("\n[rollout e2e] timings:", json.dumps({k: round(v, 2) for k, v in built.timings.items()}))
        if built.load is not None:
            print(
                "[rollout e2e] load:",
                {
                    n: (r.ok, len(r.failures), r.transitions and [v for _, v in r.transitions])
                    for n, r in built.load.records.items()
                },
            )


def _timed(fleet: Fleet, label: str, *args: str, expect: int = 0) -> tuple[float, str]:
    started = time.monotonic()
    output = fleet.cli(*args, expect=expect)
    fleet.timings[label] = time.monotonic() - started
    return started, output


def _switch_seconds(fleet: Fleet, label: str, version: str, since: float) -> None:
    assert fleet.load is not None
    for name in fleet.servers:
        seen = fleet.load.first_time(name, version, since)
        assert seen is not None, f"server {name} never answered with version {version}"
        fleet.timings[f"{label} {name} sees v{version} after"] = seen - since


# -- the happy path, under load -----------------------------------------------------------------------------
def test_fleet_membership(fleet: Fleet) -> None:
    for name in ("A", "B"):
        assert f"added {fleet.endpoint(name)}" in fleet.cli("fleet", "add", fleet.endpoint(name))
    listed = fleet.cli("fleet", "list").split()
    assert sorted(listed) == sorted(fleet.endpoint(n) for n in ("A", "B"))
    assert "already in the fleet" in fleet.cli("fleet", "add", fleet.endpoint("A"), expect=ExitCode.CONTROL_PLANE)


def test_first_promote_then_load_starts(fleet: Fleet) -> None:
    _, output = _timed(fleet, "promote 1 (first)", "promote", MODEL, "1", "--reason", "first release")
    assert "live None -> 1 on 2 endpoint(s)" in output
    assert fleet.desired() == (1, None)
    for name in fleet.servers:
        assert fleet.serving(name) == ([1], False)
    fleet.load = LoadGenerator({n: s.http_url for n, s in fleet.servers.items()}, fleet.body)
    time.sleep(1.0)
    assert all(r.ok > 0 for r in fleet.load.records.values())


def test_promote_with_gates_switches_without_failures(fleet: Fleet) -> None:
    dry = fleet.cli("promote", MODEL, "2", "--dry-run", "--max-latency-ms", "2000")
    assert "dry run: every gate passed, nothing changed" in dry
    assert fleet.desired() == (1, None)
    assert all(fleet.serving(n) == ([1], False) for n in fleet.servers)
    since, output = _timed(fleet, "promote 1->2", "promote", MODEL, "2", "--max-latency-ms", "2000")
    assert "live 1 -> 2 on 2 endpoint(s)" in output and output.count("32 rows match") == 2
    time.sleep(0.5)
    _switch_seconds(fleet, "promote 1->2", "2", since)
    assert fleet.desired() == (2, None)
    assert all(fleet.serving(n) == ([2], False) for n in fleet.servers)


def test_deploy_and_canary_keep_unversioned_traffic_on_live(fleet: Fleet) -> None:
    assert fleet.load is not None
    since = time.monotonic()
    deployed = fleet.cli_json(ACTION, "deploy", MODEL, "3")
    assert (deployed["action"], deployed["from_version"], deployed["to_version"]) == ("deploy", 2, 3)
    assert sorted(s["endpoint"] for s in deployed["smoke"]) == sorted(fleet.endpoint(n) for n in fleet.servers)
    assert all(s["label_mismatches"] == 0 and s["name"] == f"{MODEL}__canary" for s in deployed["smoke"])
    assert fleet.desired() == (2, 3)
    status = fleet.cli("status", MODEL)
    assert "3 @ 0" in status and "in sync" in status
    as_json = fleet.cli_json("status", "status", MODEL)
    assert all(m["in_sync"] and m["canary"] == 3 for e in as_json["endpoints"] for m in e["models"])
    _timed(fleet, "canary 3 @ 0.5", "canary", MODEL, "3", "--weight", "0.5", "--reason", "half")
    assert all(fleet.serving(n) == ([2], True) for n in fleet.servers)
    # the live model's backend sends about half of the requests to the canary; answers name who scored them
    trained = train_numeric_pipeline(n_rows=300, n_features=8, seed=9)
    with TritonClient(fleet.endpoint("A"), MODEL) as client:
        served = [client.predict(trained.frame.iloc[[i]]) for i in range(40)]
    canary_answers = [p for p in served if p.canary]
    assert {p.version for p in canary_answers} == {"3"}
    assert {p.version for p in served if not p.canary} == {"2"}
    assert 14 <= len(canary_answers) <= 26
    time.sleep(0.3)
    for name in fleet.servers:  # Triton's model_version names the model asked: live (served_version says who answered)
        assert fleet.load.versions_since(name, since) == {"2"}
    assert "3 @ 0.5" in fleet.cli("status", MODEL)
    settings = Settings(fleet.repository, fleet.state_path, TOKEN)
    for endpoint in rollout.status(settings, MODEL):
        (model,) = endpoint.models
        assert endpoint.error is None and model.divergence == ()
        assert (model.live, model.canary, model.canary_weight) == (2, 3, 0.5)
        assert model.ready_versions == (2,) and model.canary_ready_versions == (3,)
        assert model.requests > 100 and model.failures == 0


def test_promote_the_canary(fleet: Fleet) -> None:
    since, output = _timed(fleet, "promote 2->3 (canary wins)", "promote", MODEL, "3")
    assert "live 2 -> 3" in output
    time.sleep(0.5)
    _switch_seconds(fleet, "promote 2->3", "3", since)
    assert fleet.desired() == (3, None)
    assert all(fleet.serving(n) == ([3], False) for n in fleet.servers)


def test_rollback_to_the_previous_live(fleet: Fleet) -> None:
    since = time.monotonic()
    result = fleet.cli_json(ACTION, "rollback", MODEL, "--reason", "error rate up")
    fleet.timings["rollback 3->2"] = time.monotonic() - since
    assert (result["action"], result["from_version"], result["to_version"]) == ("rollback", 3, 2)
    assert "live 3 -> 2" in result["detail"] and not result["dry_run"]
    time.sleep(0.5)
    _switch_seconds(fleet, "rollback 3->2", "2", since)
    assert fleet.desired() == (2, None)
    assert all(fleet.serving(n) == ([2], False) for n in fleet.servers)


def test_server_restart_then_reconcile(fleet: Fleet) -> None:
    assert fleet.load is not None
    old = fleet.servers["B"]
    assert old.ports is not None and old.options.work_dir is not None
    # Same gRPC port: the fleet knows the server by it. New HTTP/metrics ports: after thousands of keep-alive
    # requests the old HTTP port has server-side TIME_WAIT sockets that tritonops.serving.triton.port_is_free (no
    # SO_REUSEADDR) reports as "in use" for 60 s.
    ports = (free_port(), old.ports.grpc, free_port())
    fleet.load.pause("B")
    old.stop()
    fleet.servers["B"] = _start(fleet.repository, old.options.work_dir.with_name("b-restarted"), ports)
    assert fleet.serving("B") == ([], False)  # Triton forgot our overrides
    report = fleet.cli("reconcile", "--dry-run")
    assert f"{MODEL}: not loaded (want version 2)" in report and "diverged from desired state (dry run)" in report
    assert fleet.serving("B") == ([], False)
    started = time.monotonic()
    repaired = fleet.cli("reconcile")
    fleet.timings["reconcile after restart"] = time.monotonic() - started
    assert f"loaded {MODEL} version 2 (warmed up)" in repaired
    assert f"{fleet.endpoint('A')}: 0 diverged, 0 actions" in repaired
    assert fleet.serving("B") == ([2], False)
    again = fleet.cli("reconcile")
    assert all(f"{fleet.endpoint(n)}: 0 diverged, 0 actions" in again for n in fleet.servers)
    in_sync = fleet.cli_json("reconcile", "reconcile")
    assert in_sync["ok"] and in_sync["divergence_count"] == 0 and in_sync["action_count"] == 0
    fleet.load.resume("B", fleet.servers["B"].http_url)


def test_history_tells_the_story(fleet: Fleet) -> None:
    finished = [(a, r, f, t) for a, r, f, t in fleet.audit() if r != "started"]
    assert finished == [
        ("promote", "ok", None, 1),
        ("promote", "ok", 1, 2),  # the dry run
        ("promote", "ok", 1, 2),
        ("deploy", "ok", 2, 3),
        ("canary", "ok", 2, 3),
        ("promote", "ok", 2, 3),
        ("desired-state", "ok", 3, 2),
        ("rollback", "ok", 3, 2),
        ("reconcile-apply", "ok", None, 2),  # the restarted server B loaded again
    ]
    table = fleet.cli("history", MODEL)
    assert "error rate up" in table and "first release" in table and "dry run" in table


# -- failure cases: live keeps serving, state consistent, audited, non-zero exit ----------------------------
def test_unreachable_endpoint_refuses_promote_and_rollback_is_finished_by_reconcile(fleet: Fleet) -> None:
    dead = f"127.0.0.1:{free_port()}"
    fleet.cli("fleet", "add", dead)
    output = fleet.cli("promote", MODEL, "3", expect=ExitCode.CONTROL_PLANE)
    assert f"endpoint {dead} is unreachable" in output
    assert fleet.desired() == (2, None) and fleet.audit()[-1][:2] == ("promote", "refused")
    assert all(fleet.serving(n) == ([2], False) for n in fleet.servers)
    # a rollback is the operator's final word: saved first, applied where possible, reported
    output = fleet.cli("rollback", MODEL, "--to", "1", expect=ExitCode.CONTROL_PLANE)
    assert "desired state saved, but 1 endpoint(s) are not there yet" in output and dead in output
    assert fleet.desired() == (1, None) and fleet.audit()[-1][:2] == ("rollback", "failed")
    assert all(fleet.serving(n) == ([1], False) for n in fleet.servers)
    assert "is unreachable" in fleet.cli("reconcile", expect=ExitCode.CONTROL_PLANE)
    fleet.cli("fleet", "remove", dead)
    fleet.cli("rollback", MODEL, "--to", "2")
    assert fleet.desired() == (2, None)


def test_a_version_that_fails_to_load(fleet: Fleet) -> None:
    output = fleet.cli("promote", MODEL, "4", expect=ExitCode.CONTROL_PLANE)
    assert f"loading '{MODEL}__canary' version 4 failed" in output
    assert "endpoints restored to the previous state" in output
    assert fleet.desired() == (2, None) and fleet.audit()[-1][:2] == ("promote", "failed")
    assert all(fleet.serving(n) == ([2], False) for n in fleet.servers)


def test_a_smoke_mismatch_is_refused(fleet: Fleet) -> None:
    output = fleet.cli("promote", MODEL, "5", expect=ExitCode.CONTROL_PLANE)
    assert "version 5: smoke gate refused it" in output and "labels differ from the manifest" in output
    assert fleet.desired() == (2, None) and fleet.audit()[-1][:2] == ("promote", "refused")
    assert all(fleet.serving(n) == ([2], False) for n in fleet.servers)


def test_a_concurrent_second_promote_is_refused(fleet: Fleet) -> None:
    """A promote while another one holds the model's rollout lock is refused (busy), names the holder and is audited.
    The lock is held here exactly as a promote holds it: a real promote now often finishes before a second CLI
    process has even started, which made a race of this test."""
    with StateStore.open(fleet.state_path) as store, store.rollout_lock(MODEL, "promote by alice"):
        output = fleet.cli("promote", MODEL, "3", "--actor", "bob", expect=ExitCode.BUSY)
    assert "another rollout is in progress (promote by alice" in output
    assert ("promote", "refused", None, 3) in fleet.audit()
    assert fleet.desired() == (2, None)  # nothing moved
    fleet.cli("promote", MODEL, "3", "--actor", "alice")  # the lock released, the same promote goes through
    assert fleet.desired() == (3, None)


def test_promote_killed_half_way_then_reconcile(fleet: Fleet) -> None:
    assert fleet.desired() == (3, None)
    process = fleet.popen("promote", MODEL, "1")
    admin = grpcclient.InferenceServerClient(fleet.endpoint("A"))
    try:  # candidate staged on A and B, gates run, then A starts loading v1 as live: kill right then
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            index = admin.get_model_repository_index(headers=ADMIN_GRPC, as_json=True).get("models", [])
            if any(
                m.get("name") == MODEL and m.get("version") == "1" and m.get("state") in ("LOADING", "READY")
                for m in index
            ):
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        admin.close()
    code, _ = fleet.collect(process)
    assert code == -signal.SIGKILL
    assert fleet.desired() == (3, None)  # state never moved
    with StateStore.open(fleet.state_path) as store:
        assert [op.to_version for op in store.unfinished_operations(MODEL)] == [1]
    output = fleet.cli("reconcile")
    print("\n[rollout e2e] reconcile after the killed promote:\n" + output)
    assert "closed interrupted rollout" in output
    assert f"unloaded {MODEL}__canary" in output  # the candidate staged before the kill is gone
    events = fleet.audit()  # the interrupted promote closed, then one event per endpoint reconcile acted on
    closed = max(i for i, e in enumerate(events) if e[:2] == ("promote", "interrupted"))
    applied = events[closed + 1 :]
    assert applied and all(e[:2] == ("reconcile-apply", "ok") for e in applied), events[closed:]
    assert all(fleet.serving(n) == ([3], False) for n in fleet.servers)
    again = fleet.cli("reconcile")
    assert all(f"{fleet.endpoint(n)}: 0 diverged, 0 actions" in again for n in fleet.servers)


def test_wrong_or_missing_admin_key(fleet: Fleet) -> None:
    wrong = "wrong-" + secrets.token_hex(6)
    env = {**fleet.env, "TRITONOPS_ADMIN_TOKEN": wrong}
    output = fleet.cli("promote", MODEL, "2", expect=ExitCode.CONTROL_PLANE, env=env)
    assert "refused the model-repository call: the admin key sent was refused (wrong key)" in output
    assert wrong not in output
    missing = {k: v for k, v in fleet.env.items() if k != "TRITONOPS_ADMIN_TOKEN"}
    output = fleet.cli("reconcile", expect=ExitCode.CONTROL_PLANE, env=missing)
    assert "no admin key was sent (none configured)" in output
    assert fleet.desired() == (3, None)
    assert all(fleet.serving(n) == ([3], False) for n in fleet.servers)


def test_no_failed_requests_and_no_secret_anywhere(fleet: Fleet) -> None:
    assert fleet.load is not None
    fleet.load.stop()
    for name, record in fleet.load.records.items():
        assert record.failures == [], f"server {name}: {record.failures[:5]}"
        assert record.ok > 500
        fleet.timings[f"requests ok {name}"] = record.ok
    assert all(TOKEN not in output for output in fleet.outputs)
    for path in fleet.state_path.parent.glob("state.db*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes()
