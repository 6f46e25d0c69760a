"""The JSON shape of every result the CLI reports (``--json``): one pydantic model per output.

Field names are part of the interface: docs/cli.md documents them and ``docs/cli-schema.json`` holds the JSON
Schema of every model here (tests/unit/test_cli_json.py keeps the two equal and validates real output against it).
Add a field freely; renaming or removing one is a breaking change. Each ``from_*`` turns a library result into its
view, so the CLI (and any other front end) reports the same fields.

Wording: *divergence* is desired-vs-actual (what ``reconcile`` fixes); *drift* is data drift (inputs or the class
mix moving away from the reference).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from tritonops.control_plane.capture import CompactionReport
    from tritonops.control_plane.drift import DriftReport, FeatureDrift, TestResult
    from tritonops.control_plane.feedback import AccuracyComparison, VersionAccuracy
    from tritonops.control_plane.fleet import ReconcileReport, SmokeResult
    from tritonops.control_plane.lease import Leader
    from tritonops.control_plane.metrics import VersionStats
    from tritonops.control_plane.mlflow_sync import SyncResult
    from tritonops.control_plane.progressive_runs import Rollout
    from tritonops.control_plane.rollout import EndpointStatus, RolloutResult
    from tritonops.control_plane.shadow import ShadowReport
    from tritonops.control_plane.state import AuditEvent, TokenRecord
    from tritonops.control_plane.webhooks import Delivery, DeliveryResult
    from tritonops.converters.repository import ModelVersion
    from tritonops.serving.daemon import ServerStatus

Number = float | Literal["inf"]
"""A statistic that may be infinite (JSON has no infinity: it is the string ``"inf"``)."""


class View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _number(value: float | None) -> Number | None:
    return "inf" if value is not None and math.isinf(value) else value


# -- rollout actions ---------------------------------------------------------------------------------------------
class SmokeView(View):
    """One version answered the manifest's reference sample on one endpoint."""

    endpoint: str
    name: str
    version: int
    rows: int
    label_mismatches: int
    max_prob_diff: float
    p99_ms: float


class RolloutView(View):
    """The result of ``deploy``, ``promote``, ``canary``, ``canary --abort`` and ``rollback``."""

    action: str
    model: str
    from_version: int | None
    to_version: int | None
    endpoints: list[str]
    seconds: float
    dry_run: bool
    detail: str
    smoke: list[SmokeView]


def _smoke(s: SmokeResult) -> SmokeView:
    return SmokeView(
        endpoint=s.endpoint,
        name=s.name,
        version=s.version,
        rows=s.rows,
        label_mismatches=s.label_mismatches,
        max_prob_diff=s.max_prob_diff,
        p99_ms=s.p99_ms,
    )


def from_rollout(result: RolloutResult) -> RolloutView:
    return RolloutView(
        action=result.action,
        model=result.model,
        from_version=result.from_version,
        to_version=result.to_version,
        endpoints=list(result.endpoints),
        seconds=result.seconds,
        dry_run=result.dry_run,
        detail=result.detail,
        smoke=[_smoke(s) for s in result.smoke],
    )


# -- reconcile ---------------------------------------------------------------------------------------------------
class EndpointReconcileView(View):
    endpoint: str
    divergence: list[str]
    """How the endpoint differed from the desired state before acting."""
    actions: list[str]
    errors: list[str]


class ReconcileView(View):
    """The result of ``reconcile``: per endpoint what diverged from the desired state and what was done."""

    dry_run: bool
    ok: bool
    divergence_count: int
    action_count: int
    interrupted: list[str]
    skipped: list[str]
    published: list[str]
    """Model-level configs rewritten because they did not name the live version."""
    not_published: list[str]
    """Model-level configs that are stale but could not be rewritten (read-only repository), and why."""
    endpoints: list[EndpointReconcileView]


