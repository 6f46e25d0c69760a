"""The guardrail watcher on the real tritonserver: every guardrail kind and every policy action, end to end.

The ``tritonops watch`` CLI runs as a subprocess where the user-facing behaviour is the point (exporter over HTTP,
output, exit status); the policy-action tests drive the library ``Watcher`` it runs, in process, to read each step.

- drift: live traffic shifts away from version 2's training data -> dataset drift -> rolled back to version 1 (whose
  training data looks like today's traffic); the watcher's exporter, scraped over HTTP while it runs, shows the
  live version change, the rollback counted and timed, the drift statistics and the breach: every family
  docs/contracts.md lists.
- latency: version 2 is a genuinely heavy network (three 1536-wide layers, 512 rows per request) against a
  logistic regression. Each is first measured on the backend's latency histogram (the embedded server's default;
  v2 as a candidate, with requests sent straight to its alias); the p99 limit is the geometric mean of the two
  p99s, so it holds on an idle or a busy machine; then v2 is promoted and its real p99 trips the guardrail.
- policy actions on a canary that refuses rows with NaN: ``rollback`` rolls live back (and ends the canary),
  ``alert`` only records and exports, ``abort-canary`` aborts the canary but never rolls a breaching live back.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from tritonclient.utils import InferenceServerException

from examples.data import sensor_frame
from tritonops.control_plane.errors import MetricsError
from tritonops.control_plane.exporter import ControlPlaneExporter
from tritonops.control_plane.fleet import reconcile
from tritonops.control_plane.guardrails import RunSummary, Watcher, parse_policy
from tritonops.control_plane.metrics import Snapshot, VersionStats, fleet_window, parse_metrics, scrape
from tritonops.control_plane.rollout import fleet_add
from tritonops.control_plane.state import AuditEntry, AuditEvent, StateStore
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.errors import ExitCode
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import TritonServer, free_port
from tritonops.settings import Settings

pytestmark = pytest.mark.e2e

OPTIONS = ConversionOptions(serving=ServingOptions(drift_flush_seconds=0.2, instance_count=1), native_export=False)
Rows = npt.NDArray[np.float64]
FAST_STEPS = "interval_seconds: 0.5\nwindow_seconds: 3\nconsecutive: 2\n"


# -- helpers ----------------------------------------------------------------------------------------------------


class Traffic:
    """Requests from a thread, round robin over ``targets``; every ``nan_every``-th request carries a NaN."""

    def __init__(
        self,
        server: TritonServer,
        rows: Rows,
        targets: Sequence[str],
        *,
        batch: int = 1,
        nan_every: int = 0,
        pause: float = 0.005,
    ) -> None:
        self.client = grpcclient.InferenceServerClient(server.grpc_url)
        self.rows = np.asarray(rows, dtype=np.float32)
        self.targets = tuple(targets)
        self.batch = batch
        self.nan_every = nan_every
        self.pause = pause
        self.ok = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        i = 0
        while not self._stop.is_set() and i < 20_000:  # bounded: at most 20k requests
            start = (i * self.batch) % len(self.rows)
            chunk = np.take(self.rows, range(start, start + self.batch), axis=0, mode="wrap").copy()
            if self.nan_every and i % self.nan_every == 0:
                chunk[:, 1] = np.nan
            tensor = grpcclient.InferInput("input", list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk)
            try:
                self.client.infer(self.targets[i % len(self.targets)], [tensor])
                self.ok += 1
            except InferenceServerException:
                self.refused += 1
            i += 1
            time.sleep(self.pause)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.client.close()


def _env(settings: Settings) -> dict[str, str]:
    env = {
        **os.environ,
        "TRITONOPS_STATE": str(settings.state_path),
        "TRITONOPS_REPOSITORY": str(settings.repository),
        "COLUMNS": "200",
    }
    env.pop("TRITONOPS_ADMIN_TOKEN", None)
    env.pop("TRITONOPS_METRICS_URLS", None)
    return env


def _watch_args(model: str, policy: Path, server: TritonServer, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tritonops.control_plane.cli",
        "watch",
        model,
        "--policy",
        str(policy),
        "--metrics-url",
        server.metrics_url,
        *extra,
    ]


def _watch(settings: Settings, model: str, policy: Path, server: TritonServer, *extra: str) -> str:
    """Run ``tritonops watch`` to its end; the exit status must be 0 (or 10 after ``--exit-on-action``)."""
    done = subprocess.run(
        _watch_args(model, policy, server, *extra), env=_env(settings), capture_output=True, text=True, timeout=120
    )
    expected = ExitCode.GUARDRAIL_ACTED if "--exit-on-action" in extra else 0
    assert done.returncode == expected, done.stdout + done.stderr
    return done.stdout


@dataclass
class Watching:
    """A ``tritonops watch --metrics-port`` subprocess, its exporter URL and its output file."""

    process: subprocess.Popen[bytes]
    exporter_url: str
    output: Path

    def scrape_until(self, ready: Callable[[Snapshot], bool], seen: list[Snapshot], timeout: float = 60) -> Snapshot:
        """Scrape the exporter every 0.1 s (keeping every scrape in ``seen``) until ``ready`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"watch exited early:\n{self.output.read_text()}"
            try:
                snapshot = scrape(self.exporter_url, timeout=2)
            except MetricsError:  # the exporter is not up yet
                time.sleep(0.1)
                continue
            seen.append(snapshot)
            if ready(snapshot):
                return snapshot
            time.sleep(0.1)
        raise AssertionError(f"the exporter never showed the expected state:\n{self.output.read_text()}")

    def stop(self) -> str:
        """SIGTERM, as a service manager stops it: watch finishes its step and exits 0."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise
        text = self.output.read_text()
        assert code == 0, text
        return text


def _start_watch(settings: Settings, model: str, policy: Path, server: TritonServer, workdir: Path) -> Watching:
    port = free_port()
    output = workdir / "watch.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            _watch_args(model, policy, server, "--iterations", "240", "--metrics-port", str(port)),
            env=_env(settings),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return Watching(process, f"http://127.0.0.1:{port}/metrics", output)


def _policy(workdir: Path, text: str) -> Path:
    path = workdir / "policy.yaml"
    path.write_text(FAST_STEPS + text)
    return path


def _settings(server: TritonServer, repository: Path, state_dir: Path) -> Settings:
    settings = Settings(repository=repository, state_path=state_dir / "state.db", admin_token=None)
    fleet_add(settings, server.grpc_url, actor="test")
    return settings


def _arrange(
    settings: Settings, model: str, releases: Sequence[int] = (), canary: tuple[int, float] | None = None
) -> None:
    """Test setup: write the desired state (release history, canary) and let ``reconcile`` load it on Triton.

    One load per served version instead of a gated rollout per step (the rollout library has tests of its own).
    """
    with StateStore.open(settings.state) as store:
        for version in releases:
            store.set_live(model, version, AuditEntry("test", "arrange", model, None, version, "setup", "ok"))
        if canary is not None:
            entry = AuditEntry("test", "arrange", model, None, canary[0], "setup", "ok")
            store.set_canary(model, canary[0], canary[1], entry)
        report = reconcile(store, settings.repository, settings.admin_headers(), actor="test")
    assert report.ok, report


def _desired(settings: Settings, model: str) -> tuple[int | None, int | None, float]:
    with StateStore.open(settings.state) as store:
        state = store.model(model)
    assert state is not None
    return state.live, state.canary, state.canary_weight


def _audit(settings: Settings, model: str, action: str) -> list[AuditEvent]:
    with StateStore.open(settings.state) as store:
        return [e for e in store.audit(model) if e.action == action]


def _unload(server: TritonServer, model: str) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for name in (model, f"{model}__canary"):
            if client.is_model_ready(name):
                client.unload_model(name)
    finally:
        client.close()


def _contract_exporter_families() -> list[str]:
    """The family names docs/contracts.md lists for the control plane exporter."""
    contracts = (Path(__file__).resolve().parents[2] / "docs" / "contracts.md").read_text(encoding="utf-8")
    paragraph = contracts[contracts.index("Control plane exporter") :].split("\n\n", 1)[0]
    families = [name.removesuffix("_total") for name in re.findall(r"`(tritonops_[a-z_]+)\{", paragraph)]
    assert len(families) >= 8, paragraph
    return families


def _logistic(imputer: bool = True, c: float = 1.0) -> Pipeline:
    steps = [("impute", SimpleImputer())] if imputer else []
    steps += [("scale", StandardScaler()), ("classify", LogisticRegression(C=c, max_iter=300))]
    return Pipeline(steps)


# -- drift guardrail + the exporter over HTTP -------------------------------------------------------------------

DRIFT = "guarddrift"


@pytest.fixture(scope="module")
def drift_setup(
    triton_server: TritonServer, triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, pd.DataFrame]]:
    data = sensor_frame(n_rows=400, n_features=6, seed=7)
    today = data.frame + 3.0 * data.frame.std()  # what the traffic looks like now
    for frame in (today, data.frame):  # v1 knows today's data, v2 does not
        convert_sklearn(
            _logistic().fit(frame, data.labels), frame, name=DRIFT, repository=triton_repository, options=OPTIONS
        )
    settings = _settings(triton_server, triton_repository, tmp_path_factory.mktemp("drift_state"))
    _arrange(settings, DRIFT, releases=[1, 2])  # v1 trained on this year's data, v2 retrained on the old archive
    yield settings, today
    _unload(triton_server, DRIFT)


