"""The clients SDK against the real tritonserver running our backend: both protocols, sync and asyncio.

Models are converted with the real converter into the session repository and loaded through Triton's own
gRPC admin API; the canary split is published on the live model's config exactly as docs/contracts.md says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
from sklearn.linear_model import LogisticRegression

from examples.data import sensor_frame
from examples.train import Trained, train_mixed_pipeline, train_numeric_pipeline
from tritonops.clients import (
    AsyncTritonClient,
    ClientOptions,
    InferenceError,
    MissingFeatureError,
    Prediction,
    RetryPolicy,
    ServerUnavailableError,
    TritonClient,
)
from tritonops.control_plane.desired import canary_config, canary_files, live_config
from tritonops.control_plane.feedback import FeedbackStore
from tritonops.control_plane.state import ModelState
from tritonops.converters import load_manifest
from tritonops.converters.convert import convert_sklearn
from tritonops.errors import ConfigurationError
from tritonops.model_config import read_pbtxt, to_json, with_specific_versions
from tritonops.serving.triton import TritonServer, free_port

pytestmark = pytest.mark.integration

SENSOR, CHURN, CODES = "sdk_sensor", "sdk_churn", "sdk_codes"
CANARY = f"{SENSOR}__canary"
MODES = [("grpc", False), ("http", False), ("grpc", True), ("http", True)]
MODE_IDS = ["grpc-sync", "http-sync", "grpc-async", "http-async"]


@dataclass(frozen=True)
class Served:
    server: TritonServer
    repository: Path
    sensor: tuple[Trained, Trained]
    churn: Trained
    codes: Trained

    def url(self, protocol: str) -> str:
        return self.server.grpc_url if protocol == "grpc" else self.server.http_url


def _load_version(
    admin: grpcclient.InferenceServerClient,
    repository: Path,
    model: str,
    version: int,
    name: str | None = None,
    parameters: dict[str, str] | None = None,
) -> None:
    """Load ``model`` ``version`` under ``name`` (from bytes when it is an alias), like the control plane does."""
    root = repository / model / str(version)
    config = with_specific_versions(read_pbtxt(root / "config.pbtxt"), [version])
    config.name = name or model
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = value
    files = None
    if config.name != model:
        files = {f"file:{version}/{p.name}": p.read_bytes() for p in root.iterdir() if p.name != "config.pbtxt"}
    admin.load_model(config.name, config=to_json(config), files=files)


def _set_weight(served: Served, weight: float) -> None:
    """The live model's config with the split, as ``tritonops canary`` loads it (``fleet.live_config``)."""
    with grpcclient.InferenceServerClient(served.server.grpc_url) as admin:
        admin.load_model(SENSOR, config=to_json(live_config(served.repository, ModelState(SENSOR, 1, 2, weight))))


@pytest.fixture(scope="module")
def served(triton_server: TritonServer, triton_repository: Path) -> Iterator[Served]:
    sensor_v1 = train_numeric_pipeline(n_features=8, n_rows=300, seed=0)
    sensor_v2 = train_numeric_pipeline(n_features=8, n_rows=300, seed=1)
    churn = train_mixed_pipeline(n_rows=400)
    data = sensor_frame(n_rows=300, n_features=6, seed=3)
    codes_labels = data.labels.map({"alpha": 10, "beta": 20, "gamma": 30}).astype(np.int64)
    codes = Trained(
        LogisticRegression(max_iter=5000).fit(data.frame, codes_labels), data.frame, codes_labels, [10, 20, 30]
    )
    for model, name in ((sensor_v1, SENSOR), (sensor_v2, SENSOR), (churn, CHURN), (codes, CODES)):
        convert_sklearn(model.model, model.frame, name=name, repository=triton_repository)
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as admin:
        _load_version(admin, triton_repository, CHURN, 1)
        _load_version(admin, triton_repository, CODES, 1)
        admin.load_model(
            CANARY,
            config=to_json(canary_config(triton_repository, SENSOR, 2)),
            files=canary_files(triton_repository, SENSOR, 2),
        )
        _load_version(admin, triton_repository, SENSOR, 1)
        yield Served(triton_server, triton_repository, (sensor_v1, sensor_v2), churn, codes)
        for name in (CHURN, CODES, SENSOR, CANARY):
            admin.unload_model(name)