def from_reconcile(report: ReconcileReport, dry_run: bool) -> ReconcileView:
    return ReconcileView(
        dry_run=dry_run,
        ok=report.ok,
        divergence_count=report.divergence_count,
        action_count=sum(len(e.actions) for e in report.endpoints),
        interrupted=list(report.interrupted),
        skipped=list(report.skipped),
        published=list(report.published),
        not_published=list(report.not_published),
        endpoints=[
            EndpointReconcileView(
                endpoint=e.endpoint, divergence=list(e.divergence), actions=list(e.actions), errors=list(e.errors)
            )
            for e in report.endpoints
        ],
    )


# -- status, history, fleet --------------------------------------------------------------------------------------
class ModelStatusView(View):
    model: str
    live: int | None
    canary: int | None
    canary_weight: float
    ready_versions: list[int]
    canary_ready_versions: list[int]
    requests: int
    failures: int
    in_sync: bool
    divergence: list[str]


class EndpointStatusView(View):
    endpoint: str
    error: str | None
    """Why the endpoint could not be read (then ``models`` is empty)."""
    models: list[ModelStatusView]


class StatusView(View):
    """``status``: per endpoint, each model's desired vs actual versions and traffic counters."""

    endpoints: list[EndpointStatusView]


def from_status(report: Sequence[EndpointStatus]) -> StatusView:
    return StatusView(
        endpoints=[
            EndpointStatusView(
                endpoint=e.endpoint,
                error=e.error,
                models=[
                    ModelStatusView(
                        model=m.model,
                        live=m.live,
                        canary=m.canary,
                        canary_weight=m.canary_weight,
                        ready_versions=list(m.ready_versions),
                        canary_ready_versions=list(m.canary_ready_versions),
                        requests=m.requests,
                        failures=m.failures,
                        in_sync=not m.divergence,
                        divergence=list(m.divergence),
                    )
                    for m in e.models
                ],
            )
            for e in report
        ]
    )


class AuditEventView(View):
    id: int
    at: str
    actor: str
    action: str
    model: str | None
    from_version: int | None
    to_version: int | None
    reason: str
    result: str
    detail: str


class HistoryView(View):
    """``history``: the model's audit events, oldest first."""

    model: str
    events: list[AuditEventView]


def from_history(model: str, events: Sequence[AuditEvent]) -> HistoryView:
    return HistoryView(
        model=model,
        events=[
            AuditEventView(
                id=e.id,
                at=e.at,
                actor=e.actor,
                action=e.action,
                model=e.model,
                from_version=e.from_version,
                to_version=e.to_version,
                reason=e.reason,
                result=e.result,
                detail=e.detail,
            )
            for e in events
        ],
    )


class FleetView(View):
    """``fleet list``: the Triton gRPC endpoints (``host:port``) the control plane drives."""

    endpoints: list[str]


# -- models ------------------------------------------------------------------------------------------------------
class ModelSummaryView(View):
    name: str
    versions: list[int]
    latest: int
    framework: str
    estimator: str
    classes: list[str | int]
    created_at: str
    """ISO 8601, UTC, of the newest version."""


class ModelsView(View):
    """``models list``: every model in the repository with its versions and newest manifest."""

    repository: str
    models: list[ModelSummaryView]


def from_models(repository: Path, models: Mapping[str, Sequence[ModelVersion]]) -> ModelsView:
    summaries = []
    for name, versions in models.items():
        latest = versions[-1].manifest
        summaries.append(
            ModelSummaryView(
                name=name,
                versions=[v.version for v in versions],
                latest=latest.version,
                framework=latest.source.framework,
                estimator=latest.source.estimator,
                classes=list(latest.classes),
                created_at=latest.created_at.isoformat(),
            )
        )
    return ModelsView(repository=str(repository), models=summaries)


# -- drift -------------------------------------------------------------------------------------------------------
class TestResultView(View):
    statistic: Number
    p_value: float


class FeatureDriftView(View):
    name: str
    kind: str
    method: str
    threshold: float
    score: Number | None
    drifted: bool
    enough_data: bool
    live_rows: float
    psi: Number | None
    psi_band: str | None
    jensenshannon: Number | None
    ks: TestResultView | None
    chisquare: TestResultView | None
    bins: list[str]
    reference: list[float]
    """Reference share of each bin."""
    live: list[float]
    """Live count in each bin over the window."""


