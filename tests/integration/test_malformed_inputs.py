"""What Triton 2.51 really answers to each kind of malformed request, and which counter (if any) sees it.

docs/contracts.md ("Malformed requests") lists the same table: change both together. Triton's frontend refuses
most kinds before our backend runs: those are in no statistic and no metric (checked here), so the guardrails can't
count them. Our backend's refusals are HTTP 400 / INVALID_ARGUMENT and ``tritonops_invalid_requests_total``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.grpc as grpcclient
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tritonclient.utils import InferenceServerException

from examples.train import train_numeric_pipeline
from tritonops.converters import ConversionOptions, convert_sklearn
from tritonops.converters.repository import publish_live
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import TritonServer

pytestmark = pytest.mark.integration

NUM, CAT = "mal_num", "mal_cat"
"""Four FP32 features in one ``input`` tensor, max batch 8; and ``amount`` (FP32) + ``plan`` (string, 2 known)."""

ROW = [0.1, 0.2, 0.3, 0.4]


def _body(data: object, shape: tuple[int, ...] = (1, 4), datatype: str = "FP32", name: str = "input") -> str:
    return json.dumps({"inputs": [{"name": name, "shape": list(shape), "datatype": datatype, "data": data}]})


def _category_body(plan: str) -> str:
    inputs = [
        {"name": "amount", "shape": [1, 1], "datatype": "FP32", "data": [50.0]},
        {"name": "plan", "shape": [1, 1], "datatype": "BYTES", "data": [plan]},
    ]
    return json.dumps({"inputs": inputs})


FRONTEND = "frontend"  # refused by Triton before our backend: counted nowhere
BACKEND = "backend"  # refused by our backend: tritonops_invalid_requests_total{reason}
# kind, model, raw body, HTTP status, the exact error text, who refused it (reason)
CASES: list[tuple[str, str, str, int, str, str]] = [
    ("truncated JSON", NUM, '{"inputs": [{"name": "input", "shape": [1,', 500,
     "failed to parse the request JSON buffer: Invalid value. at 42", FRONTEND),
    ("non-JSON body", NUM, "hello", 500, "failed to parse the request JSON buffer: Invalid value. at 0", FRONTEND),
    ("JSON null body", NUM, "null", 500,
     "Unable to parse 'inputs': attempt to access non-existing object member 'inputs'", FRONTEND),
    ("no inputs member", NUM, "{}", 500,
     "Unable to parse 'inputs': attempt to access non-existing object member 'inputs'", FRONTEND),
    ("null in data", NUM, _body([0.1, None, 0.3, 0.4]), 500,
     "Unable to parse 'data': attempt to access JSON non-number as double", FRONTEND),
    ('"NaN" as a string', NUM, _body([0.1, "NaN", 0.3, 0.4]), 500,
     "Unable to parse 'data': attempt to access JSON non-number as double", FRONTEND),
    ("string in an FP32 tensor", NUM, _body([1, "a", 3, 4]), 500,
     "Unable to parse 'data': attempt to access JSON non-number as double", FRONTEND),
    ("data length != shape", NUM, _body([1, 2, 3]), 500,
     "Unable to parse 'data': Shape does not match true shape of 'data' field", FRONTEND),
    ("wrong datatype", NUM, _body([1, 2, 3, 4], datatype="FP64"), 400,
     "[request id: <id_unknown>] inference input 'input' data-type is 'FP64', but model 'mal_num' expects 'FP32'",
     FRONTEND),
    ("wrong rank", NUM, _body([1, 2, 3, 4], shape=(4,)), 400,
     "[request id: <id_unknown>] unexpected shape for input 'input' for model 'mal_num'. Expected [-1,-1], got [4]. "
     "NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be prepended to each "
     "input shape. If you want to specify the full shape including the batch dim in your input dims config, try "
     "setting max_batch_size to zero. See the model configuration docs for more info on max_batch_size.", FRONTEND),
    ("missing input", NUM, '{"inputs": []}', 400,
     "[request id: <id_unknown>] expected 1 inputs but got 0 inputs for model 'mal_num'. Got input(s) [], but "
     "missing required input(s) ['input']. Please provide all required input(s).", FRONTEND),
    ("unknown input name", NUM, _body(ROW, name="inputs"), 400,
     "unexpected inference input 'inputs' for model 'mal_num'", FRONTEND),
    ("too many rows", NUM, _body([0.5] * 36, shape=(9, 4)), 400,
     "[request id: <id_unknown>] inference request batch-size must be <= 8 for 'mal_num'", FRONTEND),
    ("zero rows", NUM, _body([], shape=(0, 4)), 400,
     "[request id: <id_unknown>] input byte size mismatch for input 'input' for model 'mal_num'. Expected 16, got 0",
     FRONTEND),
    ("empty body", NUM, "", 400,
     "input 'input': expected 4 feature column(s) ['f00', 'f01', 'f02', 'f03'], got 0 [reason: feature_count]",
     BACKEND + ":feature_count"),
    ("wrong feature count", NUM, _body([1, 2, 3], shape=(1, 3)), 400,
     "input 'input': expected 4 feature column(s) ['f00', 'f01', 'f02', 'f03'], got 3 [reason: feature_count]",
     BACKEND + ":feature_count"),
    ("bare NaN token", NUM, _body(ROW).replace("0.2", "NaN"), 400,
     "input 'input': feature 'f01' is NaN at row 0; this model can't take missing values [reason: nan]",
     BACKEND + ":nan"),
    ("bare Infinity token", NUM, _body(ROW).replace("0.2", "Infinity"), 400,
     "input 'input': feature 'f01' is infinite at row 0; finite values only [reason: nan]", BACKEND + ":nan"),
    ("unknown category", CAT, _category_body("platinum"), 400,
     "input 'plan': feature 'plan' has unknown category 'platinum' at row 0; known: ['basic', 'pro'] "
     "[reason: unknown_category]", BACKEND + ":unknown_category"),
]  # fmt: skip


@pytest.fixture(scope="module")
def served(triton_server: TritonServer, triton_repository: Path) -> Iterator[None]:
    trained = train_numeric_pipeline(n_rows=150, n_features=4)
    serving = ServingOptions(max_batch_size=8, preferred_batch_sizes=(4,), drift_flush_seconds=0.1)
    options = ConversionOptions(native_export=False, serving=serving)
    # a linear model: it can't take NaN whatever the scikit-learn version (the converter would allow NaN into trees)
    linear = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=500))])
    linear.fit(trained.frame, trained.labels)
    convert_sklearn(linear, trained.frame, name=NUM, repository=triton_repository, options=options)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.normal(50, 10, 200), "plan": rng.choice(["basic", "pro"], 200)})
    encode = ColumnTransformer(
        [("num", StandardScaler(), ["amount"]), ("cat", OneHotEncoder(handle_unknown="error"), ["plan"])]
    )
    model = Pipeline([("encode", encode), ("classify", LogisticRegression())])
    model.fit(frame, np.where(frame["plan"] == "pro", "keep", "drop"))
    convert_sklearn(model, frame, name=CAT, repository=triton_repository, options=options)
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    for name in (NUM, CAT):
        publish_live(triton_repository, name, 1)
        client.load_model(name)
    yield
    for name in (NUM, CAT):
        client.unload_model(name)
    client.close()


def _counts(server: TritonServer, model: str) -> dict[str, float]:
    """Triton's statistics API (success, fail) and every metric sample of ``model`` that could count a refusal."""
    stats = requests.get(f"http://{server.http_url}/v2/models/{model}/stats", timeout=5).json()["model_stats"][0]
    counts = {
        "stats.success": stats["inference_stats"]["success"]["count"],
        "stats.fail": stats["inference_stats"]["fail"]["count"],
    }
    for line in requests.get(server.metrics_url, timeout=5).text.splitlines():
        if f'model="{model}"' in line and line.startswith(
            ("nv_inference_request_failure", "nv_inference_request_success", "tritonops_invalid_requests_total")
        ):
            name, value = line.rsplit(" ", 1)
            counts[name] = float(value)
    return counts


