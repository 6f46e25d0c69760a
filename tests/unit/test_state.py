"""The SQLite desired state: schema, transactions, release history, append-only audit, rollout lock."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tritonops.control_plane.errors import FleetError, RolloutInProgressError, StateError
from tritonops.control_plane.state import SCHEMA_VERSION, AuditEntry, ModelState, StateStore, check_endpoint


def entry(action: str = "promote", result: str = "ok", model: str | None = "rf", to: int | None = None) -> AuditEntry:
    return AuditEntry("alice", action, model, None, to, "because", result, "")  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    s = StateStore.open(tmp_path / "state" / "state.db")
    yield s  # type: ignore[misc]
    s.close()


def test_a_new_database_has_the_schema_version_and_wal(store: StateStore) -> None:
    assert store.schema_version() == SCHEMA_VERSION == 2
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert store.models() == [] and store.fleet() == [] and store.audit() == []


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore.open(path).close()
    sqlite3.connect(path).execute("PRAGMA user_version = 99")
    with pytest.raises(StateError, match=r"schema version 99, this tritonops understands up to 2"):
        StateStore.open(path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StateError, match=r"state.db: cannot open it \(file is not a database\)"):
        StateStore.open(path)


def test_reopening_keeps_the_state(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path) as s:
        s.set_live("rf", 3, entry(to=3))
    with StateStore.open(path) as s:
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


def test_a_bad_weight_changes_nothing(store: StateStore) -> None:
    store.set_live("rf", 1, entry(to=1))
    events = len(store.audit())
    with pytest.raises(StateError, match=r"canary weight must lie in \[0, 1\], got 1.5"):
        store.set_canary("rf", 2, 1.5, entry("canary", to=2))
    assert store.model("rf") == ModelState("rf", 1, None, 0.0)
    assert len(store.audit()) == events


def test_state_change_and_its_audit_event_commit_together(store: StateStore) -> None:
    store.set_live("rf", 1, entry(to=1))
    with pytest.raises(sqlite3.IntegrityError):  # the audit row violates its CHECK: the whole change rolls back
        store.set_live("rf", 2, entry(result="bogus", to=2))
    assert store.model("rf") == ModelState("rf", 1, None, 0.0)
    assert [r.version for r in store.releases("rf")] == [1]
    assert [e.to_version for e in store.audit("rf")] == [1]


def test_audit_log_is_append_only(store: StateStore) -> None:
    store.record(entry())
    db = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET actor = 'mallory'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit")
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


def test_rollout_lock_is_released_when_its_holder_is_killed(store: StateStore, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from tritonops.control_plane.state import StateStore
        s = StateStore.open(Path({str(store.path)!r}))
        with s.rollout_lock("rf", "promote by victim"):
            print("held", flush=True)
            time.sleep(60)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
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
        f"""
        from pathlib import Path
        from tritonops.control_plane.state import AuditEntry, StateStore
        with StateStore.open(Path({str(store.path)!r})) as s:
            for i in range(40):
                s.set_live("rf", i + 1, AuditEntry("w", "promote", "rf", None, i + 1, "", "ok"))
        """
    )
    started = time.monotonic()
    writers = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [w.wait(60) for w in writers] == [0, 0]
    assert time.monotonic() - started < 60
    assert len(store.releases("rf")) == 80
    assert len(store.audit("rf")) == 80
    assert store.model("rf") is not None and store.model("rf").live == 40  # type: ignore[union-attr]
