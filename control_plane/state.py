"""Desired state and audit log, in one SQLite file.

Per model: the live version and an optional canary (version + weight; weight 0 = candidate deployed, no traffic).
Also the fleet (Triton gRPC endpoints), the release history ``rollback`` walks back, in-flight operations (so a
rollout killed half way is noticed and recorded), and an append-only audit log (triggers refuse UPDATE/DELETE).

WAL journal, ``BEGIN IMMEDIATE`` write transactions (one writer at a time, readers never blocked), schema version
in ``PRAGMA user_version``. Every state change is written in the same transaction as its audit event.
A per-model ``flock`` (``rollout_lock``) keeps two rollouts of one model apart; the kernel drops it when the holder
dies, so a killed command never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from tritonops.control_plane.errors import FleetError, PolicyError, RolloutInProgressError, StateError, TokenError

Result = Literal["started", "ok", "refused", "failed", "interrupted"]

_ENDPOINT = re.compile(r"^(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]{1,5})$")

_SCHEMA_V1 = """
CREATE TABLE models (
    name TEXT PRIMARY KEY,
    live_version INTEGER,
    canary_version INTEGER,
    canary_weight REAL NOT NULL DEFAULT 0 CHECK (canary_weight >= 0 AND canary_weight <= 1),
    updated_at TEXT NOT NULL
);
CREATE TABLE fleet (
    endpoint TEXT PRIMARY KEY,
    added_at TEXT NOT NULL
);
CREATE TABLE releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    rolled_back INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    action TEXT NOT NULL,
    from_version INTEGER,
    to_version INTEGER,
    actor TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    result TEXT
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    model TEXT,
    from_version INTEGER,
    to_version INTEGER,
    reason TEXT NOT NULL,
    result TEXT NOT NULL CHECK (result IN ('started', 'ok', 'refused', 'failed', 'interrupted')),
    detail TEXT NOT NULL
);
CREATE INDEX audit_model ON audit (model, id);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""

_SCHEMA_V2 = """
CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    prefix TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
CREATE INDEX tokens_prefix ON tokens (prefix);
CREATE TABLE policies (
    model TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
"""

