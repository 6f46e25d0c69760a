"""The bare Triton Python-backend model of DESIGN's reference figure: ONNX Runtime on the whole dynamic batch.

No validation, no drift or invalid-request counters, no response cache, no metrics: what a hand-written Python
backend model does at the least. ``tritonops.loadtest.variants`` places it beside the tritonops backend on the same
server so the benchmark measures what our validation and counters cost, side by side in one run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        model = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def execute(self, requests: list[Any]) -> list[Any]:
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        label, probabilities = self.session.run(["label", "probabilities"], {self.input_name: np.concatenate(arrays)})
        label = np.asarray(label).reshape(-1, 1)
        responses, start = [], 0
        for array in arrays:
            stop = start + array.shape[0]
            outputs = [
                pb_utils.Tensor("label", label[start:stop]),
                pb_utils.Tensor("probabilities", probabilities[start:stop]),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            start = stop
        return responses
