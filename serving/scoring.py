"""Score a dynamic batch: validate each request, concatenate the good ones, run once, split the outputs back.

Pure Python + numpy + ONNX Runtime, no Triton imports: the backend (``serving/backend/tritonops/model.py``)
adapts Triton requests to ``score`` and its results back to responses, and unit tests call it directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from tritonops.contract.names import LABEL_OUTPUT, PROBABILITIES_OUTPUT
from tritonops.serving.errors import ServingError
from tritonops.serving.response_cache import ResponseCache, request_key
from tritonops.serving.validation import Batch, InputSchema, InvalidRequestError, ValidatedBatch


@dataclass(frozen=True)
class ModelOutputs:
    """The outputs of one request: ``label`` ``[rows, 1]`` and ``probabilities`` ``[rows, n_classes]``."""

    label: npt.NDArray[np.generic]
    probabilities: npt.NDArray[np.float32]


Runner = Callable[[Batch], ModelOutputs]
"""Runs the model once on a whole (validated, concatenated) batch."""


class ModelRunError(ServingError):
    """The model failed on a batch of valid requests; each of them is answered with this error."""


@dataclass(frozen=True)
class ScoredBatch:
    """One result per request (a prediction or the error for that request) plus the batch as it was run."""

    results: list[ModelOutputs | InvalidRequestError | ModelRunError]
    inputs: Batch
    outputs: ModelOutputs | None
    cached: tuple[tuple[Batch, ModelOutputs], ...] = ()
    """Valid requests answered from the response cache (not run), with their answers."""
    cache_misses: int = 0
    """Valid requests looked up in the response cache and not found (0 without a cache)."""

    def served(self) -> tuple[Batch, npt.NDArray[np.generic]] | None:
        """Inputs and labels of every answered row, run or cached (what the drift counters see), or None.

        Cached rows are copied out of the request buffers; the rows that ran are the run batch as it is.
        """
        if not self.cached:
            return None if self.outputs is None else (self.inputs, self.outputs.label)
        parts = [(batch, prediction.label) for batch, prediction in self.cached]
        if self.outputs is not None:
            parts.append((self.inputs, self.outputs.label))
        inputs = {name: np.concatenate([batch[name] for batch, _ in parts]) for name in parts[0][0]}
        return inputs, np.concatenate([labels for _, labels in parts])


def session_threads(instance_count: int, cpus: int | None = None) -> int:
    """Intra-op threads per instance so that all instances together use the cores once."""
    available = cpus if cpus is not None else len(os.sched_getaffinity(0))
    return max(1, available // max(1, instance_count))


def execution_providers(instance_kind: str, device_id: int, tensorrt: bool) -> list[str | tuple[str, dict[str, str]]]:
    """ONNX Runtime providers for a Triton instance kind: CPU, or CUDA (behind TensorRT when asked) on GPU."""
    if instance_kind != "GPU":
        return ["CPUExecutionProvider"]
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if tensorrt else ["CUDAExecutionProvider"]
    missing = [p for p in wanted if p not in ort.get_available_providers()]
    if missing:
        raise ServingError(
            f"instance kind GPU needs ONNX Runtime providers {missing}, but this onnxruntime has only "
            f"{ort.get_available_providers()}: install the gpu extra (onnxruntime-gpu), see docs/gpu.md"
        )
    options = {"device_id": str(device_id)}
    return [(provider, options) for provider in wanted] + ["CPUExecutionProvider"]


class OnnxRunner:
    """One ONNX Runtime session; Triton input names are the ONNX graph's input names."""

    def __init__(self, model_path: Path, providers: Sequence[str | tuple[str, dict[str, str]]], threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # instances share the cores: a spinning idle pool would steal them from the busy one
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(model_path), sess_options=options, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ServingError(f"ONNX Runtime cannot load {model_path}: {exc}") from exc
        outputs = [o.name for o in self.session.get_outputs()]
        if LABEL_OUTPUT not in outputs or PROBABILITIES_OUTPUT not in outputs:
            raise ServingError(
                f"{model_path}: expected ONNX outputs '{LABEL_OUTPUT}' and '{PROBABILITIES_OUTPUT}', got {outputs}"
            )
        self.input_names = tuple(i.name for i in self.session.get_inputs())

    def __call__(self, batch: Batch) -> ModelOutputs:
        label, probabilities = self.session.run([LABEL_OUTPUT, PROBABILITIES_OUTPUT], batch)
        return ModelOutputs(
            label=np.asarray(label).reshape(-1, 1),
            probabilities=np.asarray(probabilities, dtype=np.float32),
        )


def score(
    schema: InputSchema,
    run: Runner,
    requests: Sequence[Mapping[str, npt.NDArray[np.generic] | None]],
    cache: ResponseCache[ModelOutputs] | None = None,
) -> ScoredBatch:
    """Validate every request, run the valid ones as one batch and give each request its rows back.

    With a ``cache``, a valid request seen before gets its stored prediction and is not run; only predictions
    are stored, never errors. Never raises for a request or a model failure: each result is a prediction or
    that request's error.
    """
    if cache is None:
        whole = schema.validate_all(requests)
        if whole is not None:  # the common case: every request is valid, checked in one pass
            return _run_all(run, whole)
    results: list[ModelOutputs | InvalidRequestError | ModelRunError] = []
    valid: list[Batch] = []
    keys: list[bytes] = []
    cached: list[tuple[Batch, ModelOutputs]] = []
    for tensors in requests:
        try:
            batch = schema.validate(tensors)
        except InvalidRequestError as exc:
            results.append(exc)
            continue
        if cache is not None:
            key = request_key(batch)
            hit = cache.get(key)
            if hit is not None:
                results.append(hit)
                cached.append((batch, hit))
                continue
            keys.append(key)
        valid.append(batch)
        results.append(_PENDING)
    if not valid:
        return ScoredBatch(results, {}, None, tuple(cached), len(keys))
    inputs = {name: np.concatenate([b[name] for b in valid]) for name in valid[0]}
    try:
        outputs = run(inputs)
    except Exception as exc:  # ONNX Runtime / BLS errors are untyped: the valid requests get the reason
        failure = ModelRunError(f"the model failed on a batch of {len(valid)} request(s): {exc}")
        results = [failure if r is _PENDING else r for r in results]
        return ScoredBatch(results, inputs, None, tuple(cached), len(keys))
    sizes = iter([next(iter(b.values())).shape[0] for b in valid])
    fresh = iter(keys)
    start = 0
    for index, result in enumerate(results):
        if result is _PENDING:
            stop = start + next(sizes)
            results[index] = ModelOutputs(outputs.label[start:stop], outputs.probabilities[start:stop])
            if cache is not None:  # a copy: an entry must not keep the whole batch's outputs alive
                rows = slice(start, stop)
                cache.put(next(fresh), ModelOutputs(outputs.label[rows].copy(), outputs.probabilities[rows].copy()))
            start = stop
    return ScoredBatch(results, inputs, outputs, tuple(cached), len(keys))


def _run_all(run: Runner, whole: ValidatedBatch) -> ScoredBatch:
    """Run a batch whose requests are all valid and slice each request's rows out of the outputs."""
    try:
        outputs = run(whole.inputs)
    except Exception as exc:  # ONNX Runtime / BLS errors are untyped: every request gets the reason
        failure = ModelRunError(f"the model failed on a batch of {len(whole.sizes)} request(s): {exc}")
        return ScoredBatch([failure] * len(whole.sizes), whole.inputs, None)
    results: list[ModelOutputs | InvalidRequestError | ModelRunError] = []
    label, probabilities = outputs.label, outputs.probabilities
    start = 0
    for size in whole.sizes:
        stop = start + size
        results.append(ModelOutputs(label[start:stop], probabilities[start:stop]))
        start = stop
    return ScoredBatch(results, whole.inputs, outputs)


_PENDING = ModelOutputs(np.empty((0, 1), dtype=np.int64), np.empty((0, 0), dtype=np.float32))
"""Placeholder for a valid request until the batch has run."""
