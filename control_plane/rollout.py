"""Rollout actions: deploy, promote, canary, abort_canary, rollback, history, status, and fleet membership.

Plain functions over ``Settings`` (repository, state path, admin headers) and an ``actor``; the CLI and the
guardrail watcher call the same names. Every call leaves audit events: ``started``, then ``ok``, ``refused`` (a
gate or a precondition said no, nothing changed) or ``failed`` (something broke; the endpoints were put back).

Two orders, on purpose:

- moving forward (deploy, canary, promote): gates, then apply to every endpoint, then commit the desired state.
  Any failure puts the endpoints back and leaves the state alone, so the live version keeps serving. A process
  killed half way leaves the old desired state; ``reconcile`` puts every endpoint back to it.
- moving back (rollback, abort_canary): commit the desired state first, then apply. The operator's intent is
  final; an endpoint that can't be reached now is fixed by the next ``reconcile``.

Each action holds the model's rollout lock, so a second concurrent action on the same model is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from tritonops.contract.manifest import Manifest
from tritonops.contract.names import canary_alias, model_name_problem
from tritonops.control_plane.desired import (
    canary_config,
    canary_files,
    desired,
    live_config,
    version_config,
    version_manifest,
)
from tritonops.control_plane.discovery import discover
from tritonops.control_plane.endpoint import Connector, Endpoint, GrpcEndpoint
from tritonops.control_plane.errors import (
    AdminAuthError,
    ControlPlaneError,
    FleetApplyError,
    FleetError,
    GateError,
    InvalidRolloutError,
    RolloutInProgressError,
    UnknownModelError,
    UnknownVersionError,
)
from tritonops.control_plane.fleet import CANARY_DRAIN_SECONDS, SmokeResult, apply, smoke_check
from tritonops.control_plane.metrics import metrics_urls, scrape
from tritonops.control_plane.plan import differences
from tritonops.control_plane.shadow import require_agreement, shadow_reports
from tritonops.control_plane.state import AuditEntry, AuditEvent, ModelState, Result, StateStore, check_endpoint
from tritonops.converters.errors import RepositoryError
from tritonops.converters.repository import publish_live
from tritonops.errors import TritonOpsError
from tritonops.serving.capture import CaptureSpec
from tritonops.serving.errors import ModelConfigError
from tritonops.settings import Settings

_log = logging.getLogger("tritonops.rollout")
_REFUSALS = (
    GateError,
    InvalidRolloutError,
    UnknownVersionError,
    UnknownModelError,
    FleetError,
    AdminAuthError,
    RolloutInProgressError,
)
LATENCY_SAMPLES = 20
"""Requests per endpoint behind the optional latency gate."""


def resolve_actor(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """Who acts: ``--actor``, else ``$TRITONOPS_ACTOR``, else ``$USER``, else ``unknown``."""
    env = os.environ if env is None else env
    return explicit or env.get("TRITONOPS_ACTOR") or env.get("USER") or "unknown"


def check_weight(weight: float) -> float:
    if not 0.0 < weight <= 1.0:
        raise InvalidRolloutError(f"canary weight: expected a number in (0, 1], got {weight}")
    return weight


def check_model_name(model: str) -> str:
    problem = model_name_problem(model)
    if problem is not None:
        raise InvalidRolloutError(problem)
    return model


@dataclass(frozen=True)
class RolloutResult:
    """What one rollout action did."""

    action: str
    model: str
    from_version: int | None
    to_version: int | None
    endpoints: tuple[str, ...]
    seconds: float
    smoke: tuple[SmokeResult, ...] = ()
    dry_run: bool = False
    detail: str = ""
    applied: bool = True
    """False when the desired state was saved but the fleet is empty, so no endpoint has it yet (reconcile applies
    it once one exists)."""


NOT_APPLIED = "saved, not applied: the fleet is empty (reconcile applies it once endpoints exist)"


# -- the frame every action runs in ----------------------------------------------------------------
@dataclass
class _Operation:
    settings: Settings
    store: StateStore
    actor: str
    action: str
    model: str
    to_version: int | None
    reason: str
    state: ModelState
    connect: Connector
    started: float = field(default_factory=time.monotonic)
    changed: bool = False
    open_endpoints: list[Endpoint] = field(default_factory=list)

    def entry(self, result: Result, detail: str = "", action: str | None = None) -> AuditEntry:
        return AuditEntry(
            actor=self.actor,
            action=action or self.action,
            model=self.model,
            from_version=self.state.live,
            to_version=self.to_version,
            reason=_redact(self.reason, self.settings),
            result=result,
            detail=_redact(detail, self.settings),
        )

    def endpoints(self, *, preflight: bool = True, allow_empty: bool = False) -> list[Endpoint]:
        """The fleet's endpoints; with ``preflight`` each must answer and accept our admin key. An empty fleet is a
        ``FleetError`` unless ``allow_empty``."""
        urls = discover(self.settings.fleet, self.store)
        if not urls and allow_empty:
            return []
        if not urls and self.settings.fleet.kind != "static":
            raise FleetError(f"the fleet is empty: {self.settings.fleet} lists no Triton server right now")
        if not urls:
            raise FleetError("the fleet is empty: add Triton gRPC endpoints with `tritonops fleet add HOST:PORT`")
        headers = self.settings.admin_headers()
        self.open_endpoints = [self.connect(url, headers) for url in urls]
        if preflight:
            for endpoint in self.open_endpoints:
                endpoint.check()
        return self.open_endpoints

    def result(
        self, detail: str, smoke: list[SmokeResult] | None = None, dry_run: bool = False, applied: bool = True
    ) -> RolloutResult:
        return RolloutResult(
            action=self.action,
            model=self.model,
            from_version=self.state.live,
            to_version=self.to_version,
            endpoints=tuple(e.url for e in self.open_endpoints),
            seconds=time.monotonic() - self.started,
            smoke=tuple(smoke or ()),
            dry_run=dry_run,
            detail=detail,
            applied=applied,
        )


def _redact(text: str, settings: Settings) -> str:
    return text.replace(settings.admin_token, "***") if settings.admin_token else text


@contextlib.contextmanager
def _operation(
    settings: Settings,
    actor: str,
    action: str,
    model: str,
    to_version: int | None,
    reason: str,
    connect: Connector,
) -> Iterator[_Operation]:
    """Lock the model, audit the start, and audit a refusal or failure with its message before re-raising."""
    check_model_name(model)
    with StateStore.open(settings.state) as store, contextlib.ExitStack() as stack:
        try:
            stack.enter_context(store.rollout_lock(model, f"{action} by {actor}"))
        except RolloutInProgressError as exc:
            store.record(AuditEntry(actor, action, model, None, to_version, reason, "refused", str(exc)))
            raise
        store.close_interrupted(model, actor)
        state = store.model(model) or ModelState(model, None, None, 0.0)
        op = _Operation(settings, store, actor, action, model, to_version, reason, state, connect)
        operation_id = store.begin_operation(op.entry("started"))
        outcome: Result = "failed"
        try:
            yield op
            outcome = "ok"
        except TritonOpsError as exc:
            outcome = "refused" if isinstance(exc, _REFUSALS) or not op.changed else "failed"
            store.record(op.entry(outcome, str(exc)))
            raise
        except BaseException as exc:
            store.record(op.entry("failed", f"aborted: {type(exc).__name__}: {exc}"))
            raise
        finally:
            store.finish_operation(operation_id, outcome)
            _log.log(
                logging.INFO if outcome == "ok" else logging.WARNING,
                "%s %s %s -> %s by %s: %s",
                action,
                model,
                op.state.live,
                op.to_version,
                actor,
                outcome,
                extra={"action": action, "model": model, "version": op.to_version, "actor": actor},
            )
            for endpoint in op.open_endpoints:
                endpoint.close()


def provenance(manifest: Manifest) -> str:
    """Where the version came from, for its audit events: the MLflow model version, and any allowed version skew."""
    source = manifest.source
    notes = []
    if source.mlflow is not None:
        mlflow = source.mlflow
        registered = (
            f" = MLflow model {mlflow.registered_model!r} version {mlflow.registered_version}"
            if mlflow.registered_model
            else ""
        )
        notes.append(f"from {mlflow.uri}{registered} (run {mlflow.run_id})")
    notes += [
        f"version skew allowed: trained with {skew.package} {skew.trained}, converted with {skew.converted}"
        for skew in source.version_skew
    ]
    return "".join(f"; {note}" for note in notes)


def _gated_manifest(settings: Settings, model: str, version: int) -> Manifest:
    """The version's manifest, after checking its files exist and its parity check passed."""
    version_config(settings.repository, model, version)
    manifest = version_manifest(settings.repository, model, version)
    if not manifest.parity.passed:
        parity = manifest.parity
        raise GateError(
            model,
            version,
            "parity",
            f"the converter's parity check failed (label agreement {parity.label_agreement:.4f}, "
            f"required {parity.thresholds.min_label_agreement}; max probability difference "
            f"{parity.max_abs_prob_diff:.3g}, allowed {parity.thresholds.max_prob_diff})",
        )
    return manifest


