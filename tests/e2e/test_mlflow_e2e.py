"""End to end with a real MLflow tracking server (SQLite backend, local artifact root, its own virtualenv
``.venv-mlflow`` made by ``make setup``): an sklearn pipeline and a torch model are logged and registered, alias
``champion`` set; ``tritonops convert models:/churn@champion`` and ``tritonops mlflow sync churn`` serve it on the
real embedded Triton; moving the alias and syncing again promotes the new version with an audit event naming it;
a missing alias, an unreachable server and a flavor we can't convert each fail clearly and change nothing.
The tests of this module run in order and share one MLflow server, one Triton and one state.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as httpclient

from examples.train import train_mixed_pipeline, train_torch_mlp
from tritonops.contract.manifest import load_manifest
from tritonops.control_plane.state import StateStore
from tritonops.converters.errors import MlflowSourceError
from tritonops.serving.triton import ServerOptions, TritonServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
MLFLOW = ROOT / ".venv-mlflow" / "bin" / "mlflow"
TRITONOPS = str(Path(sys.executable).parent / "tritonops")


@dataclass
class Stack:
    tracking: str
    repository: Path
    state: Path
    triton: TritonServer
    env: dict[str, str]
    churn_frames: dict[int, pd.DataFrame]

    def cli(self, *args: str, expect: int = 0, env: dict[str, str] | None = None) -> str:
        done = subprocess.run([TRITONOPS, *args], env=env or self.env, capture_output=True, text=True, timeout=300)
        output = done.stdout + done.stderr
        assert done.returncode == expect, f"tritonops {' '.join(args)} exited {done.returncode}:\n{output}"
        return output

    def snapshot(self) -> tuple[list[str], object]:
        """What a failed command must not change: the repository's files and the desired state."""
        files = sorted(str(p.relative_to(self.repository)) for p in self.repository.rglob("*"))
        with StateStore.open(self.state) as store:
            state = store.model("churn")
        return files, state


def _start_mlflow(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    assert MLFLOW.is_file(), f"{MLFLOW} is missing: `make setup` creates .venv-mlflow"
    port = free_port()
    command = [
        str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    with (root / "mlflow.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, (root / "mlflow.log").read_text()[-3000:]
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except requests.RequestException:
            pass
        time.sleep(0.5)
    _stop(process)
    raise AssertionError("mlflow server not healthy in 180 s:\n" + (root / "mlflow.log").read_text()[-3000:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the server and the workers it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _log_churn(seed: int) -> tuple[str, pd.DataFrame]:
    import mlflow
    import mlflow.sklearn

    trained = train_mixed_pipeline(n_rows=300, seed=seed)
    with warnings.catch_warnings(), mlflow.start_run() as run:
        warnings.simplefilter("ignore")  # logging the fixtures only (MLflow's own hints about type inference)
        mlflow.sklearn.log_model(
            trained.model,
            name="model",
            input_example=trained.frame.head(40),
            registered_model_name="churn",
            skops_trusted_types=["numpy.dtype"],
        )
    return run.info.run_id, trained.frame


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # importing MLflow warns about its own type hints
        import mlflow
        import mlflow.pyfunc
        import mlflow.pytorch
        import mlflow.sklearn

    root = tmp_path_factory.mktemp("mlflow_e2e")
    process, tracking = _start_mlflow(root)
    mlflow.set_tracking_uri(tracking)
    repository = root / "repository"
    repository.mkdir()
    triton = TritonServer(ServerOptions(model_repository=repository, work_dir=root / "triton")).start()
    try:
        _, frame = _log_churn(seed=0)
        client = mlflow.MlflowClient(tracking)
        client.set_registered_model_alias("churn", "champion", "1")
        sensor = train_torch_mlp(n_rows=200, n_features=6, epochs=20)
        with warnings.catch_warnings(), mlflow.start_run():
            warnings.simplefilter("ignore")  # logging the fixtures only
            mlflow.pytorch.log_model(
                sensor.model, name="model", input_example=sensor.frame.to_numpy(np.float32)[:30],
                registered_model_name="sensor", serialization_format="pickle",  # pt2 (the default) is refused
            )  # fmt: skip

        with warnings.catch_warnings(), mlflow.start_run():
            warnings.simplefilter("ignore")  # logging the fixtures only (PythonModel infers its type hints)

            class Constant(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined,misc]
                def predict(self, context: object, model_input: pd.DataFrame) -> list[int]:
                    return [0] * len(model_input)

            mlflow.pyfunc.log_model(name="model", python_model=Constant(), registered_model_name="plain")
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "TRITONOPS_REPOSITORY": str(repository),
            "TRITONOPS_STATE": str(root / "state.db"),
            "TRITONOPS_ACTOR": "mlflow-e2e",
            "COLUMNS": "300",
        }
        for key in ("TRITONOPS_ADMIN_TOKEN", "TRITONOPS_ADMIN_TOKEN_FILE"):
            env.pop(key, None)
        yield Stack(tracking, repository, root / "state.db", triton, env, {1: frame})
    finally:
        triton.stop()
        _stop(process)


def _served_labels(stack: Stack, frame: pd.DataFrame, manifest_dir: Path) -> list[str]:
    manifest = load_manifest(manifest_dir)
    client = httpclient.InferenceServerClient(stack.triton.http_url)
    inputs = []
    for spec in manifest.inputs:
        block = frame[spec.features]
        array = block.to_numpy(np.float32) if spec.datatype == "FP32" else block.astype(str).to_numpy(object)
        tensor = httpclient.InferInput(spec.name, list(array.shape), spec.datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer("churn", inputs)
    return [v.decode() if isinstance(v, bytes) else str(v) for v in result.as_numpy("label").reshape(-1)]


def test_convert_from_the_registry_alias_records_where_it_came_from(stack: Stack) -> None:
    output = stack.cli("convert", "models:/churn@champion")
    assert "using the logged input_example (40 rows)" in output
    manifest = load_manifest(stack.repository / "churn" / "1")
    mlflow = manifest.source.mlflow
    assert mlflow is not None
    assert (mlflow.uri, mlflow.alias, mlflow.registered_model, mlflow.registered_version) == (
        "models:/churn@champion", "champion", "churn", 1,
    )  # fmt: skip
    assert mlflow.model_uri == "models:/churn/1" and mlflow.run_id and mlflow.sample_from == "input_example"
    assert mlflow.signature is not None and "inputs" in mlflow.signature
    assert "scikit-learn" in manifest.source.training_versions
    assert manifest.parity.passed and manifest.parity.rows == 40


def test_sync_promotes_the_alias_and_serves_it(stack: Stack) -> None:
    stack.cli("fleet", "add", stack.triton.grpc_url)
    output = stack.cli("mlflow", "sync", "churn", "--alias", "champion")
    assert "already converted as churn version 1" in output and "MLflow version 1" in output
    with StateStore.open(stack.state) as store:
        assert store.model("churn").live == 1  # type: ignore[union-attr]
        promoted = [e for e in store.audit("churn") if e.action == "promote" and e.result == "ok"]
    assert "mlflow sync models:/churn@champion -> MLflow version 1" in promoted[-1].reason
    assert "MLflow model 'churn' version 1" in promoted[-1].detail
    frame = stack.churn_frames[1].head(25)
    import mlflow.sklearn

    original = mlflow.sklearn.load_model("models:/churn/1")
    assert _served_labels(stack, frame, stack.repository / "churn" / "1") == [str(v) for v in original.predict(frame)]


def test_moving_the_alias_and_syncing_again_promotes_the_new_version(stack: Stack) -> None:
    import mlflow

    _, frame = _log_churn(seed=5)
    mlflow.MlflowClient(stack.tracking).set_registered_model_alias("churn", "champion", "2")
    output = stack.cli("mlflow", "sync", "churn", "--alias", "champion")
    assert "points to version 2" in output and "converted" in output
    manifest = load_manifest(stack.repository / "churn" / "2")
    assert manifest.source.mlflow is not None and manifest.source.mlflow.registered_version == 2
    with StateStore.open(stack.state) as store:
        assert store.model("churn").live == 2  # type: ignore[union-attr]
        promoted = [e for e in store.audit("churn") if e.action == "promote" and e.result == "ok"]
    assert "MLflow version 2" in promoted[-1].reason and (promoted[-1].from_version, promoted[-1].to_version) == (1, 2)
    assert "is live already" in stack.cli("mlflow", "sync", "churn", "--alias", "champion")
    import mlflow.sklearn

    original = mlflow.sklearn.load_model("models:/churn/2")
    rows = frame.head(25)
    assert _served_labels(stack, rows, stack.repository / "churn" / "2") == [str(v) for v in original.predict(rows)]


def test_a_torch_model_converts_from_the_registry(stack: Stack) -> None:
    stack.cli("convert", "models:/sensor/1", "--classes", "alpha,beta,gamma")
    manifest = load_manifest(stack.repository / "sensor" / "1")
    assert manifest.source.framework == "pytorch" and manifest.source.mlflow is not None
    assert manifest.source.mlflow.flavor == "pytorch" and manifest.source.mlflow.registered_version == 1
    assert manifest.source.training_versions.get("torch", "").startswith("2.")


def test_missing_alias_unreachable_server_and_foreign_flavor_fail_clearly_and_change_nothing(stack: Stack) -> None:
    before = stack.snapshot()
    code = MlflowSourceError.exit_code
    output = stack.cli("convert", "models:/churn@nope", expect=code)
    assert "alias 'nope' of model 'churn'" in output
    output = stack.cli("mlflow", "sync", "churn", "--alias", "nope", expect=code)
    assert "alias 'nope'" in output
    unreachable = {**stack.env, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    output = stack.cli("mlflow", "sync", "churn", "--alias", "champion", expect=code, env=unreachable)
    assert "unreachable" in output or "Connection" in output
    output = stack.cli("convert", "models:/plain/1", expect=code)
    assert "python_function" in output and "sklearn or pytorch flavor" in output
    assert "Traceback" not in output
    assert stack.snapshot() == before
    assert json.loads((stack.repository / "churn" / "2" / "manifest.json").read_text())["version"] == 2
