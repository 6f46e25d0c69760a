"""The desired state on both engines (a SQLite file and a real PostgreSQL): schema and migrations, transactions,
release history, append-only audit enforced by the database, the rollout lock across processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tritonops.control_plane.errors import FleetError, RolloutInProgressError, StateError
from tritonops.control_plane.migrations import MIGRATIONS
from tritonops.control_plane.state import SCHEMA_VERSION, AuditEntry, ModelState, StateStore, check_endpoint
from tritonops.settings import StateLocation

TABLES = {"models", "fleet", "releases", "operations", "audit", "tritonops_predictions", "tritonops_feedback",
          "tritonops_counter_samples", "lock_holders", "tokens", "policies", "webhook_deliveries", "leases",
          "tritonops_schema_migrations"}  # fmt: skip


def entry(action: str = "promote", result: str = "ok", model: str | None = "rf", to: int | None = None) -> AuditEntry:
    return AuditEntry("alice", action, model, None, to, "because", result, "")  # type: ignore[arg-type]


def raw(location: StateLocation) -> Any:
    """A plain driver connection (autocommit), behind the store's back."""
    if location.url is not None:
        return psycopg.connect(location.url, password=location.password, autocommit=True)
    return sqlite3.connect(location.path, isolation_level=None)  # type: ignore[arg-type]


def state_env(location: StateLocation) -> dict[str, str]:
    """The environment that points a subprocess's ``load_settings()`` at ``location``."""
    env = {**os.environ, "TRITONOPS_STATE": str(location)}
    if location.password is not None:
        env["TRITONOPS_STATE_PASSWORD"] = location.password
    return env


@pytest.fixture
def store(state_location: StateLocation) -> Iterator[StateStore]:
    with StateStore.open(state_location) as s:
        yield s


def test_a_new_database_has_every_table_and_the_schema_version(store: StateStore) -> None:
    assert store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
    assert store.models() == [] and store.fleet() == [] and store.audit() == []
    with closing(raw(store.location)) as db:
        if store.location.engine == "sqlite":
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        else:
            tables = {r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        applied = [r[0] for r in db.execute("SELECT version FROM tritonops_schema_migrations ORDER BY version")]
    assert tables >= TABLES
    assert applied == [m.version for m in MIGRATIONS]


def test_two_stores_opening_a_new_database_at_once_migrate_it_once(state_location: StateLocation) -> None:
    script = "from tritonops.control_plane.state import StateStore\nfrom tritonops.settings import load_settings\n"
    script += "StateStore.open(load_settings().state).close()"
    openers = [subprocess.Popen([sys.executable, "-c", script], env=state_env(state_location)) for _ in range(3)]
    assert [p.wait(60) for p in openers] == [0, 0, 0]
    with StateStore.open(state_location) as s:
        assert s.schema_version() == SCHEMA_VERSION


def test_a_newer_schema_is_refused(state_location: StateLocation) -> None:
    StateStore.open(state_location).close()
    with closing(raw(state_location)) as db:
        db.execute("INSERT INTO tritonops_schema_migrations (version, name, at) VALUES (99, 'future', 'now')")
    expected = rf"state database {state_location}: schema version 99, this tritonops understands up to "
    with pytest.raises(StateError, match=expected.replace("?", r"\?") + str(SCHEMA_VERSION)):
        StateStore.open(state_location)


def test_a_sqlite_file_from_before_the_migration_list_is_adopted_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as db:  # what schema version 1 wrote
        for statement in MIGRATIONS[0].sql("sqlite"):
            db.execute(statement)
        db.execute("INSERT INTO models VALUES ('rf', 3, NULL, 0, 'then')")
        db.execute("PRAGMA user_version = 1")
    with StateStore.open(path) as s:
        assert s.schema_version() == SCHEMA_VERSION
        assert s.model("rf") == ModelState("rf", 3, None, 0.0)
        s.record(entry())
        assert [e.actor for e in s.audit()] == ["alice"]


def test_postgresql_connection_errors_name_the_database_without_the_password(
    postgres_cluster: Any,
) -> None:
    location = StateLocation(url=postgres_cluster.url("postgres"), password="wrong-password-123")
    with pytest.raises(StateError, match=r"state database postgresql://tritonops@127.0.0.1:\d+/postgres: cannot conn"):
        StateStore.open(location)
    try:
        StateStore.open(location)
    except StateError as exc:
        assert "wrong-password-123" not in str(exc)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StateError, match=r"state.db: cannot open it \(file is not a database\)"):
        StateStore.open(path)


def test_reopening_keeps_the_state(state_location: StateLocation) -> None:
    with StateStore.open(state_location) as s:
        s.set_live("rf", 3, entry(to=3))
    with StateStore.open(state_location) as s:
        assert s.model("rf") == ModelState("rf", 3, None, 0.0)