def test_drift_guardrail_rolls_back_and_the_exporter_shows_every_family(
    drift_setup: tuple[Settings, pd.DataFrame], triton_server: TritonServer, tmp_path: Path
) -> None:
    settings, today = drift_setup
    policy = _policy(
        tmp_path,
        "min_requests: 10\naction: auto\nerror_rate: null\ncanary: null\n"
        "drift: {on_prediction_drift: false, on_dataset_drift: true, thresholds: {min_rows: 200}}\n",
    )
    seen: list[Snapshot] = []
    started = time.time()
    with Traffic(triton_server, today.to_numpy(), [DRIFT], batch=16):
        watching = _start_watch(settings, DRIFT, policy, triton_server, tmp_path)
        try:
            after = watching.scrape_until(
                lambda s: s.total("tritonops_rollbacks_total", model=DRIFT, trigger="rollback") >= 1, seen
            )
        finally:
            output = watching.stop()
    finished = time.time()

    assert "rollback" in output and "live 2 -> 1" in output
    assert _desired(settings, DRIFT) == (1, None, 0.0)
    (breach,) = _audit(settings, DRIFT, "guardrail-breach")
    assert breach.from_version == 2 and "live v2 dataset_drift 1 (limit 0.5" in breach.reason
    (check,) = json.loads(breach.detail)["checks"]
    assert check["guardrail"] == "dataset_drift" and check["value"] == 1.0 and check["enough_data"] is True
    assert [e.result for e in _audit(settings, DRIFT, "rollback")] == ["started", "ok"]

    # before the rollback: version 2 live, dataset drift flagged by the first breached step
    before = [s for s in seen if s.total("tritonops_rollbacks_total") == 0]
    assert before, "no scrape before the rollback"
    flagged = [s for s in before if s.total("tritonops_guardrail_breached", model=DRIFT, guardrail="dataset_drift")]
    assert flagged, "the breach never showed on the exporter before the action"
    assert flagged[0].total("tritonops_live_version", model=DRIFT) == 2
    assert flagged[0].total("tritonops_drift_detected", model=DRIFT, version="2") == 1
    assert flagged[0].has("tritonops_rollbacks_total", model=DRIFT, trigger="rollback")  # at 0: increase() sees 0->1
    # after: live 1, no canary, one rollback counted at a time inside the run; v2's statistics stay exported
    assert after.total("tritonops_live_version", model=DRIFT) == 1
    assert after.total("tritonops_canary_version", model=DRIFT) == 0
    assert after.total("tritonops_canary_weight", model=DRIFT) == 0
    assert after.total("tritonops_rollbacks_total", model=DRIFT, trigger="rollback") == 1
    assert after.total("tritonops_rollbacks_total", model=DRIFT, trigger="abort-canary") == 0
    assert started < after.total("tritonops_last_rollback_timestamp_seconds", model=DRIFT) < finished
    assert after.total("tritonops_drift_detected", model=DRIFT, version="2") == 1
    for feature in today.columns:  # shifted by 3 standard deviations: far beyond the 0.25 "significant" band
        assert after.total("tritonops_drift_statistic", version="2", feature=feature, statistic="psi") > 1.0
        assert 0 < after.total("tritonops_drift_statistic", version="2", feature=feature, statistic="ks") <= 1
    assert after.has("tritonops_drift_statistic", version="2", feature="__prediction__", statistic="jensenshannon")
    assert after.has("tritonops_guardrail_breached", model=DRIFT, guardrail="dataset_drift")
    for family in _contract_exporter_families():  # every family docs/contracts.md promises is served
        assert after.has(family) or after.has(f"{family}_total"), family