class DriftView(View):
    """``drift``: per-feature data drift and the class mix of one version over a window."""

    model: str
    version: int
    window_seconds: float | None
    """``null``: counted since the version was loaded."""
    rows: float
    min_rows: int
    enough_data: bool
    drift_share: float
    drifted_share: float
    drifted_features: list[str]
    dataset_drift: bool
    prediction_drift: bool
    features: list[FeatureDriftView]
    prediction: FeatureDriftView | None
    notes: list[str]


def _feature_drift(f: FeatureDrift) -> FeatureDriftView:
    def test(result: TestResult | None) -> TestResultView | None:
        if result is None:
            return None
        statistic: Number = "inf" if math.isinf(result.statistic) else result.statistic
        return TestResultView(statistic=statistic, p_value=result.p_value)

    return FeatureDriftView(
        name=f.name,
        kind=f.kind,
        method=f.method.value,
        threshold=f.threshold,
        score=_number(f.score),
        drifted=f.drifted,
        enough_data=f.enough_data,
        live_rows=f.live_rows,
        psi=_number(f.psi),
        psi_band=f.psi_band,
        jensenshannon=_number(f.jensen_shannon),
        ks=test(f.ks),
        chisquare=test(f.chi_squared),
        bins=list(f.labels),
        reference=list(f.reference),
        live=list(f.live),
    )


def from_drift(report: DriftReport) -> DriftView:
    return DriftView(
        model=report.model,
        version=report.version,
        window_seconds=report.window_seconds,
        rows=report.rows,
        min_rows=report.min_rows,
        enough_data=report.enough_data,
        drift_share=report.drift_share,
        drifted_share=report.drifted_share,
        drifted_features=report.drifted_features,
        dataset_drift=report.dataset_drift,
        prediction_drift=report.prediction_drift,
        features=[_feature_drift(f) for f in report.features],
        prediction=_feature_drift(report.prediction) if report.prediction else None,
        notes=list(report.notes),
    )


# -- feedback ----------------------------------------------------------------------------------------------------
class VersionAccuracyView(View):
    version: int
    predictions: int
    labelled: int
    correct: int
    accuracy: float | None


class AccuracyComparisonView(View):
    live_version: int
    canary_version: int
    enough_labels: bool
    min_labels: int
    z: float | None
    p_value_worse: float | None
    """One-sided: the canary is less accurate than live."""
    p_value_two_sided: float | None


class AccuracyView(View):
    """``feedback accuracy``: accuracy per version, and canary vs live while a canary runs."""

    model: str
    versions: list[VersionAccuracyView]
    comparison: AccuracyComparisonView | None


def _accuracy(row: VersionAccuracy) -> VersionAccuracyView:
    return VersionAccuracyView(
        version=row.version,
        predictions=row.predictions,
        labelled=row.labelled,
        correct=row.correct,
        accuracy=row.accuracy,
    )


def from_accuracy(model: str, rows: Sequence[VersionAccuracy], comparison: AccuracyComparison | None) -> AccuracyView:
    return AccuracyView(
        model=model,
        versions=[_accuracy(r) for r in rows],
        comparison=None
        if comparison is None
        else AccuracyComparisonView(
            live_version=comparison.live.version,
            canary_version=comparison.canary.version,
            enough_labels=comparison.enough_labels,
            min_labels=comparison.min_labels,
            z=comparison.z,
            p_value_worse=comparison.p_value_worse,
            p_value_two_sided=comparison.p_value_two_sided,
        ),
    )


# -- server, top -------------------------------------------------------------------------------------------------
class ServerStatusView(View):
    """``server status``: the server recorded by ``server start --detach``."""

    pid: int
    running: bool
    ready: bool
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    repository: str
    log_path: str
    started_at: float
    """Unix time."""
    stale: str | None
    """Why the pid file no longer names a running server of ours (``null``: it does)."""


