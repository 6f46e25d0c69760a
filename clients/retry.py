"""Which errors are worth retrying, and how long to wait between attempts.

Retried: the server could not be reached or said it is unavailable / overloaded (gRPC UNAVAILABLE,
RESOURCE_EXHAUSTED; HTTP 429, 502, 503, 504; refused or reset connections). Never retried: anything that says
the request itself is wrong (INVALID_ARGUMENT, NOT_FOUND, HTTP 400/404...), because it would fail again.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from tritonclient.utils import InferenceServerException

from tritonops.errors import ConfigurationError

RETRYABLE_GRPC = frozenset({"StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED"})
RETRYABLE_HTTP = frozenset({"429", "502", "503", "504"})
DEADLINE_GRPC = "StatusCode.DEADLINE_EXCEEDED"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by ``max_attempts`` and the call's deadline."""

    max_attempts: int = 4
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ConfigurationError(
                f"RetryPolicy backoff must satisfy 0 <= initial ({self.initial_backoff}) <= max ({self.max_backoff})"
            )

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to sleep after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return (rng or random).uniform(0.0, ceiling)


def is_retryable(error: BaseException) -> bool:
    """True when trying the same request again may succeed."""
    if isinstance(error, InferenceServerException):
        status = str(error.status() or "")
        return status in RETRYABLE_GRPC or status in RETRYABLE_HTTP
    return isinstance(error, ConnectionError | TimeoutError | asyncio.TimeoutError | OSError)


def is_deadline(error: BaseException) -> bool:
    """True when the failure was our own deadline running out."""
    if isinstance(error, InferenceServerException):
        return str(error.status() or "") == DEADLINE_GRPC
    return isinstance(error, TimeoutError | asyncio.TimeoutError)


def describe(error: BaseException) -> str:
    """A one-line description of a transport error."""
    if isinstance(error, InferenceServerException):
        status = error.status()
        text = (error.message() or "").strip()
        return f"{status}: {text}" if status else text
    return f"{type(error).__name__}: {error}"
