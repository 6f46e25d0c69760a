"""The fleet: carry out planned steps on Triton endpoints, warm up what was loaded, and ``reconcile``.

``reconcile`` observes each endpoint once per model, plans the steps (``tritonops.control_plane.plan``, pure) and
executes them here. Triton keeps no load override on disk, so after a server restart ``reconcile`` applies them
again. Every version it loads is warmed up with the manifest's reference sample, and the answers must match the
manifest's expected outputs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from tritonops.contract.encoding import encode_rows
from tritonops.contract.manifest import Manifest
from tritonops.contract.names import canary_alias
from tritonops.control_plane.desired import (
    canary_config,
    canary_files,
    desired,
    version_manifest,
)
from tritonops.control_plane.endpoint import Connector, Endpoint, GrpcEndpoint
from tritonops.control_plane.errors import (
    AdminAuthError,
    ControlPlaneError,
    EndpointUnreachableError,
    GateError,
    RolloutInProgressError,
)
from tritonops.control_plane.plan import LoadCanary, LoadLive, Step, differences, plan
from tritonops.control_plane.state import AuditEntry, ModelState, StateStore
from tritonops.converters.errors import RepositoryError
from tritonops.converters.repository import publish_live

CANARY_DRAIN_SECONDS = 2.5
"""Wait between un-publishing a canary split and unloading its alias: SDK clients re-read the split every 2 s
(``tritonops.clients.ClientOptions.refresh_interval``), so none still sends to an alias that is gone."""


# -- smoke / warm-up --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SmokeResult:
    """One model version answered the reference sample on one endpoint."""

    endpoint: str
    name: str
    version: int
    rows: int
    label_mismatches: int
    max_prob_diff: float
    latencies_ms: tuple[float, ...]

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def sample_inputs(manifest: Manifest) -> list[grpcclient.InferInput]:
    """The reference sample as Triton input tensors (the contract's encoder, as every client uses)."""
    tensors = []
    for tensor in encode_rows(manifest.name, manifest.features, manifest.reference.sample):
        item = grpcclient.InferInput(tensor.name, list(tensor.data.shape), tensor.datatype)
        item.set_data_from_numpy(tensor.data)
        tensors.append(item)
    return tensors


def smoke_check(endpoint: Endpoint, name: str, version: int, manifest: Manifest, repeats: int = 1) -> SmokeResult:
    """Send the reference sample ``repeats`` times; raise ``GateError`` when the answers differ from the manifest."""
    expected_labels = list(manifest.reference.expected.labels)
    expected_probs = np.array(manifest.reference.expected.probabilities, dtype=np.float64)
    tolerance = max(manifest.parity.thresholds.max_prob_diff, 1e-5)
    latencies: list[float] = []
    labels: list[Any] = []
    probs = expected_probs
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        labels, probs = endpoint.infer(name, version, sample_inputs(manifest))
        latencies.append((time.perf_counter() - started) * 1000.0)
    mismatches = sum(1 for got, want in zip(labels, expected_labels, strict=False) if got != want)
    mismatches += abs(len(labels) - len(expected_labels))
    diff = float(np.max(np.abs(probs - expected_probs))) if probs.shape == expected_probs.shape else math.inf
    result = SmokeResult(endpoint.url, name, version, len(expected_labels), mismatches, diff, tuple(latencies))
    if mismatches or diff > tolerance:
        raise GateError(
            manifest.name,
            version,
            "smoke",
            f"endpoint {endpoint.url} ({name}): {mismatches} of {len(expected_labels)} labels differ from the "
            f"manifest's expected outputs, max probability difference {diff:.3g} (allowed {tolerance:.3g})",
        )
    return result


# -- execute -----------------------------------------------------------------------------------------
def execute(
    endpoint: Endpoint,
    repository: Path,
    steps: Sequence[Step],
    drain_seconds: float = CANARY_DRAIN_SECONDS,
    done: list[str] | None = None,
) -> list[str]:
    """Carry out ``steps`` in order on ``endpoint``; each version loaded is warmed up and checked with the
    reference sample. Returns what was done, one line per step, also appended to ``done`` as each step finishes
    (so a caller still knows what was done when a later step raises)."""
    done = [] if done is None else done
    for step in steps:
        if isinstance(step, LoadCanary):
            endpoint.load(
                canary_config(repository, step.model, step.version),
                canary_files(repository, step.model, step.version),
            )
            manifest = version_manifest(repository, step.model, step.version)
            smoke_check(endpoint, canary_alias(step.model), step.version, manifest)
        elif isinstance(step, LoadLive):
            endpoint.load(step.config)
            if step.warm_up:
                manifest = version_manifest(repository, step.model, step.version)
                smoke_check(endpoint, step.model, step.version, manifest)
        else:
            if step.drain:
                time.sleep(drain_seconds)
            endpoint.unload(step.name)
        done.append(step.describe())
    return done


def apply(
    endpoint: Endpoint, repository: Path, state: ModelState, drain_seconds: float = CANARY_DRAIN_SECONDS
) -> list[str]:
    """Bring one endpoint to ``state`` for one model, loading only what differs; returns the actions taken."""
    wanted = desired(repository, state)
    return execute(endpoint, repository, plan(wanted, endpoint.observe(state.name)), drain_seconds)


# -- reconcile ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReconcileChange:
    """One model on one endpoint that reconcile found different and acted on: one audit event."""

    endpoint: str
    model: str
    live: int | None
    divergence: list[str]
    actions: list[str]
    error: str | None = None

    def audit_entry(self, actor: str) -> AuditEntry:
        detail = {"endpoint": self.endpoint, "differed": self.divergence, "actions": self.actions, "error": self.error}
        return AuditEntry(
            actor=actor,
            action="reconcile-apply",
            model=self.model,
            from_version=None,
            to_version=self.live,
            reason="",
            result="failed" if self.error else "ok",
            detail=json.dumps(detail),
        )


@dataclass
class EndpointReport:
    """What reconcile found and did on one endpoint."""

    endpoint: str
    divergence: list[str] = field(default_factory=list)
    """How the endpoint differed from the desired state (before acting)."""
    actions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    changes: list[ReconcileChange] = field(default_factory=list)
    unusable: bool = False
    """Unreachable or refusing our admin key: the remaining models are not tried."""


@dataclass
class ReconcileReport:
    endpoints: list[EndpointReport]
    interrupted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    """Model-level configs rewritten because they did not name the live version."""
    not_published: list[str] = field(default_factory=list)
    """Model-level configs that are stale but could not be rewritten (read-only repository), and why."""

    @property
    def ok(self) -> bool:
        return not any(report.errors for report in self.endpoints) and not self.skipped

    @property
    def divergence_count(self) -> int:
        return sum(len(report.divergence) for report in self.endpoints)


def reconcile(
    store: StateStore,
    repository: Path,
    admin_headers: Mapping[str, str],
    *,
    actor: str,
    dry_run: bool = False,
    endpoints: Sequence[str] | None = None,
    connect: Connector = GrpcEndpoint,
    audit_in_sync: bool = True,
) -> ReconcileReport:
    """Make every endpoint serve exactly the desired state; idempotent, safe to run again after any crash.

    Each model is handled under its rollout lock (a model being rolled out right now is skipped and reported).
    Rollouts a killed process left unfinished are closed as 'interrupted' in the audit log. With ``dry_run`` it
    only reports the divergence. ``endpoints`` is the fleet as discovered (default: the state's static list), or the
    part of it to reconcile now. ``audit_in_sync=False`` leaves no audit event for a run that found nothing to do (the
    controller reconciles every few seconds). Audit, written once at the end of the run: one ``reconcile-apply``
    event per model and endpoint acted on (endpoint, what differed, the loads/unloads, result), then the
    ``reconcile`` summary. It also rewrites a live model's model-level ``config.pbtxt`` if it is stale
    (``tritonops.converters.repository.publish_live``).
    """
    urls = store.fleet() if endpoints is None else list(endpoints)
    servers = [connect(url, admin_headers) for url in urls]
    reports = {e.url: EndpointReport(e.url) for e in servers}
    report = ReconcileReport(list(reports.values()))
    try:
        for state in store.models():
            try:
                with store.rollout_lock(state.name, f"reconcile by {actor}"):
                    if not dry_run:
                        for event in store.close_interrupted(state.name, actor):
                            report.interrupted.append(f"{event.model}: {event.action} {event.reason}")
                    state = store.model(state.name) or state
                    if state.live is not None and not dry_run:
                        _publish(repository, state, report)
                    for server in servers:
                        _reconcile_one(server, repository, state, reports[server.url], dry_run)
            except RolloutInProgressError as exc:
                report.skipped.append(str(exc))
    finally:
        for server in servers:
            server.close()
    changes = [change for r in report.endpoints for change in r.changes]
    quiet = report.ok and not report.interrupted and not changes and not report.published
    if not dry_run:
        for change in changes:
            store.record(change.audit_entry(actor))
    if not dry_run and (audit_in_sync or not quiet):
        errors = {r.endpoint: "; ".join(r.errors) for r in report.endpoints if r.errors}
        store.record(
            AuditEntry(
                actor=actor,
                action="reconcile",
                model=None,
                from_version=None,
                to_version=None,
                reason="",
                result="ok" if report.ok else "failed",
                detail=json.dumps(
                    {
                        "divergence": report.divergence_count,
                        "actions": sum(len(r.actions) for r in report.endpoints),
                        "errors": errors,
                        "skipped": report.skipped,
                        "interrupted": report.interrupted,
                        "published": report.published,
                        "endpoints": urls,
                    }
                ),
            )
        )
    return report


def _reconcile_one(
    endpoint: Endpoint, repository: Path, state: ModelState, report: EndpointReport, dry_run: bool
) -> None:
    if report.unusable:
        return
    try:
        if not endpoint.wait_settled(state.name):
            report.errors.append(f"{state.name}: a load or unload inside Triton did not finish in time")
            return
        wanted = desired(repository, state)
        observed = endpoint.observe(state.name)
        divergence = differences(wanted, observed)
        report.divergence.extend(divergence)
        steps = plan(wanted, observed)
    except (EndpointUnreachableError, AdminAuthError) as exc:
        report.unusable = True
        report.errors.append(str(exc))
        return
    except ControlPlaneError as exc:
        report.errors.append(f"{state.name}: {exc}")
        return
    if dry_run or not steps:
        return
    done: list[str] = []
    error: str | None = None
    try:
        execute(endpoint, repository, steps, done=done)
    except (EndpointUnreachableError, AdminAuthError) as exc:
        report.unusable = True
        error = str(exc)
        report.errors.append(error)
    except ControlPlaneError as exc:
        error = str(exc)
        report.errors.append(f"{state.name}: {exc}")
    report.actions.extend(done)
    report.changes.append(ReconcileChange(endpoint.url, state.name, state.live, divergence, done, error))


def _publish(repository: Path, state: ModelState, report: ReconcileReport) -> None:
    """Rewrite the live model's model-level config if it is stale. A repository this process may not write (the
    deployments mount it read-only) is reported on every run but is not a change: it leaves no audit event."""
    assert state.live is not None
    try:
        written = publish_live(repository, state.name, state.live)
    except RepositoryError as exc:
        report.not_published.append(str(exc))
        return
    report.published += [f"{path} now serves version {state.live}" for path in written]