# -- p99 latency guardrail with a genuinely slow version ---------------------------------------------------------

SLOW = "guardslow"
HEAVY_ROWS = 512  # rows per request: the wide network does ~4.7M multiply-adds per row


@pytest.fixture(scope="module")
def latency_setup(
    triton_server: TritonServer, triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, pd.DataFrame]]:
    data = sensor_frame(n_rows=300, n_features=6, seed=9)
    heavy = Pipeline(
        [("scale", StandardScaler()), ("classify", MLPClassifier((1536,) * 3, max_iter=3, random_state=0))]
    )
    with warnings.catch_warnings():  # three epochs are enough: it only has to be slow, not good
        warnings.simplefilter("ignore", ConvergenceWarning)
        heavy.fit(data.frame, data.labels)
    for model in (_logistic().fit(data.frame, data.labels), heavy):
        convert_sklearn(model, data.frame, name=SLOW, repository=triton_repository, options=OPTIONS)
    settings = _settings(triton_server, triton_repository, tmp_path_factory.mktemp("latency_state"))
    _arrange(settings, SLOW, releases=[1])
    yield settings, data.frame
    _unload(triton_server, SLOW)


def _p99_trial(server: TritonServer, rows: Rows, model: str, version: int) -> VersionStats:
    """1.5 s of heavy requests to ``model``; its numbers since load, with latency quantiles from the backend
    histogram (the embedded server's default: Triton's latency summaries are off)."""
    with Traffic(server, rows, [model], batch=HEAVY_ROWS):
        time.sleep(1.5)
        stats = fleet_window([server.metrics_url], None, None).stats[(model, str(version))]
    assert stats.latency_source == "backend histogram" and stats.requests >= 5, stats
    assert {0.5, 0.99} <= set(stats.latency_ms), stats.latency_ms
    return stats