def _predict(
    served: Served,
    protocol: str,
    is_async: bool,
    model: str,
    data: Any,
    options: ClientOptions | None = None,
    **kwargs: Any,
) -> Prediction:
    url = served.url(protocol)
    if not is_async:
        with TritonClient(url, model, protocol=protocol, options=options) as client:  # type: ignore[arg-type]
            return client.predict(data, **kwargs)

    async def run() -> Prediction:
        async with AsyncTritonClient(url, model, protocol=protocol, options=options) as client:  # type: ignore[arg-type]
            return await client.predict(data, **kwargs)

    return asyncio.run(run())


def _success_counts(served: Served, model: str) -> tuple[int, int]:
    """(successful requests, rows inferred) Triton counted for ``model``, all versions."""
    with grpcclient.InferenceServerClient(served.server.grpc_url) as client:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"]
    requests_ = sum(int(s["inference_stats"]["success"].get("count", 0)) for s in stats)
    rows = sum(int(s.get("inference_count", 0)) for s in stats)
    return requests_, rows


def _settled_counts(served: Served, model: str, wanted_requests: int) -> tuple[int, int]:
    """``_success_counts`` once Triton has counted ``wanted_requests`` (it updates statistics just after replying)."""
    deadline = time.monotonic() + 3.0
    counts = _success_counts(served, model)
    while counts[0] < wanted_requests and time.monotonic() < deadline:
        time.sleep(0.05)
        counts = _success_counts(served, model)
    return counts


@pytest.mark.parametrize(("protocol", "is_async"), MODES, ids=MODE_IDS)
def test_shuffled_columns_and_string_labels_match_sklearn(served: Served, protocol: str, is_async: bool) -> None:
    rows = served.churn.frame.iloc[:40]
    shuffled = rows[list(reversed(rows.columns))].assign(unused=1.0)
    shuffled.index = pd.RangeIndex(100, 140)
    prediction = _predict(served, protocol, is_async, CHURN, shuffled)
    expected = served.churn.model.predict(rows)
    assert prediction.classes == ("churn", "stay")
    assert prediction.labels.tolist() == expected.tolist()
    np.testing.assert_allclose(prediction.probabilities, served.churn.model.predict_proba(rows), atol=1e-4)
    frame = prediction.to_frame()
    assert list(frame.columns) == ["label", "churn", "stay"] and list(frame.index) == list(range(100, 140))
    assert (prediction.model, prediction.version) == (CHURN, "1")


@pytest.mark.parametrize(("protocol", "is_async"), MODES, ids=MODE_IDS)
def test_missing_column_is_a_clear_error(served: Served, protocol: str, is_async: bool) -> None:
    rows = served.churn.frame.iloc[:3].drop(columns=["contract"])
    with pytest.raises(MissingFeatureError, match=r"missing column\(s\) \['contract'\]") as caught:
        _predict(served, protocol, is_async, CHURN, rows)
    assert "tenure_months" in caught.value.expected


@pytest.mark.parametrize(("protocol", "is_async"), MODES, ids=MODE_IDS)
def test_server_that_is_down_fails_after_the_deadline(protocol: str, is_async: bool) -> None:
    url = f"127.0.0.1:{free_port()}"
    options = ClientOptions(deadline=1.0, retry=RetryPolicy(max_attempts=50, initial_backoff=0.05, max_backoff=0.2))
    client_kind = AsyncTritonClient if is_async else TritonClient
    started = time.monotonic()
    with pytest.raises(ServerUnavailableError, match=rf"Triton at {url} gave no answer: \d+ attempt") as caught:
        if is_async:

            async def run() -> None:
                async with client_kind(url, SENSOR, protocol=protocol, options=options) as client:  # type: ignore[arg-type]
                    await client.predict([[0.0] * 8])

            asyncio.run(run())
        else:
            with client_kind(url, SENSOR, protocol=protocol, options=options) as client:  # type: ignore[arg-type]
                client.predict([[0.0] * 8])
    elapsed = time.monotonic() - started
    assert caught.value.attempts > 1, "a refused connection is retryable: it should have been retried"
    assert 0.5 <= elapsed <= 2.5, f"expected to give up near the 1 s deadline, took {elapsed:.2f} s"


