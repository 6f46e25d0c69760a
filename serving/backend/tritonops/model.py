"""The ``tritonops`` Triton backend: ONNX Runtime behind dynamic batching, with validation and drift counters.

A Python-based backend (model configs say ``backend: "tritonops"``): model versions hold only ``model.onnx`` and
``manifest.json``. Each instance owns one ONNX Runtime session (or forwards batches to another Triton model over
BLS, for the GPU deployment in docs/gpu.md). The logic lives in the ``serving`` package and the names and the
manifest in ``tritonops.contract``; this module adapts them to ``triton_python_backend_utils``: requests in,
responses and metrics out. It imports no pandas, pyarrow, onnx, scipy or pydantic (tests/unit/test_lean_imports.py):
a stub starts for every model instance Triton loads, and pays for each import.

On a live model with a canary split (``tritonops.serving.routing``), ``execute`` returns a coroutine for the
stub to run: the canary's share goes to ``<model>__canary`` over BLS ``async_exec`` while this instance scores the
rest, and a canary that fails falls back to live. Without a split it stays a plain function (no event loop on the
hot path). A shadow gets copies of answered batches through a bounded queue (``tritonops.serving.shadow``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from tritonops.contract.names import (
    LABEL_OUTPUT,
    PROBABILITIES_OUTPUT,
    REQUEST_ID_PARAMETER,
    SMOKE_REQUEST_ID,
    VERSION_OUTPUT,
)
from tritonops.contract.served import ServedManifest, load_served_manifest
from tritonops.contract.signature import CanarySplit
from tritonops.serving.backend_options import BackendOptions
from tritonops.serving.capture import CaptureSpec, CaptureWriter
from tritonops.serving.drift_counters import DURATION_BUCKETS, DriftCounters, PendingCounts
from tritonops.serving.response_cache import ResponseCache
from tritonops.serving.routing import ShadowRoute, route_key
from tritonops.serving.scoring import (
    ModelOutputs,
    OnnxRunner,
    execution_providers,
    score,
    session_threads,
)
from tritonops.serving.shadow import PROB_DIFF_BUCKETS, SHADOW_ERROR_REASONS, ShadowMirror, ShadowRunError
from tritonops.serving.validation import REASONS, Batch, InputSchema, InvalidRequestError


class _BlsRunner:
    """Runs a batch on another Triton model (the native ``onnxruntime_onnx`` export) through BLS."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __call__(self, batch: Batch) -> ModelOutputs:
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
        return ModelOutputs(label.reshape(-1, 1), probabilities.astype(np.float32, copy=False))


def _decoded(label: np.ndarray) -> np.ndarray:
    """BYTES labels from a BLS response as ``str``, the way ONNX Runtime hands string labels to live."""
    if label.dtype != np.object_:
        return label
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in label.reshape(-1)], dtype=object)


class _ShadowRunner:
    """Scores a mirrored batch with the shadow alias over BLS; failures become ``ShadowRunError``s."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __call__(self, batch: Batch) -> ModelOutputs:
        request = pb_utils.InferenceRequest(
            model_name=self.target,
            requested_output_names=[LABEL_OUTPUT, PROBABILITIES_OUTPUT],
            inputs=[pb_utils.Tensor(name, array) for name, array in batch.items()],
        )
        try:
            response = request.exec()
        except Exception as exc:  # the stub raises for some BLS failures instead of answering an error
            reason = "unavailable" if _names_missing_model(str(exc), self.target) else "model_error"
            raise ShadowRunError(reason, str(exc)) from exc
        if response.has_error():
            error = response.error()
            unavailable = _unavailable(error) or _names_missing_model(error.message(), self.target)
            raise ShadowRunError("unavailable" if unavailable else "model_error", error.message())
        label = pb_utils.get_output_tensor_by_name(response, LABEL_OUTPUT)
        probabilities = pb_utils.get_output_tensor_by_name(response, PROBABILITIES_OUTPUT)
        if label is None or probabilities is None:
            raise ShadowRunError("bad_output", f"model '{self.target}' answered without label/probabilities")
        return ModelOutputs(
            _decoded(label.as_numpy()).reshape(-1, 1), probabilities.as_numpy().astype(np.float32, copy=False)
        )


class _CanaryCounts:
    """Requests the canary answered and requests that fell back to live, since the last ``take``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.answered = 0
        self.fallback = 0

    def add(self, answered: int, fallback: int) -> None:
        with self._lock:
            self.answered += answered
            self.fallback += fallback

    def take(self) -> tuple[int, int]:
        with self._lock:
            counts = (self.answered, self.fallback)
            self.answered = self.fallback = 0
        return counts


