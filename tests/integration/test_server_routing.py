"""The canary split and the shadow mirror inside the real tritonserver, driven by raw HTTP/gRPC clients only
(``requests`` posting JSON, ``tritonclient.grpc`` with headers): no SDK routing anywhere.

The live model ``rt`` (version 1) and its candidate (version 2) are real converted models; the fleet's own config
builders publish the split, so what is tested is what ``tritonops canary`` loads.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests
import tritonclient.grpc as grpcclient
from sklearn.linear_model import LogisticRegression

from tritonops.contract.names import (
    PARAM_SHADOW,
    ROUTE_KEY_HEADER,
    ROUTE_KEY_PARAMETER,
    VERSION_OUTPUT,
    key_position,
)
from tritonops.contract.signature import CanarySplit
from tritonops.control_plane.desired import canary_config, canary_files, live_config, with_version_output
from tritonops.control_plane.endpoint import GrpcEndpoint as Endpoint
from tritonops.control_plane.state import ModelState
from tritonops.converters import ConversionOptions, convert_sklearn
from tritonops.model_config import ServingOptions, with_specific_versions
from tritonops.serving.routing import ShadowRoute
from tritonops.serving.triton import TritonServer

pytestmark = pytest.mark.integration

MODEL = "rt"
SHADOW = f"{MODEL}__shadow"
FROM_BYTES = "rt_bytes"
"""Version 1 of ``rt`` loaded from bytes: its model directory holds no other version, so it reaches its canary and
shadow over BLS through their aliases (the path for models outside the repository layout)."""
FLUSH = 0.1
FEATURES = 4
RNG = np.random.default_rng(17)


# -- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def repository(triton_repository: Path) -> Path:
    """Two versions of ``rt`` that disagree on some rows (different labelling rules)."""
    x = RNG.normal(0.0, 1.0, (400, FEATURES)).astype(np.float32)
    options = ConversionOptions(
        serving=ServingOptions(drift_flush_seconds=FLUSH, max_queue_delay_microseconds=100, instance_count=1),
        parity_rows=200,
    )
    for rule in ((x[:, 0] > 0), (x[:, 0] + x[:, 1] > 0.3)):
        model = LogisticRegression(max_iter=300).fit(x, rule.astype(int))
        convert_sklearn(model, x, name=MODEL, repository=triton_repository, options=options)
    wider = RNG.normal(0.0, 1.0, (400, FEATURES + 1)).astype(np.float32)  # version 3 takes 5 features
    model = LogisticRegression(max_iter=300).fit(wider, (wider[:, 0] > 0).astype(int))
    convert_sklearn(model, wider, name=MODEL, repository=triton_repository, options=options)
    return triton_repository


@pytest.fixture(scope="module")
def endpoint(triton_server: TritonServer, repository: Path) -> Iterator[Endpoint]:
    endpoint = Endpoint(triton_server.grpc_url, {})
    endpoint.load(canary_config(repository, MODEL, 2), canary_files(repository, MODEL, 2))
    endpoint.load(live_config(repository, ModelState(MODEL, 1, 2, 0.2)))
    yield endpoint
    observed = endpoint.observe(MODEL)
    aliases = ((name, endpoint.observe(name).ready) for name in (SHADOW, FROM_BYTES))
    for name, ready in ((MODEL, observed.ready), (f"{MODEL}__canary", observed.canary_ready), *aliases):
        if ready:
            endpoint.unload(name)
    endpoint.close()


def set_weight(endpoint: Endpoint, repository: Path, weight: float, live: int = 1, canary: int | None = 2) -> None:
    endpoint.load(live_config(repository, ModelState(MODEL, live, canary, weight)))


def row() -> list[float]:
    return [float(v) for v in RNG.normal(0.0, 1.0, FEATURES).astype(np.float32)]


def body(values: list[float], **parameters: str) -> dict[str, object]:
    message: dict[str, object] = {
        "inputs": [{"name": "input", "shape": [1, FEATURES], "datatype": "FP32", "data": values}]
    }
    if parameters:
        message["parameters"] = parameters
    return message


def served_version(answer: dict[str, object]) -> int:
    outputs = {o["name"]: o for o in answer["outputs"]}  # type: ignore[attr-defined, index]
    return int(outputs[VERSION_OUTPUT]["data"][0])


def post_many(url: str, bodies: list[dict[str, object]], headers: list[dict[str, str]] | None = None) -> list[int]:
    """Post every body from 8 threads (one keep-alive session each); the served version of each, in order."""
    local = threading.local()

    def post(index: int) -> int:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        response = session.post(url, json=bodies[index], headers=(headers or [{}] * len(bodies))[index], timeout=30)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model_version"] == "1"  # Triton names the model that was asked; the output names who answered
        return served_version(answer)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(post, range(len(bodies))))


def metric(server: TritonServer, family: str, **labels: str) -> float:
    total = 0.0
    for line in requests.get(server.metrics_url, timeout=5).text.splitlines():
        if line.startswith(family + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(FLUSH)


# -- the canary split ------------------------------------------------------------------------------------
def test_weight_02_sends_20_percent_of_plain_http_requests_to_the_canary(
    triton_server: TritonServer, endpoint: Endpoint
) -> None:
    n, weight = 5000, 0.2
    versions = post_many(f"http://{triton_server.http_url}/v2/models/{MODEL}/infer", [body(row()) for _ in range(n)])
    counts = Counter(versions)
    assert set(counts) == {1, 2}, counts  # every response names its version
    share = counts[2] / n
    bound = 3.5 * math.sqrt(weight * (1 - weight) / n)  # 3.5 sigma of a binomial share: 0.0198 at n = 5000
    assert abs(share - weight) <= min(0.02, bound), (share, counts)


def test_sticky_keys_stay_on_one_version_over_http_headers_parameters_and_grpc(
    triton_server: TritonServer, endpoint: Endpoint
) -> None:
    keys = [f"user-{i}" for i in range(1000)]
    url = f"http://{triton_server.http_url}/v2/models/{MODEL}/infer"
    bodies, headers, owners = [], [], []
    for repeat in range(9):  # 9 over HTTP: parameter, header, both; the 10th over gRPC below
        for key in keys:
            way = repeat % 3
            bodies.append(body(row(), **({ROUTE_KEY_PARAMETER: key} if way != 1 else {})))
            headers.append({ROUTE_KEY_HEADER: key} if way != 0 else {})
            owners.append(key)
    seen: dict[str, set[int]] = {}
    for key, version in zip(owners, post_many(url, bodies, headers), strict=True):
        seen.setdefault(key, set()).add(version)
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    for key in keys:
        tensor = grpcclient.InferInput("input", [1, FEATURES], "FP32")
        tensor.set_data_from_numpy(np.array([row()], dtype=np.float32))
        result = client.infer(MODEL, [tensor], headers={ROUTE_KEY_HEADER: key})
        seen[key].add(int(result.as_numpy(VERSION_OUTPUT)[0, 0]))
    client.close()
    assert all(len(versions) == 1 for versions in seen.values()), [k for k, v in seen.items() if len(v) > 1][:5]
    expected = {key: 2 if key_position(key) < 0.2 else 1 for key in keys}  # the documented rule, not a sample
    assert {key: next(iter(v)) for key, v in seen.items()} == expected
    assert 150 < sum(v == 2 for v in expected.values()) < 250


def test_a_request_pinned_to_live_is_never_split(triton_server: TritonServer, endpoint: Endpoint) -> None:
    url = f"http://{triton_server.http_url}/v2/models/{MODEL}/infer"
    bodies = [body(row(), **{ROUTE_KEY_PARAMETER: f"user-{i}"}) for i in range(300)]
    for message in bodies:
        message["parameters"]["tritonops_live_only"] = True  # type: ignore[index]
    assert set(post_many(url, bodies)) == {1}  # what the control plane's smoke check of live sends


def test_a_client_asking_for_some_outputs_gets_only_those(triton_server: TritonServer, endpoint: Endpoint) -> None:
    message = body(row(), **{ROUTE_KEY_PARAMETER: "user-1"}) | {"outputs": [{"name": "label"}]}
    answer = requests.post(f"http://{triton_server.http_url}/v2/models/{MODEL}/infer", json=message, timeout=10)
    assert [o["name"] for o in answer.json()["outputs"]] == ["label"]


def load_from_bytes(endpoint: Endpoint, repository: Path, **parameters: str) -> None:
    """``rt_bytes``: version 1 of ``rt`` with the given routing parameters, loaded from its bytes."""
    config = live_config(repository, ModelState(MODEL, 1, None, 0.0))
    config.name = FROM_BYTES
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    endpoint.load(config, canary_files(repository, MODEL, 1))


def test_a_canary_over_bls_that_is_unloaded_falls_back_to_live_and_is_counted(
    triton_server: TritonServer, endpoint: Endpoint, repository: Path
) -> None:
    alias = f"{MODEL}__canary"
    load_from_bytes(endpoint, repository, **CanarySplit(alias, 2, 0.2).to_parameters())
    url = f"http://{triton_server.http_url}/v2/models/{FROM_BYTES}/infer"
    versions = post_many(url, [body(row()) for _ in range(500)])
    assert abs(Counter(versions)[2] / 500 - 0.2) < 0.08  # over BLS the alias answers its share
    labels = {"model": MODEL, "version": "1", "canary_version": "2", "outcome": "fallback"}
    before = metric(triton_server, "tritonops_canary_requests_total", **labels)
    endpoint.unload(alias)  # the config still routes 20% to it
    try:
        assert set(post_many(url, [body(row()) for _ in range(300)])) == {1}
        wait_until(lambda: metric(triton_server, "tritonops_canary_requests_total", **labels) > before + 20)
    finally:
        endpoint.load(canary_config(repository, MODEL, 2), canary_files(repository, MODEL, 2))
        endpoint.unload(FROM_BYTES)
    fell_back = metric(triton_server, "tritonops_canary_requests_total", **labels) - before
    assert 20 < fell_back < 110, fell_back  # about 20% of 300


def test_the_in_process_canary_counts_what_it_answered(triton_server: TritonServer, endpoint: Endpoint) -> None:
    labels = {"model": MODEL, "version": "1", "canary_version": "2"}
    answered_before = metric(triton_server, "tritonops_canary_requests_total", **labels, outcome="answered")
    rows_before = metric(triton_server, "tritonops_rows_total", model=MODEL, version="2")
    versions = post_many(f"http://{triton_server.http_url}/v2/models/{MODEL}/infer", [body(row()) for _ in range(400)])
    routed = Counter(versions)[2]
    wait_until(
        lambda: (
            metric(triton_server, "tritonops_canary_requests_total", **labels, outcome="answered")
            >= answered_before + routed
        )
    )
    wait_until(lambda: metric(triton_server, "tritonops_rows_total", model=MODEL, version="2") >= rows_before + routed)
    # each request counted once, under the version that scored it
    assert metric(triton_server, "tritonops_rows_total", model=MODEL, version="2") == rows_before + routed


def test_no_request_fails_while_the_weight_steps_to_promotion_under_load(
    triton_server: TritonServer, endpoint: Endpoint, repository: Path
) -> None:
    url = f"http://{triton_server.http_url}/v2/models/{MODEL}/infer"
    stop = threading.Event()
    failures: list[str] = []
    answered: list[tuple[str, int]] = []

    def load() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                response = session.post(url, json=body(row()), timeout=30)
                if response.status_code != 200:
                    failures.append(f"HTTP {response.status_code}: {response.text}")
                else:
                    answer = response.json()
                    answered.append((answer["model_version"], served_version(answer)))
            except requests.RequestException as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for weight in (0.0, 0.2, 0.5):
            set_weight(endpoint, repository, weight)
            time.sleep(1.0)
        set_weight(endpoint, repository, 0.0, live=2, canary=None)  # promote: version 2 live, no canary
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        set_weight(endpoint, repository, 0.2)  # back to the module's state
    assert failures == []
    assert len(answered) > 200
    assert answered[-1] == ("2", 2)  # promoted: Triton's model_version and the served version agree
    assert {served for _, served in answered} == {1, 2}


# -- the shadow mirror -----------------------------------------------------------------------------------
def load_shadow(endpoint: Endpoint, repository: Path, version: int, share: float, **parameters: str) -> None:
    """``rt__shadow`` from ``version``'s bytes, and the live model (no canary) mirroring ``share`` to it."""
    config = with_version_output(with_specific_versions(canary_config(repository, MODEL, version), [version]))
    config.name = SHADOW
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    endpoint.load(config, canary_files(repository, MODEL, version))
    live = live_config(repository, ModelState(MODEL, 1, None, 0.0))
    live.parameters[PARAM_SHADOW].string_value = ShadowRoute(SHADOW, version, share).to_parameter()
    endpoint.load(live)


def shadow_counts(server: TritonServer, version: int) -> dict[str, float]:
    labels = {"model": MODEL, "version": "1", "shadow_version": str(version)}
    names = ("mirrored_rows_total", "compared_rows_total", "agreed_rows_total", "dropped_rows_total")
    counts = {name: metric(server, f"tritonops_shadow_{name}", **labels) for name in names}
    counts["identical"] = metric(server, "tritonops_shadow_prob_diff_rows_total", **labels, le="0.0")
    counts["errors"] = metric(server, "tritonops_shadow_errors_total", **labels)
    return counts


def send_rows(server: TritonServer, rows: np.ndarray) -> None:
    url = f"http://{server.http_url}/v2/models/{MODEL}/infer"
    versions = post_many(url, [body([float(v) for v in r]) for r in rows])
    assert set(versions) == {1}  # callers only ever get live's answer


@pytest.fixture(scope="module")
def shadow_rows() -> np.ndarray:
    return RNG.normal(0.0, 1.0, (600, FEATURES)).astype(np.float32)


def test_a_shadow_of_the_live_version_agrees_on_every_row(
    triton_server: TritonServer, endpoint: Endpoint, repository: Path, shadow_rows: np.ndarray
) -> None:
    load_shadow(endpoint, repository, 1, 1.0)
    send_rows(triton_server, shadow_rows)
    n = len(shadow_rows)
    wait_until(lambda: shadow_counts(triton_server, 1)["compared_rows_total"] >= n)
    counts = shadow_counts(triton_server, 1)
    assert counts == {
        "mirrored_rows_total": n,
        "compared_rows_total": n,
        "agreed_rows_total": n,
        "dropped_rows_total": 0,
        "identical": n,
        "errors": 0,
    }


