"""End to end through the controller: two real tritonservers (admin API locked, the key held by the controller
alone), the real ``tritonops controller start``, the real CLI in remote mode (TRITONOPS_URL + TRITONOPS_TOKEN, no
state file, no admin key) and raw HTTP load on both servers the whole time.

An operator token promotes, canaries and rolls back with 0 failed requests; a viewer token's promote is refused with
403 (the access family's exit code) and the audit log names the viewer; the SDK in a separate process with no state
file records predictions and labels over HTTP (``HttpFeedbackSink``), and ``tritonops feedback accuracy`` through the
API reports per version what that process computed.

The tests of this module run in order on one stack.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from examples.train import train_numeric_pipeline
from tests.e2e.conftest import Controller, client_env, running_controller
from tritonops.contract.manifest import load_manifest
from tritonops.control_plane.errors import AccessError
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import ServerOptions, TritonServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL = "rf"
ACCESS_EXIT = AccessError.exit_code
ADMIN_KEY = "e2e-admin-key-" + secrets.token_hex(8)


class Load:
    """One thread per server posting unversioned ``/v2/models/<model>/infer``; every non-200 is kept."""

    def __init__(self, urls: list[str], body: dict[str, object]) -> None:
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(url, body), daemon=True) for url in urls]
        for thread in self._threads:
            thread.start()

    def _run(self, url: str, body: dict[str, object]) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    response = session.post(f"http://{url}/v2/models/{MODEL}/infer", json=body, timeout=10)
                    if response.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"HTTP {response.status_code} {response.text[:200]}")
                except requests.RequestException as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


@dataclass
class Stack:
    repository: Path
    servers: list[TritonServer]
    controller: Controller
    tokens: dict[str, str] = field(default_factory=dict)
    load: Load | None = None

    def cli(self, *args: str, who: str = "alice", expect: int = 0) -> str:
        return self.controller.cli(*args, token=self.tokens[who], expect=expect)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("controller_clients")
    repository = root / "repository"
    options = ConversionOptions(
        serving=ServingOptions(instance_count=1, preferred_batch_sizes=(16,), max_batch_size=64),
        parity_rows=200,
        native_export=False,
    )
    for seed in (0, 1, 2):
        trained = train_numeric_pipeline(n_rows=300, n_features=8, seed=seed)
        convert_sklearn(trained.model, trained.frame, name=MODEL, repository=repository, options=options)
    servers = [
        TritonServer(ServerOptions(model_repository=repository, admin_token=ADMIN_KEY, work_dir=root / f"t{i}")).start()
        for i in range(2)
    ]
    try:
        with running_controller(root, repository, root / "state.db", ADMIN_KEY, "--reconcile-every", "5") as ctl:
            built = Stack(repository, servers, ctl)
            yield built
            if built.load is not None:
                built.load.stop()
            printed = "".join(ctl.outputs)  # tokens are printed once, by `token create`; never the others
            assert ADMIN_KEY not in printed and ctl.bootstrap not in printed
    finally:
        for server in servers:
            server.stop()


def _body(repository: Path) -> dict[str, object]:
    manifest = load_manifest(repository / MODEL / "1")
    features = sorted(manifest.features, key=lambda f: f.column)
    row = [float(manifest.reference.sample[f.name][0] or 0.0) for f in features]
    return {"inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row}]}


def test_an_admin_sets_up_the_fleet_and_the_tokens(stack: Stack) -> None:
    stack.tokens["root"] = stack.controller.bootstrap
    for server in stack.servers:
        assert f"added {server.grpc_url}" in stack.cli("fleet", "add", server.grpc_url, who="root")
    assert sorted(stack.cli("fleet", "list", who="root").split()) == sorted(s.grpc_url for s in stack.servers)
    stack.tokens["alice"] = stack.controller.token("alice", "operator")
    stack.tokens["victor"] = stack.controller.token("victor", "viewer")
    listed = stack.cli("token", "list", who="root")
    assert "alice" in listed and "operator" in listed and "victor" in listed and "viewer" in listed
    assert stack.tokens["alice"] not in listed  # only a prefix


def test_an_operator_promotes_canaries_and_rolls_back_under_load(stack: Stack) -> None:
    assert "live None -> 1 on 2 endpoint(s)" in stack.cli("promote", MODEL, "1", "--reason", "first release")
    stack.load = Load([s.http_url for s in stack.servers], _body(stack.repository))
    time.sleep(1.0)
    dry = stack.cli("promote", MODEL, "2", "--dry-run")
    assert "dry run: every gate passed, nothing changed" in dry and dry.count("rows match") == 2
    assert "live 1 -> 2 on 2 endpoint(s)" in stack.cli("promote", MODEL, "2", "--reason", "better")
    assert "candidate 3 at weight 0.3 beside live 2" in stack.cli("canary", MODEL, "3", "--weight", "0.3")
    status = stack.cli("status", MODEL, who="victor")  # a viewer reads
    assert "3 @ 0.3" in status and "in sync" in status
    assert "live 2 -> 1, canary 3 removed" in stack.cli("rollback", MODEL, "--to", "1", "--reason", "error rate up")
    history = stack.cli("history", MODEL)
    assert "alice" in history and "error rate up" in history and "first release" in history
    events = stack.controller.api("GET", "/v1/history", stack.tokens["alice"], params={"model": MODEL}).json()["events"]
    finished = [(e["actor"], e["action"], e["result"]) for e in events if e["result"] != "started"]
    assert ("alice", "rollback", "ok") in finished and ("alice", "canary", "ok") in finished


def test_a_viewer_promote_is_refused_and_audited(stack: Stack) -> None:
    output = stack.cli("promote", MODEL, "2", who="victor", expect=ACCESS_EXIT)
    assert "token 'victor' (role viewer) may not promote" in output and "operator role" in output
    assert stack.controller.api("GET", "/v1/status").status_code == 401  # no token at all
    events = stack.controller.api("GET", "/v1/history", stack.tokens["root"], params={"model": MODEL}).json()["events"]
    refused = [e for e in events if e["result"] == "refused" and e["actor"] == "victor"]
    assert refused and refused[-1]["action"] == "promote"
    assert stack.cli("status", MODEL).count("in sync") == 2  # nothing moved: live 1 on both endpoints


SDK_PROCESS = """
import json, sys
from examples.train import train_numeric_pipeline
from tritonops.clients import ClientOptions, HttpFeedbackSink, TritonClient