def from_server_status(status: ServerStatus) -> ServerStatusView:
    r = status.record
    return ServerStatusView(
        pid=r.pid,
        running=status.alive,
        ready=status.ready,
        host=r.host,
        http_port=r.http_port,
        grpc_port=r.grpc_port,
        metrics_port=r.metrics_port,
        repository=r.repository,
        log_path=r.log_path,
        started_at=r.started_at,
        stale=status.stale,
    )


class TopRowView(View):
    model: str
    """The name Triton serves it under (``<model>__canary`` for a canary)."""
    version: str
    role: str
    request_rate: float | None
    error_rate: float | None
    p50_ms: float | None
    p99_ms: float | None
    latency_source: str
    mean_queue_ms: float | None
    mean_compute_ms: float | None
    avg_batch_size: float | None
    cache_hit_rate: float | None
    drift: str
    """The data-drift verdict of a live version over ``drift_window_seconds``."""


class TopView(View):
    """``top --once``: one refresh of the per-version table."""

    endpoints: int
    endpoints_scraped: int
    window_seconds: float | None
    drift_window_seconds: float
    scrape_failures: dict[str, str]
    rows: list[TopRowView]


def top_row(model: str, version: str, role: str, stats: VersionStats, drift: str) -> TopRowView:
    return TopRowView(
        model=model,
        version=version,
        role=role,
        request_rate=stats.request_rate,
        error_rate=stats.error_rate,
        p50_ms=stats.latency_ms.get(0.5),
        p99_ms=stats.latency_ms.get(0.99),
        latency_source=stats.latency_source,
        mean_queue_ms=stats.mean_queue_ms,
        mean_compute_ms=stats.mean_compute_ms,
        avg_batch_size=stats.avg_batch_size,
        cache_hit_rate=stats.cache_hit_rate,
        drift=drift,
    )


# -- webhooks ----------------------------------------------------------------------------------------------------
class DeliveryResultView(View):
    hook: str
    outcome: str
    """``ok``, ``failed`` or ``skipped`` (a duplicate or within the hook's cooldown)."""
    attempts: int
    status_code: int | None
    detail: str


class RetrainView(View):
    """``retrain``: each configured hook's delivery of the manual trigger."""

    model: str
    results: list[DeliveryResultView]


def from_retrain(model: str, results: Sequence[DeliveryResult]) -> RetrainView:
    return RetrainView(
        model=model,
        results=[
            DeliveryResultView(
                hook=r.hook, outcome=r.outcome, attempts=r.attempts, status_code=r.status_code, detail=r.detail
            )
            for r in results
        ],
    )


class DeliveryView(View):
    id: int
    at: float
    """Unix time."""
    hook: str
    model: str
    event: str
    dedup_key: str
    attempts: int
    status_code: int | None
    outcome: str
    detail: str


class WebhookLogView(View):
    """``webhooks log``: deliveries, newest first."""

    deliveries: list[DeliveryView]


def from_deliveries(entries: Sequence[Delivery]) -> WebhookLogView:
    return WebhookLogView(
        deliveries=[
            DeliveryView(
                id=e.id,
                at=e.at,
                hook=e.hook,
                model=e.model,
                event=e.event,
                dedup_key=e.dedup_key,
                attempts=e.attempts,
                status_code=e.status_code,
                outcome=e.outcome,
                detail=e.detail,
            )
            for e in entries
        ]
    )


# -- capture, mlflow, tokens -------------------------------------------------------------------------------------
class CompactionView(View):
    """``capture compact``: closed spool files moved into Parquet."""

    files: int
    rows: int
    parquet_files: int
    deleted_for_size: int
    bytes_after: int


def from_compaction(report: CompactionReport) -> CompactionView:
    return CompactionView(
        files=report.files,
        rows=report.rows,
        parquet_files=report.parquet_files,
        deleted_for_size=report.deleted_for_size,
        bytes_after=report.bytes_after,
    )


class CaptureExportView(View):
    """``capture export``: the Parquet file written."""

    model: str
    rows: int
    labelled: int
    """Rows with a ``true_label`` from recorded feedback."""
    output: str


