"""Leader election among controller replicas: a lease row with a TTL in the state database.

Every replica serves the API; only the holder of the ``controller`` lease runs the reconciler and guardrails.
The holder renews the lease every ``ttl / 3`` seconds; a replica that finds it expired takes it over and the epoch
goes up by one, so each leadership has its own number (a fencing token: ``is_current(epoch)`` tells a write whether
its leadership still stands). Expiry is judged by the database server's clock, so replicas whose clocks differ
agree on it. The holder keeps a deadline of its own on the monotonic clock: when a renewal has not succeeded
within ``ttl`` of the last good one started (the database unreachable, the process stalled), ``held()`` turns
False at once, before anyone else can take the lease, and the leader must stop acting.

Why a lease row and not a PostgreSQL advisory lock held by a session: the advisory lock goes when the server notices
its connection died, which for a network cut (no FIN) is bounded only by TCP keepalive settings, and the holder
itself learns it lost the lock only on its next statement; a connection pooler in transaction mode would also lose
it. The lease has an explicit, tested bound on both sides (the holder stops within ``ttl``, a follower takes over
after ``ttl`` plus one poll), works the same on SQLite (one host, several processes), and gives a fencing epoch.
Takeovers and releases are audit events, written in the same transaction as the lease change.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from tritonops.control_plane.database import Database
from tritonops.control_plane.errors import StateError
from tritonops.control_plane.state import AuditEntry, StateStore

log = logging.getLogger("tritonops.lease")

CONTROLLER = "controller"


@dataclass(frozen=True)
class Leader:
    """Who holds a lease, since when, until when (database clock, seconds since the epoch), and its epoch."""

    name: str
    holder: str
    epoch: int
    acquired_at: float
    renewed_at: float
    expires_at: float
    now: float
    """The database clock when this was read."""

    @property
    def expired(self) -> bool:
        return self.expires_at <= self.now


class Lease:
    """One replica's side of lease ``name``: ``acquire_or_renew()`` every ``renew_interval``, ``held()`` to act."""

    def __init__(self, store: StateStore, holder: str, *, ttl: float = 6.0, name: str = CONTROLLER) -> None:
        if ttl <= 0:
            raise StateError(f"lease ttl must be > 0 seconds, got {ttl}")
        self.store, self.holder, self.ttl, self.name = store, holder, ttl, name
        self.epoch: int | None = None
        self._held_until = float("-inf")  # monotonic

    @property
    def renew_interval(self) -> float:
        return self.ttl / 3

    def held(self) -> bool:
        """True while this replica may act: it holds the lease and its own deadline has not passed."""
        return self.epoch is not None and time.monotonic() < self._held_until

    def acquire_or_renew(self) -> bool:
        """Renew the lease we hold, or take it when free or expired; return whether we hold it now."""
        started = time.monotonic()
        try:
            epoch = self._transact()
        except StateError as exc:
            log.warning("lease %s: %s", self.name, exc)
            epoch = None
            if not self.held():
                self.epoch = None
            return self.held()
        if epoch is None:
            if self.epoch is not None:
                log.warning("lease %s: lost to another replica (epoch %s)", self.name, self.epoch)
            self.epoch, self._held_until = None, float("-inf")
            return False
        if self.epoch != epoch:
            log.info("lease %s: %s leads (epoch %d)", self.name, self.holder, epoch)
        self.epoch = epoch
        self._held_until = started + self.ttl * 0.9  # a margin for clock rate differences
        return True

    def _transact(self) -> int | None:
        db = self.store.db
        with db.write():
            row = db.execute(
                f"SELECT holder, epoch, expires_at, {db.clock_sql} FROM leases WHERE name = ?", (self.name,)
            ).fetchone()
            if row is None:
                return self._take(db, 1, previous=None)
            holder, epoch, expires_at, now = row[0], int(row[1]), float(row[2]), float(row[3])
            if holder == self.holder and epoch == self.epoch and expires_at > now:
                db.execute(
                    f"UPDATE leases SET renewed_at = {db.clock_sql}, expires_at = {db.clock_sql} + ? "
                    "WHERE name = ? AND epoch = ?",
                    (self.ttl, self.name, epoch),
                )
                return epoch
            if expires_at > now:
                return None  # someone else holds it
            return self._take(db, epoch + 1, previous=(holder, epoch))

    def _take(self, db: Database, epoch: int, previous: tuple[str, int] | None) -> int:
        db.execute(
            f"INSERT INTO leases (name, holder, epoch, acquired_at, renewed_at, expires_at) "
            f"VALUES (?, ?, ?, {db.clock_sql}, {db.clock_sql}, {db.clock_sql} + ?) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, "
            "acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at",
            (self.name, self.holder, epoch, self.ttl),
        )
        reason = "no leader yet" if previous is None else f"the lease of {previous[0]} (epoch {previous[1]}) expired"
        detail = {"lease": self.name, "epoch": epoch, "previous": previous[0] if previous else None, "ttl": self.ttl}
        self.store.append_event(
            db, AuditEntry(self.holder, "leader", None, None, None, reason, "ok", json.dumps(detail))
        )
        return epoch

    def release(self) -> None:
        """Give the lease up now (a clean shutdown), so another replica takes over without waiting for the TTL."""
        if self.epoch is None:
            return
        db = self.store.db
        with db.write():
            released = db.execute(
                f"UPDATE leases SET expires_at = {db.clock_sql} WHERE name = ? AND holder = ? AND epoch = ?",
                (self.name, self.holder, self.epoch),
            )
            if released.rowcount:
                detail = json.dumps({"lease": self.name, "epoch": self.epoch})
                entry = AuditEntry(self.holder, "leader-release", None, None, None, "shutting down", "ok", detail)
                self.store.append_event(db, entry)
        self.epoch, self._held_until = None, float("-inf")

    def is_current(self, epoch: int) -> bool:
        """Whether ``epoch`` is still the lease's epoch (a fencing check for a write made on its behalf)."""
        leader = current_leader(self.store, self.name)
        return leader is not None and leader.epoch == epoch and not leader.expired


def current_leader(store: StateStore, name: str = CONTROLLER) -> Leader | None:
    """Who holds lease ``name`` as the database sees it now (expired or not), or None if nobody ever did."""
    db = store.db
    row = db.execute(
        f"SELECT name, holder, epoch, acquired_at, renewed_at, expires_at, {db.clock_sql} FROM leases WHERE name = ?",
        (name,),
    ).fetchone()
    if row is None:
        return None
    return Leader(row[0], row[1], int(row[2]), float(row[3]), float(row[4]), float(row[5]), float(row[6]))