def _restore(endpoints: list[Endpoint], repository: Path, state: ModelState) -> list[str]:
    """Put ``endpoints`` back to ``state``; returns the problems met (already failing: report, don't raise)."""
    problems = []
    for endpoint in endpoints:
        try:
            apply(endpoint, repository, state)
        except ControlPlaneError as exc:
            problems.append(f"{endpoint.url}: {exc}")
    return problems


def _failure_note(problems: list[str]) -> str:
    if not problems:
        return "endpoints restored to the previous state"
    return "restoring some endpoints failed, run `tritonops reconcile`: " + "; ".join(problems)


# -- forward: promote, deploy, canary --------------------------------------------------------------
def promote(
    settings: Settings,
    model: str,
    version: int,
    *,
    actor: str,
    reason: str = "",
    dry_run: bool = False,
    max_latency_ms: float | None = None,
    min_shadow_agreement: float | None = None,
    shadow_metrics_urls: Sequence[str] = (),
    connect: Connector = GrpcEndpoint,
) -> RolloutResult:
    """Make ``version`` live on every endpoint, after its gates pass; ``dry_run`` runs the gates only.

    Gates: the manifest's parity passed; optionally the version ran as a shadow and agreed with live on at least
    ``min_shadow_agreement`` of the compared rows (``shadow_metrics_urls``, default each endpoint's metrics port,
    ``tritonops.control_plane.shadow``);
    the version, loaded as ``<model>__canary``, answers the reference sample
    exactly as the manifest expects on every endpoint; optionally its p99 latency there is <= ``max_latency_ms``.
    Then ``<model>`` is loaded with ``specific [version]`` on each endpoint (the old version serves until the new
    one is ready), checked again, and the desired state is committed.
    """
    with _operation(settings, actor, "promote", model, version, reason, connect) as op:
        state = op.state
        if state.live == version:
            raise InvalidRolloutError(f"model {model!r}: version {version} is already live")
        if state.canary is not None and state.canary != version:
            raise InvalidRolloutError(
                f"model {model!r}: candidate version {state.canary} is deployed (weight {state.canary_weight}); "
                f"promote that one, or remove it with `tritonops canary {model} --abort` first"
            )
        manifest = _gated_manifest(settings, model, version)
        endpoints = op.endpoints()
        if min_shadow_agreement is not None:
            urls = metrics_urls(shadow_metrics_urls, [e.url for e in endpoints])
            snapshots = [scrape(url) for url in urls]
            require_agreement(shadow_reports(snapshots, model), model, version, min_shadow_agreement)
        alias = canary_alias(model)
        promoted = replace(state, live=version, canary=None, canary_weight=0.0)
        try:
            to_stage = [e for e in endpoints if e.observe(model).canary_ready != (version,)]
            op.changed = bool(to_stage)
            config = canary_config(settings.repository, model, version)
            files = canary_files(settings.repository, model, version)
            staging = _in_parallel(to_stage, lambda endpoint: endpoint.load(config, files))
            if staging:
                raise next(iter(staging.values()))
            repeats = LATENCY_SAMPLES if max_latency_ms is not None else 1
            smoke = [smoke_check(e, alias, version, manifest, repeats) for e in endpoints]
            if max_latency_ms is not None:
                slow = [f"{s.endpoint} p99 {s.p99_ms:.1f} ms" for s in smoke if s.p99_ms > max_latency_ms]
                if slow:
                    raise GateError(model, version, "latency", f"{', '.join(slow)} > {max_latency_ms} ms")
            if dry_run:
                _restore(endpoints, settings.repository, state)
                detail = "dry run: every gate passed, nothing changed"
                op.store.record(op.entry("ok", detail))
                return op.result(detail, smoke, dry_run=True)
            for endpoint in endpoints:
                op.changed = True
                endpoint.load(live_config(settings.repository, promoted))
                smoke_check(endpoint, model, version, manifest)
        except BaseException as exc:
            if op.changed:
                note = _failure_note(_restore(endpoints, settings.repository, state))
                if isinstance(exc, TritonOpsError):
                    exc.message = f"{exc.message}; {note}"
            raise
        detail = f"live {state.live} -> {version} on {len(endpoints)} endpoint(s)" + provenance(manifest)
        op.store.set_live(model, version, op.entry("ok", detail))
        detail += _publish(settings, model, version)
        if state.canary_weight > 0:  # SDK clients may still route by the old split for a moment
            time.sleep(CANARY_DRAIN_SECONDS)
        warnings = _restore(endpoints, settings.repository, promoted)
        if warnings:
            detail += "; leftover canary alias not removed (reconcile will): " + "; ".join(warnings)
        return op.result(detail, smoke)