class MlflowSyncView(View):
    """``mlflow sync``: what the alias points to and what was done with it."""

    registered_model: str
    alias: str
    registered_version: int
    model: str
    version: int
    """The repository version converted from that MLflow version."""
    converted: bool
    """Converted by this run (false: converted earlier)."""
    promoted: RolloutView | None
    """``null`` when that version was live already."""


def from_mlflow_sync(result: SyncResult) -> MlflowSyncView:
    return MlflowSyncView(
        registered_model=result.registered_model,
        alias=result.alias,
        registered_version=result.registered_version,
        model=result.version.name,
        version=result.version.version,
        converted=result.converted,
        promoted=from_rollout(result.promoted) if result.promoted is not None else None,
    )


class TokenView(View):
    name: str
    role: str
    prefix: str
    """The token's first characters (never the token)."""
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None


class TokensView(View):
    """``token list``: the controller's API tokens."""

    tokens: list[TokenView]


def from_tokens(records: Sequence[TokenRecord]) -> TokensView:
    return TokensView(
        tokens=[
            TokenView(
                name=r.name,
                role=r.role,
                prefix=r.prefix,
                created_at=r.created_at,
                created_by=r.created_by,
                expires_at=r.expires_at,
                revoked_at=r.revoked_at,
            )
            for r in records
        ]
    )


# -- shadow ------------------------------------------------------------------------------------------------------
class ShadowPairView(View):
    """One (live, shadow) version pair over the fleet, counted since the live model last loaded."""

    model: str
    live_version: str
    shadow_version: str
    mirrored_rows: float
    dropped_rows: float
    """Rows not mirrored because the shadow's queue was full."""
    compared_rows: float
    agreed_rows: float
    agreement: float | None
    """``agreed_rows / compared_rows`` (``null``: nothing compared yet)."""
    identical_rows: float
    """Rows whose probabilities were identical."""
    mean_abs_prob_diff: float | None
    p99_abs_prob_diff: float | None
    errors: dict[str, float]
    """Shadow errors by reason."""
    shadow_p99_ms: float | None
    """p99 of the shadow's scoring time per batch."""


class ShadowReportView(View):
    """``shadow report``: each (live, shadow) version pair of the model found on the fleet."""

    model: str
    reports: list[ShadowPairView]


def from_shadow_reports(model: str, reports: Sequence[ShadowReport]) -> ShadowReportView:
    return ShadowReportView(model=model, reports=[ShadowPairView.model_validate(r.to_dict()) for r in reports])


# -- progressive rollouts ---------------------------------------------------------------------------------------
class RolloutLogView(View):
    """One entry of a progressive rollout's step log."""

    at: float
    """Unix time."""
    event: str
    """``step`` (a weight applied), ``analysis``, ``pause``, ``resume``, ``abort`` or ``end``."""
    step: int | None
    """1-based."""
    weight: float | None
    verdict: str | None
    """``passed``, ``failed`` or ``inconclusive`` (analysis entries)."""
    decision: str | None
    """``advance``, ``retry``, ``hold``, ``promote`` or ``rollback`` (analysis entries)."""
    canary_requests: float | None
    canary_errors: float | None
    failed: list[str]
    """The checks that failed the analysis."""


class ProgressiveRolloutView(View):
    """``rollout start|status|pause|resume|abort``: a progressive rollout run by the controller."""

    id: int
    model: str
    version: int
    from_version: int | None
    """Live when the rollout started."""
    status: str
    """``running``, ``paused``, ``succeeded``, ``rolled-back``, ``aborted``, ``failed`` or ``superseded``."""
    steps: list[float]
    """Canary weights in percent."""
    step: int
    """The current step, 1-based."""
    weight: float
    """The current step's canary weight, in (0, 1]."""
    interval_seconds: float
    threshold: int
    """Failed checks that roll the rollout back."""
    failed_checks: int
    started_by: str
    started_at: str
    finished_at: str | None
    outcome: str
    steps_log: list[RolloutLogView]


