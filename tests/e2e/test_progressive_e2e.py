"""Progressive rollouts end to end: the real controller process drives them over the real embedded tritonserver
while a gRPC client sends traffic the whole time (every third row has a NaN); everything is asked for over the
HTTP API with an operator token, as curl would.

- a good version (it imputes NaN, as live does) goes through every step and is live at the end, 0 failed requests;
- a strict version (it refuses NaN rows, so about a third of its requests fail) is rolled back at its first step:
  live stays, the canary is gone, the audit log holds the failed analysis with its evidence, and the callers'
  failures during the rollout are bounded by that step's share of the traffic.

Step timings and failures per step are printed (``-s``) for the issue's note.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from tritonclient.utils import InferenceServerException

from examples.data import sensor_frame
from tests.cli_json import check_json_output
from tests.e2e.conftest import Controller, running_controller
from tritonops.control_plane.remote import ControllerClient
from tritonops.control_plane.rollout import fleet_add, promote
from tritonops.control_plane.state import StateStore
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.errors import ExitCode
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import TritonServer
from tritonops.settings import Settings

pytestmark = pytest.mark.e2e

OUTPUT = "rollout start | rollout status | rollout pause | rollout resume | rollout abort"

MODEL = "progsensor"
STEPS = [20, 50, 100]
ANALYSIS = {
    "min_requests": 20,
    "threshold": 1,
    "error_rate": {"max": 0.05},
    "latency": {"p99_ms": 2000},  # generous: a loaded 2-core machine must not fail the good version on latency
    "drift": None,
    "canary": {"max_error_rate_increase": 0.05, "max_p99_ratio": None, "accuracy_alpha": None},
}


@dataclass
class Load:
    """A gRPC caller that never stops during the module: every answer's time and whether it failed."""

    grpc_url: str
    answers: list[tuple[float, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rows = sensor_frame(n_rows=300, n_features=4, seed=32).frame.to_numpy(dtype=np.float32)
        client = grpcclient.InferenceServerClient(self.grpc_url)
        i = 0
        while not self.stop.is_set() and i < 200_000:  # bounded
            row = rows[i % len(rows)].copy()
            if i % 3 == 0:
                row[0] = np.nan
            tensor = grpcclient.InferInput("input", [1, row.size], "FP32")
            tensor.set_data_from_numpy(row.reshape(1, -1))
            try:
                client.infer(MODEL, [tensor])
                self.answers.append((time.time(), False))
            except InferenceServerException:
                self.answers.append((time.time(), True))
            i += 1
            time.sleep(0.003)
        client.close()

    def between(self, start: float, end: float) -> tuple[int, int]:
        """(requests, failures) answered in [start, end)."""
        window = [failed for at, failed in list(self.answers) if start <= at < end]
        return len(window), sum(window)


@dataclass
class Stack:
    controller: Controller
    operator: str
    viewer: str
    state: Path
    load: Load


@pytest.fixture(scope="module")
def stack(
    triton_server: TritonServer, triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("progressive")
    data = sensor_frame(n_rows=400, n_features=4, seed=31)
    options = ConversionOptions(serving=ServingOptions(drift_flush_seconds=0.2, instance_count=1), native_export=False)
    tolerant = [
        Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()), ("lr", LogisticRegression(C=c))])
        for c in (1.0, 0.5)
    ]
    strict = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())])  # refuses NaN rows
    for model in (*tolerant, strict):  # versions 1, 2 (good), 3 (fails a third of the rows)
        convert_sklearn(
            model.fit(data.frame, data.labels), data.frame, name=MODEL, repository=triton_repository, options=options
        )
    settings = Settings(repository=triton_repository, state_path=work / "state.db", admin_token=None)
    fleet_add(settings, triton_server.grpc_url, actor="test")
    promote(settings, MODEL, 1, actor="test", reason="first release")
    load = Load(triton_server.grpc_url)
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    try:
        metrics = ("--metrics-url", triton_server.metrics_url)
        with running_controller(work, triton_repository, settings.state_path, None, *metrics) as controller:
            operator = controller.token("rollout-operator", "operator")
            viewer = controller.token("rollout-viewer", "viewer")
            yield Stack(controller, operator, viewer, settings.state_path, load)
    finally:
        load.stop.set()
        thread.join(15)