def deploy(
    settings: Settings, model: str, version: int, *, actor: str, reason: str = "", connect: Connector = GrpcEndpoint
) -> RolloutResult:
    """Load ``version`` as the candidate ``<model>__canary`` on every endpoint, with no traffic (weight 0)."""
    return _stage(settings, model, version, 0.0, actor=actor, reason=reason, action="deploy", connect=connect)


def canary(
    settings: Settings,
    model: str,
    version: int,
    weight: float,
    *,
    actor: str,
    reason: str = "",
    connect: Connector = GrpcEndpoint,
) -> RolloutResult:
    """Send ``weight`` (0 < weight <= 1) of all requests to ``version`` (loading it as the candidate if needed)."""
    check_weight(weight)
    return _stage(settings, model, version, weight, actor=actor, reason=reason, action="canary", connect=connect)


def _stage(
    settings: Settings,
    model: str,
    version: int,
    weight: float,
    *,
    actor: str,
    reason: str,
    action: str,
    connect: Connector,
) -> RolloutResult:
    with _operation(settings, actor, action, model, version, reason, connect) as op:
        state = op.state
        if state.live is None:
            raise InvalidRolloutError(f"model {model!r} has no live version; promote one first")
        if state.live == version:
            raise InvalidRolloutError(f"model {model!r}: version {version} is already live")
        if state.canary is not None and state.canary != version:
            raise InvalidRolloutError(
                f"model {model!r}: candidate version {state.canary} is deployed (weight {state.canary_weight}); "
                f"remove it with `tritonops canary {model} --abort` first"
            )
        manifest = _gated_manifest(settings, model, version)
        endpoints = op.endpoints()
        target = replace(state, canary=version, canary_weight=weight)
        alias = canary_alias(model)
        try:
            for endpoint in endpoints:
                op.changed = True
                apply(endpoint, settings.repository, target)
            smoke = [smoke_check(e, alias, version, manifest) for e in endpoints]
        except BaseException as exc:
            note = _failure_note(_restore(endpoints, settings.repository, state))
            if isinstance(exc, TritonOpsError):
                exc.message = f"{exc.message}; {note}"
            raise
        detail = f"candidate {version} at weight {weight} beside live {state.live} on {len(endpoints)} endpoint(s)"
        op.store.set_canary(model, version, weight, op.entry("ok", detail))
        return op.result(detail, smoke)


