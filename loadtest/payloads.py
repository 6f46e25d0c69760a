"""Request bodies for each server in the benchmark, built once from the same rows.

Every server gets the same work: the same rows, and both the label and the class probabilities back. Triton's
bodies carry the tensors of ``tritonops.contract.encode_rows`` (the encoder every client uses).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from tritonclient.grpc import service_pb2
from tritonclient.utils import serialize_byte_tensor

from tritonops.contract.encoding import Tensor
from tritonops.contract.names import OUTPUTS
from tritonops.loadtest.generators import grpc_frame

GRPC_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
GRPC_HEADERS = {"content-type": "application/grpc", "te": "trailers"}


def _rows(rows: npt.NDArray[np.float32]) -> list[list[float]]:
    return [[float(v) for v in row] for row in rows]


def triton_json(tensors: Sequence[Tensor]) -> str:
    """KServe v2 JSON for our backend: the model's input tensors, both outputs requested."""
    body = {
        "inputs": [
            {"name": t.name, "shape": list(t.data.shape), "datatype": t.datatype, "data": t.json_data()}
            for t in tensors
        ],
        "outputs": [{"name": name} for name in OUTPUTS],
    }
    return json.dumps(body, separators=(",", ":"))


def _raw_contents(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        serialized = serialize_byte_tensor(tensor.data)
        return b"" if serialized is None else bytes(serialized.item())
    return np.ascontiguousarray(tensor.data, dtype=np.float32).tobytes()


def triton_grpc(model: str, tensors: Sequence[Tensor]) -> bytes:
    """A framed ``ModelInferRequest`` (raw tensor contents) ready to POST over HTTP/2."""
    request = service_pb2.ModelInferRequest(model_name=model)
    for tensor in tensors:
        item = request.inputs.add()
        item.name, item.datatype = tensor.name, tensor.datatype
        item.shape.extend(tensor.data.shape)
        request.raw_input_contents.append(_raw_contents(tensor))
    for name in OUTPUTS:
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
