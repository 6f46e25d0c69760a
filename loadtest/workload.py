"""What the Locust users send: rows from a model version's manifest sample, as KServe v2 tensors.

The runner builds the workload once (``from_manifest``, through the contract's encoder) and hands it to the
Locust processes as a JSON file, so every user sends real rows the model was trained on, in the exact tensor
layout of docs/contracts.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from tritonops.contract.encoding import Tensor, encode_rows
from tritonops.contract.manifest import Manifest
from tritonops.loadtest import payloads

WORKLOAD_ENV = "TRITONOPS_LOADTEST_WORKLOAD"
GRPC_ENV = "TRITONOPS_LOADTEST_GRPC"


@dataclass(frozen=True)
class TensorData:
    """One input tensor as JSON can hold it."""

    name: str
    datatype: str
    data: list[Any]
    """Nested rows (numbers, NaN as the bare ``NaN`` token, or strings)."""

    def tensor(self) -> Tensor:
        dtype = object if self.datatype == "BYTES" else np.float32
        return Tensor(self.name, "BYTES" if self.datatype == "BYTES" else "FP32", np.array(self.data, dtype=dtype))


@dataclass(frozen=True)
class Workload:
    """One request's worth of inputs for ``model``."""

    model: str
    rows: int
    tensors: list[TensorData]

    def inputs(self) -> list[Tensor]:
        return [t.tensor() for t in self.tensors]

    def http_body(self) -> str:
        return payloads.triton_json(self.inputs())

    def grpc_inputs(self) -> list[grpcclient.InferInput]:
        inputs = []
        for tensor in self.inputs():
            item = grpcclient.InferInput(tensor.name, list(tensor.data.shape), tensor.datatype)
            item.set_data_from_numpy(tensor.data)
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
    columns = {feature: [values[i] for i in picks] for feature, values in sample.items()}
    tensors = encode_rows(manifest.name, manifest.features, columns)
    return Workload(model or manifest.name, rows, [TensorData(t.name, t.datatype, t.json_data()) for t in tensors])