# -- shadow ------------------------------------------------------------------------------------------
def shadow(
    settings: Settings,
    model: str,
    version: int,
    share: float = 1.0,
    *,
    actor: str,
    reason: str = "",
    connect: Connector = GrpcEndpoint,
) -> RolloutResult:
    """Mirror ``share`` (0 < share <= 1) of live's answered rows to ``version``, scored and compared, never returned.

    Gates as for a canary (files, parity); then the live model is reloaded on every endpoint with the
    ``tritonops.shadow`` parameter (each live instance scores the shadow from the version's folder).
    """
    if not 0.0 < share <= 1.0:
        raise InvalidRolloutError(f"shadow share: expected a number in (0, 1], got {share}")
    with _operation(settings, actor, "shadow", model, version, reason, connect) as op:
        state = op.state
        if state.live is None:
            raise InvalidRolloutError(f"model {model!r} has no live version; promote one first")
        if state.live == version:
            raise InvalidRolloutError(f"model {model!r}: version {version} is live; shadow another version")
        _gated_manifest(settings, model, version)
        endpoints = op.endpoints()
        target = replace(state, shadow=version, shadow_share=share)
        try:
            for endpoint in endpoints:
                op.changed = True
                apply(endpoint, settings.repository, target)
        except BaseException as exc:
            note = _failure_note(_restore(endpoints, settings.repository, state))
            if isinstance(exc, TritonOpsError):
                exc.message = f"{exc.message}; {note}"
            raise
        detail = f"shadow {version} scores {share:g} of live {state.live}'s rows on {len(endpoints)} endpoint(s)"
        op.store.set_shadow(model, version, share, op.entry("ok", detail))
        return op.result(detail)


