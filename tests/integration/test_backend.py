"""The tritonops backend inside the real tritonserver: parity with in-process ONNX Runtime over HTTP and gRPC,
per-request validation inside one dynamic batch, a flood of malformed requests, drift counters, aliases loaded
from bytes, the response cache and the BLS runner used by the GPU deployment."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pandas as pd
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tritonclient.utils import InferenceServerException

from converters.manifest import (
    ConverterVersions,
    ExpectedOutputs,
    Feature,
    InputTensor,
    Manifest,
    OnnxInfo,
    ParityResult,
    ParityThresholds,
    PredictionMix,
    Reference,
    Source,
)
from converters.reference import assign_bins, bin_labels, categorical_reference, numeric_reference
from serving.model_config import (
    ServingOptions,
    TensorSpec,
    embedded_config,
    to_json,
    to_pbtxt,
    with_specific_versions,
)
from serving.triton import TritonServer

pytestmark = pytest.mark.integration

FLUSH = 0.1
RNG = np.random.default_rng(7)
CITIES = ["berlin", "paris", "rome", "oslo"]
PLANS = ["basic", "pro"]


# -- test models (skl2onnx + a manifest, the shape the converter writes) --------------------------------------
@dataclass
class Served:
    name: str
    manifest: Manifest
    onnx: bytes
    options: ServingOptions
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def session(self) -> ort.InferenceSession:
        return ort.InferenceSession(self.onnx, providers=["CPUExecutionProvider"])

    def config_json(self, name: str, options: ServingOptions | None = None) -> str:
        config = embedded_config(name, 1, self.inputs, self.outputs, options or self.options)
        return to_json(with_specific_versions(config, [1]))

    def files(self) -> dict[str, bytes]:
        return {"file:1/model.onnx": self.onnx, "file:1/manifest.json": self.manifest.to_json().encode()}


def _manifest(
    name: str, onnx: bytes, features: list[Feature], inputs: list[InputTensor], classes: list[int] | list[str]
) -> Manifest:
    """A manifest with reference bins computed from fresh training-like data."""
    reference = {}
    for feature in features:
        if feature.kind == "numeric":
            reference[feature.name] = numeric_reference(RNG.normal(0.0, 1.0, 500))
        else:
            reference[feature.name] = categorical_reference(RNG.choice(CITIES[:3], 500).tolist())
    class_dtype = "string" if isinstance(classes[0], str) else "int64"
    return Manifest(
        name=name,
        version=1,
        created_at=dt.datetime.now(dt.UTC),
        source=Source(
            framework="sklearn",
            framework_version="1.9.1",
            estimator="sklearn.pipeline.Pipeline",
            tritonops_version="0.1.0",
            converter=ConverterVersions(onnx="1.23.2", onnxruntime=ort.__version__),
        ),
        onnx=OnnxInfo(sha256=hashlib.sha256(onnx).hexdigest(), opset=17, ir_version=8),
        features=features,
        inputs=inputs,
        classes=classes,
        class_dtype=class_dtype,
        parity=ParityResult(
            passed=True,
            rows=10,
            label_agreement=1.0,
            max_abs_prob_diff=0.0,
            tie_rows=0,
            thresholds=ParityThresholds(),
            worst_rows=[],
        ),
        reference=Reference(
            rows=500,
            features=reference,
            predictions=PredictionMix(classes=classes, proportions=[1.0 / len(classes)] * len(classes)),
            sample={},
            expected=ExpectedOutputs(labels=[], probabilities=[]),
        ),
    )


def numeric_model(name: str) -> Served:
    """Four FP32 features in one ``input`` tensor, integer classes 0..2, NaN not allowed."""
    x = RNG.normal(0.0, 1.0, (300, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    model = LogisticRegression(max_iter=300).fit(x, y)
    onnx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(model): {"zipmap": False}},
        target_opset=17,
    ).SerializeToString()
    features = [
        Feature(name=f"x{i}", tensor="input", dtype="float", kind="numeric", column=i, allow_nan=False)
        for i in range(4)
    ]
    inputs = [InputTensor(name="input", datatype="FP32", features=[f.name for f in features])]
    return Served(
        name=name,
        manifest=_manifest(name, onnx, features, inputs, [0, 1, 2]),
        onnx=onnx,
        options=ServingOptions(
            instance_count=2, drift_flush_seconds=FLUSH, backend_checks_shapes=True, max_queue_delay_microseconds=100
        ),
        inputs=[TensorSpec("input", "FP32", (4,))],
        outputs=[TensorSpec("label", "INT64", (1,)), TensorSpec("probabilities", "FP32", (3,))],
    )


def mixed_model(name: str) -> Served:
    """Per-feature tensors: ``age`` (NaN allowed), ``income``, ``city`` (any string), ``plan`` (known only)."""
    n = 300
    frame = pd.DataFrame(
        {
            "age": RNG.normal(40, 10, n).astype(np.float32),
            "income": RNG.normal(0, 1, n).astype(np.float32),
            "city": RNG.choice(CITIES, n),
            "plan": RNG.choice(PLANS, n),
        }
    )
    frame.loc[::10, "age"] = np.nan
    target = np.where((frame["plan"] == "pro") ^ (frame["income"] > 0.3), "stay", "churn")
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        (
                            "num",
                            Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]),
                            ["age", "income"],
                        ),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=300)),
        ]
    ).fit(frame, target)
    onnx = convert_sklearn(
        pipeline,
        initial_types=[
            ("age", FloatTensorType([None, 1])),
            ("income", FloatTensorType([None, 1])),
            ("city", StringTensorType([None, 1])),
            ("plan", StringTensorType([None, 1])),
        ],
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
        target_opset=17,
    ).SerializeToString()
    features = [
        Feature(name="age", tensor="age", dtype="float", kind="numeric", column=0, allow_nan=True),
        Feature(name="income", tensor="income", dtype="float", kind="numeric", column=0, allow_nan=False),
        Feature(name="city", tensor="city", dtype="string", kind="categorical", column=0, allow_nan=False),
        Feature(
            name="plan", tensor="plan", dtype="string", kind="categorical", column=0, allow_nan=False, categories=PLANS
        ),
    ]
    inputs = [
        InputTensor(name=f.name, datatype="FP32" if f.dtype == "float" else "BYTES", features=[f.name])
        for f in features
    ]
    return Served(
        name=name,
        manifest=_manifest(name, onnx, features, inputs, ["churn", "stay"]),
        onnx=onnx,
        options=ServingOptions(instance_count=1, drift_flush_seconds=FLUSH),
        inputs=[TensorSpec(f.name, "FP32" if f.dtype == "float" else "BYTES", (1,)) for f in features],
        outputs=[TensorSpec("label", "BYTES", (1,)), TensorSpec("probabilities", "FP32", (2,))],
    )


def write_version(repository: Path, served: Served) -> None:
    version = repository / served.name / "1"
    version.mkdir(parents=True)
    (version / "model.onnx").write_bytes(served.onnx)
    (version / "manifest.json").write_text(served.manifest.to_json(), encoding="utf-8")
    config = embedded_config(served.name, 1, served.inputs, served.outputs, served.options)
    (repository / served.name / "config.pbtxt").write_text(to_pbtxt(config), encoding="utf-8")


def numeric_rows(n: int) -> npt.NDArray[np.float32]:
    return RNG.normal(0.0, 1.2, (n, 4)).astype(np.float32)


def mixed_rows(n: int) -> dict[str, npt.NDArray[np.generic]]:
    age = RNG.normal(40, 10, (n, 1)).astype(np.float32)
    age[::4] = np.nan
    return {
        "age": age,
        "income": RNG.normal(0, 1, (n, 1)).astype(np.float32),
        "city": RNG.choice([*CITIES, "atlantis"], (n, 1)).astype(object),
        "plan": RNG.choice(PLANS, (n, 1)).astype(object),
    }


# -- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(triton_server: TritonServer, triton_repository: Path) -> Iterator[dict[str, Served]]:
    served = {
        "numeric": numeric_model("bk_numeric"),
        "mixed": mixed_model("bk_mixed"),
    }
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    for model in served.values():
        write_version(triton_repository, model)
        client.load_model(model.name)
    yield served
    for model in served.values():
        unload(client, model.name)


@pytest.fixture(scope="module")
def grpc(triton_server: TritonServer) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(triton_server.grpc_url)


@pytest.fixture(scope="module")
def http(triton_server: TritonServer) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(triton_server.http_url, concurrency=8)


# -- helpers ---------------------------------------------------------------------------------------------
def _inputs(module: object, tensors: dict[str, npt.NDArray[np.generic]]) -> list[object]:
    inputs = []
    for name, array in tensors.items():
        datatype = "BYTES" if array.dtype == object else "FP32" if array.dtype == np.float32 else "FP64"
        tensor = module.InferInput(name, list(array.shape), datatype)  # type: ignore[attr-defined]
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def infer(client: object, model: str, tensors: dict[str, npt.NDArray[np.generic]]) -> tuple[np.ndarray, np.ndarray]:
    module = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    result = client.infer(model, _inputs(module, tensors))  # type: ignore[attr-defined]
    return result.as_numpy("label"), result.as_numpy("probabilities")


def metric_values(server: TritonServer, family: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample of ``family`` on /metrics, keyed by its label set."""
    values = {}
    for line in requests.get(server.metrics_url, timeout=5).text.splitlines():
        if not line.startswith(family + "{"):
            continue
        labels_text, value = line[len(family) + 1 :].rsplit("} ", 1)
        labels = frozenset(
            (key, raw.strip('"')) for key, raw in (pair.split("=", 1) for pair in labels_text.split('",'))
        )
        values[labels] = float(value)
    return values


def metric(server: TritonServer, family: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for k, v in metric_values(server, family).items() if wanted <= k)


def wait_for_metric(server: TritonServer, family: str, expected: float, **labels: str) -> float:
    """Poll until the flushed counter reaches ``expected`` (the backend flushes every FLUSH seconds)."""
    deadline = time.monotonic() + 10 * FLUSH + 5
    while True:
        value = metric(server, family, **labels)
        if value >= expected or time.monotonic() > deadline:
            return value
        time.sleep(FLUSH)


def unload(client: grpcclient.InferenceServerClient, model: str) -> None:
    """Unload and wait until it is gone (the Python stub takes ~2 s), so server readiness is not disturbed."""
    client.unload_model(model)
    deadline = time.monotonic() + 30
    while any(
        m["name"] == model and m.get("state") == "UNLOADING"
        for m in client.get_model_repository_index(as_json=True)["models"]
    ):
        assert time.monotonic() < deadline, f"{model} still unloading after 30 s"
        time.sleep(0.1)


def batch_executions(client: grpcclient.InferenceServerClient, model: str, expected_requests: int) -> dict[int, int]:
    """Executions per batch size; Triton records them just after the responses went out, so poll briefly."""
    deadline = time.monotonic() + 5
    while True:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
        batches = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}
        if sum(size * count for size, count in batches.items()) >= expected_requests or time.monotonic() > deadline:
            return batches
        time.sleep(0.05)


