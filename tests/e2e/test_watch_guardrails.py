"""`tritonops watch` on the real tritonserver: every guardrail kind and every policy action, end to end.

- drift: live traffic shifts away from version 2's training data -> dataset drift -> rolled back to version 1 (whose
  training data looks like today's traffic); the watcher's exporter, scraped over HTTP while it runs, shows the
  live version change, the canary ended, the rollback counted and timed, the drift statistics and the breach.
- latency: version 2 is a genuinely heavy network (three 1024-wide layers, 256 rows per request) against a
  logistic regression; the p99 limit is set from the fast version's own measured p99, so the test holds on a
  slow or busy machine, and the slow version's real p99 over Triton's metrics trips it.
- policy actions on a canary that refuses rows with NaN: ``rollback`` rolls live back (and ends the canary),
  ``alert`` only records and exports, ``abort-canary`` aborts the canary but never rolls a breaching live back.
"""

from __future__ import annotations

import json
import os
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

from control_plane.errors import MetricsError
from control_plane.metrics import Snapshot, fleet_window, scrape
from control_plane.rollout import canary, fleet_add, promote
from control_plane.state import AuditEvent, StateStore
from converters.convert import ConversionOptions, convert_sklearn
from examples.data import sensor_frame
from serving.model_config import ServingOptions
from serving.triton import TritonServer, free_port
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
        "control_plane.cli",
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
    expected = 10 if "--exit-on-action" in extra else 0
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


def _desired(settings: Settings, model: str) -> tuple[int | None, int | None, float]:
    with StateStore.open(settings.state_path) as store:
        state = store.model(model)
    assert state is not None
    return state.live, state.canary, state.canary_weight


def _audit(settings: Settings, model: str, action: str) -> list[AuditEvent]:
    with StateStore.open(settings.state_path) as store:
        return [e for e in store.audit(model) if e.action == action]


def _unload(server: TritonServer, model: str) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for name in (model, f"{model}__canary"):
            if client.is_model_ready(name):
                client.unload_model(name)
    finally:
        client.close()


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
    promote(settings, DRIFT, 1, actor="test", reason="trained on this year's data")
    promote(settings, DRIFT, 2, actor="test", reason="retrained on the old archive")
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
    # after: live 1, no canary, one rollback counted at a time inside the run; v2's statistics stay exported
    assert after.total("tritonops_live_version", model=DRIFT) == 1
    assert after.total("tritonops_canary_version", model=DRIFT) == 0
    assert after.total("tritonops_canary_weight", model=DRIFT) == 0
    assert after.total("tritonops_rollbacks_total", model=DRIFT, trigger="rollback") == 1
    assert not after.has("tritonops_rollbacks_total", trigger="abort-canary")
    assert started < after.total("tritonops_last_rollback_timestamp_seconds", model=DRIFT) < finished
    assert after.total("tritonops_drift_detected", model=DRIFT, version="2") == 1
    for feature in today.columns:  # shifted by 3 standard deviations: far beyond the 0.25 "significant" band
        assert after.total("tritonops_drift_statistic", version="2", feature=feature, statistic="psi") > 1.0
        assert 0 < after.total("tritonops_drift_statistic", version="2", feature=feature, statistic="ks") <= 1
    assert after.has("tritonops_drift_statistic", version="2", feature="__prediction__", statistic="jensenshannon")
    assert after.has("tritonops_guardrail_breached", model=DRIFT, guardrail="dataset_drift")


# -- p99 latency guardrail with a genuinely slow version ---------------------------------------------------------

SLOW = "guardslow"
HEAVY_ROWS = 256  # rows per request: the wide network does ~2M multiply-adds per row


@pytest.fixture(scope="module")
def latency_setup(
    triton_server: TritonServer, triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, pd.DataFrame]]:
    data = sensor_frame(n_rows=300, n_features=6, seed=9)
    heavy = Pipeline(
        [("scale", StandardScaler()), ("classify", MLPClassifier((1024, 1024, 1024), max_iter=3, random_state=0))]
    )
    with warnings.catch_warnings():  # three epochs are enough: it only has to be slow, not good
        warnings.simplefilter("ignore", ConvergenceWarning)
        heavy.fit(data.frame, data.labels)
    for model in (_logistic().fit(data.frame, data.labels), heavy):
        convert_sklearn(model, data.frame, name=SLOW, repository=triton_repository, options=OPTIONS)
    settings = _settings(triton_server, triton_repository, tmp_path_factory.mktemp("latency_state"))
    promote(settings, SLOW, 1, actor="test", reason="fast release")
    yield settings, data.frame
    _unload(triton_server, SLOW)