def stop_shadow(
    settings: Settings, model: str, *, actor: str, reason: str = "", connect: Connector = GrpcEndpoint
) -> RolloutResult:
    """End the shadow of ``model``: the live model reloads without mirroring."""
    with _operation(settings, actor, "stop-shadow", model, None, reason, connect) as op:
        state = op.state
        if state.shadow is None:
            raise InvalidRolloutError(f"model {model!r} has no shadow to stop")
        op.to_version = state.shadow
        detail = f"shadow {state.shadow} stopped, live stays {state.live}"
        op.changed = True
        op.store.set_shadow(model, None, 0.0, op.entry("ok", detail, action="desired-state"))
        applied = _apply_everywhere(op, replace(state, shadow=None, shadow_share=0.0))
        detail += "" if applied else f"; {NOT_APPLIED}"
        op.store.record(op.entry("ok", detail))
        return op.result(detail, applied=applied)


# -- capture -----------------------------------------------------------------------------------------
def set_capture(
    settings: Settings,
    model: str,
    share: float,
    *,
    drop: Sequence[str] = (),
    hashed: Sequence[str] = (),
    actor: str,
    reason: str = "",
    connect: Connector = GrpcEndpoint,
) -> RolloutResult:
    """Capture ``share`` of the live version's scored requests (0 stops), with columns dropped or hashed.

    The setting is desired state: every endpoint's live model is reloaded with it now (zero downtime, as for a
    canary step) and reconcile keeps it there.
    """
    with _operation(settings, actor, "capture", model, None, reason, connect) as op:
        state = op.state
        if state.live is None:
            raise InvalidRolloutError(f"model {model!r} has no live version; promote one before capturing its rows")
        features = version_manifest(settings.repository, model, state.live).feature_names()
        unknown = sorted(set(drop) - set(features) | set(hashed) - set(features))
        if unknown:
            raise InvalidRolloutError(f"capture {model!r}: columns {unknown} are not features of it; have {features}")
        op.to_version = state.live
        try:
            spec = CaptureSpec(share, (settings.capture_dir / "spool").resolve(), tuple(drop), tuple(hashed))
        except ModelConfigError as exc:
            raise InvalidRolloutError(str(exc)) from exc
        capture = spec.to_parameter() if share > 0 else None
        if share > 0:
            detail = f"capture {share:g} of live {state.live}'s requests (drop {list(drop)}, hash {list(hashed)})"
        else:
            detail = "capture stopped"
        op.changed = True
        op.store.set_capture(model, capture, op.entry("ok", detail, action="desired-state"))
        applied = _apply_everywhere(op, replace(state, capture=capture))
        detail += "" if applied else f"; {NOT_APPLIED}"
        op.store.record(op.entry("ok", detail))
        return op.result(detail, applied=applied)


