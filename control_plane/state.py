"""Desired state and audit log, in the state database (SQLite file or PostgreSQL, see ``database``).

Per model: the live version and an optional canary (version + weight; weight 0 = candidate deployed, no traffic).
Also the fleet (Triton gRPC endpoints), the release history ``rollback`` walks back, in-flight operations (so a
rollout killed half way is noticed and recorded), and an append-only audit log (database triggers refuse UPDATE and
DELETE on both engines).

The schema is the ordered migration list in ``migrations``. Every state change is written in the same transaction as
its audit event, one writer at a time. A per-model rollout lock (``rollout_lock``) keeps two rollouts of one model
apart, on one host or many; it dies with its holder (a ``flock`` on SQLite, a PostgreSQL session advisory lock), so
a killed command never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tritonops.control_plane.database import Database
from tritonops.control_plane.errors import (
    FleetError,
    NoStateError,
    PolicyError,
    RolloutInProgressError,
    StateError,
    TokenError,
)
from tritonops.control_plane.migrations import SCHEMA_VERSION, open_state_database, schema_version
from tritonops.settings import StateLocation

__all__ = [
    "DEFAULT_POLICY",
    "SCHEMA_VERSION",
    "AuditEntry",
    "AuditEvent",
    "ModelState",
    "Operation",
    "Release",
    "StateStore",
    "StoredPolicy",
    "TokenRecord",
    "require_state",
]

DEFAULT_POLICY = "*"
"""The ``policies`` row that applies to every promoted model without a policy of its own."""

Result = Literal["started", "ok", "refused", "failed", "interrupted"]

_ENDPOINT = re.compile(r"^(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]{1,5})$")


def now_iso() -> str:
    """Current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def check_endpoint(endpoint: str) -> str:
    """``host:port`` of a Triton gRPC endpoint, validated; raise ``FleetError`` otherwise."""
    match = _ENDPOINT.match(endpoint.strip())
    if match is None or not 0 < int(match["port"]) < 65536:
        raise FleetError(f"endpoint {endpoint!r}: expected host:port of a Triton gRPC endpoint, e.g. 10.0.0.5:8001")
    return endpoint.strip()


@dataclass(frozen=True)
class ModelState:
    """What one model should look like on every endpoint."""

    name: str
    live: int | None
    canary: int | None
    canary_weight: float
    shadow: int | None = None
    """The version scoring mirrored copies of live's requests (never answering), or None."""
    shadow_share: float = 0.0
    capture: str | None = None
    """Row capture of the live version: a ``CaptureSpec`` as its model-config parameter (JSON), or None."""


@dataclass(frozen=True)
class AuditEntry:
    """An audit event before it is written."""

    actor: str
    action: str
    model: str | None
    from_version: int | None
    to_version: int | None
    reason: str
    result: Result
    detail: str = ""


@dataclass(frozen=True)
class AuditEvent:
    """An audit event as stored."""

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


@dataclass(frozen=True)
class Release:
    """One time a version became live."""

    id: int
    model: str
    version: int
    at: str
    actor: str
    rolled_back: bool


@dataclass(frozen=True)
class Operation:
    """A rollout that started and (maybe) finished."""

    id: int
    model: str
    action: str
    from_version: int | None
    to_version: int | None
    actor: str
    pid: int
    started_at: str


def require_state(location: StateLocation | Path) -> None:
    """Raise ``NoStateError`` when ``location`` is a SQLite file that does not exist (a PostgreSQL URL always
    names a database; its schema is made on first connection)."""
    path = location if isinstance(location, Path) else location.path
    if path is not None and not path.is_file():
        raise NoStateError(str(path))


@dataclass(frozen=True)
class TokenRecord:
    """An API token as listed: never the token itself, only its first characters."""

    name: str
    prefix: str
    role: str
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None


@dataclass(frozen=True)
class StoredPolicy:
    """A guardrail policy as kept in the state (``body``: the policy's JSON)."""

    model: str
    body: str
    updated_at: str
    updated_by: str