def expected_outputs(served: Served, tensors: dict[str, npt.NDArray[np.generic]]) -> tuple[np.ndarray, np.ndarray]:
    feed = {k: (v.astype(str).astype(object) if v.dtype == object else v) for k, v in tensors.items()}
    label, probabilities = served.session().run(["label", "probabilities"], feed)
    return np.asarray(label).reshape(-1, 1), np.asarray(probabilities)


def _as_text(labels: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in labels.reshape(-1)]


# -- tests -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["numeric", "mixed"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_answers_equal_in_process_onnxruntime(
    kind: str, protocol: str, models: dict[str, Served], http: object, grpc: object
) -> None:
    served = models[kind]
    tensors = {"input": numeric_rows(40)} if kind == "numeric" else mixed_rows(40)
    want_labels, want_probabilities = expected_outputs(served, tensors)
    client = http if protocol == "http" else grpc
    labels, probabilities = infer(client, served.name, tensors)
    assert labels.shape == (40, 1) and probabilities.shape == want_probabilities.shape
    assert _as_text(labels) == _as_text(want_labels)
    np.testing.assert_allclose(probabilities, want_probabilities, atol=1e-5, rtol=0)
    # single rows too, which the dynamic batcher may combine
    for row in range(3):
        one = {k: v[row : row + 1] for k, v in tensors.items()}
        labels, probabilities = infer(client, served.name, one)
        assert _as_text(labels) == _as_text(want_labels[row : row + 1])
        np.testing.assert_allclose(probabilities, want_probabilities[row : row + 1], atol=1e-5, rtol=0)


