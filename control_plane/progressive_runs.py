"""Progressive rollouts kept in the state database: start, pause, resume, abort, status, history.

A rollout is one row of ``progressive_rollouts`` (migration 11): its spec, its progress (``Progress``), its status
and a log of every step (weight, window, verdict, canary requests and errors). At most one rollout of a model is
unfinished at a time (a unique index on the database says so too). The controller's leader drives running
rollouts (``tritonops.control_plane.controller.rollouts``); every replica may start, pause, resume or abort one,
since all of it is in the database. Each change is written in one transaction with its audit event.

``start`` checks everything first (spec, model, version, no other rollout, no canary of another version) and then
applies the first step with the rollout library's ``canary`` (its gates: files, parity, smoke inference on every
endpoint): when that refuses, nothing was stored and the canary is as before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from tritonops.control_plane.desired import version_config
from tritonops.control_plane.endpoint import Connector, GrpcEndpoint
from tritonops.control_plane.errors import (
    InvalidRolloutError,
    PolicyError,
    RolloutInProgressError,
    UnknownModelError,
    UnknownVersionError,
)
from tritonops.control_plane.progressive import Analysis, Progress, RolloutSpec, spec_json
from tritonops.control_plane.rollout import abort_canary, canary, check_model_name
from tritonops.control_plane.state import AuditEntry, Result, StateStore, now_iso
from tritonops.settings import Settings

Status = Literal["running", "paused", "succeeded", "rolled-back", "aborted", "failed", "superseded"]
ACTIVE: tuple[Status, ...] = ("running", "paused")
LOCK_WAIT_SECONDS = 30.0
"""How long an action waits for another holder of the model's rollout lock (a reconcile, a step being applied)."""

_COLUMNS = (
    "id, model, version, from_version, spec, status, step_index, step_started_at, window_started_at, "
    "next_check_at, failed_checks, started_by, started_at, updated_at, finished_at, outcome, steps_log"
)
T = TypeVar("T")


@dataclass(frozen=True)
class Rollout:
    """One progressive rollout as stored."""

    id: int
    model: str
    version: int
    from_version: int | None
    steps: tuple[float, ...]
    interval_seconds: float
    analysis: Analysis
    status: Status
    step: int
    """The current step, 0-based."""
    step_started_at: float | None
    window_started_at: float
    next_check_at: float
    failed_checks: int
    started_by: str
    started_at: str
    updated_at: str
    finished_at: str | None
    outcome: str
    steps_log: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    """One entry per analysis and per applied step: what was seen and decided, with wall-clock times."""

    @property
    def spec(self) -> RolloutSpec:
        return RolloutSpec(self.version, self.steps, self.interval_seconds, self.analysis)

    @property
    def progress(self) -> Progress:
        return Progress(self.step, self.step_started_at, self.window_started_at, self.next_check_at, self.failed_checks)

    @property
    def weight(self) -> float:
        return self.steps[self.step] / 100.0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def _rollout(row: Any) -> Rollout:
    spec = json.loads(row[4])
    try:
        analysis = Analysis.model_validate(spec["analysis"])
    except ValueError as exc:
        raise PolicyError(f"stored rollout {row[0]} of {row[1]!r}", f"unreadable analysis ({exc})") from exc
    return Rollout(
        id=int(row[0]),
        model=str(row[1]),
        version=int(row[2]),
        from_version=row[3],
        steps=tuple(float(s) for s in spec["steps"]),
        interval_seconds=float(spec["interval_seconds"]),
        analysis=analysis,
        status=row[5],
        step=int(row[6]),
        step_started_at=None if row[7] is None else float(row[7]),
        window_started_at=float(row[8]),
        next_check_at=float(row[9]),
        failed_checks=int(row[10]),
        started_by=str(row[11]),
        started_at=str(row[12]),
        updated_at=str(row[13]),
        finished_at=row[14],
        outcome=str(row[15]),
        steps_log=tuple(json.loads(row[16])),
    )


# -- the table ----------------------------------------------------------------------------------------------------


