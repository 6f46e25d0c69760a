"""The fleet: carry out planned steps on Triton endpoints, warm up what was loaded, and ``reconcile``.

``reconcile`` observes each endpoint once per model, plans the steps (``tritonops.control_plane.plan``, pure) and
executes them here. Triton keeps no load override on disk, so after a server restart ``reconcile`` applies them
again. Every version it loads is warmed up with the manifest's reference sample, and the answers must match the
manifest's expected outputs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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

_log = logging.getLogger("tritonops.reconcile")
PER_ENDPOINT = 4
"""Models reconcile works on at once on one endpoint. Triton loads each model on its own (``--model-load-thread-
count``, 4 by default); a Python-backend stub's start is CPU-bound, so more buys little on a small machine."""
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
    seconds: float = 0.0
    """How long observing, loading and checking took on that endpoint."""

    def audit_entry(self, actor: str) -> AuditEntry:
        detail = {
            "endpoint": self.endpoint,
            "differed": self.divergence,
            "actions": self.actions,
            "error": self.error,
            "seconds": self.seconds,
        }
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
    per_endpoint: int = PER_ENDPOINT,
) -> ReconcileReport:
    """Make every endpoint serve exactly the desired state; idempotent, safe to run again after any crash.

    First every model is observed on every endpoint without locks (reads only): a model every endpoint already
    serves as desired, with no operation in flight, needs no lock and no step. Each other model is handled under its
    rollout lock (a model being rolled out right now is skipped and reported) and on every endpoint at once; up to
    ``per_endpoint`` models are worked on concurrently per endpoint, and up to ``2 * per_endpoint`` models hold
    their lock at a time (a model's own steps stay in order). Rollouts a killed process left unfinished are closed
    as 'interrupted' in the audit log. With ``dry_run`` it only reports the divergence. ``endpoints`` is the fleet
    as discovered (default: the state's static list), or the part of it to reconcile now. ``audit_in_sync=False``
    leaves no audit event for a run that found nothing to do (the controller reconciles every few seconds). Audit,
    written once at the end of the run: one ``reconcile-apply`` event per model and endpoint acted on (endpoint,
    what differed, the loads/unloads, seconds, result), then the ``reconcile`` summary. It also rewrites a live
    model's model-level ``config.pbtxt`` if it is stale (``tritonops.converters.repository.publish_live``). Only
    this thread touches ``store``; the workers do the endpoint I/O.
    """
    if per_endpoint < 1:
        raise ValueError(f"per_endpoint: expected at least 1, got {per_endpoint}")
    started = time.monotonic()
    urls = store.fleet() if endpoints is None else list(endpoints)
    servers = [connect(url, admin_headers) for url in urls]
    reports = {e.url: EndpointReport(e.url) for e in servers}
    report = ReconcileReport(list(reports.values()))
    outcomes: list[dict[str, _Outcome]] = []
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.callback(server.close)
        work = _Work(servers, repository, dry_run, per_endpoint)
        stack.callback(work.close)  # waits for the workers, then releases every lock still held
        states = store.models()
        in_sync = set() if dry_run else work.in_sync(states)
        for state in states:
            if state.name in in_sync and not store.unfinished_operations(state.name):
                _publish_unlocked(store, repository, state, report)
                continue
            work.limit(2 * per_endpoint)
            lock = contextlib.ExitStack()
            try:
                lock.enter_context(store.rollout_lock(state.name, f"reconcile by {actor}"))
            except RolloutInProgressError as exc:
                report.skipped.append(str(exc))
                continue
            with _released_on_error(lock):
                if not dry_run:
                    for event in store.close_interrupted(state.name, actor):
                        report.interrupted.append(f"{event.model}: {event.action} {event.reason}")
                state = store.model(state.name) or state
                if state.live is not None and not dry_run:
                    _publish(repository, state, report)
            outcomes.append(work.submit(state, lock))
        work.limit(0)
    for by_endpoint in outcomes:  # in model order, whatever order the workers finished in
        for url, outcome in by_endpoint.items():
            outcome.merge_into(reports[url])
    changes = [change for r in report.endpoints for change in r.changes]
    quiet = report.ok and not report.interrupted and not changes and not report.published
    _log.log(
        logging.DEBUG if quiet else logging.INFO,
        "reconcile of %d endpoint(s) by %s: %d action(s), %d error(s) in %.2f s",
        len(urls),
        actor,
        sum(len(r.actions) for r in report.endpoints),
        sum(len(r.errors) for r in report.endpoints),
        time.monotonic() - started,
        extra={"actor": actor, "action": "reconcile"},
    )
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
                        "seconds": round(time.monotonic() - started, 3),
                    }
                ),
            )
        )
    return report


@contextlib.contextmanager
def _released_on_error(lock: contextlib.ExitStack) -> Iterator[None]:
    try:
        yield
    except BaseException:
        lock.close()
        raise


@dataclass
class _Outcome:
    """One model on one endpoint, as a worker found and left it; merged into the report by the calling thread."""

    divergence: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    change: ReconcileChange | None = None
    unusable: bool = False

    def merge_into(self, report: EndpointReport) -> None:
        report.divergence.extend(self.divergence)
        report.actions.extend(self.actions)
        report.errors.extend(self.errors)
        if self.change is not None:
            report.changes.append(self.change)
        report.unusable = report.unusable or self.unusable