def test_plain_curl_style_json_works(models: dict[str, Served], triton_server: TritonServer) -> None:
    served = models["mixed"]
    body = {
        "inputs": [
            {"name": "age", "shape": [1, 1], "datatype": "FP32", "data": [33.0]},
            {"name": "income", "shape": [1, 1], "datatype": "FP32", "data": [1.5]},
            {"name": "city", "shape": [1, 1], "datatype": "BYTES", "data": ["paris"]},
            {"name": "plan", "shape": [1, 1], "datatype": "BYTES", "data": ["pro"]},
        ]
    }
    reply = requests.post(f"http://{triton_server.http_url}/v2/models/{served.name}/infer", json=body, timeout=5)
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    tensors = {
        "age": np.array([[33.0]], np.float32),
        "income": np.array([[1.5]], np.float32),
        "city": np.array([["paris"]], object),
        "plan": np.array([["pro"]], object),
    }
    want_labels, want_probabilities = expected_outputs(served, tensors)
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["data"] == _as_text(want_labels)
    np.testing.assert_allclose(outputs["probabilities"]["data"], want_probabilities[0], atol=1e-5)


def test_bad_requests_fail_alone_inside_one_dynamic_batch(triton_server: TritonServer, triton_repository: Path) -> None:
    served = numeric_model("bk_batch")
    # one instance, and a queue that holds requests until 8 are there: the 8 concurrent requests form one batch
    served.options = ServingOptions(
        instance_count=1, preferred_batch_sizes=(8,), max_queue_delay_microseconds=5_000_000, drift_flush_seconds=FLUSH
    )
    write_version(triton_repository, served)
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    client.load_model(served.name)
    try:
        rows = numeric_rows(8)
        bad = {1: np.nan, 4: np.inf, 6: np.nan}
        for index, value in bad.items():
            rows[index, 2] = value
        results: dict[int, object] = {}
        done = threading.Event()
        lock = threading.Lock()

        def callback(index: int, result: object, error: object) -> None:
            with lock:
                results[index] = error if error is not None else result
                if len(results) == 8:
                    done.set()

        for index in range(8):
            client.async_infer(
                served.name,
                _inputs(grpcclient, {"input": rows[index : index + 1]}),
                callback=lambda result, error, index=index: callback(index, result, error),
            )
        assert done.wait(30)
        want_labels, want_probabilities = expected_outputs(served, {"input": rows})
        for index in range(8):
            outcome = results[index]
            if index in bad:
                assert isinstance(outcome, InferenceServerException)
                assert "input 'input'" in outcome.message() and "x2" in outcome.message()
                assert "[reason: nan]" in outcome.message()
            else:
                assert not isinstance(outcome, InferenceServerException), outcome
                assert outcome.as_numpy("label").tolist() == want_labels[index : index + 1].tolist()
                np.testing.assert_allclose(
                    outcome.as_numpy("probabilities"), want_probabilities[index : index + 1], atol=1e-5
                )
        batches = batch_executions(client, served.name, expected_requests=8)
        assert batches == {8: 1}, f"expected a single execution of all 8 requests, got {batches}"
        assert (
            wait_for_metric(triton_server, "tritonops_invalid_requests_total", 3, model="bk_batch", reason="nan") == 3
        )
        assert wait_for_metric(triton_server, "tritonops_rows_total", 5, model="bk_batch") == 5
    finally:
        unload(client, served.name)