MIGRATIONS = (_SCHEMA_V1, _SCHEMA_V2)
"""Schema scripts in order; the database's ``user_version`` counts how many ran."""
SCHEMA_VERSION = len(MIGRATIONS)
DEFAULT_POLICY = "*"
"""The ``policies`` row that applies to every promoted model without a policy of its own."""


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
    """The control plane's SQLite database. Open with ``StateStore.open(path)``, use as a context manager."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    @classmethod
    def open(cls, path: Path, busy_timeout: float = 10.0) -> StateStore:
        """Open (creating if needed) the database at ``path`` and check its schema version."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"state database {path}: cannot open it ({exc})") from exc
        store = cls(path, db)
        try:
            store._migrate()
        except BaseException:
            db.close()
            raise
        return store

    def _migrate(self) -> None:
        try:
            with self._write() as db:
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
                if version < SCHEMA_VERSION:
                    for script in MIGRATIONS[version:]:
                        for statement in _statements(script):
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                elif version > SCHEMA_VERSION:
                    raise StateError(
                        f"state database {self.path}: schema version {version}, this tritonops understands up "
                        f"to {SCHEMA_VERSION}; upgrade tritonops"
                    )
        except sqlite3.DatabaseError as exc:
            raise StateError(f"state database {self.path}: not a usable tritonops state database ({exc})") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the single writer slot (waits up to busy_timeout)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StateError(f"state database {self.path}: cannot start a write transaction ({exc})") from exc
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- reads ------------------------------------------------------------------------------------
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def model(self, name: str) -> ModelState | None:
        row = self._db.execute(
            "SELECT name, live_version, canary_version, canary_weight FROM models WHERE name = ?", (name,)
        ).fetchone()
        return ModelState(row[0], row[1], row[2], float(row[3])) if row else None

    def models(self) -> list[ModelState]:
        rows = self._db.execute(
            "SELECT name, live_version, canary_version, canary_weight FROM models ORDER BY name"
        ).fetchall()
        return [ModelState(r[0], r[1], r[2], float(r[3])) for r in rows]

    def fleet(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT endpoint FROM fleet ORDER BY endpoint")]

    def audit(self, model: str | None = None, limit: int | None = None, before: int | None = None) -> list[AuditEvent]:
        """Audit events, oldest first; only ``model``'s when given; the last ``limit`` (with ids below ``before``)."""
        conditions: list[str] = []
        args: list[object] = []
        if model is not None:
            conditions.append("model = ?")
            args.append(model)
        if before is not None:
            conditions.append("id < ?")
            args.append(before)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"SELECT * FROM (SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?) ORDER BY id"
        rows = self._db.execute(sql, [*args, -1 if limit is None else limit]).fetchall()
        return [AuditEvent(*row) for row in rows]

    def releases(self, model: str) -> list[Release]:
        rows = self._db.execute(
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
        rows = self._db.execute(
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

    def _append(self, db: sqlite3.Connection, entry: AuditEntry) -> AuditEvent:
        at = now_iso()
        values = astuple(entry)  # actor .. detail: the same order as the columns below
        cursor = db.execute(
            "INSERT INTO audit (at, actor, action, model, from_version, to_version, reason, result, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (at, *values),
        )
        assert cursor.lastrowid is not None
        return AuditEvent(cursor.lastrowid, at, *values)

    def _ensure_model(self, db: sqlite3.Connection, name: str) -> None:
        db.execute(
            "INSERT INTO models (name, live_version, canary_version, canary_weight, updated_at) "
            "VALUES (?, NULL, NULL, 0, ?) ON CONFLICT (name) DO NOTHING",
            (name, now_iso()),
        )

    def set_live(self, name: str, version: int, entry: AuditEntry, *, rollback: bool = False) -> AuditEvent:
        """Make ``version`` live; append a release.

        A canary of the same version is cleared. With ``rollback`` any canary is cleared too (a rollback ends the
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
            ends_canary = "1" if rollback else "canary_version = ?"
            db.execute(
                "UPDATE models SET live_version = ?, updated_at = ?, "
                f"canary_weight = CASE WHEN {ends_canary} THEN 0 ELSE canary_weight END, "
                f"canary_version = CASE WHEN {ends_canary} THEN NULL ELSE canary_version END WHERE name = ?",
                (version, now_iso(), *(() if rollback else (version, version)), name),
            )
            db.execute(
                "INSERT INTO releases (model, version, at, actor) VALUES (?, ?, ?, ?)",
                (name, version, now_iso(), entry.actor),
            )
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

    def add_endpoint(self, endpoint: str, entry: AuditEntry) -> AuditEvent:
        endpoint = check_endpoint(endpoint)
        with self._write() as db:
            if db.execute("SELECT 1 FROM fleet WHERE endpoint = ?", (endpoint,)).fetchone():
                raise FleetError(f"endpoint {endpoint} is already in the fleet")
            db.execute("INSERT INTO fleet (endpoint, added_at) VALUES (?, ?)", (endpoint, now_iso()))
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
            cursor = db.execute(
                "INSERT INTO operations (model, action, from_version, to_version, actor, pid, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (entry.model, entry.action, entry.from_version, entry.to_version, entry.actor, os.getpid(), now_iso()),
            )
            self._append(db, entry)
            assert cursor.lastrowid is not None
            return cursor.lastrowid

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
                db.execute(
                    "UPDATE operations SET finished_at = ?, result = 'interrupted' WHERE id = ?", (now_iso(), op.id)
                )
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
        rows = self._db.execute(
            "SELECT name, prefix, role, created_at, created_by, expires_at, revoked_at FROM tokens ORDER BY name"
        ).fetchall()
        return [TokenRecord(*row) for row in rows]

    def tokens_with_prefix(self, prefix: str) -> list[tuple[TokenRecord, str]]:
        """Tokens whose public prefix is ``prefix``, each with its stored sha256 (the caller compares)."""
        rows = self._db.execute(
            "SELECT name, prefix, role, created_at, created_by, expires_at, revoked_at, sha256 FROM tokens "
            "WHERE prefix = ?",
            (prefix,),
        ).fetchall()
        return [(TokenRecord(*row[:7]), row[7]) for row in rows]

    def add_token(
        self, record: TokenRecord, sha256: str, entry: AuditEntry, *, replace_revoked: bool = True
    ) -> AuditEvent:
        """Store a new token (its hash only); a revoked token of the same name is replaced."""
        with self._write() as db:
            old = db.execute("SELECT revoked_at FROM tokens WHERE name = ?", (record.name,)).fetchone()
            if old is not None and (old[0] is None or not replace_revoked):
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
        row = self._db.execute(
            "SELECT model, body, updated_at, updated_by FROM policies WHERE model = ?", (model,)
        ).fetchone()
        return StoredPolicy(*row) if row else None

    def policies(self) -> list[StoredPolicy]:
        rows = self._db.execute("SELECT model, body, updated_at, updated_by FROM policies ORDER BY model").fetchall()
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
        lock_dir = self.path.parent / (self.path.name + ".locks")
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{model}.lock", "a+", encoding="utf-8") as handle:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        handle.seek(0)
                        raise RolloutInProgressError(model, handle.read().strip()) from None
                    time.sleep(0.05)
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(f"{holder}, pid {os.getpid()}, since {now_iso()}")
                handle.flush()
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                handle.flush()
                fcntl.flock(handle, fcntl.LOCK_UN)


def _statements(script: str) -> list[str]:
    """Split the schema into statements (triggers contain ';' inside BEGIN..END)."""
    statements, current = [], ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements
