"""Locust users for one model served by Triton: KServe JSON over HTTP, and gRPC through our own Locust user.

Run through ``python -m tritonops.loadtest.run`` (it builds the workload and reads the results); by hand::

    TRITONOPS_LOADTEST_WORKLOAD=w.json TRITONOPS_LOADTEST_GRPC=127.0.0.1:8001 \\
        locust -f loadtest/locustfile.py --headless -u 16 -r 8 -t 30s --host http://127.0.0.1:8000

Requests are sent without retries, so every error the server returns counts as a failure.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # gRPC's blocking calls must yield to Locust's greenlets

import tritonclient.grpc as grpcclient  # noqa: E402
from locust import FastHttpUser, User, constant, task  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from tritonops.contract.names import LABEL_OUTPUT, OUTPUTS  # noqa: E402
from tritonops.loadtest.workload import GRPC_ENV, WORKLOAD_ENV, Workload  # noqa: E402

WORKLOAD = Workload.load(Path(os.environ[WORKLOAD_ENV]))
HTTP_BODY = WORKLOAD.http_body()
REQUESTED = [grpcclient.InferRequestedOutput(name) for name in OUTPUTS]


class TritonHttpUser(FastHttpUser):
    """POSTs the workload as KServe v2 JSON to ``/v2/models/<model>/infer``, back to back."""

    wait_time = constant(0)

    @task
    def infer(self) -> None:
        path = f"/v2/models/{WORKLOAD.model}/infer"
        headers = {"Content-Type": "application/json"}
        with self.client.post(
            path, data=HTTP_BODY, headers=headers, name=f"http {WORKLOAD.model}", catch_response=True
        ) as response:
            text = response.text or ""
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {text[:200]}")
            elif '"label"' not in text:
                response.failure(f"no 'label' output in the answer: {text[:200]}")


class TritonGrpcUser(User):
    """Calls ``ModelInfer`` over one gRPC channel per user and reports each call to Locust."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self._client = grpcclient.InferenceServerClient(os.environ[GRPC_ENV])
        self._inputs = WORKLOAD.grpc_inputs()

    def on_stop(self) -> None:
        self._client.close()

    @task
    def infer(self) -> None:
        started = time.perf_counter()
        error: Exception | None = None
        size = 0
        try:
            result = self._client.infer(WORKLOAD.model, self._inputs, outputs=REQUESTED, client_timeout=10.0)
            labels = result.as_numpy(LABEL_OUTPUT)
            if labels is None or len(labels) != WORKLOAD.rows:
                error = ValueError(f"expected {WORKLOAD.rows} labels, got {None if labels is None else len(labels)}")
            else:
                size = labels.nbytes
        except InferenceServerException as exc:
            error = exc
        self.environment.events.request.fire(
            request_type="grpc",
            name=f"grpc {WORKLOAD.model}",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=size,
            exception=error,
            context={},
        )
