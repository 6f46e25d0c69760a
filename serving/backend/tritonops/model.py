"""The ``tritonops`` Triton backend: ONNX Runtime behind dynamic batching, with validation and drift counters.

A Python-based backend (model configs say ``backend: "tritonops"``): model versions hold only ``model.onnx`` and
``manifest.json``. Each instance owns one ONNX Runtime session (or forwards batches to another Triton model over
BLS, for the GPU deployment in docs/gpu.md). The logic lives in the ``serving`` package and the names and the
manifest in ``tritonops.contract``; this module adapts them to ``triton_python_backend_utils``: requests in,
responses and metrics out. It imports no pandas, pyarrow, onnx or scipy (tests/unit/test_lean_imports.py).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from tritonops.contract.manifest import Manifest, load_manifest
from tritonops.contract.names import LABEL_OUTPUT, PROBABILITIES_OUTPUT, REQUEST_ID_PARAMETER
from tritonops.serving.backend_options import BackendOptions
from tritonops.serving.drift_counters import DURATION_BUCKETS, DriftCounters, Snapshot
from tritonops.serving.response_cache import ResponseCache
from tritonops.serving.scoring import (
    OnnxRunner,
    Prediction,
    execution_providers,
    score,
    session_threads,
)
from tritonops.serving.validation import REASONS, Batch, InputSchema, InvalidRequestError


class _BlsRunner:
    """Runs a batch on another Triton model (the native ``onnxruntime_onnx`` export) through BLS."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __call__(self, batch: Batch) -> Prediction:
        request = pb_utils.InferenceRequest(
            model_name=self.target,
            requested_output_names=[LABEL_OUTPUT, PROBABILITIES_OUTPUT],
            inputs=[pb_utils.Tensor(name, array) for name, array in batch.items()],
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"model '{self.target}' failed: {response.error().message()}")
        label = pb_utils.get_output_tensor_by_name(response, LABEL_OUTPUT).as_numpy()
        probabilities = pb_utils.get_output_tensor_by_name(response, PROBABILITIES_OUTPUT).as_numpy()
        return Prediction(label.reshape(-1, 1), probabilities.astype(np.float32, copy=False))