def _wait_for_counts(server: TritonServer, model: str, want: dict[str, float]) -> dict[str, float]:
    deadline = time.monotonic() + 10
    while True:
        now = _counts(server, model)
        if all(now.get(k) == v for k, v in want.items()) or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


@pytest.mark.parametrize(("kind", "model", "body", "status", "error", "refused_by"), CASES, ids=[c[0] for c in CASES])
def test_each_malformed_request_gets_what_the_docs_say(
    served: None,
    triton_server: TritonServer,
    kind: str,
    model: str,
    body: str,
    status: int,
    error: str,
    refused_by: str,
) -> None:
    url = f"http://{triton_server.http_url}/v2/models/{model}/infer"
    before = _counts(triton_server, model)
    reply = requests.post(url, data=body.encode(), headers={"Content-Type": "application/json"}, timeout=10)
    assert (reply.status_code, reply.json()) == (status, {"error": error})
    want = dict(before)
    if refused_by.startswith(BACKEND):
        reason = refused_by.split(":")[1]
        key = next(k for k in before if k.startswith("tritonops_invalid_requests_total") and f'"{reason}"' in k)
        success = next(k for k in before if k.startswith("nv_inference_request_success"))
        # our refusals are Triton "successes" (the backend answered), counted by reason in our own metric
        want.update({key: before[key] + 1, success: before[success] + 1, "stats.success": before["stats.success"] + 1})
    after = _wait_for_counts(triton_server, model, want)
    assert after == want  # a frontend refusal changes no statistic and no metric at all


def test_nan_over_grpc_and_the_good_requests(served: None, triton_server: TritonServer) -> None:
    """NaN travels as a binary FP32 over gRPC (and HTTP's binary extension); the backend refuses it by name."""
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    try:
        tensor = grpcclient.InferInput("input", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.array([[0.1, np.nan, 0.3, 0.4]], np.float32))
        with pytest.raises(InferenceServerException) as info:
            client.infer(NUM, [tensor])
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert info.value.message() == (
            "input 'input': feature 'f01' is NaN at row 0; this model can't take missing values [reason: nan]"
        )
    finally:
        client.close()
    good = requests.post(f"http://{triton_server.http_url}/v2/models/{NUM}/infer", data=_body(ROW), timeout=10)
    assert good.status_code == 200 and good.json()["model_version"] == "1"
    plan = requests.post(
        f"http://{triton_server.http_url}/v2/models/{CAT}/infer", data=_category_body("pro"), timeout=10
    )
    assert plan.status_code == 200 and plan.json()["outputs"][0]["data"] == ["keep"]
