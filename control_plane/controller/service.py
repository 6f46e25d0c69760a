"""``Controller``: the API, the reconciler and the guardrails in one process (``tritonops controller start``).

Several replicas may share one state database (PostgreSQL): every replica serves the API, and only the holder of
the ``controller`` lease (``tritonops.control_plane.lease``) runs the reconciler, the guardrails, the progressive
rollouts (``controller.rollouts``: their state is in the database, so a new leader carries on) and the extra
tasks. Each replica tries to take or renew the lease every ``lease_ttl / 3`` seconds; the loops check ``held()``
before every turn, so a replica that lost the lease stops acting at its next turn, and one that gains it
reconciles at once (closing rollouts the dead leader left unfinished as interrupted and repairing the fleet).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from tritonops.control_plane.capture import compact
from tritonops.control_plane.controller.app import create_app
from tritonops.control_plane.controller.context import ApiContext
from tritonops.control_plane.controller.dispatch import WebhookDispatcher
from tritonops.control_plane.controller.guards import Guardrails
from tritonops.control_plane.controller.loop import PeriodicTask, TaskRunner, every
from tritonops.control_plane.controller.reconciler import Reconciler
from tritonops.control_plane.controller.rollouts import RolloutDriver
from tritonops.control_plane.discovery import discover
from tritonops.control_plane.exporter import ControlPlaneExporter
from tritonops.control_plane.lease import Lease, current_leader
from tritonops.control_plane.metrics import FleetSampler, SnapshotStore, WindowSource, metrics_urls
from tritonops.control_plane.prometheus import PrometheusConfig, PrometheusWindows
from tritonops.control_plane.state import StateStore
from tritonops.control_plane.tokens import ensure_bootstrap
from tritonops.errors import ConfigurationError
from tritonops.settings import Settings

_log = logging.getLogger("tritonops.controller")


@dataclass(frozen=True)
class ControllerOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    reconcile_every: float = 30.0
    probe_every: float = 1.0
    guardrail_tick: float = 0.25
    rollout_tick: float = 0.5
    """Seconds between two turns of the progressive rollouts' driver."""
    compact_every: float = 30.0
    """Seconds between compactions of captured rows into Parquet."""
    metrics_urls: tuple[str, ...] = ()
    """Triton /metrics URLs to watch; empty: each fleet endpoint's gRPC port + 1."""
    prometheus: PrometheusConfig | None = None
    """Windows from this Prometheus (PromQL) instead of scrapes and compact counter samples in the state."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    extra_tasks: Sequence[PeriodicTask] = field(default_factory=tuple)
    lease_ttl: float = 6.0
    """Seconds a leader's lease lasts without renewal: a dead leader is replaced after at most this plus one
    renewal interval (ttl / 3)."""
    replica: str = ""
    """This replica's name in the lease and the audit log (default: host name and pid)."""


