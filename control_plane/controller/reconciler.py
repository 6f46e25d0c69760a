"""The controller's reconciler: reconcile right after a change, every ``every`` seconds, and as soon as a probe
sees an endpoint come back or miss a model it should serve; endpoints that keep failing are retried with backoff.

The probe is cheap: one repository-index call per endpoint (plus one readiness call per running canary), every
``probe_every`` seconds, on long-lived gRPC clients, all endpoints at once. An endpoint that stops answering is
marked down and its client dropped: the next probe dials afresh instead of waiting out gRPC's reconnect backoff
(which grows past 10 s while a server is down). The first answer after that is a restart (or a new server), and
its reconcile runs at once, skipping any backoff; so does an endpoint that answers but misses a model it should
serve (a restart faster than one probe). Probing a down endpoint costs one refused connection a second, so it is
not slowed down; its reconciles are (``backoff_base`` doubling up to ``backoff_max``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tritonops.control_plane.discovery import discover
from tritonops.control_plane.endpoint import GrpcEndpoint
from tritonops.control_plane.errors import ControlPlaneError
from tritonops.control_plane.fleet import ReconcileReport, reconcile
from tritonops.control_plane.state import ModelState, StateStore
from tritonops.settings import Settings

_log = logging.getLogger("tritonops.controller.reconciler")
ACTOR = "controller"
PROBE_THREADS = 8
"""Endpoints probed at once: a server that hangs costs its own thread one timeout, not the others' turn."""


@dataclass
class _Backoff:
    failures: int = 0
    retry_at: float = 0.0


class Reconciler:
    """Called by the controller's runner through ``tick()``; ``request(reason)`` asks for a reconcile now."""

    def __init__(
        self,
        settings: Settings,
        *,
        every: float = 30.0,
        probe_every: float = 1.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        actor: str = ACTOR,
    ) -> None:
        self.settings = settings
        self.every = every
        self.probe_every = probe_every
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.actor = actor
        self._requested: str | None = None
        self._lock = threading.Lock()
        self._next_periodic = 0.0
        self._next_probe = 0.0
        self._backoff: dict[str, _Backoff] = {}
        self._down: set[str] = set()
        self._clients: dict[str, GrpcEndpoint] = {}
        self._probes: ThreadPoolExecutor | None = None
        self._fleet: list[str] = []
        self.last_report: ReconcileReport | None = None
        self.last_run: float | None = None
        self.runs = 0
        self.wake: Callable[[], None] | None = None
        """Set by the controller: makes its runner take the next turn now."""

    # -- asking ---------------------------------------------------------------------------------------------
    def request(self, reason: str) -> None:
        """Reconcile at the next turn (within ~50 ms); the latest reason is logged."""
        with self._lock:
            self._requested = reason
        if self.wake is not None:
            self.wake()

    def _take_request(self) -> str | None:
        with self._lock:
            reason, self._requested = self._requested, None
        return reason

    # -- one turn -------------------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_probe:
            self._next_probe = now + self.probe_every
            self._probe()
        reason = self._take_request()
        if reason is None and now >= self._next_periodic:
            reason = "periodic"
        if reason is None:
            if any(b.failures and b.retry_at <= now for b in self._backoff.values()):
                reason = "retry after backoff"
            else:
                return
        self.run(reason)

    def run(self, reason: str) -> ReconcileReport | None:
        """Reconcile every endpoint that is not backing off; returns the report (None: nothing to try)."""
        now = time.monotonic()
        self._next_periodic = now + self.every
        with StateStore.open(self.settings.state) as store:
            fleet = discover(self.settings.fleet, store)
            self._fleet = fleet
            due = [url for url in fleet if self._backoff.get(url, _Backoff()).retry_at <= now]
            if not due:
                return None
            report = reconcile(
                store,
                self.settings.repository,
                self.settings.admin_headers(),
                actor=self.actor,
                endpoints=due,
                audit_in_sync=False,
            )
        self.runs += 1
        self.last_run = time.time()
        self.last_report = report
        for endpoint in report.endpoints:
            if endpoint.errors:
                backoff = self._backoff.setdefault(endpoint.endpoint, _Backoff())
                backoff.failures += 1
                wait = min(self.backoff_base * 2 ** (backoff.failures - 1), self.backoff_max)
                backoff.retry_at = time.monotonic() + wait
                _log.warning(
                    "reconcile %s failed (%d in a row, next try in %.0f s): %s",
                    endpoint.endpoint,
                    backoff.failures,
                    wait,
                    "; ".join(endpoint.errors),
                    extra={"endpoint": endpoint.endpoint, "actor": self.actor},
                )
            else:
                self._backoff.pop(endpoint.endpoint, None)
            for change in endpoint.changes:
                _log.info(
                    "reconcile %s %s: %s (%s) in %.2f s",
                    endpoint.endpoint,
                    change.model,
                    "; ".join(change.actions) or "nothing done",
                    reason,
                    change.seconds,
                    extra={
                        "endpoint": endpoint.endpoint,
                        "model": change.model,
                        "version": change.live,
                        "actor": self.actor,
                        "action": "reconcile",
                    },
                )
        for skipped in report.skipped:
            _log.debug("reconcile skipped: %s", skipped)
        self._forget_departed(fleet)
        return report

    def backing_off(self) -> dict[str, float]:
        """Endpoints waiting before their next reconcile, with the seconds left."""
        now = time.monotonic()
        return {url: b.retry_at - now for url, b in self._backoff.items() if b.retry_at > now}

    # -- the probe ------------------------------------------------------------------------------------------
    def _client(self, url: str) -> GrpcEndpoint:
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = GrpcEndpoint(url, self.settings.admin_headers(), timeout=max(self.probe_every, 0.5))
                self._clients[url] = client
            return client

    def _drop_client(self, url: str) -> None:
        with self._lock:
            client = self._clients.pop(url, None)
        if client is not None:
            client.close()

    def _probe(self) -> None:
        with StateStore.open(self.settings.state) as store:
            # a static fleet is read every probe; a discovered one (DNS, EndpointSlice) as of the last reconcile
            fleet = store.fleet() if self.settings.fleet.kind == "static" else self._fleet
            # a model with a rollout in flight is moving on purpose: its reconcile would only be skipped (and audited)
            # every probe until it ends; the API asks for one right after
            states = [s for s in store.models() if s.live is not None and not store.unfinished_operations(s.name)]
        answers = list(self._pool().map(lambda url: self._probe_one(url, states), fleet))
        for url, (answered, why) in zip(fleet, answers, strict=True):
            if not answered:
                self._down.add(url)
                continue
            if url in self._down:
                self._down.discard(url)
                self._backoff.pop(url, None)  # a restarted server is reconciled at once, whatever its backoff
                _log.info("endpoint %s answers again: reconciling it now", url, extra={"endpoint": url})
                why = f"{url} answers again"
            if why is not None:
                self.request(why)
        self._forget_departed(fleet)

    def _pool(self) -> ThreadPoolExecutor:
        if self._probes is None:
            self._probes = ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="tritonops-probe")
        return self._probes

    def _probe_one(self, url: str, states: list[ModelState]) -> tuple[bool, str | None]:
        """Whether ``url`` answered, and why it needs a reconcile now (None: it does not). Runs on a probe thread:
        it touches only its own endpoint's client."""
        client = self._client(url)
        try:
            ready = client.ready_index()
        except ControlPlaneError as exc:
            if url not in self._down:
                _log.warning("endpoint %s stopped answering: %s", url, exc, extra={"endpoint": url})
            self._drop_client(url)
            return False, None
        return True, self._missing(client, url, ready, states)

    @staticmethod
    def _missing(client: GrpcEndpoint, url: str, ready: dict[str, set[int]], states: list[ModelState]) -> str | None:
        for state in states:
            if ready.get(state.name, set()) != {state.live}:
                return f"{url}: {state.name} serves versions {sorted(ready.get(state.name, set()))}, want {state.live}"
            if state.canary is not None:
                try:
                    canary_ready = client.observe(state.name).canary_ready
                except ControlPlaneError:
                    return None
                if tuple(canary_ready) != (state.canary,):
                    return f"{url}: {state.name}'s canary serves {list(canary_ready)}, want [{state.canary}]"
        return None

    def _forget_departed(self, fleet: list[str]) -> None:
        for url in [u for u in self._clients if u not in fleet]:
            self._clients.pop(url).close()
        for url in [u for u in self._backoff if u not in fleet]:
            self._backoff.pop(url)
        self._down &= set(fleet)

    def close(self) -> None:
        if self._probes is not None:
            self._probes.shutdown(wait=True)
            self._probes = None
        for client in self._clients.values():
            client.close()
        self._clients.clear()