class _RouteMetrics:
    """Metrics of the canary split and the shadow mirror of one live version (families only where set)."""

    def __init__(self, manifest: ServedManifest, canary: CanarySplit | None, shadow: ShadowRoute | None) -> None:
        base = {"model": manifest.name, "version": str(manifest.version)}
        self.families: list[Any] = []
        self.canary: dict[str, Any] = {}
        if canary is not None:
            requests = self._family(
                "tritonops_canary_requests_total",
                "Requests the live model routed to its canary: answered by the canary, or fell back to live",
                pb_utils.MetricFamily.COUNTER,
            )
            labels = {**base, "canary_version": str(canary.version)}
            self.canary = {o: requests.Metric(labels={**labels, "outcome": o}) for o in ("answered", "fallback")}
        self.shadow: dict[str, Any] = {}
        if shadow is None:
            return
        labels = {**base, "shadow_version": str(shadow.version)}
        counter = pb_utils.MetricFamily.COUNTER
        for key, name, description in (
            ("mirrored", "tritonops_shadow_mirrored_rows_total", "Answered rows copied to the shadow"),
            ("dropped", "tritonops_shadow_dropped_rows_total", "Rows not mirrored: the shadow queue was full"),
            ("compared", "tritonops_shadow_compared_rows_total", "Mirrored rows the shadow scored and compared"),
            ("agreed", "tritonops_shadow_agreed_rows_total", "Compared rows where the shadow's label equals live's"),
            ("diff_sum", "tritonops_shadow_prob_diff_total", "Sum over compared rows of max |probability difference|"),
        ):
            self.shadow[key] = self._family(name, description, counter).Metric(labels=labels)
        buckets = self._family(
            "tritonops_shadow_prob_diff_rows_total",
            "Compared rows whose max |live - shadow probability| is <= le (cumulative, for histogram_quantile)",
            counter,
        )
        bounds = [*(repr(float(b)) for b in PROB_DIFF_BUCKETS), "+Inf"]
        self.diff_buckets = [buckets.Metric(labels={**labels, "le": le}) for le in bounds]
        errors = self._family(
            "tritonops_shadow_errors_total", "Mirrored rows the shadow failed to score, by reason", counter
        )
        self.errors = {r: errors.Metric(labels={**labels, "reason": r}) for r in SHADOW_ERROR_REASONS}
        duration = self._family(
            "tritonops_shadow_duration_seconds",
            "Shadow time per mirrored batch (BLS call, model, comparison)",
            pb_utils.MetricFamily.HISTOGRAM,
        )
        self.duration = duration.Metric(labels=labels, buckets=list(DURATION_BUCKETS))

    def _family(self, name: str, description: str, kind: Any) -> Any:
        family = pb_utils.MetricFamily(name=name, description=description, kind=kind)
        self.families.append(family)  # families must outlive their metrics
        return family

    def flush(self, counts: _CanaryCounts, mirror: ShadowMirror | None) -> None:
        if self.canary:
            for outcome, count in zip(("answered", "fallback"), counts.take(), strict=True):
                if count:
                    self.canary[outcome].increment(float(count))
        if mirror is None:
            return
        snap = mirror.take()
        for key, count in (("mirrored", snap.mirrored), ("dropped", snap.dropped), ("agreed", snap.agreed)):
            if count:
                self.shadow[key].increment(float(count))
        for reason, count in snap.errors.items():
            if count:
                self.errors[reason].increment(float(count))
        for seconds in snap.latencies:
            self.duration.observe(seconds)
        if snap.compared:
            cumulative = 0
            for metric, count in zip(self.diff_buckets, snap.prob_diff_buckets, strict=True):
                cumulative += count
                if cumulative:
                    metric.increment(float(cumulative))
            self.shadow["diff_sum"].increment(snap.prob_diff_sum)
            # compared last: a reader that sees it move sees the agreement and histogram of those rows too
            self.shadow["compared"].increment(float(snap.compared))