class StateStore:
    """The control plane's state database. Open with ``StateStore.open(location)``, use as a context manager."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.location = db.location

    @property
    def path(self) -> Path:
        """The SQLite file (only for the SQLite engine)."""
        if self.location.path is None:
            raise StateError(f"state database {self.location} is PostgreSQL, not a file")
        return self.location.path

    @classmethod
    def open(cls, location: StateLocation | Path, busy_timeout: float = 10.0, *, create: bool = True) -> StateStore:
        """Connect to the state database and bring its schema to ``SCHEMA_VERSION``.

        With ``create`` a missing SQLite file (and its folder) is made; without it (reads, and actions that need a
        fleet) a missing file raises ``NoStateError`` and nothing is written to disk.
        """
        if not create:
            require_state(location)
        return cls(open_state_database(location, busy_timeout))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> contextlib.AbstractContextManager[Database]:
        return self.db.write()

    # -- reads ------------------------------------------------------------------------------------
    def schema_version(self) -> int:
        return schema_version(self.db)

    def model(self, name: str) -> ModelState | None:
        row = self.db.execute(f"SELECT {_MODEL_COLUMNS} FROM models WHERE name = ?", (name,)).fetchone()
        return _model_state(row) if row else None

    def models(self) -> list[ModelState]:
        rows = self.db.execute(f"SELECT {_MODEL_COLUMNS} FROM models ORDER BY name").fetchall()
        return [_model_state(r) for r in rows]

    def fleet(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT endpoint FROM fleet ORDER BY endpoint").fetchall()]

    def audit(self, model: str | None = None, limit: int | None = None, before: int | None = None) -> list[AuditEvent]:
        """Audit events, oldest first; only ``model``'s when given; the last ``limit`` (with ids below ``before``)."""
        conditions: list[str] = []
        args: list[object] = []
        if model is not None:
            conditions.append("model = ?")
            args.append(model)
        if before is not None:
            conditions.append("id < ?")
            args.append(int(before))
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        last = "" if limit is None else f"LIMIT {int(limit)}"
        sql = f"SELECT * FROM (SELECT {_AUDIT_COLUMNS} FROM audit {where} ORDER BY id DESC {last}) AS a ORDER BY id"
        rows = self.db.execute(sql, args).fetchall()
        return [AuditEvent(*row) for row in rows]

    def releases(self, model: str) -> list[Release]:
        rows = self.db.execute(
            "SELECT id, model, version, at, actor, rolled_back FROM releases WHERE model = ? ORDER BY id", (model,)
        ).fetchall()
        return [Release(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def previous_live(self, model: str) -> int | None:
        """The version that was live before the current one (skipping versions that were rolled back)."""
        state = self.model(model)
        if state is None or state.live is None:
            return None
        for release in reversed(self.releases(model)):
            if not release.rolled_back and release.version != state.live:
                return release.version
        return None

    def unfinished_operations(self, model: str) -> list[Operation]:
        rows = self.db.execute(
            "SELECT id, model, action, from_version, to_version, actor, pid, started_at FROM operations "
            "WHERE model = ? AND finished_at IS NULL ORDER BY id",
            (model,),
        ).fetchall()
        return [Operation(*row) for row in rows]

    # -- writes (each with its audit event, in one transaction) ------------------------------------
    def record(self, entry: AuditEntry) -> AuditEvent:
        """Append one audit event on its own."""
        with self._write() as db:
            return self._append(db, entry)

    def append_event(self, db: Database, entry: AuditEntry) -> AuditEvent:
        """Append ``entry`` inside a write transaction of ``db`` (so a change made elsewhere commits with it)."""
        return self._append(db, entry)

    def _append(self, db: Database, entry: AuditEntry) -> AuditEvent:
        at = now_iso()
        values = astuple(entry)  # actor .. detail: the same order as the columns below
        row = db.execute(
            "INSERT INTO audit (at, actor, action, model, from_version, to_version, reason, result, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (at, *values),
        ).fetchone()
        return AuditEvent(int(row[0]), at, *values)

    def _ensure_model(self, db: Database, name: str) -> None:
        db.execute(
            "INSERT INTO models (name, live_version, canary_version, canary_weight, updated_at) "
            "VALUES (?, NULL, NULL, 0, ?) ON CONFLICT (name) DO NOTHING",
            (name, now_iso()),
        )

    def set_live(self, name: str, version: int, entry: AuditEntry, *, rollback: bool = False) -> AuditEvent:
        """Make ``version`` live; append a release.

        A canary of the same version is cleared, and any shadow (it was compared with the live version that goes).
        With ``rollback`` any canary is cleared too (a rollback ends the
        canary in the same transaction, so ``reconcile`` never brings it back) and the release that was live is
        marked rolled back, so the next rollback goes further back.
        """
        with self._write() as db:
            self._ensure_model(db, name)
            if rollback:
                db.execute(
                    "UPDATE releases SET rolled_back = 1 WHERE id = "
                    "(SELECT id FROM releases WHERE model = ? ORDER BY id DESC LIMIT 1)",
                    (name,),
                )
            ends_canary = "TRUE" if rollback else "canary_version = ?"
            db.execute(
                "UPDATE models SET live_version = ?, updated_at = ?, shadow_version = NULL, shadow_share = 0, "
                f"canary_weight = CASE WHEN {ends_canary} THEN 0 ELSE canary_weight END, "
                f"canary_version = CASE WHEN {ends_canary} THEN NULL ELSE canary_version END WHERE name = ?",
                (version, now_iso(), *(() if rollback else (version, version)), name),
            )
            db.execute(
                "INSERT INTO releases (model, version, at, actor) VALUES (?, ?, ?, ?)",
                (name, version, now_iso(), entry.actor),
            )
            return self._append(db, entry)

    def set_capture(self, name: str, capture: str | None, entry: AuditEntry) -> AuditEvent:
        """Set (or, with None, stop) the row capture of ``name``'s live version."""
        with self._write() as db:
            self._ensure_model(db, name)
            db.execute("UPDATE models SET capture = ?, updated_at = ? WHERE name = ?", (capture, now_iso(), name))
            return self._append(db, entry)

    def set_canary(self, name: str, version: int | None, weight: float, entry: AuditEntry) -> AuditEvent:
        """Set (or, with ``version=None``, clear) the canary of ``name``."""
        if not 0.0 <= weight <= 1.0:
            raise StateError(f"canary weight must lie in [0, 1], got {weight}")
        with self._write() as db:
            self._ensure_model(db, name)
            db.execute(
                "UPDATE models SET canary_version = ?, canary_weight = ?, updated_at = ? WHERE name = ?",
                (version, weight if version is not None else 0.0, now_iso(), name),
            )
            return self._append(db, entry)

    def set_shadow(self, name: str, version: int | None, share: float, entry: AuditEntry) -> AuditEvent:
        """Set (or, with ``version=None``, clear) the shadow of ``name``."""
        if not 0.0 <= share <= 1.0:
            raise StateError(f"shadow share must lie in [0, 1], got {share}")
        with self._write() as db:
            self._ensure_model(db, name)
            db.execute(
                "UPDATE models SET shadow_version = ?, shadow_share = ?, updated_at = ? WHERE name = ?",
                (version, share if version is not None else 0.0, now_iso(), name),
            )
            return self._append(db, entry)

    def add_endpoint(self, endpoint: str, entry: AuditEntry) -> AuditEvent:
        endpoint = check_endpoint(endpoint)
        with self._write() as db:
            added = db.execute(
                "INSERT INTO fleet (endpoint, added_at) VALUES (?, ?) ON CONFLICT (endpoint) DO NOTHING",
                (endpoint, now_iso()),
            )
            if added.rowcount == 0:
                raise FleetError(f"endpoint {endpoint} is already in the fleet")
            return self._append(db, entry)

    def remove_endpoint(self, endpoint: str, entry: AuditEntry) -> AuditEvent:
        with self._write() as db:
            if db.execute("DELETE FROM fleet WHERE endpoint = ?", (endpoint.strip(),)).rowcount == 0:
                raise FleetError(f"endpoint {endpoint!r} is not in the fleet (see `tritonops fleet list`)")
            return self._append(db, entry)

    def begin_operation(self, entry: AuditEntry) -> int:
        """Note that a rollout started (and audit it as 'started'); returns the operation id."""
        assert entry.model is not None
        with self._write() as db:
            row = db.execute(
                "INSERT INTO operations (model, action, from_version, to_version, actor, pid, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (entry.model, entry.action, entry.from_version, entry.to_version, entry.actor, os.getpid(), now_iso()),
            ).fetchone()
            self._append(db, entry)
            return int(row[0])

    def finish_operation(self, operation_id: int, result: Result) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE operations SET finished_at = ?, result = ? WHERE id = ?", (now_iso(), result, operation_id)
            )

    def close_interrupted(self, model: str, actor: str) -> list[AuditEvent]:
        """Mark ``model``'s unfinished operations as interrupted (call only while holding its rollout lock)."""
        events = []
        with self._write() as db:
            for op in self.unfinished_operations(model):
                closed = db.execute(
                    "UPDATE operations SET finished_at = ?, result = 'interrupted' "
                    "WHERE id = ? AND finished_at IS NULL",
                    (now_iso(), op.id),
                )
                if closed.rowcount == 0:
                    continue
                events.append(
                    self._append(
                        db,
                        AuditEntry(
                            actor=actor,
                            action=op.action,
                            model=model,
                            from_version=op.from_version,
                            to_version=op.to_version,
                            reason=f"found unfinished: started {op.started_at} by {op.actor} (pid {op.pid})",
                            result="interrupted",
                            detail="the process died before finishing; desired state was left unchanged",
                        ),
                    )
                )
        return events

    # -- API tokens (hashed) and guardrail policies ------------------------------------------------
    def tokens(self) -> list[TokenRecord]:
        rows = self.db.execute(
            "SELECT name, prefix, role, created_at, created_by, expires_at, revoked_at FROM tokens ORDER BY name"
        ).fetchall()
        return [TokenRecord(*row) for row in rows]

    def tokens_with_prefix(self, prefix: str) -> list[tuple[TokenRecord, str]]:
        """Tokens whose public prefix is ``prefix``, each with its stored sha256 (the caller compares)."""
        rows = self.db.execute(
            "SELECT name, prefix, role, created_at, created_by, expires_at, revoked_at, sha256 FROM tokens "
            "WHERE prefix = ?",
            (prefix,),
        ).fetchall()
        return [(TokenRecord(*row[:7]), row[7]) for row in rows]

    def add_token(self, record: TokenRecord, sha256: str, entry: AuditEntry) -> AuditEvent:
        """Store a new token (its hash only); a revoked token of the same name is replaced."""
        with self._write() as db:
            old = db.execute("SELECT revoked_at FROM tokens WHERE name = ?", (record.name,)).fetchone()
            if old is not None and old[0] is None:
                raise TokenError(
                    f"token {record.name!r} already exists; revoke it first (`tritonops token revoke {record.name}`)"
                )
            db.execute("DELETE FROM tokens WHERE name = ?", (record.name,))
            db.execute(
                "INSERT INTO tokens (name, prefix, sha256, role, created_at, created_by, expires_at, revoked_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    record.name,
                    record.prefix,
                    sha256,
                    record.role,
                    record.created_at,
                    record.created_by,
                    record.expires_at,
                ),
            )
            return self._append(db, entry)

    def revoke_token(self, name: str, entry: AuditEntry) -> AuditEvent:
        with self._write() as db:
            updated = db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now_iso(), name)
            ).rowcount
            if updated == 0:
                raise TokenError(f"token {name!r} is not an active token (see `tritonops token list`)")
            return self._append(db, entry)

    def policy(self, model: str) -> StoredPolicy | None:
        row = self.db.execute(
            "SELECT model, body, updated_at, updated_by FROM policies WHERE model = ?", (model,)
        ).fetchone()
        return StoredPolicy(*row) if row else None

    def policies(self) -> list[StoredPolicy]:
        rows = self.db.execute("SELECT model, body, updated_at, updated_by FROM policies ORDER BY model").fetchall()
        return [StoredPolicy(*row) for row in rows]

    def set_policy(self, model: str, body: str, entry: AuditEntry) -> AuditEvent:
        with self._write() as db:
            db.execute(
                "INSERT INTO policies (model, body, updated_at, updated_by) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (model) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at, "
                "updated_by = excluded.updated_by",
                (model, body, now_iso(), entry.actor),
            )
            return self._append(db, entry)

    def delete_policy(self, model: str, entry: AuditEntry) -> AuditEvent:
        with self._write() as db:
            if db.execute("DELETE FROM policies WHERE model = ?", (model,)).rowcount == 0:
                raise PolicyError(f"model {model!r}", "no policy is stored for it (see `tritonops policy show`)")
            return self._append(db, entry)

    # -- rollout lock -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def rollout_lock(self, model: str, holder: str, wait_seconds: float = 0.0) -> Iterator[None]:
        """Hold ``model``'s rollout lock; raise ``RolloutInProgressError`` naming the holder when it is taken."""
        name = f"rollout:{model}"
        with self.db.hold_lock(name, wait_seconds) as held:
            if not held:
                row = self.db.execute("SELECT holder FROM lock_holders WHERE name = ?", (name,)).fetchone()
                raise RolloutInProgressError(model, row[0] if row else "")
            with self._write() as db:
                db.execute(
                    "INSERT INTO lock_holders (name, holder, since) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, since = excluded.since",
                    (name, f"{holder}, pid {os.getpid()}, since {now_iso()}", now_iso()),
                )
            yield


_AUDIT_COLUMNS = "id, at, actor, action, model, from_version, to_version, reason, result, detail"


_MODEL_COLUMNS = "name, live_version, canary_version, canary_weight, shadow_version, shadow_share, capture"


def _model_state(row: Any) -> ModelState:
    """A ``models`` row (``_MODEL_COLUMNS`` order) as a ``ModelState``."""
    name, live, canary, weight, shadow, share, capture = row
    return ModelState(str(name), live, canary, float(weight), shadow, float(share), capture)