def from_progressive(rollout: Rollout) -> ProgressiveRolloutView:
    return ProgressiveRolloutView(
        id=rollout.id,
        model=rollout.model,
        version=rollout.version,
        from_version=rollout.from_version,
        status=rollout.status,
        steps=list(rollout.steps),
        step=rollout.step + 1,
        weight=rollout.weight,
        interval_seconds=rollout.interval_seconds,
        threshold=rollout.analysis.threshold,
        failed_checks=rollout.failed_checks,
        started_by=rollout.started_by,
        started_at=rollout.started_at,
        finished_at=rollout.finished_at,
        outcome=rollout.outcome,
        steps_log=[
            RolloutLogView(
                at=float(e["at"]),
                event=str(e["event"]),
                step=e.get("step"),
                weight=e.get("weight"),
                verdict=e.get("verdict"),
                decision=e.get("decision"),
                canary_requests=e.get("canary_requests"),
                canary_errors=e.get("canary_errors"),
                failed=list(e.get("failed", [])),
            )
            for e in rollout.steps_log
        ],
    )


class PoliciesView(View):
    """``policy show``: the stored guardrail policies by model (``*``: the default), every field, defaults included."""

    policies: dict[str, dict[str, object]]
    """Model -> its policy, the fields of a policy file (docs/operations.md)."""


class LeadershipView(View):
    """``controller status``: the controller lease as the state database sees it now."""

    state: str
    holder: str | None
    """The replica that holds or last held the lease; null when no controller ever led on this state."""
    epoch: int | None
    leads: bool
    """Whether ``holder`` holds it now (false: nobody leads)."""
    renewed_seconds_ago: float | None
    expires_in_seconds: float | None
    """Negative: how long ago the lease ran out."""


def from_leader(state: str, leader: Leader | None) -> LeadershipView:
    if leader is None:
        return LeadershipView(
            state=state, holder=None, epoch=None, leads=False, renewed_seconds_ago=None, expires_in_seconds=None
        )
    return LeadershipView(
        state=state,
        holder=leader.holder,
        epoch=leader.epoch,
        leads=not leader.expired,
        renewed_seconds_ago=round(leader.now - leader.renewed_at, 3),
        expires_in_seconds=round(leader.expires_at - leader.now, 3),
    )


class ReadinessView(View):
    """``fleet ready``: does the endpoint serve the desired state (printed before a non-zero exit too)."""

    endpoint: str
    serving: bool
    missing: list[str]
    """What differs, one line each (empty when serving)."""


OUTPUTS: dict[str, type[BaseModel]] = {
    "status": StatusView,
    "history": HistoryView,
    "fleet list": FleetView,
    "models list": ModelsView,
    "drift": DriftView,
    "feedback accuracy": AccuracyView,
    "server status": ServerStatusView,
    "top --once": TopView,
    "deploy | promote | canary | rollback": RolloutView,
    "reconcile": ReconcileView,
    "retrain": RetrainView,
    "webhooks log": WebhookLogView,
    "capture set | capture off": RolloutView,
    "capture compact": CompactionView,
    "capture export": CaptureExportView,
    "mlflow sync": MlflowSyncView,
    "token list": TokensView,
    "shadow start | shadow stop": RolloutView,
    "shadow report": ShadowReportView,
    "rollout start | rollout status | rollout pause | rollout resume | rollout abort": ProgressiveRolloutView,
    "policy show": PoliciesView,
    "controller status": LeadershipView,
    "fleet ready": ReadinessView,
}
"""Command -> the model of its ``--json`` output (``models show`` prints the manifest: docs/contracts.md)."""


def schema_document() -> str:
    """The JSON Schema of every ``--json`` output, keyed by command (``docs/cli-schema.json`` holds this text)."""
    import json

    from tritonops.converters import Manifest

    schemas = {command: model.model_json_schema() for command, model in OUTPUTS.items()}
    schemas["models show"] = Manifest.model_json_schema()
    return json.dumps(schemas, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m tritonops.control_plane.views > docs/cli-schema.json
    print(schema_document(), end="")
