"""Request and answer bodies of the controller API that the library has no type for (the rest reuse
``RolloutResult``, ``AuditEvent``, ``EndpointStatus``, ``ReconcileReport``, ``TokenRecord``, ...)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tritonops.control_plane.feedback import AccuracyComparison, VersionAccuracy
from tritonops.control_plane.state import AuditEvent, TokenRecord

MAX_FEEDBACK_ROWS = 10_000
"""Rows of each kind one ``POST /v1/feedback`` may carry."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromoteRequest(_Body):
    version: int = Field(ge=1)
    dry_run: bool = False
    reason: str = Field(default="", max_length=1000)
    max_latency_ms: float | None = Field(default=None, gt=0)


class DeployRequest(_Body):
    version: int = Field(ge=1)
    reason: str = Field(default="", max_length=1000)


class CanaryRequest(_Body):
    version: int = Field(ge=1)
    weight: float = Field(gt=0, le=1)
    reason: str = Field(default="", max_length=1000)


class ShadowRequest(_Body):
    version: int = Field(ge=1)
    share: float = Field(default=1.0, gt=0, le=1)
    reason: str = Field(default="", max_length=1000)


class ReasonRequest(_Body):
    reason: str = Field(default="", max_length=1000)


class RollbackRequest(_Body):
    to: int | None = Field(default=None, ge=1)
    reason: str = Field(default="", max_length=1000)


class ReconcileRequest(_Body):
    dry_run: bool = False


class FleetAddRequest(_Body):
    endpoint: str = Field(min_length=3, max_length=300)


class FleetAnswer(BaseModel):
    endpoints: list[str]


class HistoryPage(BaseModel):
    """Audit events oldest first; ``next_before``: pass it as ``before`` for the page of older events."""

    events: list[AuditEvent]
    next_before: int | None


class VersionInfo(BaseModel):
    version: int
    created_at: str
    framework: str
    estimator: str
    parity_passed: bool
    live: bool
    canary: bool


class ModelInfo(BaseModel):
    name: str
    versions: list[int]
    live: int | None
    canary: int | None
    canary_weight: float
    policy: Literal["model", "default"] | None


class PredictionRow(_Body):
    request_id: str = Field(min_length=1, max_length=256)
    model: str = Field(min_length=1, max_length=63)
    version: int = Field(ge=1)
    label: str | int


class LabelRow(_Body):
    request_id: str = Field(min_length=1, max_length=256)
    true_label: str | int


class FeedbackBatch(_Body):
    """Predictions and ground-truth labels, many rows a call; recorded all together or not at all."""

    predictions: list[PredictionRow] = Field(default_factory=list, max_length=MAX_FEEDBACK_ROWS)
    labels: list[LabelRow] = Field(default_factory=list, max_length=MAX_FEEDBACK_ROWS)


class FeedbackAnswer(BaseModel):
    predictions: int
    labels: int


class AccuracyAnswer(BaseModel):
    model: str
    versions: list[VersionAccuracy]
    comparison: AccuracyComparison | None


class PolicyAnswer(BaseModel):
    model: str
    source: Literal["model", "default"]
    policy: dict[str, Any]


class TokenCreateRequest(_Body):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["viewer", "operator", "admin"]
    expires_in_seconds: float | None = Field(default=None, gt=0)


class TokenCreated(BaseModel):
    """``token`` is shown this once; the controller keeps only its hash."""

    token: str
    record: TokenRecord


class WhoAmI(BaseModel):
    name: str
    role: str


class RolloutRequest(_Body):
    """A progressive rollout: ``steps`` in percent (``"5,25,50,100"`` or numbers), ``interval`` a duration
    (``"60s"``, ``"2m"``) or seconds, ``analysis`` the analysis settings (docs/operations.md; defaults if absent)."""

    version: int = Field(ge=1)
    steps: list[float] | str = Field(examples=["5,25,50,100"])
    interval: float | str = Field(default="60s", examples=["60s"])
    analysis: dict[str, Any] | None = None
    reason: str = Field(default="", max_length=1000)