def active_rollout(store: StateStore, model: str) -> Rollout | None:
    row = store.db.execute(
        f"SELECT {_COLUMNS} FROM progressive_rollouts WHERE model = ? AND finished_at IS NULL", (model,)
    ).fetchone()
    return _rollout(row) if row else None


def running_rollouts(store: StateStore) -> list[Rollout]:
    """Every rollout the controller should drive now (paused ones wait)."""
    rows = store.db.execute(
        f"SELECT {_COLUMNS} FROM progressive_rollouts WHERE status = 'running' ORDER BY id"
    ).fetchall()
    return [_rollout(r) for r in rows]


def rollouts_of(store: StateStore, model: str, limit: int = 20) -> list[Rollout]:
    """``model``'s rollouts, newest first."""
    rows = store.db.execute(
        f"SELECT {_COLUMNS} FROM progressive_rollouts WHERE model = ? ORDER BY id DESC LIMIT {int(limit)}", (model,)
    ).fetchall()
    return [_rollout(r) for r in rows]


def get_rollout(store: StateStore, rollout_id: int) -> Rollout:
    row = store.db.execute(f"SELECT {_COLUMNS} FROM progressive_rollouts WHERE id = ?", (rollout_id,)).fetchone()
    if row is None:
        raise InvalidRolloutError(f"progressive rollout {rollout_id} does not exist")
    return _rollout(row)


def _entry(rollout: Rollout, actor: str, action: str, reason: str, result: Result, evidence: object) -> AuditEntry:
    return AuditEntry(
        actor=actor,
        action=action,
        model=rollout.model,
        from_version=rollout.from_version,
        to_version=rollout.version,
        reason=reason,
        result=result,
        detail=json.dumps({"rollout": rollout.id, **_as_mapping(evidence)}, default=str, sort_keys=True),
    )


def _as_mapping(evidence: object) -> dict[str, object]:
    return dict(evidence) if isinstance(evidence, dict) else {"evidence": evidence}


def update_rollout(
    store: StateStore,
    rollout: Rollout,
    *,
    actor: str,
    action: str,
    reason: str,
    result: Result = "ok",
    evidence: object = None,
    log: dict[str, Any] | None = None,
    expect: Sequence[Status] = ("running",),
    **changes: Any,
) -> Rollout | None:
    """Write ``changes`` (``Rollout`` field names) and one audit event, in one transaction, only while the stored
    status is one of ``expect`` (so a rollout paused or aborted meanwhile is not moved on); None when it was not.

    ``log`` is appended to the rollout's step log; a status outside ``ACTIVE`` finishes it.
    """
    with store.db.write() as db:
        row = db.execute(f"SELECT {_COLUMNS} FROM progressive_rollouts WHERE id = ?", (rollout.id,)).fetchone()
        current = _rollout(row)
        if current.status not in expect:
            return None
        updated = replace(current, **changes, updated_at=now_iso())
        if log is not None:
            updated = replace(updated, steps_log=(*current.steps_log, {"at": time.time(), **log}))
        if not updated.active and updated.finished_at is None:
            updated = replace(updated, finished_at=updated.updated_at)
        db.execute(
            "UPDATE progressive_rollouts SET status = ?, step_index = ?, step_started_at = ?, window_started_at = ?, "
            "next_check_at = ?, failed_checks = ?, updated_at = ?, finished_at = ?, outcome = ?, steps_log = ? "
            "WHERE id = ?",
            (
                updated.status,
                updated.step,
                updated.step_started_at,
                updated.window_started_at,
                updated.next_check_at,
                updated.failed_checks,
                updated.updated_at,
                updated.finished_at,
                updated.outcome,
                json.dumps(list(updated.steps_log), default=str),
                rollout.id,
            ),
        )
        store.append_event(db, _entry(updated, actor, action, reason, result, evidence))
        return updated


# -- actions ------------------------------------------------------------------------------------------------------