class _VersionTensors:
    """``served_version`` output tensors: one reused tensor for one-row answers, a fresh one for larger ones."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.one = pb_utils.Tensor(VERSION_OUTPUT, np.array([[version]], dtype=np.int64))

    def __call__(self, rows: int) -> Any:
        if rows == 1:
            return self.one
        return pb_utils.Tensor(VERSION_OUTPUT, np.full((rows, 1), self.version, dtype=np.int64))


class _Metrics:
    """Triton custom metrics for one model version; ``flush`` adds a snapshot of counts to them."""

    def __init__(self, manifest: ServedManifest, counters: DriftCounters, drift: bool, cache: bool) -> None:
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

    def flush(self, snapshot: PendingCounts) -> None:
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


def _tensor_features(manifest: ServedManifest) -> list[tuple[str, tuple[str, ...]]]:
    return [(tensor.name, tuple(tensor.features)) for tensor in manifest.inputs]


class _Capture:
    """The capture writer plus its counters on Triton's /metrics; a failed flush is logged, never raised."""

    def __init__(self, writer: CaptureWriter) -> None:
        self.writer = writer
        base = {"model": writer.model, "version": str(writer.version)}
        self.families = [
            pb_utils.MetricFamily(
                name="tritonops_capture_rows_total",
                description="Scored rows written to the capture spool",
                kind=pb_utils.MetricFamily.COUNTER,
            ),
            pb_utils.MetricFamily(
                name="tritonops_capture_dropped_total",
                description="Sampled rows dropped because the capture buffer was full or its spool unwritable",
                kind=pb_utils.MetricFamily.COUNTER,
            ),
        ]
        self.rows = self.families[0].Metric(labels=base)
        self.dropped = self.families[1].Metric(labels=base)
        self.reported = (0, 0)

    def flush(self, *, final: bool = False) -> None:
        try:
            self.writer.flush(final=final)
        except OSError as exc:
            pb_utils.Logger.log_error(f"tritonops: writing captured rows to {self.writer.folder} failed: {exc}")
        written, dropped = self.writer.written, self.writer.dropped
        if written > self.reported[0]:
            self.rows.increment(float(written - self.reported[0]))
        if dropped > self.reported[1]:
            self.dropped.increment(float(dropped - self.reported[1]))
        self.reported = (written, dropped)


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


def _invalid_input(error: Any) -> bool:
    """True for a validation error (INVALID_ARG): the answer of the model that scored the request."""
    return bool(error.code() == pb_utils.TritonError.INVALID_ARG)


def _names_missing_model(message: str, target: str) -> bool:
    """Triton's BLS reports a model that is not loaded with code INTERNAL: its message names that model (a
    model that failed on a model it calls in turn names the inner one, after our ``ModelRunError`` text)."""
    return f"'{target}'" in message and any(
        text in message for text in ("unknown model", "is not ready", "no available versions", "not found")
    )


def _unavailable(error: Any) -> bool:
    """True when the target model is not there (unloaded, not ready), as opposed to failing on the batch."""
    return bool(error.code() in (pb_utils.TritonError.NOT_FOUND, pb_utils.TritonError.UNAVAILABLE))


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


class _Version:
    """Everything one version needs to score requests in this instance: schema, runner, cache, counters."""

    def __init__(self, args: dict[str, Any], options: BackendOptions, version_dir: Path, version_output: bool) -> None:
        manifest = load_served_manifest(version_dir / "manifest.json")
        self.manifest = manifest
        self.schema = InputSchema.from_manifest(manifest)
        self.input_names = [rule.name for rule in self.schema.rules]
        target = options.bls_target
        if target is not None:
            self.run: Any = _BlsRunner(target)
        else:
            providers = execution_providers(
                args["model_instance_kind"], int(args["model_instance_device_id"]), options.tensorrt
            )
            self.run = OnnxRunner(version_dir / manifest.onnx.file, providers, session_threads(options.instance_count))
        entries = options.response_cache_entries
        # ours, not Triton's response cache: Triton 2.51 replays a cached error response as an empty success
        self.cache: ResponseCache[ModelOutputs] | None = ResponseCache(entries) if entries else None
        self.label_tensor = _LabelTensors(len(manifest.classes))
        self.version_tensor = _VersionTensors(manifest.version) if version_output else None
        self.counters = DriftCounters(manifest)
        self.metrics = _Metrics(manifest, self.counters, options.drift_counters, self.cache is not None)

    def flush(self) -> None:
        self.metrics.flush(self.counters.take())


class _LocalShadow:
    """Scores mirrored batches with the shadow version's own session in this instance (no BLS, no IPC)."""

    def __init__(self, version: _Version) -> None:
        self.version = version

    def __call__(self, batch: Batch) -> ModelOutputs:
        whole = self.version.schema.validate_all([batch])
        if whole is None:
            raise ShadowRunError("rejected", "the shadow's validation refused rows live answered")
        try:
            return self.version.run(whole.inputs)  # type: ignore[no-any-return]
        except Exception as exc:  # ONNX Runtime errors are untyped
            raise ShadowRunError("model_error", f"the shadow failed on a batch: {exc}") from exc