def test_latency_guardrail_rolls_back_a_slow_version(
    latency_setup: tuple[Settings, pd.DataFrame], triton_server: TritonServer, tmp_path: Path
) -> None:
    settings, frame = latency_setup
    rows = frame.to_numpy()
    fast = _p99_trial(triton_server, rows, SLOW, 1)
    _arrange(settings, SLOW, canary=(2, 0.0))  # a trial of the wide network: loaded, no traffic routed to it
    slow = _p99_trial(triton_server, rows, f"{SLOW}__canary", 2)  # the same requests, straight to the candidate
    assert slow.latency_ms[0.5] > 5 * fast.latency_ms[0.5], (fast.latency_ms, slow.latency_ms)  # really slower
    # the limit sits between the two versions' measured p99s (geometric mean), robust to the noise of busy cores
    limit = math.sqrt(fast.latency_ms[0.99] * slow.latency_ms[0.99])
    _arrange(settings, SLOW, releases=[2])
    policy = _policy(
        tmp_path,
        f"min_requests: 10\naction: auto\nerror_rate: null\ndrift: null\ncanary: null\n"
        f"latency: {{p99_ms: {limit:.3f}}}\n",
    )
    with Traffic(triton_server, rows, [SLOW], batch=HEAVY_ROWS):
        output = _watch(settings, SLOW, policy, triton_server, "--iterations", "60", "--exit-on-action")
    assert "rollback" in output and "live 2 -> 1" in output
    assert _desired(settings, SLOW) == (1, None, 0.0)
    (breach,) = _audit(settings, SLOW, "guardrail-breach")
    (check,) = json.loads(breach.detail)["checks"]
    assert breach.from_version == 2 and check["guardrail"] == "latency_p99" and check["target"] == "live"
    assert check["limit"] == pytest.approx(limit, abs=1e-3) and check["value"] > limit
    assert "backend histogram" in check["detail"]
    print(f"\np99: fast {fast.p99_ms:.2f} ms, trial {slow.p99_ms:.2f} ms, limit {limit:.2f}, live {check['value']:.2f}")