class _Metrics:
    """Triton custom metrics for one model version; ``flush`` adds a snapshot of counts to them."""

    def __init__(self, manifest: Manifest, counters: DriftCounters, drift: bool, cache: bool) -> None:
        base = {"model": manifest.name, "version": str(manifest.version)}
        # Families must outlive their metrics: keep every one referenced here.
        self.families = []
        invalid = pb_utils.MetricFamily(
            name="tritonops_invalid_requests_total",
            description="Inference requests rejected by tritonops validation, by reason",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.families.append(invalid)
        self.invalid = {reason: invalid.Metric(labels={**base, "reason": reason}) for reason in REASONS}
        self.cache = cache
        if cache:  # only models with a cache export these: their absence says "no cache"
            hits = pb_utils.MetricFamily(
                name="tritonops_cache_hits_total",
                description="Valid requests answered from the tritonops response cache",
                kind=pb_utils.MetricFamily.COUNTER,
            )
            misses = pb_utils.MetricFamily(
                name="tritonops_cache_misses_total",
                description="Valid requests looked up in the tritonops response cache and run",
                kind=pb_utils.MetricFamily.COUNTER,
            )
            self.families += [hits, misses]
            self.cache_hits = hits.Metric(labels=base)
            self.cache_misses = misses.Metric(labels=base)
        self.drift = drift
        if not drift:
            return
        bins = pb_utils.MetricFamily(
            name="tritonops_feature_bin_total",
            description="Live input values per reference bin of each feature",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.families.append(bins)
        self.bins = {
            f.feature: [bins.Metric(labels={**base, "feature": f.feature, "bin": label}) for label in f.labels]
            for f in counters.features
        }
        predictions = pb_utils.MetricFamily(
            name="tritonops_prediction_total", description="Predictions per class", kind=pb_utils.MetricFamily.COUNTER
        )
        self.families.append(predictions)
        self.predictions = [predictions.Metric(labels={**base, "class": c}) for c in counters.classes]
        rows = pb_utils.MetricFamily(
            name="tritonops_rows_total", description="Rows scored", kind=pb_utils.MetricFamily.COUNTER
        )
        self.families.append(rows)
        self.rows = rows.Metric(labels=base)
        duration = pb_utils.MetricFamily(
            name="tritonops_request_duration_seconds",
            description="Backend time (validation + model) per executed batch",
            kind=pb_utils.MetricFamily.HISTOGRAM,
        )
        self.families.append(duration)
        self.duration = duration.Metric(labels=base, buckets=list(DURATION_BUCKETS))

    def flush(self, snapshot: Snapshot) -> None:
        for reason, count in snapshot.invalid.items():
            if count:
                self.invalid[reason].increment(float(count))
        if self.cache:
            if snapshot.cache_hits:
                self.cache_hits.increment(float(snapshot.cache_hits))
            if snapshot.cache_misses:
                self.cache_misses.increment(float(snapshot.cache_misses))
        if not self.drift or (snapshot.rows == 0 and not snapshot.durations):
            return
        for feature, counts in snapshot.feature_bins.items():
            for metric, count in zip(self.bins[feature], counts.tolist(), strict=True):
                if count:
                    metric.increment(float(count))
        for metric, count in zip(self.predictions, snapshot.predictions.tolist(), strict=True):
            if count:
                metric.increment(float(count))
        for seconds in snapshot.durations:
            self.duration.observe(seconds)
        # rows last: a reader that sees rows_total move sees every bin and class of those rows too
        self.rows.increment(float(snapshot.rows))


class _LabelTensors:
    """``label`` output tensors of one-row answers, built once per class and then reused by every response.

    A BYTES tensor built from numpy has its strings serialised in Python for every response; a one-row answer can
    only carry one of the model's classes, so each class gets its tensor once. Sharing one tensor between
    responses is how the stub works anyway: it writes a tensor into shared memory once, and every response that
    carries it refers to that block (reference counted); this instance keeps the tensors alive.
    """

    def __init__(self, classes: int) -> None:
        self.limit = classes
        self.tensors: dict[Any, Any] = {}

    def __call__(self, label: np.ndarray) -> Any:
        if label.shape[0] != 1:
            return pb_utils.Tensor(LABEL_OUTPUT, label)
        key = label.item()
        tensor = self.tensors.get(key)
        if tensor is None:
            tensor = pb_utils.Tensor(LABEL_OUTPUT, label.copy())  # a copy: not a view of this batch's outputs
            if len(self.tensors) < self.limit:  # only classes get here; the bound keeps a surprise from growing it
                self.tensors[key] = tensor
        return tensor


def _as_numpy(tensor: Any) -> Any:
    """A request tensor's array, or None where the request lacks that input."""
    return None if tensor is None else tensor.as_numpy()


def _with_request_id(message: str, request: Any) -> str:
    """The error message plus the client's ``request_id`` parameter, when it sent one (error path only)."""
    try:
        request_id = json.loads(request.parameters() or "{}").get(REQUEST_ID_PARAMETER)
    except json.JSONDecodeError:
        request_id = None
    return f"{message} (request_id={request_id})" if isinstance(request_id, str) and request_id else message


class TritonPythonModel:
    """One model instance."""

    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self.options = BackendOptions.from_model_config(config)
        manifest = load_manifest(Path(args["model_repository"]) / args["model_version"] / "manifest.json")
        self.schema = InputSchema.from_manifest(manifest)
        self.input_names = [rule.name for rule in self.schema.rules]
        target = self.options.bls_target
        if target is not None:
            self.run: Any = _BlsRunner(target)
        else:
            providers = execution_providers(
                args["model_instance_kind"], int(args["model_instance_device_id"]), self.options.tensorrt
            )
            model_path = Path(args["model_repository"]) / args["model_version"] / manifest.onnx.file
            self.run = OnnxRunner(model_path, providers, session_threads(self.options.instance_count))
        entries = self.options.response_cache_entries
        # ours, not Triton's response cache: Triton 2.51 replays a cached error response as an empty success
        self.cache: ResponseCache[Prediction] | None = ResponseCache(entries) if entries else None
        self.label_tensor = _LabelTensors(len(manifest.classes))
        self.counters = DriftCounters(manifest)
        self.metrics = _Metrics(manifest, self.counters, self.options.drift_counters, self.cache is not None)
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically, name="tritonops-flush", daemon=True)
        self._flusher.start()

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self.options.drift_flush_seconds):
            try:
                self.metrics.flush(self.counters.take())
            except Exception as exc:  # keep counting: one failed flush must not stop the thread for good
                pb_utils.Logger.log_error(f"tritonops: flushing metrics failed: {exc}")

    def execute(self, requests: list[Any]) -> list[Any]:
        started = time.perf_counter()
        get_input = pb_utils.get_input_tensor_by_name
        tensors = [{name: _as_numpy(get_input(request, name)) for name in self.input_names} for request in requests]
        scored = score(self.schema, self.run, tensors, self.cache)
        responses = []
        tensor, response, label_tensor = pb_utils.Tensor, pb_utils.InferenceResponse, self.label_tensor
        for request, result in zip(requests, scored.results, strict=True):
            if isinstance(result, Prediction):
                responses.append(
                    response(
                        output_tensors=[
                            label_tensor(result.label),
                            tensor(PROBABILITIES_OUTPUT, result.probabilities),
                        ]
                    )
                )
            elif isinstance(result, InvalidRequestError):
                self.counters.count_invalid(result.reason)
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[],
                        error=pb_utils.TritonError(
                            _with_request_id(result.message, request), pb_utils.TritonError.INVALID_ARG
                        ),
                    )
                )
            else:  # ModelRunError: the model failed on the batch
                responses.append(
                    pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(result.message))
                )
        if self.cache is not None:
            self.counters.count_cache(len(scored.cached), scored.cache_misses)
        served = scored.served() if self.options.drift_counters else None
        if served is not None:  # cached answers are live inputs too: drift must see them
            self.counters.count_batch(*served, time.perf_counter() - started)
        return responses

    def finalize(self) -> None:
        self._stop.set()
        self._flusher.join()
        self.metrics.flush(self.counters.take())