def test_release_history_walks_back_past_rolled_back_versions(store: StateStore) -> None:
    for version in (1, 2, 3):
        store.set_live("rf", version, entry(to=version))
    assert store.previous_live("rf") == 2
    store.set_live("rf", 2, entry("rollback", to=2), rollback=True)
    assert store.model("rf") == ModelState("rf", 2, None, 0.0)
    assert store.previous_live("rf") == 1  # 3 was rolled back: not a target any more
    assert [(r.version, r.rolled_back) for r in store.releases("rf")] == [(1, False), (2, False), (3, True), (2, False)]
    assert store.previous_live("unknown") is None


def test_canary_is_set_cleared_and_dropped_when_promoted(store: StateStore) -> None:
    store.set_live("rf", 1, entry(to=1))
    store.set_canary("rf", 2, 0.25, entry("canary", to=2))
    assert store.model("rf") == ModelState("rf", 1, 2, 0.25)
    store.set_live("rf", 2, entry(to=2))
    assert store.model("rf") == ModelState("rf", 2, None, 0.0)
    store.set_canary("rf", 3, 0.5, entry("canary", to=3))
    store.set_canary("rf", None, 0.5, entry("abort-canary"))
    assert store.model("rf") == ModelState("rf", 2, None, 0.0)


def test_rollback_ends_a_running_canary_in_the_same_transaction(store: StateStore) -> None:
    store.set_live("rf", 1, entry(to=1))
    store.set_live("rf", 2, entry(to=2))
    store.set_canary("rf", 3, 0.5, entry("canary", to=3))
    store.set_live("rf", 1, entry("rollback", to=1), rollback=True)
    assert store.model("rf") == ModelState("rf", 1, None, 0.0)


def test_promoting_another_version_keeps_the_canary(store: StateStore) -> None:
    store.set_live("rf", 1, entry(to=1))
    store.set_canary("rf", 3, 0.2, entry("canary", to=3))
    store.set_live("rf", 2, entry(to=2))
    assert store.model("rf") == ModelState("rf", 2, 3, 0.2)


def test_shadow_is_set_kept_through_a_canary_and_ended_by_promote(store: StateStore) -> None:
    store.set_live("rf", 1, entry(to=1))
    store.set_shadow("rf", 3, 0.5, entry("shadow", to=3))
    store.set_canary("rf", 2, 0.2, entry("canary", to=2))
    assert store.model("rf") == ModelState("rf", 1, 2, 0.2, 3, 0.5)
    store.set_live("rf", 2, entry(to=2))
    assert store.model("rf") == ModelState("rf", 2, None, 0.0)
    store.set_shadow("rf", 3, 1.0, entry("shadow", to=3))
    store.set_shadow("rf", None, 1.0, entry("stop-shadow"))
    assert store.models() == [ModelState("rf", 2, None, 0.0)]
    with pytest.raises(StateError, match=r"shadow share must lie in \[0, 1\], got 2"):
        store.set_shadow("rf", 3, 2.0, entry("shadow", to=3))


def test_a_bad_weight_changes_nothing(store: StateStore) -> None:
    store.set_live("rf", 1, entry(to=1))
    events = len(store.audit())
    with pytest.raises(StateError, match=r"canary weight must lie in \[0, 1\], got 1.5"):
        store.set_canary("rf", 2, 1.5, entry("canary", to=2))
    assert store.model("rf") == ModelState("rf", 1, None, 0.0)
    assert len(store.audit()) == events


def test_state_change_and_its_audit_event_commit_together(store: StateStore) -> None:
    store.set_live("rf", 1, entry(to=1))
    with pytest.raises(StateError, match=r"(?i)check constraint"):  # the audit row violates its CHECK: all rolls back
        store.set_live("rf", 2, entry(result="bogus", to=2))
    assert store.model("rf") == ModelState("rf", 1, None, 0.0)
    assert [r.version for r in store.releases("rf")] == [1]
    assert [e.to_version for e in store.audit("rf")] == [1]


def test_audit_log_is_append_only_in_the_database_itself(store: StateStore) -> None:
    store.record(entry())
    refused = (sqlite3.IntegrityError, psycopg.errors.IntegrityConstraintViolation)
    changes = ["UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"]
    if store.location.engine == "postgresql":
        changes.append("TRUNCATE audit")
    with closing(raw(store.location)) as db:
        for change in changes:
            with pytest.raises(refused, match="audit is append-only"):
                db.execute(change)
    assert [e.actor for e in store.audit()] == ["alice"]


def test_audit_filters_by_model_and_keeps_the_last_n_in_order(store: StateStore) -> None:
    for version in range(1, 6):
        store.record(entry(to=version))
    store.record(entry("fleet-add", model=None))
    assert [e.to_version for e in store.audit("rf", limit=2)] == [4, 5]
    assert len(store.audit()) == 6
    event = store.audit("rf")[0]
    assert (event.actor, event.action, event.reason, event.result) == ("alice", "promote", "because", "ok")
    assert event.at.endswith("+00:00")