# -- policy actions on a canary that refuses NaN rows -------------------------------------------------------------

CANARY = "guardcanary"
NAN_POLICY = "min_requests: 15\nerror_rate: {max: 0.05}\ndrift: null\ncanary: {max_error_rate_increase: 0.05}\n"


@pytest.fixture(scope="module")
def canary_setup(
    triton_server: TritonServer, triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Rows]]:
    data = sensor_frame(n_rows=400, n_features=6, seed=13)
    # v1, v2 impute missing values; v3 was trained without the imputer and refuses NaN (allow_nan: false)
    for model in (_logistic(), _logistic(c=0.5), _logistic(imputer=False)):
        model.fit(data.frame, data.labels)
        convert_sklearn(model, data.frame, name=CANARY, repository=triton_repository, options=OPTIONS)
    settings = _settings(triton_server, triton_repository, tmp_path_factory.mktemp("canary_state"))
    _arrange(settings, CANARY, releases=[1, 2], canary=(3, 0.5))
    yield settings, data.frame.to_numpy()
    _unload(triton_server, CANARY)


def _nan_traffic(server: TritonServer, rows: Rows) -> Traffic:
    """Half the requests to live, half to the canary alias (as a raw client taking part would); a third with NaN."""
    return Traffic(server, rows, [CANARY, f"{CANARY}__canary"], nan_every=3)


def _watcher(settings: Settings, server: TritonServer, policy: str, exporter: ControlPlaneExporter) -> Watcher:
    """The library watcher ``tritonops watch`` runs, in process."""
    rules = parse_policy(FAST_STEPS + policy, "yaml")
    return Watcher(settings, CANARY, rules, [server.metrics_url], actor="test-watch", exporter=exporter)


@pytest.fixture(scope="module")
def alerted(canary_setup: tuple[Settings, Rows], triton_server: TritonServer) -> tuple[RunSummary, Snapshot]:
    settings, rows = canary_setup
    exporter = ControlPlaneExporter()
    port = exporter.serve(0)
    watcher = _watcher(settings, triton_server, NAN_POLICY + "action: alert\n", exporter)
    try:
        with _nan_traffic(triton_server, rows):
            steps = watcher.run(60, should_stop=lambda: bool(_audit(settings, CANARY, "guardrail-alert")))
        exported = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        exporter.stop()
    return steps, exported


def test_alert_action_records_and_exports_a_canary_breach_and_changes_nothing(
    canary_setup: tuple[Settings, Rows], alerted: tuple[RunSummary, Snapshot]
) -> None:
    settings, _ = canary_setup
    summary, exported = alerted
    assert _desired(settings, CANARY) == (2, 3, 0.5)
    assert summary.actions == 0 and summary.steps < 60
    alerting = summary.last  # the step whose breach first became due (streak 2)
    assert alerting is not None and alerting.alerts and {c.target for c in alerting.alerts} == {"canary"}
    assert all(alerting.streaks[f"canary:{c.guardrail}"] == 2 for c in alerting.alerts)
    (alert,) = _audit(settings, CANARY, "guardrail-alert")
    assert alert.from_version == 3 and alert.reason.startswith("guardrail breach: canary v3")
    assert alert.reason.endswith("(policy action alert: recorded, no action)")
    checks = json.loads(alert.detail)["checks"]
    assert [c["guardrail"] for c in checks] == [c.guardrail for c in alerting.alerts]
    assert all(c["value"] > c["limit"] for c in checks)
    assert _audit(settings, CANARY, "guardrail-breach") == [] and _audit(settings, CANARY, "abort-canary") == []
    assert exported.total("tritonops_live_version", model=CANARY) == 2
    assert exported.total("tritonops_canary_version", model=CANARY) == 3
    assert exported.total("tritonops_canary_weight", model=CANARY) == 0.5
    assert exported.total("tritonops_guardrail_breached", model=CANARY, guardrail="canary_error_rate") == 1
    assert exported.total("tritonops_guardrail_breached", model=CANARY, guardrail="error_rate") == 1  # canary's
    assert exported.has("tritonops_rollbacks_total", trigger="abort-canary")
    assert exported.total("tritonops_rollbacks_total", model=CANARY) == 0


