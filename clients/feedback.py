"""Ground truth from the SDK: the ``FeedbackSink`` protocol, and ``HttpFeedbackSink`` to the controller.

The SDK never opens the control plane's database. With ``ClientOptions(feedback=sink)`` every answered row goes
to ``sink.record_predictions`` and ``client.feedback`` to ``sink.record_feedback``. Two sinks exist:

- ``HttpFeedbackSink``: the controller's ``POST /v1/feedback`` (an operator token), batched from a background
  thread. ``predict`` only appends to a bounded queue, so it never waits for the controller or fails because of
  it; failed posts are retried with backoff; rows it must drop (queue full, retries used up, refused) are counted
  in ``stats()`` and logged.
- ``tritonops.control_plane.feedback.FeedbackStore``: the embedded case, the local SQLite file, written in the
  caller's thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from tritonops.errors import ConfigurationError

if TYPE_CHECKING:
    import requests

log = logging.getLogger("tritonops.clients.feedback")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class FeedbackSink(Protocol):
    """Where the SDK hands predictions and labels (implemented by the controller's client and the local store)."""

    def record_predictions(self, model: str, version: int, answers: Sequence[tuple[str, str | int]]) -> int:
        """``(request_id, label)`` rows answered by ``model`` ``version``; returns the rows taken."""
        ...

    def record_feedback(self, request_id: str, true_label: object) -> None:
        """The right answer for a row answered earlier."""
        ...


@dataclass(frozen=True)
class FeedbackStats:
    """What an ``HttpFeedbackSink`` did with the rows it was given."""

    queued: int
    """Rows waiting to be sent (including a batch being sent)."""
    sent: int
    """Rows the controller recorded."""
    lost: int
    """Rows dropped: the queue was full, retries ran out, or the controller refused the batch."""
    last_error: str | None


_Row = tuple[str, str, int | None, str | int]
"""("prediction", request_id, version, label) with the model in the batch key, or ("label", request_id, None, x)."""


class HttpFeedbackSink:
    """Batches feedback to ``POST {url}/v1/feedback``; thread-safe; close it (or use ``with``) to flush.

    ``token``: an operator token (default: ``TRITONOPS_TOKEN`` / ``TRITONOPS_TOKEN_FILE``).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        batch_size: int = 500,
        max_queue: int = 10_000,
        flush_interval: float = 0.5,
        timeout: float = 5.0,
        retry_for: float = 30.0,
        max_backoff: float = 5.0,
    ) -> None:
        from tritonops.settings import read_api_token

        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"HttpFeedbackSink url: expected http(s)://host:port of the controller, got {url!r}"
            )
        if batch_size < 1 or max_queue < batch_size:
            raise ConfigurationError(
                f"HttpFeedbackSink: expected 1 <= batch_size <= max_queue, got batch_size={batch_size}, "
                f"max_queue={max_queue}"
            )
        self.url = url.rstrip("/") + "/v1/feedback"
        token = token if token is not None else read_api_token()
        if not token:
            raise ConfigurationError(
                "HttpFeedbackSink: no API token; pass token= or set TRITONOPS_TOKEN / TRITONOPS_TOKEN_FILE"
            )
        self._headers = {"Authorization": f"Bearer {token}"}
        self._batch_size, self._max_queue = batch_size, max_queue
        self._flush_interval, self._timeout = flush_interval, timeout
        self._retry_for, self._max_backoff = retry_for, max_backoff
        self._queue: collections.deque[tuple[str, _Row]] = collections.deque()
        self._in_flight = 0
        self._sent = self._lost = 0
        self._last_error: str | None = None
        self._closing = False
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        return f"HttpFeedbackSink({self.url!r})"

    # -- the caller's side: append and return -----------------------------------------------------------
    def record_predictions(self, model: str, version: int, answers: Sequence[tuple[str, str | int]]) -> int:
        rows = [(model, ("prediction", request_id, version, label)) for request_id, label in answers]
        return self._put(rows)

    def record_feedback(self, request_id: str, true_label: object) -> None:
        label = true_label.decode("utf-8") if isinstance(true_label, bytes) else true_label
        if isinstance(label, bool) or not isinstance(label, str | int):
            raise ConfigurationError(f"feedback label: expected a class name (str) or number (int), got {label!r}")
        self._put([("", ("label", request_id, None, label))])

    def _put(self, rows: Sequence[tuple[str, _Row]]) -> int:
        with self._wake:
            if self._closing:
                raise ConfigurationError("HttpFeedbackSink: closed; no more feedback is taken")
            room = max(0, self._max_queue - len(self._queue) - self._in_flight)
            taken, dropped = list(rows[:room]), len(rows) - room
            self._queue.extend(taken)
            if dropped > 0:
                self._lost += dropped
                self._last_error = f"queue full ({self._max_queue} rows): {dropped} row(s) dropped"
                log.warning("feedback to %s: %s", self.url, self._last_error)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tritonops-feedback", daemon=True)
                self._thread.start()
            if len(self._queue) >= self._batch_size:
                self._wake.notify()
        return len(taken)

    # -- the background thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        import requests  # only applications that send feedback pay for the import

        session = requests.Session()
        try:
            while True:
                with self._wake:
                    if not self._queue and self._closing:
                        return
                    if len(self._queue) < self._batch_size and not self._closing:
                        self._wake.wait(self._flush_interval)
                    batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
                    self._in_flight = len(batch)
                if batch:
                    self._send(session, batch)
                with self._wake:
                    self._in_flight = 0
                    self._wake.notify_all()
        finally:
            session.close()

    def _send(self, session: requests.Session, batch: list[tuple[str, _Row]]) -> None:
        body: dict[str, Any] = {
            "predictions": [
                {"request_id": r, "model": model, "version": v, "label": label}
                for model, (kind, r, v, label) in batch
                if kind == "prediction"
            ],
            "labels": [{"request_id": r, "true_label": label} for _, (kind, r, _, label) in batch if kind == "label"],
        }
        started, wait = time.monotonic(), 0.1
        while True:
            error = self._post(session, body)
            if error is None:
                with self._wake:
                    self._sent += len(batch)
                return
            retryable, why = error
            out_of_time = time.monotonic() - started + wait > self._retry_for or self._closing
            if not retryable or out_of_time:
                with self._wake:
                    self._lost += len(batch)
                    self._last_error = why
                log.warning("feedback to %s: %d row(s) lost: %s", self.url, len(batch), why)
                return
            time.sleep(wait)
            wait = min(wait * 2, self._max_backoff)

    def _post(self, session: requests.Session, body: dict[str, Any]) -> tuple[bool, str] | None:
        """None when recorded; else (worth retrying, why)."""
        import requests

        try:
            response = session.post(self.url, json=body, headers=self._headers, timeout=self._timeout)
        except requests.RequestException as exc:
            return True, f"{type(exc).__name__}: {exc}"
        if response.status_code == 200:
            return None
        try:
            detail = str(response.json().get("detail", response.text[:300]))
        except ValueError:  # not JSON: the raw text says it
            detail = response.text[:300]
        return response.status_code in RETRYABLE_STATUS, f"HTTP {response.status_code}: {detail}"

    # -- lifecycle -----------------------------------------------------------------------------------
    def stats(self) -> FeedbackStats:
        with self._wake:
            return FeedbackStats(len(self._queue) + self._in_flight, self._sent, self._lost, self._last_error)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row was sent or given up on; True when the queue emptied in time."""
        deadline = time.monotonic() + timeout
        with self._wake:
            self._wake.notify_all()
            while self._queue or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.notify_all()
                self._wake.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> FeedbackStats:
        """Send what is queued (up to ``timeout``), stop the thread; rows still queued count as lost."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._wake:
            if self._queue:
                self._lost += len(self._queue)
                self._last_error = f"closed with {len(self._queue)} row(s) unsent"
                log.warning("feedback to %s: %s", self.url, self._last_error)
                self._queue.clear()
        stats = self.stats()
        if stats.lost:
            log.warning(
                "feedback to %s: %d sent, %d lost (last: %s)", self.url, stats.sent, stats.lost, stats.last_error
            )
        return stats

    def __enter__(self) -> HttpFeedbackSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
