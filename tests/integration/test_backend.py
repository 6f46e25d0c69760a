"""The tritonops backend inside the real tritonserver: parity with in-process ONNX Runtime over HTTP and gRPC
for every converter model kind, per-request validation inside one dynamic batch, a flood of malformed requests,
drift counters, aliases loaded from bytes, the response cache and the BLS runner of the GPU deployment."""

from __future__ import annotations

import json
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
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tritonclient.utils import InferenceServerException

from examples.train import train_mixed_pipeline, train_numeric_pipeline, train_torch_mlp
from tritonops.contract.bins import assign_bins, bin_labels
from tritonops.converters import ConversionOptions, Manifest, ModelVersion, convert_sklearn, convert_torch
from tritonops.converters.repository import publish_live
from tritonops.model_config import ServingOptions, read_pbtxt, to_json, with_specific_versions
from tritonops.serving.native import check_gpu_model, front_config, native_name
from tritonops.serving.triton import ServerOptions, TritonServer

pytestmark = pytest.mark.integration

FLUSH = 0.1
RNG = np.random.default_rng(7)
PLANS = ["basic", "pro"]


# -- models, converted the way users convert them ------------------------------------------------------------
@dataclass(frozen=True)
class Served:
    version: ModelVersion
    frame: pd.DataFrame
    """Rows in the training format; request rows are drawn from it."""

    @property
    def name(self) -> str:
        return self.version.name

    @property
    def manifest(self) -> Manifest:
        return self.version.manifest

    def session(self) -> ort.InferenceSession:
        return ort.InferenceSession(str(self.version.model_path), providers=["CPUExecutionProvider"])

    def rows(self, n: int) -> pd.DataFrame:
        return self.frame.sample(n, replace=True, random_state=int(RNG.integers(1 << 31)))

    def tensors(self, rows: pd.DataFrame) -> dict[str, npt.NDArray[np.generic]]:
        """Request tensors for ``rows``, laid out as the manifest says."""
        tensors: dict[str, npt.NDArray[np.generic]] = {}
        for spec in self.manifest.inputs:
            block = rows[spec.features]
            if spec.datatype == "FP32":
                tensors[spec.name] = block.to_numpy(dtype=np.float32, copy=True)
            else:
                tensors[spec.name] = block.astype(str).to_numpy(dtype=object, copy=True)
        return tensors

    def config_json(self, alias: str, **parameters: str) -> str:
        """The version's own config under another name, as the control plane sends it with ``load_model``."""
        config = read_pbtxt(self.version.config_path)
        config.name = alias
        config.instance_group[0].count = 1
        for key, value in parameters.items():
            config.parameters[key].string_value = value
        return to_json(with_specific_versions(config, [self.version.version]))

    def files(self) -> dict[str, bytes]:
        return {
            f"file:{self.version.version}/{name}": (self.version.path / name).read_bytes()
            for name in ("model.onnx", "manifest.json", "labels.txt")  # the config names labels.txt
        }


