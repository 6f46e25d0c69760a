"""One connection to the state database, SQLite or PostgreSQL, speaking the same SQL on both.

Statements are written once with ``?`` placeholders and the subset of SQL both engines share (``RETURNING``,
``ON CONFLICT``, ``TRUE``/``FALSE``); the PostgreSQL side rewrites the placeholders. Writes go through ``write()``:
one transaction, and one writer at a time on both engines (SQLite ``BEGIN IMMEDIATE``; PostgreSQL a transaction
advisory lock every writer takes first), so a read-then-write inside it sees no interleaved writer. Reads run outside
transactions (autocommit), so nothing holds a snapshot open between calls.

Named locks (``hold_lock``) that die with their holder: on SQLite a ``flock`` on a file next to the database (the
kernel drops it when the process dies); on PostgreSQL a session advisory lock on a connection of its own (the
server drops it when that connection ends, including when the holder is killed or cut off).

Every driver error becomes a ``StateError`` naming the database (URL without password, or the file).
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import hashlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from tritonops.control_plane.errors import StateError
from tritonops.settings import StateLocation

if TYPE_CHECKING:
    import psycopg

Engine = Literal["sqlite", "postgresql"]
Params = Sequence[Any]

_WRITER_LOCK = (0x74726F70, 0)  # ("trop", 0): the one-writer lock of PostgreSQL write transactions
_NAMED_LOCKS = 0x74726F71  # ("troq", hash of the name): named session locks
# A connection cut without FIN/RST (a partition) must not hang for hours: libpq's keepalives and TCP user timeout
# end it on our side within seconds; on the server side the same keepalives, and a session left idle inside a
# transaction is ended, so its locks (the writer lock, a rollout lock) go with it.
_CONNECTION_LIMITS = {
    "keepalives": 1,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 5000,
    "options": "-c tcp_keepalives_idle=2 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3 "
    "-c tcp_user_timeout=5000 -c idle_in_transaction_session_timeout=10000",
}


class Rows(Protocol):
    """What a statement returns: the rows and how many it changed."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Database(abc.ABC):
    """An open connection; use ``open_database(location)``."""

    engine: Engine
    clock_sql: str
    """An SQL expression for the database server's clock, in seconds since the epoch (one clock for all replicas)."""

    def __init__(self, location: StateLocation) -> None:
        self.location = location

    @abc.abstractmethod
    def execute(self, sql: str, params: Params = ()) -> Rows:
        """Run one statement (``?`` placeholders on both engines) and return its rows."""

    @abc.abstractmethod
    def write(self) -> contextlib.AbstractContextManager[Database]:
        """One write transaction: committed when the context ends, rolled back when it raises."""

    @abc.abstractmethod
    def hold_lock(self, name: str, wait_seconds: float) -> contextlib.AbstractContextManager[bool]:
        """Hold the named lock while the context runs; yields False (holding nothing) when it stayed taken."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection."""

    def error(self, exc: Exception, doing: str) -> StateError:
        return StateError(f"state database {self.location}: {doing} ({_first_line(exc)})")


class SQLiteDatabase(Database):
    engine: Engine = "sqlite"
    clock_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, location: StateLocation, busy_timeout: float) -> None:
        super().__init__(location)
        assert location.path is not None
        self.path = location.path
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # a power cut may lose the last commits, never corrupts
            self._db.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"state database {self.path}: cannot open it ({exc})") from exc

    def execute(self, sql: str, params: Params = ()) -> Rows:
        try:
            return self._db.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise self.error(exc, "statement failed") from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[Database]:
        try:
            self._db.execute("BEGIN IMMEDIATE")  # takes the single writer slot (waits up to busy_timeout)
        except sqlite3.Error as exc:
            raise self.error(exc, "cannot start a write transaction") from exc
        try:
            yield self
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self.error(exc, "commit failed") from exc

    @contextlib.contextmanager
    def hold_lock(self, name: str, wait_seconds: float) -> Iterator[bool]:
        lock_dir = self.path.parent / (self.path.name + ".locks")
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{_lock_file_name(name)}.lock", "a", encoding="utf-8") as handle:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        self._db.close()


class PostgreSQLDatabase(Database):
    engine: Engine = "postgresql"
    clock_sql = "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"

    def __init__(self, location: StateLocation, connect_timeout: float) -> None:
        super().__init__(location)
        self._connect_timeout = connect_timeout
        self._in_transaction = False
        self._db = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg  # only PostgreSQL users pay for the import

        assert self.location.url is not None
        extra: dict[str, Any] = {"connect_timeout": max(1, round(self._connect_timeout)), **_CONNECTION_LIMITS}
        if self.location.password is not None:
            extra["password"] = self.location.password
        try:
            return psycopg.connect(self.location.url, autocommit=True, application_name="tritonops", **extra)
        except psycopg.Error as exc:
            raise self.error(exc, "cannot connect") from exc

    def _reconnect_if_lost(self) -> None:
        """A connection the server or the network ended is replaced before the next statement (not mid-transaction)."""
        if self._db.closed and not self._in_transaction:
            self._db = self._connect()

    def execute(self, sql: str, params: Params = ()) -> Rows:
        import psycopg

        self._reconnect_if_lost()
        try:
            return self._db.execute(_postgresql_sql(sql), tuple(params))
        except psycopg.Error as exc:
            raise self.error(exc, "statement failed") from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[Database]:
        import psycopg

        self._reconnect_if_lost()
        try:
            transaction = self._db.transaction()
            transaction.__enter__()
        except psycopg.Error as exc:
            raise self.error(exc, "cannot start a write transaction") from exc
        self._in_transaction = True
        try:
            self.execute("SELECT pg_advisory_xact_lock(?, ?)", _WRITER_LOCK)
            yield self
        except BaseException as exc:
            with contextlib.suppress(psycopg.Error):  # the rollback of a dead connection fails too; exc says why
                transaction.__exit__(type(exc), exc, exc.__traceback__)
            raise
        finally:
            self._in_transaction = False
        try:
            transaction.__exit__(None, None, None)
        except psycopg.Error as exc:
            raise self.error(exc, "commit failed") from exc

    @contextlib.contextmanager
    def hold_lock(self, name: str, wait_seconds: float) -> Iterator[bool]:
        import psycopg

        holder = self._connect()  # a session lock lives as long as this connection, and no longer
        try:
            deadline = time.monotonic() + wait_seconds
            key = (_NAMED_LOCKS, _lock_key(name))
            try:
                while not _fetch_flag(holder, "SELECT pg_try_advisory_lock(%s, %s)", key):
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
            except psycopg.Error as exc:
                raise self.error(exc, f"cannot take lock {name!r}") from exc
            yield True  # closing the connection below releases the lock
        finally:
            holder.close()

    def close(self) -> None:
        self._db.close()


def open_database(location: StateLocation | Path, timeout: float = 10.0) -> Database:
    """Connect to the state database: a SQLite file (a ``Path``) or whatever ``location`` names."""
    if isinstance(location, Path):
        location = StateLocation(path=location)
    if location.engine == "postgresql":
        return PostgreSQLDatabase(location, timeout)
    return SQLiteDatabase(location, timeout)


def _postgresql_sql(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _fetch_flag(connection: psycopg.Connection[Any], sql: str, params: Params) -> bool:
    row = connection.execute(sql, tuple(params)).fetchone()
    return bool(row and row[0])


def _lock_key(name: str) -> int:
    """A stable signed 32-bit key for an advisory lock (two names sharing one key only wait for each other)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


def _lock_file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