class Controller:
    """Build with settings and options; ``start()`` the loops, ``serve()`` the API until a signal, ``stop()``."""

    def __init__(self, settings: Settings, options: ControllerOptions | None = None) -> None:
        self.settings = settings
        self.options = options or ControllerOptions()
        if (self.options.tls_cert is None) != (self.options.tls_key is None):
            raise ConfigurationError("TLS: give both --tls-cert and --tls-key, or neither")
        self.replica = self.options.replica or f"{socket.gethostname()}:{os.getpid()}"
        self._lease_store = StateStore.open(settings.state)
        self.lease = Lease(self._lease_store, self.replica, ttl=self.options.lease_ttl)
        self.lease_runner = TaskRunner("lease", [PeriodicTask("lease", every(self.lease.renew_interval), self._renew)])
        self.exporter = ControlPlaneExporter(leads=False)  # until the lease is ours
        # With a Prometheus, it holds the history: no counter samples are stored (nothing would read them).
        self.history: SnapshotStore | None = None
        self.windows: WindowSource
        if self.options.prometheus is not None:
            self.windows = PrometheusWindows(self.options.prometheus, exporter=self.exporter)
        else:
            self.history = SnapshotStore(settings.state, keep_seconds=3600.0, min_spacing=1.0)
            self.windows = FleetSampler(self._metrics_urls, self.history, max_age=0.5)
        self.reconciler = Reconciler(settings, every=self.options.reconcile_every, probe_every=self.options.probe_every)
        self.dispatcher = WebhookDispatcher(settings)
        self.guardrails = Guardrails(
            settings,
            self.windows.window,
            self.exporter,
            history=self.history,
            on_action=self.reconciler.request,
            on_step=self.dispatcher.on_step,
        )
        self.reconcile_runner = TaskRunner(
            "reconciler", [PeriodicTask("reconcile", every(0.05), self._as_leader(self.reconciler.tick))]
        )
        self.reconciler.wake = self.reconcile_runner.wake
        self.guardrail_runner = TaskRunner(
            "guardrails",
            [
                PeriodicTask("guardrails", every(self.options.guardrail_tick), self._as_leader(self.guardrails.tick)),
                PeriodicTask(
                    "capture-compaction", every(self.options.compact_every), self._as_leader(self._compact_capture)
                ),
            ],
        )
        self.rollouts = RolloutDriver(settings, self.windows.window, on_action=self.reconciler.request)
        self.rollout_runner = TaskRunner(
            "rollouts",
            [PeriodicTask("rollouts", every(self.options.rollout_tick), self._as_leader(self.rollouts.tick))],
        )
        for task in self.options.extra_tasks:
            self.guardrail_runner.add(PeriodicTask(task.name, task.interval, self._as_leader(task.run)))
        self.context = ApiContext(
            settings,
            exporter=self.exporter,
            on_change=self.reconciler.request,
            window=self.windows.window,
            readiness=self._readiness,
            dispatcher=self.dispatcher,
            leader=self.leadership,
        )
        self.app: Any = create_app(self.context)

    def _metrics_urls(self) -> list[str]:
        if self.options.metrics_urls:
            return list(self.options.metrics_urls)
        with StateStore.open(self.settings.state) as store:
            return metrics_urls([], discover(self.settings.fleet, store))

    def _compact_capture(self) -> None:
        """Captured rows: closed spool files into Parquet, the size bound enforced (nothing to do without any)."""
        spool = self.settings.capture_dir / "spool"
        if spool.is_dir():
            compact(spool, self.settings.capture_dir / "rows", max_bytes=self.settings.capture_max_bytes)

    def _as_leader(self, run: Callable[[], None]) -> Callable[[], None]:
        """``run`` only while this replica holds the lease (checked right before every turn)."""

        def turn() -> None:
            if self.lease.held():
                run()

        return turn

    def _renew(self) -> None:
        was_leader = self.lease.held()
        leads = self.lease.acquire_or_renew()
        self.exporter.set_leader(leads)
        if leads and not was_leader:
            _log.info("%s leads (epoch %s)", self.replica, self.lease.epoch, extra={"actor": self.replica})
            self.reconciler.request(f"{self.replica} became leader (epoch {self.lease.epoch})")
        elif was_leader and not leads:
            _log.warning("%s lost the lease: reconciler and guardrails stop", self.replica)

    def leadership(self) -> dict[str, object]:
        """Who leads (as the database sees it) and whether it is this replica."""
        leader = current_leader(self._lease_store)
        return {
            "replica": self.replica,
            "leader": leader.holder if leader is not None and not leader.expired else None,
            "epoch": leader.epoch if leader is not None else None,
            "this_replica_leads": self.lease.held(),
        }

    def _readiness(self) -> dict[str, str | None]:
        return {
            "lease": None if self.lease_runner.alive else "the lease loop is not running",
            "reconciler": None if self.reconcile_runner.alive else "the reconciler loop is not running",
            "guardrails": None if self.guardrail_runner.alive else "the guardrail loop is not running",
            "rollouts": None if self.rollout_runner.alive else "the progressive rollout loop is not running",
        }

    def start(self) -> None:
        """Store the bootstrap token (first start only), then start the loops."""
        if self.settings.bootstrap_token:
            with StateStore.open(self.settings.state) as store:
                if ensure_bootstrap(store, self.settings.bootstrap_token):
                    _log.info("bootstrap admin token stored (name 'bootstrap')", extra={"actor": "controller"})
        self.dispatcher.start()
        self.lease_runner.start()
        self.reconcile_runner.start()
        self.guardrail_runner.start()
        self.rollout_runner.start()

    def stop(self) -> None:
        self.lease_runner.stop()
        self.reconcile_runner.stop()
        self.guardrail_runner.stop()
        self.rollout_runner.stop()
        self.dispatcher.stop()
        self.lease.release()  # another replica takes over now instead of after the TTL
        self._lease_store.close()
        self.reconciler.close()
        self.windows.close()
        if self.history is not None:
            self.history.close()

    def server(self) -> uvicorn.Server:
        """The uvicorn server for the API (it handles SIGINT/SIGTERM: ``run()`` returns after a clean stop)."""
        config = uvicorn.Config(
            self.app,
            host=self.options.host,
            port=self.options.port,
            log_config=None,
            access_log=False,
            ssl_certfile=str(self.options.tls_cert) if self.options.tls_cert else None,
            ssl_keyfile=str(self.options.tls_key) if self.options.tls_key else None,
            timeout_graceful_shutdown=10,
        )
        return uvicorn.Server(config)

    def serve(self) -> None:
        """Start the loops, serve until SIGINT/SIGTERM, stop everything, return.

        uvicorn handles the signal (finishing requests in flight) and, once stopped, raises it again for the
        handler that was there before it; ours only notes it, so the loops are stopped cleanly and the process
        exits 0 instead of dying from the re-raised signal.
        """
        received: list[int] = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda signum, _frame: received.append(signum))
        self.start()
        try:
            self.server().run()
        finally:
            self.stop()
        _log.info("controller stopped%s", f" by signal {received[0]}" if received else "")
