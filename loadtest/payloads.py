"""Request bodies for each server in the benchmark, built once from the same rows.

Every server gets the same work: the same rows, and both the label and the class probabilities back.
"""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt
from tritonclient.grpc import service_pb2

from tritonops.loadtest.generators import grpc_frame

GRPC_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
GRPC_HEADERS = {"content-type": "application/grpc", "te": "trailers"}


def _rows(rows: npt.NDArray[np.float32]) -> list[list[float]]:
    return [[float(v) for v in row] for row in rows]


def triton_json(rows: npt.NDArray[np.float32], input_name: str = "input") -> str:
    """KServe v2 JSON for our backend: one FP32 matrix, both outputs requested."""
    body = {
        "inputs": [{"name": input_name, "shape": list(rows.shape), "datatype": "FP32", "data": _rows(rows)}],
        "outputs": [{"name": "label"}, {"name": "probabilities"}],
    }
    return json.dumps(body, separators=(",", ":"))


def triton_grpc(model: str, rows: npt.NDArray[np.float32], input_name: str = "input") -> bytes:
    """A framed ``ModelInferRequest`` (raw FP32 contents) ready to POST over HTTP/2."""
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = input_name, "FP32"
    tensor.shape.extend(rows.shape)
    request.raw_input_contents.append(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
    for name in ("label", "probabilities"):
        request.outputs.add().name = name
    return grpc_frame(request.SerializeToString())


def mlserver_json(rows: npt.NDArray[np.float32]) -> str:
    """KServe v2 JSON for mlserver-sklearn: ``predict`` and ``predict_proba`` outputs."""
    body = {
        "inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP32", "data": _rows(rows)}],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    return json.dumps(body, separators=(",", ":"))


def flask_json(rows: npt.NDArray[np.float32]) -> str:
    """The seed server's ``{"instances": [[...]]}``."""
    return json.dumps({"instances": _rows(rows)}, separators=(",", ":"))