def with_lock_retry(action: Callable[[], T], wait_seconds: float = LOCK_WAIT_SECONDS) -> T:
    """Run ``action``; while another holder has the model's rollout lock, try again (up to ``wait_seconds``)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return action()
        except RolloutInProgressError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _refuse(store: StateStore, model: str, version: int | None, actor: str, action: str, why: Exception) -> None:
    store.record(AuditEntry(actor, action, model, None, version, "", "refused", str(why)))


def start_rollout(
    settings: Settings,
    model: str,
    spec: RolloutSpec,
    *,
    actor: str,
    reason: str = "",
    connect: Connector = GrpcEndpoint,
    clock: Callable[[], float] = time.time,
) -> Rollout:
    """Check, apply the first step (gates included), store the rollout; nothing changes when anything refuses."""
    check_model_name(model)
    with StateStore.open(settings.state) as store:
        try:
            state = store.model(model)
            if state is None or state.live is None:
                raise UnknownModelError(model, f"the control plane state ({settings.state}) as a live model")
            version_config(settings.repository, model, spec.version)
            if state.live == spec.version:
                raise InvalidRolloutError(f"model {model!r}: version {spec.version} is already live")
            if state.canary is not None and state.canary != spec.version:
                raise InvalidRolloutError(
                    f"model {model!r}: candidate version {state.canary} is deployed (weight {state.canary_weight}); "
                    f"abort it first (`tritonops canary {model} --abort`)"
                )
            running = active_rollout(store, model)
            if running is not None:
                raise RolloutInProgressError(model, _holder(running))
        except (InvalidRolloutError, RolloutInProgressError, UnknownModelError, UnknownVersionError) as exc:
            _refuse(store, model, spec.version, actor, "rollout-start", exc)
            raise
    label = f"progressive rollout of version {spec.version}, step 1/{len(spec.steps)}"
    with_lock_retry(
        lambda: canary(
            settings,
            model,
            spec.version,
            spec.weight(0),
            actor=actor,
            reason=f"{label}{f': {reason}' if reason else ''}",
            connect=connect,
        )
    )
    with StateStore.open(settings.state) as store:
        return insert_rollout(store, model, spec, from_version=state.live, actor=actor, reason=reason, now=clock())


def insert_rollout(
    store: StateStore, model: str, spec: RolloutSpec, *, from_version: int | None, actor: str, reason: str, now: float
) -> Rollout:
    """Store a new running rollout whose first step was applied at ``now``; ``RolloutInProgressError`` when the
    model has an unfinished one (checked in the same transaction)."""
    with store.db.write() as db:
        running = active_rollout(store, model)
        if running is not None:  # started by someone else between the checks and now: theirs stays
            raise RolloutInProgressError(model, _holder(running))
        stamp = now_iso()
        row = db.execute(
            "INSERT INTO progressive_rollouts (model, version, from_version, spec, status, step_index, "
            "step_started_at, window_started_at, next_check_at, failed_checks, started_by, started_at, updated_at, "
            "steps_log) VALUES (?, ?, ?, ?, 'running', 0, ?, ?, ?, 0, ?, ?, ?, ?) RETURNING id",
            (
                model,
                spec.version,
                from_version,
                json.dumps(spec_json(spec)),
                now,
                now,
                now + spec.interval_seconds,
                actor,
                stamp,
                stamp,
                json.dumps([{"at": now, "event": "step", "step": 1, "weight": spec.weight(0)}]),
            ),
        ).fetchone()
        rollout = get_rollout(store, int(row[0]))
        detail = (
            f"steps {', '.join(f'{s:g}%' for s in spec.steps)} every {spec.interval_seconds:g} s; "
            f"step 1 at weight {spec.weight(0):g}"
        )
        store.append_event(db, _entry(rollout, actor, "rollout-start", reason or detail, "ok", spec_json(spec)))
    return rollout


def _holder(rollout: Rollout) -> str:
    return (
        f"progressive rollout {rollout.id} of version {rollout.version} by {rollout.started_by}, "
        f"{rollout.status} at step {rollout.step + 1}/{len(rollout.steps)}"
    )


def rollout_status(settings: Settings, model: str) -> Rollout:
    """``model``'s unfinished rollout, else its latest one."""
    check_model_name(model)
    with StateStore.open(settings.state) as store:
        found = active_rollout(store, model) or next(iter(rollouts_of(store, model, 1)), None)
    if found is None:
        raise InvalidRolloutError(f"model {model!r} has no progressive rollout (start one with `tritonops rollout`)")
    return found