@pytest.fixture(scope="module")
def aborted(
    canary_setup: tuple[Settings, Rows],
    alerted: tuple[str, list[Snapshot], Snapshot],
    triton_server: TritonServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, float]:
    settings, rows = canary_setup
    # live breaches too, for real: no request is served in under a microsecond, so its p99 is over this limit
    policy = _policy(
        tmp_path_factory.mktemp("abort_policy"), NAN_POLICY + "latency: {p99_ms: 0.001}\naction: abort-canary\n"
    )
    started = time.monotonic()
    with _nan_traffic(triton_server, rows):
        output = _watch(settings, CANARY, policy, triton_server, "--iterations", "8")
    return output, time.monotonic() - started


def test_abort_canary_action_aborts_the_canary_and_never_rolls_live_back(
    canary_setup: tuple[Settings, Rows], aborted: tuple[str, float]
) -> None:
    settings, _ = canary_setup
    output, elapsed = aborted
    assert _desired(settings, CANARY) == (2, None, 0.0)  # live v2 breaches its p99 limit all along: still live
    (breach,) = _audit(settings, CANARY, "guardrail-breach")
    assert breach.from_version == 3 and "canary v3" in breach.reason and "live v2" not in breach.reason
    assert [e.result for e in _audit(settings, CANARY, "abort-canary")] == ["started", "ok"]
    assert _audit(settings, CANARY, "rollback") == []
    live_alerts = [e for e in _audit(settings, CANARY, "guardrail-alert") if "live v2 latency_p99" in e.reason]
    assert live_alerts and all(e.from_version == 2 for e in live_alerts)
    assert "(policy action abort-canary: recorded, no action)" in live_alerts[0].reason
    assert output.count("abort-canary:") == 1 and "alert: live v2 latency_p99" in output
    assert elapsed < 40, f"took {elapsed:.1f} s"


@pytest.fixture(scope="module")
def rolled_back_by_policy(
    canary_setup: tuple[Settings, Rows], aborted: tuple[str, float], triton_server: TritonServer
) -> tuple[RunSummary, Snapshot]:
    settings, rows = canary_setup
    _arrange(settings, CANARY, canary=(3, 0.5))  # the regression as canary, again
    exporter = ControlPlaneExporter()
    watcher = _watcher(settings, triton_server, NAN_POLICY + "action: rollback\n", exporter)
    with _nan_traffic(triton_server, rows):
        steps = watcher.run(60, stop_after_action=True)
    return steps, parse_metrics(exporter.render().decode())


def test_rollback_action_rolls_live_back_on_a_canary_breach(
    canary_setup: tuple[Settings, Rows], rolled_back_by_policy: tuple[RunSummary, Snapshot]
) -> None:
    settings, _ = canary_setup
    summary, exported = rolled_back_by_policy
    acted = summary.last
    assert acted is not None and acted.action == "rollback" and acted.action_error is None
    assert acted.action_detail == "live 2 -> 1, canary 3 removed"
    breach = _audit(settings, CANARY, "guardrail-breach")[-1]
    # the canary breached, yet the policy says rollback: the event names live v2, the version rolled back from
    assert breach.from_version == 2 and "canary v3" in breach.reason and "live v2" not in breach.reason
    guardrails = {c["guardrail"] for c in json.loads(breach.detail)["checks"]}
    assert guardrails and guardrails <= {"error_rate", "canary_error_rate"}
    rollbacks = _audit(settings, CANARY, "rollback")
    assert [(e.result, e.from_version, e.to_version) for e in rollbacks] == [("started", 2, None), ("ok", 2, 1)]
    assert len(_audit(settings, CANARY, "abort-canary")) == 2  # only the earlier test's started + ok
    assert exported.total("tritonops_rollbacks_total", model=CANARY, trigger="rollback") == 1
    assert exported.total("tritonops_live_version", model=CANARY) == 1
    assert _desired(settings, CANARY) == (1, None, 0.0)  # rollback ends the canary in the desired state too
    assert exported.total("tritonops_canary_version", model=CANARY) == 0