def test_latency_guardrail_rolls_back_a_slow_version(
    latency_setup: tuple[Settings, pd.DataFrame], triton_server: TritonServer, tmp_path: Path
) -> None:
    settings, frame = latency_setup
    rows = frame.to_numpy()
    with Traffic(triton_server, rows, [SLOW], batch=HEAVY_ROWS):
        time.sleep(2.0)
        fast = fleet_window([triton_server.metrics_url], None, None).stats[(SLOW, "1")]
    assert fast.latency_source == "triton summary" and fast.p99_ms is not None and fast.requests >= 10
    limit = max(4 * fast.p99_ms, fast.p99_ms + 10.0)
    promote(settings, SLOW, 2, actor="test", reason="the wide network")
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
    assert "triton summary" in check["detail"]
    print(f"\nfast p99 {fast.p99_ms:.2f} ms, limit {limit:.2f} ms, slow p99 {check['value']:.2f} ms")


# -- policy actions on a canary that refuses NaN rows -------------------------------------------------------------

CANARY = "guardcanary"
NAN_POLICY = "min_requests: 15\nerror_rate: {max: 0.05}\ndrift: null\ncanary: {max_error_rate_increase: 0.05}\n"


@pytest.fixture(scope="module")
def canary_setup(
    triton_server: TritonServer, triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Rows]]:
    data = sensor_frame(n_rows=400, n_features=6, seed=13)
    # v1, v2 impute missing values; v3, v4 were trained without the imputer and refuse NaN (allow_nan: false)
    for model in (_logistic(), _logistic(c=0.5), _logistic(imputer=False), _logistic(imputer=False, c=0.5)):
        convert_sklearn(
            model.fit(data.frame, data.labels), data.frame, name=CANARY, repository=triton_repository, options=OPTIONS
        )
    settings = _settings(triton_server, triton_repository, tmp_path_factory.mktemp("canary_state"))
    promote(settings, CANARY, 1, actor="test", reason="first")
    promote(settings, CANARY, 2, actor="test", reason="second")
    canary(settings, CANARY, 3, 0.5, actor="test", reason="the regression as canary")
    yield settings, data.frame.to_numpy()
    _unload(triton_server, CANARY)


@pytest.fixture(scope="module")
def alerted(
    canary_setup: tuple[Settings, Rows], triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, list[Snapshot], Snapshot]:
    settings, rows = canary_setup
    workdir = tmp_path_factory.mktemp("alert")
    policy = _policy(workdir, NAN_POLICY + "action: alert\n")
    seen: list[Snapshot] = []
    with Traffic(triton_server, rows, [CANARY, f"{CANARY}__canary"], nan_every=3):
        watching = _start_watch(settings, CANARY, policy, triton_server, workdir)
        try:
            breached = watching.scrape_until(
                lambda s: (
                    s.total("tritonops_guardrail_breached", model=CANARY, guardrail="canary_error_rate") == 1
                    and bool(_audit(settings, CANARY, "guardrail-alert"))
                ),
                seen,
            )
        finally:
            output = watching.stop()
    return output, seen, breached


def test_alert_action_records_and_exports_a_canary_breach_and_changes_nothing(
    canary_setup: tuple[Settings, Rows], alerted: tuple[str, list[Snapshot], Snapshot]
) -> None:
    settings, _ = canary_setup
    output, seen, breached = alerted
    assert _desired(settings, CANARY) == (2, 3, 0.5)
    assert "alert: canary v3" in output and "abort-canary" not in output
    alert = _audit(settings, CANARY, "guardrail-alert")[0]
    assert alert.from_version == 3 and alert.reason.startswith("guardrail breach: canary v3")
    assert alert.reason.endswith("(policy action alert: recorded, no action)")
    checks = json.loads(alert.detail)["checks"]
    assert {c["target"] for c in checks} == {"canary"} and all(c["value"] > c["limit"] for c in checks)
    assert _audit(settings, CANARY, "guardrail-breach") == [] and _audit(settings, CANARY, "abort-canary") == []
    assert breached.total("tritonops_live_version", model=CANARY) == 2
    assert breached.total("tritonops_canary_version", model=CANARY) == 3
    assert breached.total("tritonops_canary_weight", model=CANARY) == 0.5
    assert breached.total("tritonops_guardrail_breached", model=CANARY, guardrail="error_rate") == 1  # canary's
    assert all(not s.has("tritonops_rollbacks_total") for s in seen)