def _int_classes() -> tuple[LogisticRegression, pd.DataFrame]:
    """Plain arrays, integer classes 0..2: LABEL comes back as INT64."""
    x = RNG.normal(0.0, 1.0, (300, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    return LogisticRegression(max_iter=300).fit(x, y), pd.DataFrame(x)


def _strict_categories() -> tuple[Pipeline, pd.DataFrame]:
    """A one-hot encoder that refuses unknown plans: the manifest lists the categories, the backend enforces them."""
    frame = pd.DataFrame({"amount": RNG.normal(50, 10, 200), "plan": RNG.choice(PLANS, 200)})
    labels = np.where(frame["plan"] == "pro", "keep", "drop")
    encode = ColumnTransformer(
        [("num", StandardScaler(), ["amount"]), ("cat", OneHotEncoder(handle_unknown="error"), ["plan"])]
    )
    return Pipeline([("encode", encode), ("classify", LogisticRegression())]).fit(frame, labels), frame


def convert_models(repository: Path) -> dict[str, Served]:
    def options(native_export: bool = False, **serving: object) -> ConversionOptions:
        base = {"drift_flush_seconds": FLUSH, "max_queue_delay_microseconds": 100, **serving}
        return ConversionOptions(serving=ServingOptions(**base), parity_rows=300, native_export=native_export)  # type: ignore[arg-type]

    served: dict[str, Served] = {}
    model, frame = _int_classes()
    version = convert_sklearn(model, frame.to_numpy(), name="bk_int", repository=repository, options=options())
    served["int"] = Served(version, frame.set_axis(version.manifest.feature_names(), axis=1))
    for estimator in ("random_forest", "gradient_boosting"):
        trained = train_numeric_pipeline(estimator, n_rows=300, n_features=8)
        version = convert_sklearn(
            trained.model, trained.frame, name=f"bk_{estimator}", repository=repository, options=options()
        )
        served[estimator] = Served(version, trained.frame)
    trained = train_torch_mlp(n_rows=300, n_features=8, epochs=30)
    version = convert_torch(
        trained.model, trained.frame, classes=trained.classes, name="bk_mlp", repository=repository, options=options()
    )
    served["torch_mlp"] = Served(version, trained.frame)
    trained = train_mixed_pipeline(n_rows=300)
    version = convert_sklearn(
        trained.model, trained.frame, name="bk_churn", repository=repository, options=options(native_export=True)
    )
    served["churn"] = Served(version, trained.frame)
    model, frame = _strict_categories()
    version = convert_sklearn(model, frame, name="bk_strict", repository=repository, options=options())
    served["strict"] = Served(version, frame)
    return served


# -- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(triton_server: TritonServer, triton_repository: Path) -> Iterator[dict[str, Served]]:
    served = convert_models(triton_repository)
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    for model in served.values():
        publish_live(triton_repository, model.name, model.version.version)  # loaded from disk, as after a promote
        client.load_model(model.name)
    yield served
    unload(client, *(model.name for model in served.values()))


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


def unload(client: grpcclient.InferenceServerClient, *models: str) -> None:
    """Unload and wait until they are gone (a Python stub takes ~2 s), so server readiness is not disturbed."""
    for model in models:
        client.unload_model(model)
    deadline = time.monotonic() + 30
    while any(
        m["name"] in models and m.get("state") == "UNLOADING"
        for m in client.get_model_repository_index(as_json=True)["models"]
    ):
        assert time.monotonic() < deadline, f"{models} still unloading after 30 s"
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
KINDS = ["int", "random_forest", "gradient_boosting", "torch_mlp", "churn", "strict"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_answers_equal_in_process_onnxruntime(
    kind: str, protocol: str, models: dict[str, Served], http: object, grpc: object
) -> None:
    served = models[kind]
    tensors = served.tensors(served.rows(40))
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


@pytest.mark.parametrize("kind", ["int", "random_forest", "churn"])
def test_concurrent_single_rows_each_get_their_own_label(
    kind: str, models: dict[str, Served], grpc: grpcclient.InferenceServerClient
) -> None:
    """One-row answers reuse one label tensor per class: with 300 requests in flight at once, in mixed batches,
    every request still gets the label of its own row (integer and string classes), and batches really mixed."""
    served = models[kind]
    tensors = served.tensors(served.rows(300))
    want_labels, want_probabilities = expected_outputs(served, tensors)
    assert len(set(_as_text(want_labels))) >= 2, "the rows must span several classes"
    before = batch_executions(grpc, served.name, 0)
    answers: dict[int, tuple[object, object]] = {}
    done = threading.Semaphore(0)

    def collect(row: int) -> object:
        def callback(result: object, error: object) -> None:
            answers[row] = (result, error)
            done.release()

        return callback

    for row in range(300):
        one = {k: v[row : row + 1] for k, v in tensors.items()}
        grpc.async_infer(served.name, _inputs(grpcclient, one), callback=collect(row))
    for _ in range(300):
        assert done.acquire(timeout=30), f"{len(answers)} of 300 answered"
    for row, (result, error) in sorted(answers.items()):
        assert error is None, error
        assert _as_text(result.as_numpy("label")) == _as_text(want_labels[row : row + 1]), row  # type: ignore[attr-defined]
        np.testing.assert_allclose(result.as_numpy("probabilities"), want_probabilities[row : row + 1], atol=1e-5)  # type: ignore[attr-defined]
    after = batch_executions(grpc, served.name, sum(s * c for s, c in before.items()) + 300)
    assert any(size >= 2 and after[size] > before.get(size, 0) for size in after), after  # rows shared batches


def test_plain_curl_style_json_works(models: dict[str, Served], triton_server: TritonServer) -> None:
    served = models["churn"]
    tensors = served.tensors(served.rows(50).dropna().head(1))  # JSON has no NaN: a complete row
    body = {
        "inputs": [
            {
                "name": name,
                "shape": [1, 1],
                "datatype": "BYTES" if array.dtype == object else "FP32",
                "data": [str(array[0, 0]) if array.dtype == object else float(array[0, 0])],
            }
            for name, array in tensors.items()
        ]
    }
    reply = requests.post(f"http://{triton_server.http_url}/v2/models/{served.name}/infer", json=body, timeout=5)
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    want_labels, want_probabilities = expected_outputs(served, tensors)
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["data"] == _as_text(want_labels)
    np.testing.assert_allclose(outputs["probabilities"]["data"], want_probabilities[0], atol=1e-5)


def test_refusal_names_input_reason_and_the_clients_request_id(
    models: dict[str, Served], triton_server: TritonServer
) -> None:
    body = {
        "parameters": {"request_id": "order-42"},
        "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
    }
    url = f"http://{triton_server.http_url}/v2/models/{models['int'].name}/infer"
    reply = requests.post(url, json=body, timeout=5)
    assert reply.status_code == 400
    names = models["int"].manifest.feature_names()
    assert reply.json()["error"] == (
        f"input 'input': expected 4 feature column(s) {names}, got 3 [reason: feature_count] (request_id=order-42)"
    )


def test_bad_requests_fail_alone_inside_one_dynamic_batch(
    models: dict[str, Served], grpc: grpcclient.InferenceServerClient, triton_server: TritonServer
) -> None:
    served = models["int"]
    alias = "bk_int__batch"
    config = served.config_json(alias)
    # one instance, and a queue that holds requests until 8 are there: the 8 concurrent requests form one batch
    config = config.replace('"max_queue_delay_microseconds": "100"', '"max_queue_delay_microseconds": "5000000"')
    config = config.replace('"preferred_batch_size": [16, 64, 256]', '"preferred_batch_size": [8]')
    assert '"preferred_batch_size": [8]' in config and "5000000" in config
    grpc.load_model(alias, config=config, files=served.files())
    try:
        bad_before = metric(triton_server, "tritonops_invalid_requests_total", model=served.name, reason="nan")
        rows = served.tensors(served.rows(8))["input"]
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
            grpc.async_infer(
                alias,
                _inputs(grpcclient, {"input": rows[index : index + 1]}),
                callback=lambda result, error, index=index: callback(index, result, error),
            )
        assert done.wait(30)
        want_labels, want_probabilities = expected_outputs(served, {"input": rows})
        third_feature = served.manifest.features[2].name
        for index in range(8):
            outcome = results[index]
            if index in bad:
                assert isinstance(outcome, InferenceServerException)
                assert f"input 'input': feature '{third_feature}' is" in outcome.message()
                assert "[reason: nan]" in outcome.message()
            else:
                assert not isinstance(outcome, InferenceServerException), outcome
                assert outcome.as_numpy("label").tolist() == want_labels[index : index + 1].tolist()
                np.testing.assert_allclose(
                    outcome.as_numpy("probabilities"), want_probabilities[index : index + 1], atol=1e-5
                )
        batches = batch_executions(grpc, alias, expected_requests=8)
        assert batches == {8: 1}, f"expected a single execution of all 8 requests, got {batches}"
        got = wait_for_metric(
            triton_server, "tritonops_invalid_requests_total", bad_before + 3, model=served.name, reason="nan"
        )
        assert got == bad_before + 3
    finally:
        unload(grpc, alias)


def test_a_thousand_malformed_requests_leave_the_server_ready(
    models: dict[str, Served], triton_server: TritonServer, grpc: grpcclient.InferenceServerClient
) -> None:
    served = models["int"]
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
        kind = ("dtype", "feature_count", "nan", "inf", "garbage", "shape", "empty")[i % 7]
        if kind == "empty":  # Triton itself refuses a batch of 0 rows, before the backend
            with pytest.raises(InferenceServerException, match="input byte size mismatch for input 'input'"):
                infer(grpc, served.name, {"input": np.zeros((0, 4), np.float32)})
            continue
        if kind in ("nan", "inf"):  # JSON has no NaN: these go over gRPC as binary tensors
            rows = served.tensors(served.rows(2))["input"]
            rows[1, i % 4] = np.nan if kind == "nan" else -np.inf
            with pytest.raises(InferenceServerException, match=r"input 'input': feature '\w+' is"):
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
    # (Triton 2.51's JSON parser overflows its stack near 500,000 levels and the server dies)
    flat = b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[' + b"1," * 5_000_000 + b"1]}]}"
    for payload in (flat, b"[" * 100_000):
        statuses.setdefault("huge", set()).add(session.post(url, data=payload, timeout=60).status_code)
    wide = np.ones((1, 2_000_000), np.float32)
    with pytest.raises(InferenceServerException, match=r"expected 4 feature column\(s\).*got 2000000"):
        infer(grpc, served.name, {"input": wide})
    sent["feature_count"] += 1

    # Triton answers malformed JSON with 500 and a config mismatch with 400; the backend's refusals are 400
    assert statuses == {"dtype": {400}, "shape": {400}, "garbage": {500}, "feature_count": {400}, "huge": {500}}
    index = [m for m in grpc.get_model_repository_index(as_json=True)["models"] if m.get("state") != "READY"]
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
    served = models["churn"]
    labels_before = metric_values(triton_server, "tritonops_feature_bin_total")
    predictions_before = metric_values(triton_server, "tritonops_prediction_total")
    rows_before = metric(triton_server, "tritonops_rows_total", model=served.name)
    number, category = served.manifest.features[0].name, served.manifest.features[-1].name
    rows = served.rows(120)
    rows.iloc[::5, rows.columns.get_loc(number)] = np.nan  # missing numbers go to the nan bin
    rows.iloc[::7, rows.columns.get_loc(category)] = "satellite"  # unseen (the encoder ignores it): __other__
    tensors = served.tensors(rows)
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
    nan_bin = frozenset({("model", served.name), ("version", "1"), ("feature", number), ("bin", "nan")})
    other_bin = frozenset({("model", served.name), ("version", "1"), ("feature", category), ("bin", "__other__")})
    assert after[nan_bin] - labels_before.get(nan_bin, 0.0) == 24
    assert after[other_bin] - labels_before.get(other_bin, 0.0) == 18

    predictions = metric_values(triton_server, "tritonops_prediction_total")
    sent_labels = _as_text(np.concatenate([labels, more]))
    for cls in served.manifest.classes:
        key = frozenset({("model", served.name), ("version", "1"), ("class", str(cls))})
        assert predictions[key] - predictions_before.get(key, 0.0) == sent_labels.count(str(cls))


def test_drift_counters_off_keeps_validation_and_its_counts(
    models: dict[str, Served],
    triton_server: TritonServer,
    triton_repository: Path,
    grpc: grpcclient.InferenceServerClient,
) -> None:
    """``ServingOptions(drift_counters=False)``: answers as usual, exports no drift families, still refuses and
    counts invalid requests."""
    trained = train_numeric_pipeline(n_rows=200, n_features=4)
    quiet = ServingOptions(drift_counters=False, drift_flush_seconds=FLUSH)
    version = convert_sklearn(
        trained.model, trained.frame, name="bk_quiet", repository=triton_repository,
        options=ConversionOptions(serving=quiet),
    )  # fmt: skip
    served = Served(version, trained.frame)
    publish_live(triton_repository, served.name, version.version)
    grpc.load_model(served.name)
    try:
        tensors = served.tensors(served.rows(20))
        labels, _ = infer(grpc, served.name, tensors)
        assert _as_text(labels) == _as_text(expected_outputs(served, tensors)[0])
        bad = {name: array[:1].copy() for name, array in tensors.items()}
        bad["input"][0, 0] = np.inf  # refused by every model (a random forest takes NaN, as sklearn does)
        with pytest.raises(InferenceServerException, match="infinite"):
            infer(grpc, served.name, bad)
        assert (
            wait_for_metric(triton_server, "tritonops_invalid_requests_total", 1, model=served.name, reason="nan") == 1
        )
        infer(grpc, models["int"].name, models["int"].tensors(models["int"].rows(2)))  # a model with counters on
        time.sleep(3 * FLUSH)  # flushes went by: still no drift family for this model
        for family in ("tritonops_rows_total", "tritonops_feature_bin_total", "tritonops_prediction_total"):
            assert metric_values(triton_server, family), family  # the other models export it ...
            assert metric(triton_server, family, model=served.name) == 0, family  # ... this one does not
    finally:
        unload(grpc, served.name)


def test_unknown_category_is_rejected_and_counted(
    models: dict[str, Served], triton_server: TritonServer, grpc: object
) -> None:
    served = models["strict"]
    before = metric(triton_server, "tritonops_invalid_requests_total", model=served.name, reason="unknown_category")
    rows = served.rows(3)
    rows.iloc[2, rows.columns.get_loc("plan")] = "platinum"
    tensors = served.tensors(rows)
    with pytest.raises(InferenceServerException, match="input 'plan': feature 'plan' has unknown category 'platinum'"):
        infer(grpc, served.name, tensors)
    got = wait_for_metric(
        triton_server, "tritonops_invalid_requests_total", before + 1, model=served.name, reason="unknown_category"
    )
    assert got == before + 1


def test_alias_loaded_from_bytes_serves_and_labels_metrics_by_manifest(
    models: dict[str, Served], triton_server: TritonServer, grpc: grpcclient.InferenceServerClient
) -> None:
    served = models["int"]
    alias = f"{served.name}__canary"
    grpc.load_model(alias, config=served.config_json(alias), files=served.files())
    try:
        rows = served.tensors(served.rows(5))["input"]
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


def _cache_lookups(server: TritonServer, served: Served) -> tuple[float, float]:
    """(hits, misses) of the backend's response cache, labelled like every tritonops metric by manifest name."""
    labels = {"model": served.name, "version": str(served.version.version)}
    return metric(server, "tritonops_cache_hits_total", **labels), metric(
        server, "tritonops_cache_misses_total", **labels
    )


def _wait_for_lookups(server: TritonServer, served: Served, expected: tuple[float, float]) -> tuple[float, float]:
    deadline = time.monotonic() + 10 * FLUSH + 5
    while (found := _cache_lookups(server, served)) != expected and time.monotonic() < deadline:
        time.sleep(FLUSH)
    return found


def test_response_cache_answers_repeats_like_the_model_counts_lookups_and_stays_bounded(
    models: dict[str, Served], triton_server: TritonServer, grpc: grpcclient.InferenceServerClient
) -> None:
    """Our backend's cache (one instance, 2 entries): hits give the uncached answer, drift still sees every row."""
    served = models["int"]
    alias = f"{served.name}__cached"
    cached_config = served.config_json(alias, **{"tritonops.response_cache_entries": "2"})
    assert '"response_cache"' not in cached_config
    grpc.load_model(alias, config=cached_config, files=served.files())
    try:
        a, b, c = (served.tensors(served.rows(3)) for _ in range(3))
        hits, misses = _cache_lookups(triton_server, served)
        bins_before = metric_values(triton_server, "tritonops_feature_bin_total")
        predictions_before = metric_values(triton_server, "tritonops_prediction_total")
        rows_before = metric(triton_server, "tritonops_rows_total", model=served.name)

        first = infer(grpc, alias, a)
        want_labels, want_probabilities = expected_outputs(served, a)
        assert first[0].tolist() == want_labels.tolist()
        np.testing.assert_allclose(first[1], want_probabilities, atol=1e-5, rtol=0)
        for _ in range(4):
            again = infer(grpc, alias, a)
            assert again[0].tolist() == first[0].tolist()
            np.testing.assert_array_equal(again[1], first[1])
        assert _wait_for_lookups(triton_server, served, (hits + 4, misses + 1)) == (hits + 4, misses + 1)

        # cached answers are live inputs: the drift counters saw all 5 x 3 rows
        assert wait_for_metric(triton_server, "tritonops_rows_total", rows_before + 15, model=served.name) == (
            rows_before + 15
        )
        bins_after = metric_values(triton_server, "tritonops_feature_bin_total")
        reference = served.manifest.reference.features
        for feature in served.manifest.features:
            counts = np.bincount(
                assign_bins(reference[feature.name], a[feature.tensor][:, feature.column]),
                minlength=len(bin_labels(reference[feature.name])),
            )
            for bin_label, count in zip(bin_labels(reference[feature.name]), counts.tolist(), strict=True):
                key = frozenset(
                    {("model", served.name), ("version", "1"), ("feature", feature.name), ("bin", bin_label)}
                )
                assert bins_after.get(key, 0.0) - bins_before.get(key, 0.0) == 5 * count, (feature.name, bin_label)
        predictions_after = metric_values(triton_server, "tritonops_prediction_total")
        for cls in served.manifest.classes:
            key = frozenset({("model", served.name), ("version", "1"), ("class", str(cls))})
            sent = first[0].reshape(-1).tolist().count(cls)
            assert predictions_after.get(key, 0.0) - predictions_before.get(key, 0.0) == 5 * sent

        # bounded: b and c push a out of the 2 entries, so a runs again, then hits again
        infer(grpc, alias, b)
        infer(grpc, alias, c)
        rerun = infer(grpc, alias, a)
        assert rerun[0].tolist() == first[0].tolist()
        infer(grpc, alias, a)
        assert _wait_for_lookups(triton_server, served, (hits + 5, misses + 4)) == (hits + 5, misses + 4)
    finally:
        unload(grpc, alias)


def test_a_repeated_invalid_request_gets_its_error_every_time_with_the_cache_on(
    models: dict[str, Served], triton_server: TritonServer, grpc: grpcclient.InferenceServerClient
) -> None:
    """Triton 2.51's own response cache answered the 2nd and later copies with HTTP 200 and no outputs."""
    served = models["int"]
    alias = f"{served.name}__cachedbad"
    grpc.load_model(
        alias, config=served.config_json(alias, **{"tritonops.response_cache_entries": "16"}), files=served.files()
    )
    try:
        hits, misses = _cache_lookups(triton_server, served)
        invalid = metric(triton_server, "tritonops_invalid_requests_total", model=served.name, reason="nan")
        row = served.tensors(served.rows(1))["input"][0].tolist()
        bad = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [float("nan"), *row[1:]]}]}
        url = f"http://{triton_server.http_url}/v2/models/{alias}/infer"
        replies = [requests.post(url, data=json.dumps(bad), timeout=5) for _ in range(5)]
        feature = served.manifest.feature_names()[0]
        error = (
            f"input 'input': feature '{feature}' is NaN at row 0; this model can't take missing values [reason: nan]"
        )
        assert [(r.status_code, r.json()) for r in replies] == [(400, {"error": error})] * 5
        assert (
            wait_for_metric(
                triton_server, "tritonops_invalid_requests_total", invalid + 5, model=served.name, reason="nan"
            )
            == invalid + 5
        )
        # refused before any lookup: nothing was stored or counted as a hit, and good requests still answer
        good = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": row}]}
        answers = [requests.post(url, json=good, timeout=5) for _ in range(2)]
        assert [r.status_code for r in answers] == [200, 200]
        assert answers[0].json()["outputs"] and answers[1].json() == answers[0].json()
        assert _wait_for_lookups(triton_server, served, (hits + 1, misses + 1)) == (hits + 1, misses + 1)
    finally:
        unload(grpc, alias)


def test_native_export_parses_in_triton_up_to_the_missing_backend(
    models: dict[str, Served], triton_repository: Path, tmp_path: Path
) -> None:
    """This Triton has no onnxruntime backend: loading the native export gets past config parsing and
    validation and stops exactly at the backend lookup. A failed load stays UNAVAILABLE and turns a
    strict-readiness server unready for good, so this runs on a server of its own."""
    served = models["churn"]
    pair = check_gpu_model(triton_repository, served.name)  # publish_live (the fixture) wrote the native config too
    assert pair.versions == (1,)
    with TritonServer(ServerOptions(model_repository=triton_repository, work_dir=tmp_path)) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        with pytest.raises(InferenceServerException, match="unable to find backend library for backend 'onnxruntime'"):
            client.load_model(native_name(served.name))


def test_a_failing_model_answers_errors_and_the_server_stays_ready(
    models: dict[str, Served], triton_server: TritonServer, grpc: grpcclient.InferenceServerClient
) -> None:
    """A BLS target that is not loaded is a real model failure: every valid request gets the reason."""
    served = models["int"]
    grpc.load_model(
        "bk_orphan",
        config=served.config_json("bk_orphan", **{"tritonops.runner": "bls:bk_absent"}),
        files=served.files(),
    )
    try:
        with pytest.raises(InferenceServerException, match=r"the model failed on a batch of 1 request.*bk_absent"):
            infer(grpc, "bk_orphan", served.tensors(served.rows(2)))
        assert grpc.is_server_ready() and grpc.is_model_ready("bk_orphan")
        labels, _ = infer(grpc, served.name, served.tensors(served.rows(2)))
        assert labels.shape == (2, 1)
    finally:
        unload(grpc, "bk_orphan")


def test_gpu_front_validates_and_counts_before_forwarding_over_bls(
    models: dict[str, Served], triton_server: TritonServer, grpc: grpcclient.InferenceServerClient
) -> None:
    """The GPU layout of docs/gpu.md, with the native model played by a counter-less tritonops model."""
    served = models["churn"]
    front = "bk_gpu"
    embedded = read_pbtxt(served.version.config_path)
    embedded.name = front
    target = native_name(front)
    grpc.load_model(
        target, config=served.config_json(target, **{"tritonops.drift_counters": "false"}), files=served.files()
    )
    grpc.load_model(front, config=to_json(with_specific_versions(front_config(embedded), [1])), files=served.files())
    try:
        rows_before = metric(triton_server, "tritonops_rows_total", model=served.name)
        bad_before = metric(triton_server, "tritonops_invalid_requests_total", model=served.name, reason="dtype")
        tensors = served.tensors(served.rows(6))
        labels, probabilities = infer(grpc, front, tensors)
        want_labels, want_probabilities = expected_outputs(served, tensors)
        assert _as_text(labels) == _as_text(want_labels)
        np.testing.assert_allclose(probabilities, want_probabilities, atol=1e-5)
        text = next(spec.name for spec in served.manifest.inputs if spec.datatype == "BYTES")
        tensors[text][0, 0] = b"\xff\xfe"
        with pytest.raises(InferenceServerException, match=r"not valid UTF-8 text .*\[reason: dtype\]"):
            infer(grpc, front, tensors)
        target_stats = grpc.get_inference_statistics(target, as_json=True)["model_stats"][0]
        assert int(target_stats["inference_count"]) == 6  # the bad request never reached the model
        assert (
            wait_for_metric(triton_server, "tritonops_rows_total", rows_before + 6, model=served.name)
            == rows_before + 6
        )
        assert (
            wait_for_metric(
                triton_server, "tritonops_invalid_requests_total", bad_before + 1, model=served.name, reason="dtype"
            )
            == bad_before + 1
        )
    finally:
        unload(grpc, front, target)