def test_a_thousand_malformed_requests_leave_the_server_ready(
    models: dict[str, Served], triton_server: TritonServer, grpc: grpcclient.InferenceServerClient
) -> None:
    served = models["numeric"]
    url = f"http://{triton_server.http_url}/v2/models/{served.name}/infer"
    before = {
        r: metric(triton_server, "tritonops_invalid_requests_total", model=served.name, reason=r)
        for r in ("nan", "feature_count")
    }
    good_body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}
    statuses: dict[str, set[int]] = {}
    sent = {"nan": 0, "feature_count": 0}
    session = requests.Session()
    for i in range(1000):
        kind = ("dtype", "feature_count", "nan", "inf", "garbage", "shape")[i % 6]
        if kind in ("nan", "inf"):  # JSON has no NaN: these go over gRPC as binary tensors
            rows = numeric_rows(2)
            rows[1, i % 4] = np.nan if kind == "nan" else -np.inf
            with pytest.raises(InferenceServerException, match=r"input 'input': feature 'x\d' is"):
                infer(grpc, served.name, {"input": rows})
            sent["nan"] += 1
            continue
        if kind == "dtype":
            body: object = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
        elif kind == "feature_count":
            body = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
            sent["feature_count"] += 1
        elif kind == "shape":
            body = {"inputs": [{"name": "input", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        else:
            body = None
        if body is None:
            reply = session.post(url, data=b'{"inputs": [{"name": "input", "shape": [1,', timeout=10)
        else:
            reply = session.post(url, json=body, timeout=10)
        statuses.setdefault(kind, set()).add(reply.status_code)
        assert "error" in reply.json()
    # huge payloads: a 10 MB tensor body whose data disagrees with its shape, and JSON nested 100,000 deep
    # (Triton 2.51's JSON parser overflows its stack near 500,000 levels and the server dies: docs/gpu.md)
    flat = b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[' + b"1," * 5_000_000 + b"1]}]}"
    for payload in (flat, b"[" * 100_000):
        statuses.setdefault("huge", set()).add(session.post(url, data=payload, timeout=60).status_code)
    wide = np.ones((1, 2_000_000), np.float32)
    with pytest.raises(InferenceServerException, match=r"expected 4 feature column\(s\).*got 2000000"):
        infer(grpc, served.name, {"input": wide})
    sent["feature_count"] += 1

    # Triton answers malformed JSON with 500 and a config mismatch with 400; the backend's refusals are 400
    assert statuses == {"dtype": {400}, "shape": {400}, "garbage": {500}, "feature_count": {400}, "huge": {500}}
    index = grpc.get_model_repository_index(as_json=True)
    assert requests.get(f"http://{triton_server.http_url}/v2/health/ready", timeout=5).status_code == 200, index
    assert grpc.is_model_ready(served.name)
    reply = session.post(url, json=good_body, timeout=5)
    assert reply.status_code == 200 and reply.json()["outputs"][0]["shape"] == [1, 1]
    for reason, count in sent.items():
        got = wait_for_metric(
            triton_server,
            "tritonops_invalid_requests_total",
            before[reason] + count,
            model=served.name,
            reason=reason,
        )
        assert got == before[reason] + count, reason


def test_drift_counters_equal_bins_of_the_sent_data(
    models: dict[str, Served], triton_server: TritonServer, grpc: object
) -> None:
    served = models["mixed"]
    labels_before = metric_values(triton_server, "tritonops_feature_bin_total")
    predictions_before = metric_values(triton_server, "tritonops_prediction_total")
    rows_before = metric(triton_server, "tritonops_rows_total", model=served.name)
    tensors = mixed_rows(120)
    labels, _ = infer(grpc, served.name, {k: v[:70] for k, v in tensors.items()})
    more, _ = infer(grpc, served.name, {k: v[70:] for k, v in tensors.items()})
    assert (
        wait_for_metric(triton_server, "tritonops_rows_total", rows_before + 120, model=served.name)
        == rows_before + 120
    )

    after = metric_values(triton_server, "tritonops_feature_bin_total")
    reference = served.manifest.reference.features
    for feature in served.manifest.features:
        counts = np.bincount(
            assign_bins(reference[feature.name], tensors[feature.tensor][:, 0]),
            minlength=len(bin_labels(reference[feature.name])),
        )
        for bin_label, count in zip(bin_labels(reference[feature.name]), counts.tolist(), strict=True):
            key = frozenset({("model", served.name), ("version", "1"), ("feature", feature.name), ("bin", bin_label)})
            assert after[key] - labels_before.get(key, 0.0) == count, (feature.name, bin_label)
    assert any(("bin", "__other__") in k and v > 0 for k, v in after.items()), "atlantis lands in __other__"
    assert any(("bin", "nan") in k and ("feature", "age") in k and v > 0 for k, v in after.items())

    predictions = metric_values(triton_server, "tritonops_prediction_total")
    sent_labels = _as_text(np.concatenate([labels, more]))
    for cls in served.manifest.classes:
        key = frozenset({("model", served.name), ("version", "1"), ("class", str(cls))})
        assert predictions[key] - predictions_before.get(key, 0.0) == sent_labels.count(str(cls))


def test_unknown_category_is_rejected_and_counted(
    models: dict[str, Served], triton_server: TritonServer, grpc: object
) -> None:
    served = models["mixed"]
    before = metric(triton_server, "tritonops_invalid_requests_total", model=served.name, reason="unknown_category")
    tensors = mixed_rows(3)
    tensors["plan"][2, 0] = "platinum"
    with pytest.raises(InferenceServerException, match="input 'plan': feature 'plan' has unknown category 'platinum'"):
        infer(grpc, served.name, tensors)
    got = wait_for_metric(
        triton_server, "tritonops_invalid_requests_total", before + 1, model=served.name, reason="unknown_category"
    )
    assert got == before + 1


def test_alias_loaded_from_bytes_serves_and_labels_metrics_by_manifest(
    models: dict[str, Served], triton_server: TritonServer, grpc: grpcclient.InferenceServerClient
) -> None:
    served = models["numeric"]
    alias = f"{served.name}__canary"
    grpc.load_model(alias, config=served.config_json(alias), files=served.files())
    try:
        rows = numeric_rows(5)
        rows_before = metric(triton_server, "tritonops_rows_total", model=served.name)
        labels, probabilities = infer(grpc, alias, {"input": rows})
        want_labels, want_probabilities = expected_outputs(served, {"input": rows})
        assert labels.tolist() == want_labels.tolist()
        np.testing.assert_allclose(probabilities, want_probabilities, atol=1e-5)
        assert (
            wait_for_metric(triton_server, "tritonops_rows_total", rows_before + 5, model=served.name)
            == rows_before + 5
        )
        assert metric(triton_server, "tritonops_rows_total", model=alias) == 0
    finally:
        unload(grpc, alias)


def test_response_cache_hits_for_repeated_inputs(
    models: dict[str, Served], triton_server: TritonServer, grpc: grpcclient.InferenceServerClient
) -> None:
    served = models["numeric"]
    alias = f"{served.name}__cached"
    options = ServingOptions(instance_count=1, response_cache=True, drift_flush_seconds=FLUSH)
    grpc.load_model(alias, config=served.config_json(alias, options), files=served.files())
    try:
        rows = numeric_rows(1)
        first = infer(grpc, alias, {"input": rows})
        for _ in range(4):
            again = infer(grpc, alias, {"input": rows})
            assert again[0].tolist() == first[0].tolist()
        assert metric(triton_server, "nv_cache_num_hits_per_model", model=alias) == 4
        assert metric(triton_server, "nv_cache_num_misses_per_model", model=alias) == 1
    finally:
        unload(grpc, alias)


def test_bls_runner_validates_and_counts_in_front_of_another_model(
    models: dict[str, Served], triton_server: TritonServer, grpc: grpcclient.InferenceServerClient
) -> None:
    """The GPU layout of docs/gpu.md with the native model played by a counter-less tritonops model."""
    served = models["numeric"]
    target, front = "bk_bls__onnxruntime", "bk_bls"
    quiet = ServingOptions(instance_count=1, extra_parameters={"tritonops.drift_counters": "false"})
    forward = ServingOptions(
        instance_count=1, drift_flush_seconds=FLUSH, extra_parameters={"tritonops.runner": f"bls:{target}"}
    )
    grpc.load_model(target, config=served.config_json(target, quiet), files=served.files())
    grpc.load_model(front, config=served.config_json(front, forward), files=served.files())
    try:
        rows_before = metric(triton_server, "tritonops_rows_total", model=served.name)
        nan_before = metric(triton_server, "tritonops_invalid_requests_total", model=served.name, reason="nan")
        rows = numeric_rows(6)
        labels, probabilities = infer(grpc, front, {"input": rows})
        want_labels, want_probabilities = expected_outputs(served, {"input": rows})
        assert labels.tolist() == want_labels.tolist()
        np.testing.assert_allclose(probabilities, want_probabilities, atol=1e-5)
        rows[0, 0] = np.nan
        with pytest.raises(InferenceServerException, match=r"\[reason: nan\]"):
            infer(grpc, front, {"input": rows})
        target_stats = grpc.get_inference_statistics(target, as_json=True)["model_stats"][0]
        assert int(target_stats["inference_count"]) == 6  # the bad request never reached the model
        assert (
            wait_for_metric(triton_server, "tritonops_rows_total", rows_before + 6, model=served.name)
            == rows_before + 6
        )
        assert (
            wait_for_metric(
                triton_server, "tritonops_invalid_requests_total", nan_before + 1, model=served.name, reason="nan"
            )
            == nan_before + 1
        )
    finally:
        unload(grpc, front)
        unload(grpc, target)