# -- back: abort_canary, rollback ------------------------------------------------------------------
def abort_canary(
    settings: Settings, model: str, *, actor: str, reason: str = "", connect: Connector = GrpcEndpoint
) -> RolloutResult:
    """Stop the canary (or drop the candidate): all traffic to live, ``<model>__canary`` unloaded."""
    with _operation(settings, actor, "abort-canary", model, None, reason, connect) as op:
        state = op.state
        if state.canary is None:
            raise InvalidRolloutError(f"model {model!r} has no candidate or canary to abort")
        op.to_version = state.live
        target = replace(state, canary=None, canary_weight=0.0)
        detail = f"canary {state.canary} (weight {state.canary_weight}) removed, live stays {state.live}"
        op.changed = True
        op.store.set_canary(model, None, 0.0, op.entry("ok", detail, action="desired-state"))
        applied = _apply_everywhere(op, target)
        detail += "" if applied else f"; {NOT_APPLIED}"
        op.store.record(op.entry("ok", detail))
        return op.result(detail, applied=applied)


def rollback(
    settings: Settings,
    model: str,
    *,
    actor: str,
    to: int | None = None,
    reason: str = "",
    connect: Connector = GrpcEndpoint,
) -> RolloutResult:
    """Make the previous live version (or ``to``) live again on every endpoint; also ends any canary."""
    with _operation(settings, actor, "rollback", model, to, reason, connect) as op:
        state = op.state
        if state.live is None:
            raise InvalidRolloutError(f"model {model!r} has no live version to roll back from")
        target_version = to if to is not None else op.store.previous_live(model)
        if target_version is None:
            raise InvalidRolloutError(
                f"model {model!r}: no earlier live version to roll back to; name one with --to VERSION"
            )
        op.to_version = target_version
        if target_version == state.live:
            raise InvalidRolloutError(f"model {model!r}: version {target_version} is already live")
        _gated_manifest(settings, model, target_version)
        target = replace(state, live=target_version, canary=None, canary_weight=0.0)
        detail = f"live {state.live} -> {target_version}" + (
            f", canary {state.canary} removed" if state.canary is not None else ""
        )
        op.changed = True
        op.store.set_live(model, target_version, op.entry("ok", detail, action="desired-state"), rollback=True)
        detail += _publish(settings, model, target_version)
        applied = _apply_everywhere(op, target)
        detail += "" if applied else f"; {NOT_APPLIED}"
        op.store.record(op.entry("ok", detail))
        return op.result(detail, applied=applied)


def _publish(settings: Settings, model: str, version: int) -> str:
    """Point the repository's model-level config at the new live version; a warning for the detail if that fails
    (the endpoints and the desired state are right; the next ``reconcile`` rewrites the file)."""
    try:
        publish_live(settings.repository, model, version)
    except RepositoryError as exc:
        return f"; {exc} (reconcile rewrites it)"
    return ""


def _apply_everywhere(op: _Operation, target: ModelState) -> bool:
    """Apply ``target`` (already saved as desired state) on every endpoint at once; raise ``FleetApplyError``
    listing the ones that failed. False when the fleet is empty: saved, not applied, and not an error."""
    repository = op.settings.repository
    endpoints = op.endpoints(preflight=False, allow_empty=True)
    if not endpoints:
        return False
    failures = _in_parallel(endpoints, lambda endpoint: apply(endpoint, repository, target))
    if failures:
        raise FleetApplyError(
            f"model {op.model!r}: desired state saved, but {len(failures)} endpoint(s) are not there yet; "
            "run `tritonops reconcile` once they are back",
            {url: str(exc) for url, exc in failures.items()},
        )
    return True


def _in_parallel(endpoints: list[Endpoint], action: Callable[[Endpoint], object]) -> dict[str, ControlPlaneError]:
    """Run ``action`` on every endpoint concurrently (each endpoint has its own client); the errors by endpoint."""
    if not endpoints:
        return {}
    with ThreadPoolExecutor(max_workers=len(endpoints)) as pool:
        futures = {endpoint.url: pool.submit(action, endpoint) for endpoint in endpoints}
    failures: dict[str, ControlPlaneError] = {}
    for url, future in futures.items():
        error = future.exception()
        if isinstance(error, ControlPlaneError):
            failures[url] = error
        elif error is not None:
            raise error
    return failures