def test_fleet_membership(store: StateStore) -> None:
    store.add_endpoint("10.0.0.5:8001", entry("fleet-add", model=None))
    store.add_endpoint("triton-b.internal:8001", entry("fleet-add", model=None))
    assert store.fleet() == ["10.0.0.5:8001", "triton-b.internal:8001"]
    with pytest.raises(FleetError, match="already in the fleet"):
        store.add_endpoint("10.0.0.5:8001", entry("fleet-add", model=None))
    with pytest.raises(FleetError, match=r"expected host:port"):
        store.add_endpoint("http://10.0.0.5", entry("fleet-add", model=None))
    with pytest.raises(FleetError, match="is not in the fleet"):
        store.remove_endpoint("10.0.0.9:8001", entry("fleet-remove", model=None))
    store.remove_endpoint("10.0.0.5:8001", entry("fleet-remove", model=None))
    assert store.fleet() == ["triton-b.internal:8001"]
    assert [e.action for e in store.audit()] == ["fleet-add", "fleet-add", "fleet-remove"]


@pytest.mark.parametrize("bad", ["localhost", "host:0", "host:70000", ":8001", "a b:1", "host:80x"])
def test_endpoint_validation(bad: str) -> None:
    with pytest.raises(FleetError, match=repr(bad).replace("[", r"\[")):
        check_endpoint(bad)


def test_rollout_lock_refuses_a_second_holder_and_names_the_first(store: StateStore) -> None:
    with store.rollout_lock("rf", "promote by alice"):
        refused = pytest.raises(RolloutInProgressError, match=r"'rf': another rollout is in progress \(promote by al")
        with refused, store.rollout_lock("rf", "promote by bob"):
            pass
        with store.rollout_lock("other-model", "promote by bob"):  # other models are independent
            pass
    with store.rollout_lock("rf", "promote by bob"):  # released
        pass


def test_rollout_lock_is_released_when_its_holder_is_killed(store: StateStore) -> None:
    script = textwrap.dedent(
        """
        import time
        from tritonops.control_plane.state import StateStore
        from tritonops.settings import load_settings
        s = StateStore.open(load_settings().state)
        with s.rollout_lock("rf", "promote by victim"):
            print("held", flush=True)
            time.sleep(60)
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=state_env(store.location)
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RolloutInProgressError, match="promote by victim"), store.rollout_lock("rf", "bob"):
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        with store.rollout_lock("rf", "promote by bob", wait_seconds=5):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_unfinished_operations_are_closed_as_interrupted(store: StateStore) -> None:
    operation = store.begin_operation(entry(result="started", to=2))
    assert [op.id for op in store.unfinished_operations("rf")] == [operation]
    events = store.close_interrupted("rf", "reconciler")
    assert [(e.action, e.result, e.actor, e.to_version) for e in events] == [
        ("promote", "interrupted", "reconciler", 2)
    ]
    assert store.unfinished_operations("rf") == []
    assert store.close_interrupted("rf", "reconciler") == []
    finished = store.begin_operation(entry(result="started", to=3))
    store.finish_operation(finished, "ok")
    assert store.unfinished_operations("rf") == []


def test_writers_in_two_processes_are_serialised(store: StateStore) -> None:
    script = textwrap.dedent(
        """
        from tritonops.control_plane.state import AuditEntry, StateStore
        from tritonops.settings import load_settings
        with StateStore.open(load_settings().state) as s:
            for i in range(40):
                s.set_live("rf", i + 1, AuditEntry("w", "promote", "rf", None, i + 1, "", "ok"))
        """
    )
    started = time.monotonic()
    writers = [subprocess.Popen([sys.executable, "-c", script], env=state_env(store.location)) for _ in range(2)]
    assert [w.wait(60) for w in writers] == [0, 0]
    assert time.monotonic() - started < 60
    assert len(store.releases("rf")) == 80
    assert len(store.audit("rf")) == 80
    assert store.model("rf") is not None and store.model("rf").live == 40  # type: ignore[union-attr]


def test_a_rollout_lock_holder_cut_off_from_postgresql_loses_the_lock(postgres_cluster: Any) -> None:
    """A network cut, made real: the server ends the holder's connection (pg_terminate_backend), the lock goes."""
    location = postgres_cluster.new_database()
    with StateStore.open(location) as first, StateStore.open(location) as second, first.rollout_lock("rf", "alice"):
        with pytest.raises(RolloutInProgressError, match="alice, pid"), second.rollout_lock("rf", "bob"):
            pass
        with closing(raw(location)) as admin:
            cut = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            ).fetchall()
        assert cut == [(True,)]
        with second.rollout_lock("rf", "promote by bob", wait_seconds=5):
            pass