def test_a_shadow_of_another_model_agrees_exactly_as_often_as_offline(
    triton_server: TritonServer, endpoint: Endpoint, repository: Path, shadow_rows: np.ndarray
) -> None:
    sessions = [
        ort.InferenceSession(str(repository / MODEL / str(v) / "model.onnx"), providers=["CPUExecutionProvider"])
        for v in (1, 2)
    ]
    offline = [np.asarray(s.run(["label"], {"input": shadow_rows})[0]).reshape(-1) for s in sessions]
    agree = int(np.count_nonzero(offline[0] == offline[1]))
    assert 0 < agree < len(shadow_rows)  # the two versions really differ on some rows
    load_shadow(endpoint, repository, 2, 1.0)
    send_rows(triton_server, shadow_rows)
    n = len(shadow_rows)
    wait_until(lambda: shadow_counts(triton_server, 2)["compared_rows_total"] >= n)
    counts = shadow_counts(triton_server, 2)
    assert counts["compared_rows_total"] == n and counts["dropped_rows_total"] == 0
    assert counts["agreed_rows_total"] == agree


def test_a_shadow_refusing_every_row_never_fails_a_caller(
    triton_server: TritonServer, endpoint: Endpoint, repository: Path, shadow_rows: np.ndarray
) -> None:
    load_shadow(endpoint, repository, 3, 1.0)  # version 3 takes 5 features: it refuses every row live answers
    send_rows(triton_server, shadow_rows[:300])  # asserts every caller got HTTP 200 from live
    wait_until(lambda: shadow_counts(triton_server, 3)["errors"] >= 300)
    counts = shadow_counts(triton_server, 3)
    assert (counts["errors"], counts["compared_rows_total"]) == (300, 0)
    assert metric(triton_server, "tritonops_shadow_errors_total", shadow_version="3", reason="rejected") == 300