grpc_url, model, controller = sys.argv[1:4]
trained = train_numeric_pipeline(n_rows=300, n_features=8, seed=7)
tally = {}
with HttpFeedbackSink(controller) as sink:
    with TritonClient(grpc_url, model, options=ClientOptions(feedback=sink)) as client:
        for i in range(0, 240, 4):
            prediction = client.predict(trained.frame.iloc[i : i + 4])
            truth = trained.labels.iloc[i : i + 4].tolist()
            for row_id, label, right in zip(prediction.request_ids, prediction.labels.tolist(), truth):
                if (i // 4) % 3:  # two rows in three get their label
                    client.feedback(row_id, right)
                    seen = tally.setdefault(prediction.version, [0, 0, 0])
                    seen[1] += 1
                    seen[2] += int(label == right)
                tally.setdefault(prediction.version, [0, 0, 0])[0] += 1
    assert sink.flush(60)
stats = sink.close()
print(json.dumps({"tally": tally, "sent": stats.sent, "lost": stats.lost}))
"""


def test_the_sdk_records_feedback_over_http_and_accuracy_comes_back_per_version(stack: Stack) -> None:
    stack.cli("canary", MODEL, "2", "--weight", "0.5")
    env = client_env(TRITONOPS_TOKEN=stack.tokens["alice"], PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SDK_PROCESS), stack.servers[0].grpc_url, MODEL, stack.controller.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    reported = json.loads(done.stdout.strip().splitlines()[-1])
    assert reported["lost"] == 0 and reported["sent"] == 240 + 160
    tally = reported["tally"]
    assert set(tally) == {"1", "2"}, tally  # the 50% canary answered some rows
    table = stack.cli("feedback", "accuracy", MODEL, who="victor")
    shown = {
        row[0]: (int(row[1]), int(row[2]), int(row[3]), row[4])
        for row in (re.findall(r"[^\s│|]+", line) for line in table.splitlines())
        if len(row) == 5 and row[0].isdigit()
    }
    assert shown == {
        version: (predictions, labelled, correct, f"{correct / labelled:.4f}")
        for version, (predictions, labelled, correct) in tally.items()
    }, table
    stack.cli("canary", MODEL, "--abort")


def test_no_failed_requests_through_it_all(stack: Stack) -> None:
    assert stack.load is not None
    stack.load.stop()
    assert stack.load.failures == [], stack.load.failures[:5]
    assert stack.load.ok > 300