# -- reads -----------------------------------------------------------------------------------------
def history(
    settings: Settings, model: str | None, limit: int | None = None, before: int | None = None
) -> list[AuditEvent]:
    """Audit events (``model``'s, or every one with ``None``), oldest first: the last ``limit`` when given, with
    ids below ``before`` when given (paging back)."""
    with StateStore.open(settings.state) as store:
        if model is not None:
            check_model_name(model)
            if store.model(model) is None and not store.audit(model, 1):
                raise UnknownModelError(model, f"the control plane state ({settings.state})")
        return store.audit(model, limit, before)


@dataclass(frozen=True)
class ModelStatus:
    """One model on one endpoint: desired vs what is there, and traffic counters."""

    model: str
    live: int | None
    canary: int | None
    canary_weight: float
    ready_versions: tuple[int, ...]
    canary_ready_versions: tuple[int, ...]
    requests: int
    failures: int
    drift: tuple[str, ...]


@dataclass(frozen=True)
class EndpointStatus:
    endpoint: str
    error: str | None
    models: tuple[ModelStatus, ...]


def status(settings: Settings, model: str | None = None, *, connect: Connector = GrpcEndpoint) -> list[EndpointStatus]:
    """Per endpoint: for each model, versions loaded/ready, desired live and canary, request and error counts."""
    with StateStore.open(settings.state) as store:
        states = store.models() if model is None else [store.model(check_model_name(model))]
        if model is not None and states[0] is None:
            raise UnknownModelError(model, f"the control plane state ({settings.state})")
        urls = discover(settings.fleet, store)
    report = []
    for url in urls:
        endpoint = connect(url, settings.admin_headers())
        try:
            models = tuple(_model_status(endpoint, settings.repository, s) for s in states if s is not None)
            report.append(EndpointStatus(url, None, models))
        except ControlPlaneError as exc:
            report.append(EndpointStatus(url, str(exc), ()))
        finally:
            endpoint.close()
    return report


def _model_status(endpoint: Endpoint, repository: Path, state: ModelState) -> ModelStatus:
    alias = canary_alias(state.name)
    counts = [*endpoint.statistics(state.name).values(), *endpoint.statistics(alias).values()]
    observed = endpoint.observe(state.name)
    return ModelStatus(
        model=state.name,
        live=state.live,
        canary=state.canary,
        canary_weight=state.canary_weight,
        ready_versions=observed.ready,
        canary_ready_versions=observed.canary_ready,
        requests=sum(c.success + c.failure for c in counts),
        failures=sum(c.failure for c in counts),
        drift=tuple(differences(desired(repository, state), observed)),
    )


# -- fleet membership ------------------------------------------------------------------------------
def fleet_add(settings: Settings, endpoint: str, *, actor: str) -> None:
    """Add a Triton gRPC endpoint (``host:port``) to the fleet; ``reconcile`` then brings it up to date."""
    _static_fleet_only(settings, "add")
    endpoint = check_endpoint(endpoint)
    with StateStore.open(settings.state) as store:
        store.add_endpoint(endpoint, AuditEntry(actor, "fleet-add", None, None, None, "", "ok", endpoint))


def fleet_remove(settings: Settings, endpoint: str, *, actor: str) -> None:
    """Remove an endpoint from the fleet (what it serves is left alone)."""
    _static_fleet_only(settings, "remove")
    with StateStore.open(settings.state) as store:
        store.remove_endpoint(endpoint, AuditEntry(actor, "fleet-remove", None, None, None, "", "ok", endpoint))


def fleet_list(settings: Settings) -> list[str]:
    """The fleet's endpoints now (as discovered, when ``TRITONOPS_FLEET`` is a DNS name or a Service)."""
    with StateStore.open(settings.state) as store:
        return discover(settings.fleet, store)


def _static_fleet_only(settings: Settings, verb: str) -> None:
    if settings.fleet.kind != "static":
        raise FleetError(
            f"fleet {verb}: the fleet is discovered from {settings.fleet} (TRITONOPS_FLEET); add or remove servers "
            "there (DNS records, the Service's pods), not in the state"
        )