def test_integer_labels_keep_their_values(served: Served) -> None:
    rows = served.codes.frame.iloc[:25]
    prediction = _predict(served, "grpc", False, CODES, rows.to_numpy())
    assert prediction.classes == (10, 20, 30)
    assert prediction.labels.dtype == np.int64
    assert prediction.labels.tolist() == served.codes.model.predict(rows).tolist()


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_large_input_is_split_into_requests(served: Served, is_async: bool) -> None:
    rows = pd.concat([served.churn.frame] * 2, ignore_index=True).iloc[:700]
    before = _success_counts(served, CHURN)
    prediction = _predict(served, "grpc", is_async, CHURN, rows, ClientOptions(rows_per_request=128))
    after = _settled_counts(served, CHURN, before[0] + 6)
    assert (after[0] - before[0], after[1] - before[1]) == (6, 700)  # ceil(700 / 128) requests, every row once
    assert prediction.labels.tolist() == served.churn.model.predict(rows).tolist()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_rejected_input_is_not_retried(served: Served, protocol: str) -> None:
    manifest = load_manifest(served.repository / CODES / "1")
    strict = next(f.name for f in manifest.features if not f.allow_nan)
    row = served.codes.frame.iloc[:1].assign(**{strict: np.nan})
    options = ClientOptions(retry=RetryPolicy(max_attempts=5))
    client = TritonClient(served.url(protocol), CODES, protocol=protocol, options=options)  # type: ignore[arg-type]
    with client, pytest.raises(InferenceError, match=strict) as caught:
        client.predict(row)
    assert (caught.value.model, caught.value.attempts) == (CODES, 1)


def test_canary_split_accuracy_and_sticky_keys(served: Served) -> None:
    """The server splits (the SDK sends everything to the live model); each prediction says who answered."""
    _set_weight(served, 0.2)
    rows = served.sensor[0].frame.iloc[:1].to_numpy()
    live_before = _success_counts(served, SENSOR)[0]
    options = ClientOptions(refresh_interval=0.2)
    with TritonClient(served.server.grpc_url, SENSOR, options=options) as client:
        answers = [client.predict(rows) for _ in range(5000)]
    assert _settled_counts(served, SENSOR, live_before + 5000)[0] - live_before == 5000  # all sent to live
    canary = sum(a.canary for a in answers)
    assert abs(canary / 5000 - 0.2) <= 0.02, f"canary took {canary / 50:.2f}% of 5000 requests, weight 20%"
    assert {(a.model, a.version) for a in answers} == {(SENSOR, "1"), (CANARY, "2")}
    expected = served.sensor[1].model.predict(served.sensor[0].frame.iloc[:1]).tolist()
    assert all(a.labels.tolist() == expected for a in answers if a.canary)  # the canary's own answer

    async def keyed(keys: list[str]) -> list[Prediction]:
        async with AsyncTritonClient(served.server.http_url, SENSOR, protocol="http", options=options) as client:
            gate = asyncio.Semaphore(32)

            async def one(key: str) -> Prediction:
                async with gate:
                    return await client.predict(rows, key=key)

            return await asyncio.gather(*(one(key) for key in keys))

    keys = [f"customer-{i}" for i in range(5000)]
    first = asyncio.run(keyed(keys))
    share = sum(p.canary for p in first) / 5000
    assert abs(share - 0.2) <= 0.02, f"keyed canary share {share:.4f}, weight 0.2"
    again = asyncio.run(keyed(keys[:300]))
    assert [p.model for p in again] == [p.model for p in first[:300]], "a key must stay on its side"

    _set_weight(served, 0.0)
    time.sleep(0.3)
    with TritonClient(served.server.grpc_url, SENSOR, options=options) as client:
        assert client.canary() is None
        assert {client.predict(rows).model for _ in range(50)} == {SENSOR}


def test_feedback_is_recorded_per_row_and_version(served: Served, tmp_path: Path) -> None:
    store = tmp_path / "state.db"
    rows = served.churn.frame.iloc[:3]
    truth = ["stay", "churn", "stay"]
    with (
        FeedbackStore(store) as sink,
        TritonClient(served.server.grpc_url, CHURN, options=ClientOptions(feedback=sink)) as client,
    ):
        prediction = client.predict(rows, request_id="order-17")
        assert prediction.request_ids == ("order-17/0", "order-17/1", "order-17/2")
        for row_id, label in zip(prediction.request_ids, truth, strict=True):
            client.feedback(row_id, label)
    with (
        TritonClient(served.server.grpc_url, CHURN) as client,
        pytest.raises(ConfigurationError, match=r"ClientOptions.feedback is not set"),
    ):
        client.feedback("order-17/0", "stay")
    with FeedbackStore(store) as feedback:
        (report,) = feedback.accuracy_report(CHURN)
    correct = sum(p == t for p, t in zip(prediction.labels.tolist(), truth, strict=True))
    assert (report.version, report.predictions, report.labelled, report.correct) == (1, 3, 3, correct)
