"""Run a converted model with ONNX Runtime (CPU), the way the serving backend does."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from tritonops.contract.names import LABEL_OUTPUT, PROBABILITIES_OUTPUT
from tritonops.converters.errors import OnnxRuntimeError


class OnnxClassifier:
    """An ONNX Runtime session over model bytes with ``label`` / ``probabilities`` outputs."""

    def __init__(self, model_bytes: bytes) -> None:
        self._session = self.session(model_bytes)
        outputs = [o.name for o in self._session.get_outputs()]
        if outputs != [LABEL_OUTPUT, PROBABILITIES_OUTPUT]:
            raise OnnxRuntimeError(
                f"the converted model has outputs {outputs}; expected [{LABEL_OUTPUT!r}, {PROBABILITIES_OUTPUT!r}]"
            )

    @staticmethod
    def session(model_bytes: bytes) -> ort.InferenceSession:
        """A single-threaded CPU session, as the serving backend runs one per instance."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own untyped errors for invalid graphs
            raise OnnxRuntimeError(f"ONNX Runtime cannot load the converted model: {exc}") from exc

    def predict(
        self, feeds: Mapping[str, npt.NDArray[np.generic]]
    ) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float32]]:
        """Labels ``[N]`` and probabilities ``[N, n_classes]`` for the given input tensors."""
        try:
            label, probabilities = self._session.run([LABEL_OUTPUT, PROBABILITIES_OUTPUT], dict(feeds))
        except Exception as exc:
            raise OnnxRuntimeError(f"ONNX Runtime failed to run the converted model: {exc}") from exc
        return np.asarray(label).reshape(-1), np.asarray(probabilities, dtype=np.float32)