@pytest.fixture(scope="module")
def rolled_back_by_policy(
    canary_setup: tuple[Settings, Rows],
    alerted: tuple[str, list[Snapshot], Snapshot],
    triton_server: TritonServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    settings, rows = canary_setup
    policy = _policy(tmp_path_factory.mktemp("rollback_policy"), NAN_POLICY + "action: rollback\n")
    with Traffic(triton_server, rows, [CANARY, f"{CANARY}__canary"], nan_every=3):
        return _watch(settings, CANARY, policy, triton_server, "--iterations", "60", "--exit-on-action")


def test_rollback_action_rolls_live_back_on_a_canary_breach(
    canary_setup: tuple[Settings, Rows], rolled_back_by_policy: str
) -> None:
    settings, _ = canary_setup
    output = rolled_back_by_policy
    assert "rollback" in output and "live 2 -> 1, canary 3 removed" in output
    assert _desired(settings, CANARY) == (1, None, 0.0)
    (breach,) = _audit(settings, CANARY, "guardrail-breach")
    # the canary breached, yet the policy says rollback: the event names live v2, the version rolled back from
    assert breach.from_version == 2 and "canary v3" in breach.reason and "live v2" not in breach.reason
    guardrails = {c["guardrail"] for c in json.loads(breach.detail)["checks"]}
    assert guardrails and guardrails <= {"error_rate", "canary_error_rate"}
    rollbacks = _audit(settings, CANARY, "rollback")
    assert [(e.result, e.from_version, e.to_version) for e in rollbacks] == [("started", 2, None), ("ok", 2, 1)]
    assert _audit(settings, CANARY, "abort-canary") == []


@pytest.fixture(scope="module")
def aborted(
    canary_setup: tuple[Settings, Rows],
    rolled_back_by_policy: str,
    triton_server: TritonServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, float]:
    settings, rows = canary_setup
    promote(settings, CANARY, 3, actor="test", reason="shipped the regression anyway")
    canary(settings, CANARY, 4, 0.5, actor="test", reason="a second bad build")
    policy = _policy(tmp_path_factory.mktemp("abort_policy"), NAN_POLICY + "action: abort-canary\n")
    started = time.monotonic()
    with Traffic(triton_server, rows, [CANARY, f"{CANARY}__canary"], nan_every=3):
        output = _watch(settings, CANARY, policy, triton_server, "--iterations", "10")
    return output, time.monotonic() - started


def test_abort_canary_action_aborts_the_canary_and_never_rolls_live_back(
    canary_setup: tuple[Settings, Rows], aborted: tuple[str, float]
) -> None:
    settings, _ = canary_setup
    output, elapsed = aborted
    assert _desired(settings, CANARY) == (3, None, 0.0)  # live v3 breaches all along: still live
    breach = _audit(settings, CANARY, "guardrail-breach")[-1]
    assert breach.from_version == 4 and "canary v4" in breach.reason and "live v3" not in breach.reason
    assert [e.result for e in _audit(settings, CANARY, "abort-canary")] == ["started", "ok"]
    assert [e.to_version for e in _audit(settings, CANARY, "rollback") if e.result == "ok"] == [1]  # the earlier
    live_alerts = [e for e in _audit(settings, CANARY, "guardrail-alert") if "live v3 error_rate" in e.reason]
    assert live_alerts and all(e.from_version == 3 for e in live_alerts)
    assert "(policy action abort-canary: recorded, no action)" in live_alerts[0].reason
    assert output.count("abort-canary:") == 1 and "alert: live v3 error_rate" in output
    assert elapsed < 40, f"took {elapsed:.1f} s"
