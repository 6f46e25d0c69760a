"""`tritonops convert` / `tritonops models` as a user runs them (real subprocesses), then the converted versions
served by the real tritonserver: answers equal the original models', labels file used by Triton's classification."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io
import torch
import tritonclient.http as httpclient

from examples.train import Trained, train_mixed_pipeline, train_numeric_pipeline, train_torch_mlp
from tests.cli_json import check_json_output
from tritonops.converters import Manifest, load_manifest
from tritonops.converters.repository import publish_live
from tritonops.errors import ExitCode
from tritonops.model_config import read_pbtxt
from tritonops.serving.triton import TritonServer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Files:
    churn_model: Path
    churn_sample: Path
    sensor_model: Path
    sensor_sample: Path
    torchscript: Path
    state_dict: Path
    churn: Trained
    sensor: Trained
    mlp: Trained


def tritonops(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tritonops.control_plane.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("user_files")
    churn = train_mixed_pipeline(n_rows=400)
    joblib.dump(churn.model, root / "churn.joblib")
    churn.frame.assign(label=churn.labels).to_csv(root / "churn.csv", index=False)
    sensor = train_numeric_pipeline("gradient_boosting", n_rows=300, n_features=8)
    skops.io.dump(sensor.model, root / "sensor.skops")
    sensor.frame.to_parquet(root / "sensor.parquet")
    mlp = train_torch_mlp(n_rows=300, n_features=16, epochs=40)
    with warnings.catch_warnings():  # users still ship TorchScript files; making one is deprecated in torch
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(mlp.model), root / "mlp.pt")
    torch.save(mlp.model.state_dict(), root / "mlp_state.pth")
    mlp.frame.to_csv(root / "mlp.csv", index=False)
    return Files(
        root / "churn.joblib",
        root / "churn.csv",
        root / "sensor.skops",
        root / "sensor.parquet",
        root / "mlp.pt",
        root / "mlp_state.pth",
        churn,
        sensor,
        mlp,
    )


@pytest.fixture(scope="module")
def client(triton_server: TritonServer) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(triton_server.http_url)


def _infer(
    client: httpclient.InferenceServerClient, manifest: Manifest, rows: pd.DataFrame
) -> tuple[list[object], np.ndarray, list[str]]:
    """Labels, probabilities and Triton's top-1 classification strings for ``rows``."""
    inputs = []
    for spec in manifest.inputs:
        block = rows[spec.features]
        if spec.datatype == "FP32":
            data = block.to_numpy(dtype=np.float32, copy=True)
        else:
            data = block.astype(str).to_numpy(dtype=object)
        tensor = httpclient.InferInput(spec.name, list(data.shape), spec.datatype)
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    outputs = [
        httpclient.InferRequestedOutput("label"),
        httpclient.InferRequestedOutput("probabilities"),
    ]
    result = client.infer(manifest.name, inputs, outputs=outputs)
    top_one = [httpclient.InferRequestedOutput("probabilities", class_count=1)]
    top = client.infer(manifest.name, inputs, outputs=top_one)
    labels = [v.decode() if isinstance(v, bytes) else int(v) for v in result.as_numpy("label").reshape(-1)]
    tops = [v.decode() for v in top.as_numpy("probabilities").reshape(-1)]
    return labels, result.as_numpy("probabilities"), tops


def test_convert_joblib_mixed_pipeline_and_serve_it(
    files: Files, triton_repository: Path, client: httpclient.InferenceServerClient
) -> None:
    done = tritonops(
        "convert", files.churn_model, "--name", "cli_churn", "--sample", files.churn_sample,
        "--label-column", "label", "--repository", triton_repository, "--cache", "--instances", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "converted cli_churn version 1" in done.stdout
    assert "label agreement 1.0000" in done.stdout
    assert "> checking parity" in done.stdout
    manifest = load_manifest(triton_repository / "cli_churn" / "1")
    assert manifest.parity.rows == 400
    config = read_pbtxt(triton_repository / "cli_churn" / "config.pbtxt")  # --cache: the backend's, not Triton's
    assert not config.HasField("response_cache")
    assert config.parameters["tritonops.response_cache_entries"].string_value == "4096"
    publish_live(triton_repository, "cli_churn", 1)  # loaded from disk, as after a promote
    client.load_model("cli_churn")
    rows = files.churn.frame.sample(25, random_state=3)
    labels, probabilities, tops = _infer(client, manifest, rows)
    model = files.churn.model
    assert labels == model.predict(rows).tolist()
    np.testing.assert_allclose(probabilities, model.predict_proba(rows), atol=1e-4)
    # Triton's classification extension reads <v>/labels.txt: "<probability>:<index>:<class name>"
    assert [t.split(":")[2] for t in tops] == labels


def test_convert_skops_numeric_pipeline_and_serve_it(
    files: Files, triton_repository: Path, client: httpclient.InferenceServerClient
) -> None:
    done = tritonops(
        "convert", files.sensor_model, "--name", "cli_sensor", "--sample", files.sensor_sample,
        "--repository", triton_repository, "--instances", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = load_manifest(triton_repository / "cli_sensor" / "1")
    assert manifest.source.estimator.endswith("GradientBoostingClassifier")
    publish_live(triton_repository, "cli_sensor", 1)
    client.load_model("cli_sensor")
    rows = files.sensor.frame.sample(20, random_state=4)
    labels, probabilities, _ = _infer(client, manifest, rows)
    assert labels == files.sensor.model.predict(rows.astype(np.float32).astype(np.float64)).tolist()
    np.testing.assert_allclose(
        probabilities, files.sensor.model.predict_proba(rows.astype(np.float32).astype(np.float64)), atol=1e-4
    )


def test_convert_torchscript_and_state_dict(
    files: Files, triton_repository: Path, client: httpclient.InferenceServerClient
) -> None:
    scripted = tritonops(
        "convert", files.torchscript, "--name", "cli_mlp", "--sample", files.churn_sample.parent / "mlp.csv",
        "--classes", "alpha,beta,gamma", "--repository", triton_repository, "--instances", "1",
    )  # fmt: skip
    assert scripted.returncode == 0, scripted.stderr
    from_state = tritonops(
        "convert", files.state_dict, "--name", "cli_mlp", "--sample", files.churn_sample.parent / "mlp.csv",
        "--classes", "alpha,beta,gamma", "--torch-factory", "examples.train:make_sensor_mlp", "--input-dim", "16",
        "--repository", triton_repository, "--instances", "1",
    )  # fmt: skip
    assert from_state.returncode == 0, from_state.stderr
    assert "converted cli_mlp version 2" in from_state.stdout
    first, second = (load_manifest(triton_repository / "cli_mlp" / str(v)) for v in (1, 2))
    assert first.reference.expected == second.reference.expected  # same weights, same answers
    publish_live(triton_repository, "cli_mlp", 2)
    client.load_model("cli_mlp")
    rows = files.mlp.frame.sample(16, random_state=5)
    labels, probabilities, tops = _infer(client, second, rows)
    with torch.no_grad():
        expected = torch.softmax(files.mlp.model(torch.tensor(rows.to_numpy(dtype=np.float32))), dim=1).numpy()
    assert labels == [files.mlp.classes[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert [t.split(":")[2] for t in tops] == labels


def test_models_list_and_show(files: Files, triton_repository: Path) -> None:
    listed = tritonops("models", "list", "--repository", triton_repository)
    assert listed.returncode == 0, listed.stderr
    for name in ("cli_churn", "cli_sensor", "cli_mlp"):
        assert name in listed.stdout
    assert "1, 2" in listed.stdout  # cli_mlp's versions
    listed_json = check_json_output(
        "models list", tritonops("models", "list", "--json", "-r", triton_repository).stdout
    )
    models = {m["name"]: m for m in listed_json["models"]}
    assert models["cli_mlp"]["versions"] == [1, 2] and models["cli_mlp"]["latest"] == 2
    assert models["cli_churn"]["framework"] == "sklearn" and models["cli_churn"]["classes"]
    shown = tritonops("models", "show", "cli_churn", "--repository", triton_repository)
    assert shown.returncode == 0, shown.stderr
    assert "contract" in shown.stdout and "categories + other" in shown.stdout
    as_json = tritonops("models", "show", "cli_mlp", "--version", "1", "--json", "--repository", triton_repository)
    assert as_json.returncode == 0, as_json.stderr
    assert Manifest.model_validate(check_json_output("models show", as_json.stdout)).version == 1


def test_cli_errors_are_one_line_and_leave_the_repository_alone(files: Files, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    repository.mkdir()
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"this is not a pickle")
    done = tritonops("convert", broken, "--name", "x", "--sample", files.churn_sample, "--repository", repository)
    assert done.returncode == ExitCode.CONVERSION
    assert "cannot load model file" in done.stderr and "broken.pkl" in done.stderr
    strict = tritonops(
        "convert", files.churn_model, "--name", "x", "--sample", files.churn_sample, "--label-column", "label",
        "--max-prob-diff", "0", "--repository", repository,
    )  # fmt: skip
    assert strict.returncode == ExitCode.CONVERSION
    assert "parity check failed" in strict.stderr and "Worst rows:" in strict.stderr
    missing = tritonops("convert", files.torchscript, "--name", "x", "--sample", files.churn_sample, "-r", repository)
    assert missing.returncode == ExitCode.CONVERSION and "PyTorch models need --classes" in missing.stderr
    unknown = tritonops("models", "show", "ghost", "--repository", repository)
    assert unknown.returncode == ExitCode.CONVERSION and "has no versions" in unknown.stderr
    assert list(repository.iterdir()) == []