class _Work:
    """The models being reconciled now: one worker pool per endpoint, each model's lock held until every endpoint
    is done with it (then released by the calling thread, which alone uses the state store)."""

    def __init__(self, servers: list[Endpoint], repository: Path, dry_run: bool, per_endpoint: int) -> None:
        self.servers = servers
        self.repository = repository
        self.dry_run = dry_run
        self.pools = {
            s.url: ThreadPoolExecutor(max_workers=per_endpoint, thread_name_prefix=f"tritonops-reconcile-{s.url}")
            for s in servers
        }
        self.unusable = {s.url: _Flag() for s in servers}
        self.in_flight: list[tuple[contextlib.ExitStack, dict[str, Future[_Outcome]], dict[str, _Outcome]]] = []

    def in_sync(self, states: list[ModelState]) -> set[str]:
        """The models every endpoint serves as desired right now, observed without their locks (reads only): these
        need no lock and no step. Taking a lock costs a database connection on PostgreSQL, and a fleet in sync is
        checked many times a minute. An endpoint that fails here is left to the locked pass, which reports it."""
        futures = {
            (state.name, s.url): self.pools[s.url].submit(_observed_in_sync, s, self.repository, state)
            for state in states
            for s in self.servers
        }
        differ = set()
        for (name, _), future in futures.items():
            error = future.exception()
            if error is not None and not isinstance(error, ControlPlaneError):
                raise error
            if error is not None or not future.result():
                differ.add(name)
        return {state.name for state in states} - differ

    def submit(self, state: ModelState, lock: contextlib.ExitStack) -> dict[str, _Outcome]:
        """Start ``state``'s model on every endpoint; the dict returned is filled in as the endpoints finish."""
        futures = {
            s.url: self.pools[s.url].submit(
                _reconcile_one, s, self.repository, state, self.dry_run, self.unusable[s.url]
            )
            for s in self.servers
        }
        outcomes: dict[str, _Outcome] = {}
        self.in_flight.append((lock, futures, outcomes))
        return outcomes

    def limit(self, most: int) -> None:
        """Wait until at most ``most`` models are in flight, releasing the locks of those done."""
        while len(self.in_flight) > most:
            pending = [f for _, futures, _ in self.in_flight for f in futures.values() if not f.done()]
            if pending:
                wait(pending, return_when=FIRST_COMPLETED)
            self._release_done()

    def _release_done(self) -> None:
        still = []
        for lock, futures, outcomes in self.in_flight:
            if not all(f.done() for f in futures.values()):
                still.append((lock, futures, outcomes))
                continue
            with lock:
                outcomes.update({url: f.result() for url, f in futures.items()})  # a bug in a worker raises here
        self.in_flight = still

    def close(self) -> None:
        """Let every worker finish (a load in flight is not abandoned), then release the locks still held."""
        for pool in self.pools.values():
            pool.shutdown(wait=True)
        for lock, _, _ in self.in_flight:
            lock.close()
        self.in_flight = []


def _observed_in_sync(endpoint: Endpoint, repository: Path, state: ModelState) -> bool:
    """True when ``endpoint`` serves ``state`` exactly (a worker thread)."""
    return not plan(desired(repository, state), endpoint.observe(state.name))


def _reconcile_one(endpoint: Endpoint, repository: Path, state: ModelState, dry_run: bool, unusable: _Flag) -> _Outcome:
    """Observe, plan and execute one model on one endpoint (a worker thread: no state store here)."""
    outcome = _Outcome()
    if unusable.raised:
        return outcome
    started = time.monotonic()
    try:
        if not endpoint.wait_settled(state.name):
            outcome.errors.append(f"{state.name}: a load or unload inside Triton did not finish in time")
            return outcome
        wanted = desired(repository, state)
        observed = endpoint.observe(state.name)
        outcome.divergence = differences(wanted, observed)
        steps = plan(wanted, observed)
    except (EndpointUnreachableError, AdminAuthError) as exc:
        return _unusable(outcome, unusable, str(exc))
    except ControlPlaneError as exc:
        outcome.errors.append(f"{state.name}: {exc}")
        return outcome
    if dry_run or not steps:
        return outcome
    error: str | None = None
    try:
        execute(endpoint, repository, steps, done=outcome.actions)
    except (EndpointUnreachableError, AdminAuthError) as exc:
        error = str(exc)
        _unusable(outcome, unusable, error)
    except ControlPlaneError as exc:
        error = str(exc)
        outcome.errors.append(f"{state.name}: {exc}")
    seconds = time.monotonic() - started
    outcome.change = ReconcileChange(
        endpoint.url, state.name, state.live, outcome.divergence, outcome.actions, error, round(seconds, 3)
    )
    _log.debug(
        "reconcile %s %s: %s in %.2f s",
        endpoint.url,
        state.name,
        "; ".join(outcome.actions) or "nothing done",
        seconds,
        extra={"endpoint": endpoint.url, "model": state.name, "version": state.live},
    )
    return outcome


def _unusable(outcome: _Outcome, unusable: _Flag, error: str) -> _Outcome:
    """The endpoint is unreachable or refuses our key: report it once, and the remaining models are not tried."""
    if unusable.raise_first():
        outcome.errors.append(error)
    outcome.unusable = True
    return outcome


class _Flag:
    """Raised once, by whichever worker first finds its endpoint unusable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.raised = False

    def raise_first(self) -> bool:
        """Raise the flag; True for the one call that raised it."""
        with self._lock:
            first, self.raised = not self.raised, True
        return first


def _publish_unlocked(store: StateStore, repository: Path, state: ModelState, report: ReconcileReport) -> None:
    """``_publish`` for a model in sync, without its rollout lock: a promote or rollback that commits a new live
    version meanwhile publishes it too, and if ours ran last with the old one, the state read after it says so and
    the new one is published again."""
    while state.live is not None:
        _publish(repository, state, report)
        now = store.model(state.name)
        if now is None or now.live == state.live:
            return
        state = now


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