def _run_rollout(stack: Stack, version: int) -> tuple[dict[str, Any], float, float]:
    """Start a rollout over the API, poll its status until it ends; (final status, start, end) wall-clock."""
    started = time.time()
    body = {"version": version, "steps": STEPS, "interval": "3s", "analysis": ANALYSIS, "reason": "e2e"}
    answer = stack.controller.api("POST", f"/v1/models/{MODEL}/rollouts", stack.operator, json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "running" and answer.json()["step"] == 0
    deadline = time.monotonic() + 120
    with ControllerClient(stack.controller.url, stack.viewer) as viewer:  # what the CLI uses in remote mode
        while True:
            current = viewer.rollout_status(MODEL)
            if not current.active:
                status = stack.controller.api("GET", f"/v1/models/{MODEL}/rollouts/current", stack.viewer).json()
                assert status["status"] == current.status and status["id"] == current.id
                return status, started, time.time()
            assert time.monotonic() < deadline, f"rollout still {current.status}:\n{stack.controller.log_tail()}"
            time.sleep(0.3)


def _per_step(stack: Stack, status: dict[str, Any], started: float, ended: float) -> list[dict[str, Any]]:
    """Each applied step: weight, how long it ran, the callers' requests and failures while it ran."""
    log = status["steps_log"]
    applied = [e for e in log if e["event"] == "step"]
    rows = []
    for i, entry in enumerate(applied):
        begin = started if i == 0 else entry["at"]
        end = applied[i + 1]["at"] if i + 1 < len(applied) else ended
        requests, failures = stack.load.between(begin, end)
        verdicts = [e["verdict"] for e in log if e["event"] == "analysis" and e["step"] == entry["step"]]
        rows.append(
            {
                "step": entry["step"],
                "weight": entry["weight"],
                "seconds": end - begin,
                "requests": requests,
                "failures": failures,
                "verdicts": verdicts,
            }
        )
        print(
            f"step {entry['step']} weight {entry['weight']:.2f}: {end - begin:.1f} s, {requests} requests, "
            f"{failures} failed, analysis {verdicts}"
        )
    return rows


def _evidence(stack: Stack) -> str:
    """The analyses' audit events, for a failure message."""
    with StateStore.open(stack.state) as store:
        return "\n".join(f"{e.reason}: {e.detail}" for e in store.audit(MODEL) if e.action == "rollout-analysis")


def _desired(stack: Stack) -> tuple[int | None, int | None]:
    with StateStore.open(stack.state) as store:
        state = store.model(MODEL)
    assert state is not None
    return state.live, state.canary


def test_a_good_version_goes_through_every_step_and_is_live(stack: Stack) -> None:
    status, started, ended = _run_rollout(stack, 2)
    print(f"good rollout: {status['status']} in {ended - started:.1f} s")
    steps = _per_step(stack, status, started, ended)
    assert status["status"] == "succeeded", _evidence(stack)
    assert _desired(stack) == (2, None)
    assert [s["weight"] for s in steps] == [0.2, 0.5, 1.0]
    assert all(s["verdicts"][-1] == "passed" for s in steps), steps
    assert sum(s["failures"] for s in steps) == 0 and all(s["requests"] > 0 for s in steps)
    with StateStore.open(stack.state) as store:
        events = [(e.action, e.result, e.actor) for e in store.audit(MODEL)]
    ours = [e for e in events if e[2] == "controller/rollout"]
    assert ("promote", "ok", "controller/rollout") in ours
    assert [e[0] for e in ours if e[0].startswith("rollout-")].count("rollout-analysis") == 3
    assert ("rollout-start", "ok", "rollout-operator") in events


def _canary_removed_at(stack: Stack, since: int, deadline: float = 60.0) -> float:
    """When the controller's abort of rollout ``since``'s canary finished (its audit event), waiting for it."""
    limit = time.monotonic() + deadline
    while time.monotonic() < limit:
        with StateStore.open(stack.state) as store:
            done = [
                e
                for e in store.audit(MODEL)
                if e.action == "abort-canary"
                and e.result == "ok"
                and e.actor == "controller/rollout"
                and f"progressive rollout {since} " in e.reason
            ]
        if done:
            return datetime.fromisoformat(done[-1].at).timestamp()
        time.sleep(0.3)
    raise AssertionError(f"the canary was never removed:\n{stack.controller.log_tail()}")


def test_a_failing_version_is_rolled_back_at_its_first_step_with_bounded_failures(stack: Stack) -> None:
    status, started, decided = _run_rollout(stack, 3)
    removed = _canary_removed_at(stack, status["id"])
    print(f"failing rollout: {status['status']} {decided - started:.1f} s after the start: {status['outcome']}")
    print(f"canary removed {removed - decided:.1f} s after the decision was seen")
    steps = _per_step(stack, status, started, removed)
    assert status["status"] == "rolled-back", status
    assert "step 1/3 (20%) failed" in status["outcome"] and "error_rate" in status["outcome"]
    assert _desired(stack) == (2, None)
    assert len(steps) == 1 and steps[0]["weight"] == 0.2 and steps[0]["verdicts"] == ["failed"]
    requests, failures = steps[0]["requests"], steps[0]["failures"]
    assert failures > 0, "the canary must have answered some NaN rows"
    assert failures <= 0.2 * requests, f"{failures} failures of {requests} requests exceed the step's 20% share"
    time.sleep(2.0)
    after, failed_after = stack.load.between(removed + 0.5, time.time())  # the canary is gone: no more failures
    print(f"after the rollback: {after} requests, {failed_after} failed")
    assert after > 0 and failed_after == 0
    with StateStore.open(stack.state) as store:
        (analysis,) = [e for e in store.audit(MODEL) if e.action == "rollout-analysis" and e.to_version == 3]
    assert analysis.result == "failed" and '"verdict": "failed"' in analysis.detail


def test_a_version_slower_than_the_analysis_p99_is_rolled_back(stack: Stack) -> None:
    """No version here is slow on purpose; a p99 limit of 10 microseconds makes every real one too slow."""
    strict_latency = {**ANALYSIS, "latency": {"p99_ms": 0.01}}
    body = {"version": 1, "steps": [20, 100], "interval": "2s", "analysis": strict_latency}
    answer = stack.controller.api("POST", f"/v1/models/{MODEL}/rollouts", stack.operator, json=body)
    assert answer.status_code == 201, answer.text
    started = time.time()
    with ControllerClient(stack.controller.url, stack.viewer) as viewer:
        while (current := viewer.rollout_status(MODEL)).active:
            assert time.time() - started < 90, stack.controller.log_tail()
            time.sleep(0.3)
    print(f"p99 rollout: {current.status} {time.time() - started:.1f} s after the start: {current.outcome}")
    assert current.status == "rolled-back" and "step 1/2 (20%) failed: latency_p99" in current.outcome
    _canary_removed_at(stack, since=current.id)
    assert _desired(stack) == (2, None)


def test_the_cli_starts_pauses_resumes_and_aborts_through_the_controller(stack: Stack, tmp_path: Path) -> None:
    """The real CLI in remote mode (no state, no key): the documented --json, roles, the audit names the token."""
    analysis = tmp_path / "analysis.yaml"
    analysis.write_text("min_requests: 20\nno_data: hold\ndrift: null\nlatency: {p99_ms: 2000}\n")
    cli = stack.controller.cli
    live, _ = _desired(stack)
    candidate = 1 if live == 2 else 2  # any good version that is not live (the tests above leave 2 live)
    started = check_json_output(
        OUTPUT,
        cli("rollout", MODEL, str(candidate), "--steps", "10,100", "--interval", "1h", "--analysis", str(analysis),
            "--reason", "by the CLI", "--json", token=stack.operator),
    )  # fmt: skip
    assert (started["status"], started["step"], started["weight"], started["interval_seconds"]) == (
        "running", 1, 0.1, 3600.0,
    )  # fmt: skip
    assert started["started_by"] == "rollout-operator" and started["steps"] == [10.0, 100.0]
    refused = cli("rollout", "pause", MODEL, token=stack.viewer, expect=ExitCode.ACCESS)
    assert "may not rollout-pause" in refused
    paused = check_json_output(OUTPUT, cli("rollout", "pause", MODEL, "--json", token=stack.operator))
    assert paused["status"] == "paused" and _desired(stack) == (live, candidate)
    table = cli("rollout", "status", MODEL, token=stack.viewer)
    assert "paused" in table and f"rollout {started['id']} of {MODEL} v{candidate}" in table
    assert check_json_output(OUTPUT, cli("rollout", "resume", MODEL, "--json", token=stack.operator))["status"] == (
        "running"
    )
    aborted = check_json_output(
        OUTPUT, cli("rollout", "abort", MODEL, "--reason", "enough", "--json", token=stack.operator)
    )
    assert aborted["status"] == "aborted" and aborted["outcome"] == "aborted by rollout-operator: enough"
    assert [e["event"] for e in aborted["steps_log"]] == ["step", "pause", "resume", "abort"]
    assert _desired(stack) == (live, None)
    again = cli("rollout", "abort", MODEL, token=stack.operator, expect=ExitCode.CONTROL_PLANE)
    assert "it has no progressive rollout" in again
