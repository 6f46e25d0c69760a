"""What the Locust users send: rows from a model version's manifest sample, as KServe v2 tensors.

The runner builds the workload once (``from_manifest``) and hands it to the Locust processes as a JSON file,
so every user sends real rows the model was trained on, in the exact tensor layout of docs/contracts.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from tritonops.converters.manifest import Manifest

WORKLOAD_ENV = "TRITONOPS_LOADTEST_WORKLOAD"
GRPC_ENV = "TRITONOPS_LOADTEST_GRPC"


@dataclass(frozen=True)
class TensorData:
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]
    """Row-major values (numbers, ``null`` for NaN, or strings)."""


@dataclass(frozen=True)
class Workload:
    """One request's worth of inputs for ``model``."""

    model: str
    rows: int
    tensors: list[TensorData]

    def http_body(self) -> str:
        body = {
            "inputs": [asdict(t) for t in self.tensors],
            "outputs": [{"name": "label"}, {"name": "probabilities"}],
        }
        return json.dumps(body, separators=(",", ":"))

    def grpc_inputs(self) -> list[grpcclient.InferInput]:
        inputs = []
        for tensor in self.tensors:
            item = grpcclient.InferInput(tensor.name, tensor.shape, tensor.datatype)
            if tensor.datatype == "BYTES":
                array = np.array(tensor.data, dtype=object).reshape(tensor.shape)
            else:
                values = [math.nan if v is None else v for v in tensor.data]
                array = np.array(values, dtype=np.float32).reshape(tensor.shape)
            item.set_data_from_numpy(array)
            inputs.append(item)
        return inputs

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> Workload:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(raw["model"], raw["rows"], [TensorData(**t) for t in raw["tensors"]])


def from_manifest(manifest: Manifest, rows: int = 1, model: str | None = None) -> Workload:
    """``rows`` rows (cycling through the manifest's sample) in the model's input tensors."""
    sample = manifest.reference.sample
    available = len(next(iter(sample.values())))
    picks = [i % available for i in range(rows)]
    tensors = []
    for tensor in manifest.inputs:
        columns = [[sample[feature][i] for i in picks] for feature in tensor.features]
        data = [value for row in zip(*columns, strict=True) for value in row]
        tensors.append(TensorData(tensor.name, tensor.datatype, [rows, len(tensor.features)], data))
    return Workload(model or manifest.name, rows, tensors)