def rollout_history(settings: Settings, model: str, limit: int = 20) -> list[Rollout]:
    check_model_name(model)
    with StateStore.open(settings.state) as store:
        return rollouts_of(store, model, limit)


def _active_or_refuse(store: StateStore, model: str, actor: str, action: str, allowed: Sequence[Status]) -> Rollout:
    rollout = active_rollout(store, model)
    if rollout is None or rollout.status not in allowed:
        what = "no progressive rollout" if rollout is None else f"a {rollout.status} rollout"
        error = InvalidRolloutError(f"{action} {model!r}: it has {what}; expected one {' or '.join(allowed)}")
        _refuse(store, model, None, actor, f"rollout-{action}", error)
        raise error
    return rollout


def pause_rollout(settings: Settings, model: str, *, actor: str, reason: str = "") -> Rollout:
    """Stop stepping ``model``'s rollout; the canary keeps its weight until resumed or aborted."""
    check_model_name(model)
    with StateStore.open(settings.state) as store:
        rollout = _active_or_refuse(store, model, actor, "pause", ("running",))
        paused = update_rollout(
            store,
            rollout,
            actor=actor,
            action="rollout-pause",
            reason=reason or f"paused at step {rollout.step + 1} (weight {rollout.weight:g})",
            log={"event": "pause", "step": rollout.step + 1, "by": actor},
            status="paused",
        )
    if paused is None:
        raise InvalidRolloutError(f"pause {model!r}: the rollout ended meanwhile")
    return paused


def resume_rollout(
    settings: Settings, model: str, *, actor: str, reason: str = "", clock: Callable[[], float] = time.time
) -> Rollout:
    """Go on with a paused rollout: its current step starts again with a fresh window (at the weight it kept)."""
    check_model_name(model)
    now = clock()
    with StateStore.open(settings.state) as store:
        rollout = _active_or_refuse(store, model, actor, "resume", ("paused",))
        resumed = update_rollout(
            store,
            rollout,
            actor=actor,
            action="rollout-resume",
            reason=reason or f"step {rollout.step + 1} starts again (weight {rollout.weight:g})",
            log={"event": "resume", "step": rollout.step + 1, "by": actor},
            expect=("paused",),
            status="running",
            step_started_at=now,
            window_started_at=now,
            next_check_at=now + rollout.interval_seconds,
        )
    if resumed is None:
        raise InvalidRolloutError(f"resume {model!r}: the rollout ended meanwhile")
    return resumed


def abort_rollout(
    settings: Settings, model: str, *, actor: str, reason: str = "", connect: Connector = GrpcEndpoint
) -> Rollout:
    """End ``model``'s rollout now: marked aborted first, then the canary removed (live untouched)."""
    check_model_name(model)
    with StateStore.open(settings.state) as store:
        rollout = _active_or_refuse(store, model, actor, "abort", ACTIVE)
        aborted = update_rollout(
            store,
            rollout,
            actor=actor,
            action="rollout-abort",
            reason=reason or f"aborted at step {rollout.step + 1} (weight {rollout.weight:g})",
            log={"event": "abort", "step": rollout.step + 1, "by": actor},
            expect=ACTIVE,
            status="aborted",
            outcome=f"aborted by {actor}" + (f": {reason}" if reason else ""),
        )
        if aborted is None:
            raise InvalidRolloutError(f"abort {model!r}: the rollout ended meanwhile")
        state = store.model(model)
    if state is not None and state.canary == rollout.version:
        with_lock_retry(
            lambda: abort_canary(
                settings, model, actor=actor, reason=f"progressive rollout {rollout.id} aborted", connect=connect
            )
        )
    return aborted
