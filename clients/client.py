"""``TritonClient`` (blocking) and ``AsyncTritonClient`` (asyncio): ``predict`` in one call, over gRPC or HTTP.

Both learn the model from Triton itself (``tritonops.signature`` and ``tritonops.canary`` in the live model's
config, refreshed every ``refresh_interval`` seconds so a weight set by the control plane takes effect), route
the canary's share to ``<model>__canary``, split large inputs into requests of at most ``rows_per_request``
rows, and retry retryable failures with backoff inside one deadline per call.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import pandas as pd
from tritonclient.utils import InferenceServerException

from tritonops.clients.connection import GrpcChannelOptions, Target, TlsOptions
from tritonops.clients.errors import InferenceError, ServerUnavailableError
from tritonops.clients.feedback import FeedbackSink
from tritonops.clients.outputs import concat, decode_labels
from tritonops.clients.pool import AsyncPooledTransport, PooledTransport
from tritonops.clients.prediction import Prediction
from tritonops.clients.retry import RetryPolicy, describe, is_deadline, is_retryable
from tritonops.clients.routing import CanaryRouter
from tritonops.clients.transport import (
    Answer,
    AsyncGrpcTransport,
    AsyncHttpTransport,
    AsyncTransport,
    GrpcTransport,
    HttpTransport,
    Protocol_,
    Route,
    SyncTransport,
)
from tritonops.contract.encoding import Rows, encode, split_rows, to_rows
from tritonops.contract.names import CANARY_SUFFIX, LABEL_OUTPUT, PROBABILITIES_OUTPUT
from tritonops.contract.signature import CanarySplit, Signature
from tritonops.errors import ConfigurationError

T = TypeVar("T")
TRANSPORT_ERRORS = (InferenceServerException, OSError, asyncio.TimeoutError)


@dataclass(frozen=True)
class ClientOptions:
    """How a client behaves. ``deadline`` bounds one whole ``predict`` call, retries included."""

    deadline: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rows_per_request: int | None = None
    """At most this many rows per request (default: the model's ``max_batch_size``)."""
    refresh_interval: float = 2.0
    """Seconds a model config (signature + canary weight) is trusted before it is read again."""
    headers: Mapping[str, str] | None = None
    max_in_flight: int = 4
    """Async client: requests of one ``predict`` call sent concurrently."""
    feedback: FeedbackSink | None = None
    """Where every answered row (request id, model, version, label) goes for ground-truth feedback:
    ``HttpFeedbackSink(controller_url)`` or, embedded, ``tritonops.control_plane.feedback.FeedbackStore(path)``."""
    tls: TlsOptions | None = None
    """TLS (and mutual TLS) to the server or the ingress in front of it; None: plain text."""
    grpc: GrpcChannelOptions = field(default_factory=GrpcChannelOptions)
    """gRPC channel arguments: keepalive, message size limit, any other."""
    resolve_interval: float = 5.0
    """``dns://`` addresses: seconds between two lookups of the name (pods joining and leaving)."""

    client_side_canary: bool = False
    """Route the canary's share in this client (to ``<model>__canary``), the fallback for servers whose live model
    does not split by itself. Off: the tritonops backend splits on the server, sticky on ``predict(key=...)``."""

    def __post_init__(self) -> None:
        if self.deadline <= 0:
            raise ConfigurationError(f"ClientOptions.deadline must be > 0 seconds, got {self.deadline}")
        if self.rows_per_request is not None and self.rows_per_request < 1:
            raise ConfigurationError(f"ClientOptions.rows_per_request must be >= 1, got {self.rows_per_request}")
        if self.max_in_flight < 1:
            raise ConfigurationError(f"ClientOptions.max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.resolve_interval <= 0:
            raise ConfigurationError(f"ClientOptions.resolve_interval must be > 0 seconds, got {self.resolve_interval}")


@dataclass
class _ModelView:
    """The cached knowledge about one model: the live signature, the canary split, canary signatures."""

    live: Signature | None = None
    split: CanarySplit | None = None
    fetched_at: float = float("-inf")
    canary_signatures: dict[tuple[str, int], Signature] = field(default_factory=dict)

    def stale(self, refresh_interval: float) -> bool:
        return self.live is None or time.monotonic() - self.fetched_at > refresh_interval

    def update(self, model: str, config: Mapping[str, Any]) -> None:
        self.live = Signature.from_config(model, config)
        self.split = CanarySplit.from_config(model, config)
        self.fetched_at = time.monotonic()


class _Deadline:
    """The time left to one ``predict`` call, and whether a failed attempt may be retried within it."""

    def __init__(self, url: str, seconds: float, policy: RetryPolicy) -> None:
        self.url, self.seconds, self.policy = url, seconds, policy
        self.start = time.monotonic()

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def unavailable(self, attempts: int, last_error: str) -> ServerUnavailableError:
        return ServerUnavailableError(self.url, self.seconds, attempts, time.monotonic() - self.start, last_error)

    def next_wait(self, model: str, error: BaseException, attempt: int) -> float:
        """Seconds to wait before retrying ``error`` (after ``attempt`` tries); raises when it must not or cannot."""
        if not (is_retryable(error) or is_deadline(error)):
            status = str(error.status()) if isinstance(error, InferenceServerException) else type(error).__name__
            text = error.message() if isinstance(error, InferenceServerException) else str(error)
            raise InferenceError(model, status, (text or "").strip(), attempt) from error
        if is_deadline(error) or attempt >= self.policy.max_attempts:
            raise self.unavailable(attempt, describe(error)) from error
        wait = self.policy.backoff(attempt)
        if wait >= self.remaining():
            raise self.unavailable(attempt, describe(error)) from error
        return wait


def _assemble(
    signature: Signature,
    served: str,
    answers: Sequence[Answer],
    request_id: str,
    index: Sequence[Any],
    split: CanarySplit | None,
) -> Prediction:
    labels = concat([decode_labels(signature, answer.outputs[LABEL_OUTPUT]) for answer in answers])
    probabilities = concat([answer.outputs[PROBABILITIES_OUTPUT] for answer in answers])
    first = answers[0]
    model, version = served, first.model_version
    if first.served_version is not None and first.served_version != first.model_version:
        # the server routed the request (every chunk: they share one routing key) to its canary
        model, version = (split.model if split is not None else f"{served}{CANARY_SUFFIX}"), first.served_version
    return Prediction(
        labels=labels,
        probabilities=probabilities,
        classes=signature.classes,
        model=model,
        version=version,
        request_id=request_id,
        index=pd.Index(index),
    )


def _record(sink: FeedbackSink | None, model: str, prediction: Prediction) -> None:
    if sink is not None:
        answers = list(zip(prediction.request_ids, prediction.labels.tolist(), strict=True))
        sink.record_predictions(model, int(prediction.version), answers)


def _sink(options: ClientOptions) -> FeedbackSink:
    if options.feedback is None:
        raise ConfigurationError(
            "feedback: ClientOptions.feedback is not set; pass HttpFeedbackSink(controller_url) (or, embedded, "
            "FeedbackStore(state_path)) so predictions and labels have somewhere to go"
        )
    return options.feedback


def _route(served: str, model: str, live: Signature, key: str | None, request_id: str) -> Route:
    """Ask a live model that names its version for that output, sticky on the key (else the request id, so the
    chunks of one call stay on one version)."""
    return (key if key is not None else request_id, True) if served == model and live.names_version else None


def _check_protocol(protocol: str) -> Protocol_:
    if protocol not in ("grpc", "http"):
        raise ConfigurationError(f"protocol: expected 'grpc' or 'http', got {protocol!r}")
    return "grpc" if protocol == "grpc" else "http"


def _sync_transport(url: str, protocol: Protocol_, options: ClientOptions) -> SyncTransport:
    def make(address: str) -> SyncTransport:
        if protocol == "grpc":
            return GrpcTransport(address, options.headers, options.tls, options.grpc)
        return HttpTransport(address, options.headers, timeout=options.deadline, tls=options.tls)

    target = Target.parse(url)
    return PooledTransport(target, make, options.resolve_interval) if target.dns else make(url)


def _async_transport(url: str, protocol: Protocol_, options: ClientOptions) -> AsyncTransport:
    def make(address: str) -> AsyncTransport:
        if protocol == "grpc":
            return AsyncGrpcTransport(address, options.headers, options.tls, options.grpc)
        return AsyncHttpTransport(address, options.headers, tls=options.tls)

    target = Target.parse(url)
    return AsyncPooledTransport(target, make, options.resolve_interval) if target.dns else make(url)


def _rows_per_request(options: ClientOptions, signature: Signature) -> int:
    return min(options.rows_per_request or signature.max_batch_size, signature.max_batch_size)


class TritonClient:
    """Blocking client for one model. Reuses one connection; thread-safe for gRPC (one HTTP client per thread).

    ``url`` is ``host:port``, or ``dns:///NAME:PORT`` (``dns://DNS_SERVER:PORT/NAME:PORT``) to spread requests
    round robin over every server the name lists (``tritonops.clients.pool``).

    >>> with TritonClient("127.0.0.1:8001", "churn") as client:
    ...     prediction = client.predict(frame)
    ...     prediction.labels, prediction.probability_frame()
    """

    def __init__(
        self, url: str, model: str, *, protocol: Protocol_ = "grpc", options: ClientOptions | None = None
    ) -> None:
        self.url, self.model, self.protocol = url, model, _check_protocol(protocol)
        self.options = options or ClientOptions()
        self._transport = _sync_transport(url, self.protocol, self.options)
        self._view = _ModelView()
        self._router = CanaryRouter()
        self._lock = threading.Lock()

    def _call(self, model: str, deadline: _Deadline, action: Callable[[float], T]) -> T:
        for attempt in itertools.count(1):
            try:
                return action(max(deadline.remaining(), 0.001))
            except TRANSPORT_ERRORS as error:
                time.sleep(deadline.next_wait(model, error, attempt))
        raise AssertionError("unreachable")

    def _config(self, model: str, deadline: _Deadline) -> Mapping[str, Any]:
        return self._call(model, deadline, lambda left: self._transport.model_config(model, left))

    def _refresh(self, deadline: _Deadline) -> tuple[Signature, CanarySplit | None]:
        with self._lock:
            if self._view.stale(self.options.refresh_interval):
                self._view.update(self.model, self._config(self.model, deadline))
            assert self._view.live is not None
            return self._view.live, self._view.split

    def _canary_signature(self, split: CanarySplit, deadline: _Deadline) -> Signature:
        cache = self._view.canary_signatures
        key = (split.model, split.version)
        with self._lock:
            if key not in cache:
                cache[key] = Signature.from_config(split.model, self._config(split.model, deadline))
            return cache[key]

    def signature(self) -> Signature:
        """The live model's features, classes and batch limit (read from Triton, cached)."""
        return self._refresh(_Deadline(self.url, self.options.deadline, self.options.retry))[0]

    def canary(self) -> CanarySplit | None:
        """The canary split currently set on the live model, or None."""
        return self._refresh(_Deadline(self.url, self.options.deadline, self.options.retry))[1]

    def predict(self, data: Any, *, key: str | None = None, request_id: str | None = None) -> Prediction:
        """Labels and probabilities for ``data`` (DataFrame, mapping, array or list of rows).

        ``key`` makes canary routing sticky (same key, same side); ``request_id`` (default: a new UUID) is
        sent with the request and returned for ``feedback``.
        """
        deadline = _Deadline(self.url, self.options.deadline, self.options.retry)
        live, split = self._refresh(deadline)
        served = self._router.choose(self.model, split if self.options.client_side_canary else None, key)
        signature = live if served == self.model or split is None else self._canary_signature(split, deadline)
        rows = to_rows(signature.model, signature.features, data)
        request_id = request_id or uuid.uuid4().hex
        route = _route(served, self.model, live, key, request_id)
        answers = []
        for chunk in split_rows(rows, _rows_per_request(self.options, signature)):
            tensors = encode(signature.model, signature.features, chunk)
            infer = functools.partial(self._transport.infer, served, tensors, request_id, route=route)
            answers.append(self._call(served, deadline, infer))
        prediction = _assemble(signature, served, answers, request_id, rows.index, split)
        _record(self.options.feedback, self.model, prediction)
        return prediction

    def feedback(self, request_id: str, label: object) -> None:
        """The true label for a row answered earlier (an id from ``Prediction.request_ids``)."""
        _sink(self.options).record_feedback(request_id, label)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncTritonClient:
    """The asyncio twin of ``TritonClient``; one ``predict`` sends its requests concurrently."""

    def __init__(
        self, url: str, model: str, *, protocol: Protocol_ = "grpc", options: ClientOptions | None = None
    ) -> None:
        self.url, self.model, self.protocol = url, model, _check_protocol(protocol)
        self.options = options or ClientOptions()
        self._transport = _async_transport(url, self.protocol, self.options)
        self._view = _ModelView()
        self._router = CanaryRouter()
        self._lock = asyncio.Lock()

    async def _call(self, model: str, deadline: _Deadline, action: Callable[[float], Awaitable[T]]) -> T:
        for attempt in itertools.count(1):
            try:
                return await action(max(deadline.remaining(), 0.001))
            except TRANSPORT_ERRORS as error:
                await asyncio.sleep(deadline.next_wait(model, error, attempt))
        raise AssertionError("unreachable")

    async def _config(self, model: str, deadline: _Deadline) -> Mapping[str, Any]:
        return await self._call(model, deadline, lambda left: self._transport.model_config(model, left))

    async def _refresh(self, deadline: _Deadline) -> tuple[Signature, CanarySplit | None]:
        async with self._lock:
            if self._view.stale(self.options.refresh_interval):
                self._view.update(self.model, await self._config(self.model, deadline))
            assert self._view.live is not None
            return self._view.live, self._view.split

    async def _canary_signature(self, split: CanarySplit, deadline: _Deadline) -> Signature:
        cache = self._view.canary_signatures
        key = (split.model, split.version)
        async with self._lock:
            if key not in cache:
                cache[key] = Signature.from_config(split.model, await self._config(split.model, deadline))
            return cache[key]

    async def signature(self) -> Signature:
        """The live model's features, classes and batch limit (read from Triton, cached)."""
        return (await self._refresh(_Deadline(self.url, self.options.deadline, self.options.retry)))[0]

    async def canary(self) -> CanarySplit | None:
        """The canary split currently set on the live model, or None."""
        return (await self._refresh(_Deadline(self.url, self.options.deadline, self.options.retry)))[1]

    async def predict(self, data: Any, *, key: str | None = None, request_id: str | None = None) -> Prediction:
        """Labels and probabilities for ``data``; see ``TritonClient.predict``."""
        deadline = _Deadline(self.url, self.options.deadline, self.options.retry)
        live, split = await self._refresh(deadline)
        served = self._router.choose(self.model, split if self.options.client_side_canary else None, key)
        signature = live if served == self.model or split is None else await self._canary_signature(split, deadline)
        rows = to_rows(signature.model, signature.features, data)
        request_id = request_id or uuid.uuid4().hex
        route = _route(served, self.model, live, key, request_id)
        gate = asyncio.Semaphore(self.options.max_in_flight)

        async def one(chunk: Rows) -> Answer:
            tensors = encode(signature.model, signature.features, chunk)
            async with gate:
                return await self._call(
                    served, deadline, lambda left: self._transport.infer(served, tensors, request_id, left, route)
                )

        chunks = split_rows(rows, _rows_per_request(self.options, signature))
        answers = await asyncio.gather(*(one(chunk) for chunk in chunks))
        prediction = _assemble(signature, served, answers, request_id, rows.index, split)
        if self.options.feedback is not None:  # a local store writes SQLite: not on the event loop
            await asyncio.to_thread(_record, self.options.feedback, self.model, prediction)
        return prediction

    async def feedback(self, request_id: str, label: object) -> None:
        """The true label for a row answered earlier (an id from ``Prediction.request_ids``)."""
        await asyncio.to_thread(_sink(self.options).record_feedback, request_id, label)

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncTritonClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
