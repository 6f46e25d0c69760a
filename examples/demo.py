"""The main job end to end on the embedded Triton: ``make demo`` (``python -m examples.demo``).

train -> convert (parity) -> serve -> the controller (API with tokens) -> promote v1 -> SDK traffic (gRPC + HTTP)
-> canary v2 (split in Triton) -> promote v2 -> drifted traffic flagged by ``tritonops drift`` -> a bad v3 trips
``tritonops watch`` and is rolled back automatically -> status / history, a viewer's promote refused -> a short
Locust load -> clean shutdown.

Every user-visible action runs the real ``tritonops`` CLI as a subprocess; the SDK sends the traffic. Rollout,
status and history commands go through the controller's API (``TRITONOPS_URL``) with an operator's token and no
admin key; ``drift`` and ``watch`` read Triton's metrics locally.
``--quick`` shortens the traffic and load phases (used by ``tests/e2e/test_demo.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import psutil
import requests

from examples.data import sensor_frame
from examples.steps import Demo, StepFailed, console, ensure_dir, run_demo
from examples.train import train_mixed_pipeline, train_numeric_pipeline, train_torch_mlp
from tritonops.clients import ClientOptions, TritonClient
from tritonops.serving.triton import ServerOptions, TritonServer, free_port
from tritonops.settings import ADMIN_HEADER

TOTAL_STEPS = 13
SENSOR = "sensor"
CHURN = "churn"
MLP = "sensor_mlp"


class Workspace:
    """Where the demo keeps its files: ``runs/demo`` unless told otherwise; wiped at the start."""

    def __init__(self, root: Path) -> None:
        if root.exists():
            shutil.rmtree(root)
        self.root = ensure_dir(root)
        self.repository = ensure_dir(root / "model_repository")
        self.artifacts = ensure_dir(root / "artifacts")
        self.state = root / "state.db"
        self.token = secrets.token_hex(16)
        self.bootstrap = "tops_" + secrets.token_urlsafe(32)


def _accuracy(predicted: np.ndarray, truth: pd.Series) -> float:
    return float(np.mean(np.asarray(predicted, dtype=object) == truth.to_numpy(dtype=object)))


class RawCallers:
    """Existing production callers: plain JSON over HTTP with 16 sensor columns, in a background thread."""

    def __init__(self, server: TritonServer, model: str, rows: np.ndarray) -> None:
        self.url = f"http://{server.http_url}/v2/models/{model}/infer"
        self.rows = rows
        self.ok = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            self._send(session)

    def _send(self, session: requests.Session) -> None:
        i = 0
        while not self._stop.is_set():
            row = self.rows[i % len(self.rows)]
            body = {"inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row.tolist()}]}
            response = session.post(self.url, data=json.dumps(body), timeout=10)
            if response.status_code == 200:
                self.ok += 1
            else:
                self.failed += 1
            i += 1
            time.sleep(0.01)

    def __enter__(self) -> RawCallers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def snapshot(self) -> tuple[int, int]:
        return self.ok, self.failed


class ControllerProcess:
    """``tritonops controller start`` for the demo's state: the only process given Triton's admin key."""

    def __init__(self, workspace: Workspace, server: TritonServer) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = workspace.root / "controller.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRITONOPS_")}
        env.update(
            TRITONOPS_REPOSITORY=str(workspace.repository),
            TRITONOPS_STATE=str(workspace.state),
            TRITONOPS_ADMIN_TOKEN=workspace.token,
            TRITONOPS_BOOTSTRAP_TOKEN=workspace.bootstrap,
            TRITONOPS_METRICS_URLS=server.metrics_url,
        )
        port = self.url.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "tritonops", "controller", "start", "--host", "127.0.0.1", "--port", port]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, seconds: float = 90.0) -> float:
        started = time.monotonic()
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() - started > seconds:
                raise StepFailed(f"the controller did not get ready; see {self.log}")
            time.sleep(0.2)
        return time.monotonic() - started

    def _ready(self) -> bool:
        try:
            with requests.get(f"{self.url}/readyz", timeout=2) as response:
                return response.status_code == 200
        except requests.RequestException:  # not listening yet
            return False

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def _new_token(demo: Demo, name: str, role: str) -> str:
    output = demo.cli("token", "create", name, "--role", role).stdout
    found = re.findall(r"^(tops_\S+)$", output, flags=re.MULTILINE)
    if len(found) != 1:
        raise StepFailed(f"`token create {name}` printed {len(found)} tokens, expected one")
    return found[0]


def _post_status(url: str, headers: dict[str, str]) -> int:
    """POST and return only the status: a kept Response would hold its keep-alive connection open."""
    with requests.Session() as session, session.post(url, headers=headers, timeout=5) as response:
        return response.status_code


def _http_clients(server: TritonServer) -> list[str]:
    """Processes holding connections to the server's HTTP port (Triton waits for them at shutdown)."""
    port = server.ports.http if server.ports else None
    return sorted(
        f"pid {c.pid} ({psutil.Process(c.pid).name() if c.pid else '?'})"
        for c in psutil.net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def main(demo: Demo, workspace: Workspace, quick: bool) -> None:
    traffic_rows = 200 if quick else 1000

    with demo.step("Train the demo models (sklearn numeric, sklearn mixed numeric + strings, PyTorch MLP)") as step:
        sensor_v1 = train_numeric_pipeline("random_forest")
        sensor_v2 = train_numeric_pipeline("gradient_boosting")
        churn = train_mixed_pipeline()
        mlp = train_torch_mlp()
        joblib.dump(sensor_v1.model, workspace.artifacts / "sensor_rf.joblib")
        joblib.dump(sensor_v2.model, workspace.artifacts / "sensor_gb.joblib")
        joblib.dump(churn.model, workspace.artifacts / "churn.joblib")
        import torch

        torch.jit.script(mlp.model).save(str(workspace.artifacts / "sensor_mlp.pt"))
        sensor_v1.frame.to_csv(workspace.artifacts / "sensor_sample.csv", index=False)
        churn.frame.to_csv(workspace.artifacts / "churn_sample.csv", index=False)
        # v3 was trained with one more sensor column that production callers do not send yet: feature skew.
        skewed = train_numeric_pipeline("random_forest", n_features=17)
        joblib.dump(skewed.model, workspace.artifacts / "sensor_rf_17.joblib")
        skewed.frame.to_csv(workspace.artifacts / "sensor17_sample.csv", index=False)
        step.detail = (
            f"train accuracy sensor RF {_accuracy(sensor_v1.model.predict(sensor_v1.frame), sensor_v1.labels):.3f}, "
            f"churn {_accuracy(churn.model.predict(churn.frame), churn.labels):.3f}"
        )

    with demo.step("Convert to ONNX with the parity gate (tritonops convert)") as step:
        a = workspace.artifacts
        for model_file, name, sample in (
            ("sensor_rf.joblib", SENSOR, "sensor_sample.csv"),
            ("sensor_gb.joblib", SENSOR, "sensor_sample.csv"),
            ("sensor_rf_17.joblib", SENSOR, "sensor17_sample.csv"),
            ("churn.joblib", CHURN, "churn_sample.csv"),
        ):
            demo.cli("convert", str(a / model_file), "--name", name, "--sample", str(a / sample))
        demo.cli(
            "convert",
            str(a / "sensor_mlp.pt"),
            "--name",
            MLP,
            "--sample",
            str(a / "sensor_sample.csv"),
            "--classes",
            ",".join(mlp.classes),
        )
        demo.cli("models", "list")
        versions = sorted(p.name for p in (workspace.repository / SENSOR).iterdir() if p.name.isdigit())
        if versions != ["1", "2", "3"]:
            raise StepFailed(f"expected sensor versions 1, 2, 3 in the repository, found {versions}")
        step.detail = "5 versions written, parity passed for each"

    server = TritonServer(
        ServerOptions(
            model_repository=workspace.repository,
            admin_token=workspace.token,
            work_dir=workspace.root / "server",
            log_path=workspace.root / "tritonserver.log",
        )
    )
    with demo.step("Start the embedded Triton (explicit model control, admin API locked)") as step:
        server.start()
        console.print(f"HTTP {server.http_url}   gRPC {server.grpc_url}   metrics {server.metrics_url}")
        demo.cli_env = {**demo.cli_env, "TRITONOPS_METRICS_URLS": server.metrics_url}
        without_key = _post_status(f"http://{server.http_url}/v2/repository/index", {})
        if without_key == 200:
            raise StepFailed("the model-repository API answered without the admin key")
        with_key = _post_status(f"http://{server.http_url}/v2/repository/index", {ADMIN_HEADER: workspace.token})
        step.detail = f"pid {server.pid}; repository API without key -> HTTP {without_key}, with key -> {with_key}"

    controller: ControllerProcess | None = None
    try:
        with demo.step("Start the controller: API with tokens, the only holder of Triton's admin key") as step:
            controller = ControllerProcess(workspace, server)
            ready = controller.wait_ready()
            # from here on the CLI is a client: the controller's URL and a token, no state file, no admin key
            demo.cli_env = {
                "TRITONOPS_URL": controller.url,
                "TRITONOPS_TOKEN": workspace.bootstrap,
                "TRITONOPS_REPOSITORY": str(workspace.repository),
                "TRITONOPS_METRICS_URLS": server.metrics_url,
                "TRITONOPS_STATE": "",
                "TRITONOPS_ADMIN_TOKEN": "",
            }
            demo.cli("fleet", "add", server.grpc_url)
            operator = _new_token(demo, "demo-operator", "operator")
            viewer = _new_token(demo, "demo-viewer", "viewer")
            demo.cli_env["TRITONOPS_TOKEN"] = operator
            step.detail = f"{controller.url} ready in {ready:.1f} s; tokens: demo-operator, demo-viewer"
        _serve(demo, workspace, server, traffic_rows, quick, viewer)
    finally:
        with demo.step("Shut down cleanly") as step:
            controller_code = controller.stop() if controller is not None else None
            holders = _http_clients(server)
            if holders:
                console.print(f"still connected to Triton's HTTP port: {holders}")
            code = server.stop()
            step.detail = f"controller exit code {controller_code}, tritonserver exit code {code}"
            if code != 0 or controller_code not in (0, None):
                raise StepFailed(f"tritonserver exited {code}, the controller {controller_code}; see {workspace.root}")


def _serve(demo: Demo, workspace: Workspace, server: TritonServer, traffic_rows: int, quick: bool, viewer: str) -> None:
    # drift and watch read Triton's metrics from here, on the local state (the controller keeps the key)
    local = {
        "TRITONOPS_URL": "",
        "TRITONOPS_TOKEN": "",
        "TRITONOPS_STATE": str(workspace.state),
        "TRITONOPS_ADMIN_TOKEN": workspace.token,
    }
    with demo.step("Promote v1 of every model through the controller (an operator's token)") as step:
        for model in (SENSOR, CHURN, MLP):
            demo.cli("promote", model, "1", "--reason", "first release")
        step.detail = "sensor, churn, sensor_mlp live at v1"

    options = ClientOptions(deadline=10.0)
    with demo.step("Predict through the SDK over gRPC and HTTP (DataFrames in, class names out)") as step:
        test = sensor_frame(n_rows=traffic_rows, n_features=16, seed=0, sample_seed=7)
        shuffled = test.frame[list(reversed(test.frame.columns))]  # any column order works
        with TritonClient(server.grpc_url, SENSOR, protocol="grpc", options=options) as client:
            grpc_prediction = client.predict(shuffled)
        with TritonClient(server.http_url, SENSOR, protocol="http", options=options) as client:
            http_prediction = client.predict(test.frame)
        if not np.array_equal(grpc_prediction.labels, http_prediction.labels):
            raise StepFailed("gRPC and HTTP disagree on the same rows")
        churn_rows = train_mixed_pipeline(n_rows=200, seed=11)
        with TritonClient(server.http_url, CHURN, protocol="http", options=options) as client:
            churn_prediction = client.predict(churn_rows.frame)
        with TritonClient(server.grpc_url, MLP, protocol="grpc", options=options) as client:
            mlp_prediction = client.predict(test.frame)
        console.print(grpc_prediction.to_frame().head(5))
        step.detail = (
            f"sensor v{grpc_prediction.version} accuracy {_accuracy(grpc_prediction.labels, test.labels):.3f} "
            f"({len(test.frame)} rows, gRPC = HTTP), churn accuracy "
            f"{_accuracy(churn_prediction.labels, churn_rows.labels):.3f}, "
            f"mlp accuracy {_accuracy(mlp_prediction.labels, test.labels):.3f}"
        )

    with demo.step("Canary v2 at 20% of all traffic (split inside Triton), then promote it") as step:
        demo.cli("canary", SENSOR, "2", "--weight", "0.2", "--reason", "gradient boosting candidate")
        served = {"live": 0, "canary": 0}
        requests_sent = 300 if quick else 1000
        rows = sensor_frame(n_rows=requests_sent, n_features=16, seed=0, sample_seed=3).frame
        with TritonClient(server.grpc_url, SENSOR, protocol="grpc", options=options) as client:
            for i in range(requests_sent):
                prediction = client.predict(rows.iloc[[i]], key=f"user-{i}")
                served["canary" if prediction.canary else "live"] += 1
        share = served["canary"] / sum(served.values())
        if not 0.1 < share < 0.3:
            raise StepFailed(f"canary share {share:.1%} is far from the 20% weight")
        demo.cli("promote", SENSOR, "2", "--reason", "canary healthy")
        step.detail = f"canary share {share:.1%} of {sum(served.values())} requests; v2 promoted"

    with demo.step("Inject drifted traffic and let `tritonops drift` flag it") as step:
        shifted = sensor_frame(n_rows=2000, n_features=16, seed=0, sample_seed=9).frame
        shifted["f03"] = shifted["f03"] + 4 * shifted["f03"].std()
        with TritonClient(server.grpc_url, SENSOR, protocol="grpc", options=options) as client:
            client.predict(shifted)
        time.sleep(1.5)  # the backend flushes its drift counters every second
        report = demo.cli("drift", SENSOR, "--window", "load", "--json", check=False, env=local)
        drifted = sorted(json.loads(report.stdout)["drifted_features"])
        if "f03" not in drifted:
            raise StepFailed(f"drift should flag f03, it flagged {drifted}")
        demo.cli("drift", SENSOR, "--window", "load", check=False, env=local)
        step.detail = f"drifted features: {', '.join(drifted)}"

    with demo.step("A bad v3 (trained on a column callers don't send) trips `watch`, which rolls back") as step:
        rows = sensor_frame(n_rows=120, n_features=16, seed=0, sample_seed=5).frame.to_numpy(dtype=np.float32)
        with RawCallers(server, SENSOR, rows) as callers:
            time.sleep(1.0)
            demo.cli("promote", SENSOR, "3", "--reason", "new sensor column")
            watch = demo.cli(
                "watch",
                SENSOR,
                "--iterations",
                "15",
                "--interval",
                "1",
                "--exit-on-action",
                expect_code=10,
                env=local,
            )
            ok_during, failed_during = callers.snapshot()
            time.sleep(2.0)
            ok_end, failed_end = callers.snapshot()
        history = demo.cli("history", SENSOR, "--limit", "5")
        if "rollback" not in history.stdout or "watch" not in history.stdout:
            raise StepFailed("watch did not record an automatic rollback in the audit log")
        if failed_end != failed_during or ok_end <= ok_during:
            raise StepFailed(f"callers still fail after the rollback ({failed_end - failed_during} new failures)")
        step.detail = (
            f"callers under v3: {failed_during} failed; watch exit {watch.returncode}; "
            f"after rollback {ok_end - ok_during} ok, 0 failed"
        )

    with demo.step("Status and history; a viewer's promote is refused") as step:
        demo.cli("status", env={"TRITONOPS_TOKEN": viewer})
        refused = demo.cli("promote", SENSOR, "1", expect_code=11, env={"TRITONOPS_TOKEN": viewer})
        if "(role viewer) may not promote" not in refused.stderr:
            raise StepFailed("the viewer's promote was not refused for its role")
        history = demo.cli("history", SENSOR, "--limit", "10")
        if "demo-viewer" not in history.stdout or "refused" not in history.stdout:
            raise StepFailed("the audit log does not show the viewer's refused promote")
        step.detail = "viewer refused (exit 11), audited as demo-viewer"

    with demo.step("Manual rollback is one command") as step:
        started = time.monotonic()
        demo.cli("rollback", SENSOR, "--to", "1", "--reason", "demo: back to the random forest")
        step.detail = f"sensor back to v1 in {time.monotonic() - started:.1f} s"

    with demo.step("A short Locust load (gRPC + HTTP users) against the live version") as step:
        result = demo.run(
            "-m",
            "tritonops.loadtest.run",
            "--model",
            SENSOR,
            "--version",
            "1",
            "--grpc",
            server.grpc_url,
            "--http",
            server.http_url,
            "--protocol",
            "both",
            "--users",
            "8",
            "--duration",
            "5" if quick else "15",
            "--max-failures",
            "0",
        )
        totals = [line for line in result.stdout.splitlines() if "Aggregated" in line]
        if not totals:
            raise StepFailed("the Locust run printed no Aggregated row")
        cells = [cell.strip() for cell in totals[-1].strip("│ ").split("│")]
        step.detail = f"{cells[1]} requests, {cells[2]} failed, {cells[3]} req/s, p99 {cells[6]} ms"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/demo"), help="Where the demo writes (wiped).")
    parser.add_argument("--quick", action="store_true", help="Shorter traffic and load phases.")
    return parser.parse_args(argv)


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workspace = Workspace(args.workdir)
    demo = Demo(
        total_steps=TOTAL_STEPS,
        cli_env={
            "TRITONOPS_REPOSITORY": str(workspace.repository),
            "TRITONOPS_STATE": str(workspace.state),
            "TRITONOPS_ADMIN_TOKEN": workspace.token,
            "TRITONOPS_ACTOR": "demo",
        },
    )
    return run_demo(lambda d: main(d, workspace, args.quick), demo)


if __name__ == "__main__":
    sys.exit(cli())