def test_a_shadow_over_bls_that_fails_or_is_unloaded_never_fails_a_caller(
    triton_server: TritonServer, endpoint: Endpoint, repository: Path, shadow_rows: np.ndarray
) -> None:
    # the alias forwards each batch to a model that does not exist: every shadow call fails
    load_shadow(endpoint, repository, 2, 1.0, **{"tritonops.runner": "bls:no_such_model"})
    load_from_bytes(endpoint, repository, **{PARAM_SHADOW: ShadowRoute(SHADOW, 2, 1.0).to_parameter()})
    url = f"http://{triton_server.http_url}/v2/models/{FROM_BYTES}/infer"
    errors = {"model": MODEL, "shadow_version": "2"}
    before = metric(triton_server, "tritonops_shadow_errors_total", **errors, reason="model_error")
    assert set(post_many(url, [body([float(v) for v in r]) for r in shadow_rows[:300]])) == {1}
    wait_until(
        lambda: metric(triton_server, "tritonops_shadow_errors_total", **errors, reason="model_error") >= before + 300
    )
    endpoint.unload(SHADOW)  # the config still mirrors to it: now the shadow is not there at all
    assert set(post_many(url, [body([float(v) for v in r]) for r in shadow_rows[:100]])) == {1}
    wait_until(lambda: metric(triton_server, "tritonops_shadow_errors_total", **errors, reason="unavailable") >= 100)
    endpoint.unload(FROM_BYTES)
    endpoint.load(live_config(repository, ModelState(MODEL, 1, 2, 0.2)))
