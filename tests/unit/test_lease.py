"""Leader lease on both engines (a SQLite file, a real PostgreSQL): one holder at a time, renewal, expiry and
takeover with a new epoch, release, the holder's own deadline, a SIGKILLed leader replaced, and on PostgreSQL a
leader cut off by a network partition (a relay that stops forwarding) stops acting before it is replaced."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tritonops.control_plane.errors import StateError
from tritonops.control_plane.lease import Lease, current_leader
from tritonops.control_plane.state import StateStore
from tritonops.settings import StateLocation

TTL = 1.5


def state_env(location: StateLocation) -> dict[str, str]:
    env = {**os.environ, "TRITONOPS_STATE": str(location)}
    if location.password is not None:
        env["TRITONOPS_STATE_PASSWORD"] = location.password
    return env


@pytest.fixture
def stores(state_location: StateLocation) -> Iterator[tuple[StateStore, StateStore]]:
    """Two replicas' connections to one state database."""
    with StateStore.open(state_location) as a, StateStore.open(state_location) as b:
        yield a, b


def test_one_holder_at_a_time_and_renewal_keeps_the_epoch(stores: tuple[StateStore, StateStore]) -> None:
    a, b = Lease(stores[0], "replica-a", ttl=TTL), Lease(stores[1], "replica-b", ttl=TTL)
    assert current_leader(stores[0]) is None
    assert a.acquire_or_renew() and a.held() and a.epoch == 1
    assert not b.acquire_or_renew() and not b.held() and b.epoch is None
    for _ in range(3):
        time.sleep(TTL / 3)
        assert a.acquire_or_renew() and a.epoch == 1
        assert not b.acquire_or_renew()
    leader = current_leader(stores[1])
    assert leader is not None and (leader.holder, leader.epoch, leader.expired) == ("replica-a", 1, False)
    assert leader.expires_at - leader.now == pytest.approx(TTL, abs=TTL / 2)
    (event,) = [e for e in stores[0].audit() if e.action == "leader"]
    assert (event.actor, event.reason, json.loads(event.detail)["epoch"]) == ("replica-a", "no leader yet", 1)


def test_an_expired_lease_is_taken_over_with_the_next_epoch(stores: tuple[StateStore, StateStore]) -> None:
    a, b = Lease(stores[0], "replica-a", ttl=TTL), Lease(stores[1], "replica-b", ttl=TTL)
    assert a.acquire_or_renew()
    time.sleep(TTL * 0.95)
    assert not a.held()  # its own deadline passed before the lease's: it stops acting first
    time.sleep(TTL * 0.1)
    assert b.acquire_or_renew() and b.epoch == 2
    assert not b.is_current(1) and b.is_current(2)
    assert not a.acquire_or_renew() and a.epoch is None  # the old leader learns it lost
    takeover = [e for e in stores[0].audit() if e.action == "leader"][-1]
    assert takeover.actor == "replica-b" and takeover.reason == "the lease of replica-a (epoch 1) expired"


def test_a_released_lease_is_taken_at_once(stores: tuple[StateStore, StateStore]) -> None:
    a, b = Lease(stores[0], "replica-a", ttl=30.0), Lease(stores[1], "replica-b", ttl=30.0)
    assert a.acquire_or_renew()
    a.release()
    assert not a.held()
    assert b.acquire_or_renew() and b.epoch == 2
    assert [e.action for e in stores[0].audit()] == ["leader", "leader-release", "leader"]


def test_a_bad_ttl_is_refused(stores: tuple[StateStore, StateStore]) -> None:
    with pytest.raises(StateError, match=r"lease ttl must be > 0 seconds, got 0"):
        Lease(stores[0], "replica-a", ttl=0)


def test_a_sigkilled_leader_is_replaced_within_the_ttl(state_location: StateLocation) -> None:
    script = textwrap.dedent(
        f"""
        import time
        from tritonops.control_plane.lease import Lease
        from tritonops.control_plane.state import StateStore
        from tritonops.settings import load_settings
        lease = Lease(StateStore.open(load_settings().state), "victim", ttl={TTL})
        while True:
            if lease.acquire_or_renew():
                print("leading", flush=True)
            time.sleep(lease.renew_interval)
        """
    )
    victim = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=state_env(state_location)
    )
    try:
        assert victim.stdout is not None and victim.stdout.readline().strip() == "leading"
        with StateStore.open(state_location) as store:
            follower = Lease(store, "follower", ttl=TTL)
            assert not follower.acquire_or_renew()
            os.kill(victim.pid, signal.SIGKILL)
            killed = time.monotonic()
            while not follower.acquire_or_renew():
                assert time.monotonic() - killed < TTL + 5, "no takeover"
                time.sleep(0.1)
            takeover = time.monotonic() - killed
            assert follower.epoch == 2
            assert takeover <= TTL + 1.0, takeover
    finally:
        victim.kill()
        victim.wait()
        if victim.stdout is not None:
            victim.stdout.close()


class Blackhole:
    """A TCP relay to PostgreSQL that can be cut: once ``cut_off`` is set it forwards nothing and closes nothing, as
    a partition looks to both ends (no FIN, no RST). Its kernel still acknowledges what it receives, so the libpq
    TCP user timeout that ends a hung call on a real partition (unacknowledged data) is not exercised here."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if not self.cut_off.is_set():
                sink.sendall(data)

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):  # already shut
                sock.shutdown(socket.SHUT_RDWR)  # a FIN to both ends, and blocked reads wake up
            sock.close()


def test_a_leader_cut_off_from_postgresql_stops_acting_and_is_replaced(postgres_cluster: Any) -> None:
    location = postgres_cluster.new_database()
    relay = Blackhole(postgres_cluster.port)
    behind = StateLocation(url=location.url.replace(f":{postgres_cluster.port}/", f":{relay.port}/"),
                           password=location.password)  # fmt: skip
    try:
        with StateStore.open(behind) as a_store, StateStore.open(location) as b_store:
            a, b = Lease(a_store, "replica-a", ttl=TTL), Lease(b_store, "replica-b", ttl=TTL)
            assert a.acquire_or_renew()
            relay.cut_off.set()
            cut = time.monotonic()
            renewing = threading.Thread(target=a.acquire_or_renew, daemon=True)  # hangs on the dead link
            renewing.start()
            while a.held():
                time.sleep(0.02)
            stopped = time.monotonic() - cut
            while not b.acquire_or_renew():
                assert time.monotonic() - cut < TTL + 5, "no takeover"
                time.sleep(0.1)
            taken = time.monotonic() - cut
            assert stopped < TTL and stopped < taken, (stopped, taken)  # the old leader stopped first
            assert b.epoch == 2 and taken <= TTL + 1.0
            assert not a.held()  # even while its renewal still hangs on the dead link
            relay.close()  # the link ends for good: the hung renewal fails instead of hanging
            renewing.join(15)
            assert not renewing.is_alive() and not a.held() and a.epoch is None
    finally:
        relay.close()