class TritonPythonModel:
    """One model instance."""

    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self.options = BackendOptions.from_model_config(config)
        model_dir = Path(args["model_repository"])
        declared = {output["name"] for output in config.get("output", [])}
        self.version_output = VERSION_OUTPUT in declared
        self.live = _Version(args, self.options, model_dir / args["model_version"], self.version_output)
        manifest = self.live.manifest
        routes = self.options.routes
        self.canary = routes.canary
        self.shadow = routes.shadow
        # a canary or shadow whose files sit next to live's (the repository layout) is scored in this instance;
        # otherwise (a model loaded from bytes) it is reached over BLS through its alias
        self.local_canary = self._local(args, model_dir, self.canary.version if self.canary else None)
        local_shadow = self._local(args, model_dir, self.shadow.version if self.shadow else None)
        self.canary_counts = _CanaryCounts()
        self.mirror: ShadowMirror | None = None
        if self.shadow is not None:
            runner: Any = _LocalShadow(local_shadow) if local_shadow is not None else _ShadowRunner(self.shadow.model)
            self.mirror = ShadowMirror(runner, self.options.shadow_queue_batches)
        self.route_metrics = _RouteMetrics(manifest, self.canary, self.shadow)
        spec = CaptureSpec.from_model_config(config)
        self.capture = (
            _Capture(CaptureWriter(spec, manifest.name, manifest.version, _tensor_features(manifest), manifest.classes))
            if spec is not None and spec.share > 0
            else None
        )
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically, name="tritonops-flush", daemon=True)
        self._flusher.start()

    def _local(self, args: dict[str, Any], model_dir: Path, version: int | None) -> _Version | None:
        """Version ``version`` of this model loaded in this instance, or None (not routed, or not loadable here)."""
        if version is None or self.options.bls_target is not None:  # a BLS front forwards to one native model
            return None
        if not (model_dir / str(version) / "manifest.json").is_file():
            return None
        try:
            return _Version(args, self.options, model_dir / str(version), self.version_output)
        except Exception as exc:  # a candidate that can't load here must not stop live: use its alias instead
            pb_utils.Logger.log_error(f"tritonops: version {version} cannot be scored in-process ({exc}); using BLS")
            return None

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self.options.drift_flush_seconds):
            try:
                self.live.flush()
                if self.local_canary is not None:
                    self.local_canary.flush()
                self.route_metrics.flush(self.canary_counts, self.mirror)
            except Exception as exc:  # keep counting: one failed flush must not stop the thread for good
                pb_utils.Logger.log_error(f"tritonops: flushing metrics failed: {exc}")
            if self.capture is not None:
                self.capture.flush()

    def execute(self, requests: list[Any]) -> list[Any] | Coroutine[Any, Any, list[Any]]:
        """Responses in request order; a coroutine (run by the stub) only when a batch sends requests over BLS."""
        canary = self.canary
        if canary is None:
            return self._answer(self.live, requests)
        chosen = [canary.to_canary(route_key(request.parameters())) for request in requests]
        if not any(chosen):
            return self._answer(self.live, requests)
        if self.local_canary is None:
            return self._split(canary, requests, chosen)
        live = [request for request, to_canary in zip(requests, chosen, strict=True) if not to_canary]
        routed = [request for request, to_canary in zip(requests, chosen, strict=True) if to_canary]
        answered_live = iter(self._answer(self.live, live) if live else [])
        answered_canary = iter(self._answer(self.local_canary, routed))
        return [next(answered_canary) if to_canary else next(answered_live) for to_canary in chosen]

    async def _split(self, canary: CanarySplit, requests: list[Any], chosen: list[bool]) -> list[Any]:
        """Send the canary's share over BLS, score the rest here meanwhile; a canary failure falls back to live.

        The canary's own validation errors are its answer (it scored the request); any other failure (unloaded,
        model error) re-scores the request here, counted as a fallback.
        """
        waits = [
            pb_utils.InferenceRequest(
                model_name=canary.model,
                requested_output_names=list(request.requested_output_names()),
                inputs=request.inputs(),
            ).async_exec()
            for request, to_canary in zip(requests, chosen, strict=True)
            if to_canary
        ]
        live = [request for request, to_canary in zip(requests, chosen, strict=True) if not to_canary]
        live_responses = iter(self._answer(self.live, live) if live else [])
        import asyncio  # here, not at the top: the event loop is needed only by this path, and each stub start
        # (one per model instance load) would pay for importing it

        answers = iter(await asyncio.gather(*waits, return_exceptions=True))
        responses: list[Any] = []
        fallback: list[int] = []
        for index, to_canary in enumerate(chosen):
            if not to_canary:
                responses.append(next(live_responses))
                continue
            answer = next(answers)
            if isinstance(answer, BaseException) or (answer.has_error() and not _invalid_input(answer.error())):
                fallback.append(index)
                responses.append(None)
            elif answer.has_error():
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=answer.error()))
            else:
                responses.append(pb_utils.InferenceResponse(output_tensors=answer.output_tensors()))
        if fallback:
            for index, response in zip(fallback, self._answer(self.live, [requests[i] for i in fallback]), strict=True):
                responses[index] = response
        self.canary_counts.add(len(waits) - len(fallback), len(fallback))
        return responses

    def _answer(self, version: _Version, requests: list[Any]) -> list[Any]:
        """Score ``requests`` with ``version`` in this instance.

        Live's batches are captured and mirrored to the shadow. A canary that fails on a batch hands those requests
        to live (counted as fallbacks); its validation errors are its answer.
        """
        started = time.perf_counter()
        is_live = version is self.live
        get_input = pb_utils.get_input_tensor_by_name
        tensors = [{name: _as_numpy(get_input(request, name)) for name in version.input_names} for request in requests]
        scored = score(version.schema, version.run, tensors, version.cache)
        responses: list[Any] = []
        fallback: list[int] = []
        tensor, response, label_tensor = pb_utils.Tensor, pb_utils.InferenceResponse, version.label_tensor
        version_tensor, capture = version.version_tensor, self.capture if is_live else None
        for index, (request, result) in enumerate(zip(requests, scored.results, strict=True)):
            if isinstance(result, ModelOutputs):
                if capture is not None and capture.writer.sampled():
                    request_id = request.request_id()
                    if request_id != SMOKE_REQUEST_ID:
                        capture.writer.offer(
                            request_id or uuid.uuid4().hex, tensors[index], result.label, result.probabilities
                        )
                outputs = [label_tensor(result.label), tensor(PROBABILITIES_OUTPUT, result.probabilities)]
                if version_tensor is not None:
                    outputs.append(version_tensor(result.label.shape[0]))
                responses.append(response(output_tensors=outputs))
            elif isinstance(result, InvalidRequestError):
                version.counters.count_invalid(result.reason)
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[],
                        error=pb_utils.TritonError(
                            _with_request_id(result.message, request), pb_utils.TritonError.INVALID_ARG
                        ),
                    )
                )
            elif not is_live:  # ModelRunError on the canary: live answers instead
                fallback.append(index)
                responses.append(None)
            else:  # ModelRunError: the model failed on the batch
                responses.append(
                    pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(result.message))
                )
        if version.cache is not None:
            version.counters.count_cache(len(scored.cached), scored.cache_misses)
        served = scored.served() if self.options.drift_counters else None
        if served is not None:  # cached answers are live inputs too: drift must see them
            version.counters.count_batch(*served, time.perf_counter() - started)
        if is_live and self.mirror is not None and scored.outputs is not None:
            self._mirror(self.mirror, scored.inputs, scored.outputs)
        if not is_live:
            if fallback:
                for index, answer in zip(
                    fallback, self._answer(self.live, [requests[i] for i in fallback]), strict=True
                ):
                    responses[index] = answer
            self.canary_counts.add(len(requests) - len(fallback), len(fallback))
        return responses

    def _mirror(self, mirror: ShadowMirror, inputs: Batch, outputs: ModelOutputs) -> None:
        """Offer the shadow's share of the rows this batch ran (rows drawn independently below share 1)."""
        assert self.shadow is not None
        if self.shadow.share < 1.0:
            keep = np.random.random(outputs.label.shape[0]) < self.shadow.share
            if not keep.any():
                return
            inputs = {name: array[keep] for name, array in inputs.items()}
            outputs = ModelOutputs(outputs.label[keep], outputs.probabilities[keep])
        mirror.offer(inputs, outputs)

    def finalize(self) -> None:
        self._stop.set()
        self._flusher.join()
        if self.mirror is not None:
            self.mirror.close()
        self.live.flush()
        if self.local_canary is not None:
            self.local_canary.flush()
        self.route_metrics.flush(self.canary_counts, self.mirror)
        if self.capture is not None:
            self.capture.flush(final=True)
