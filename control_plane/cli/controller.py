"""``tritonops controller start|stop``: the control plane as one long-running service (API + reconciler +
guardrails + exporter)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.output import console, print_json
from tritonops.errors import ConfigurationError

controller_app = typer.Typer(
    help="The controller: the API (tokens, roles), the reconciler and the guardrails in one process.",
    no_args_is_help=True,
)
app.add_typer(controller_app, name="controller")

DEFAULT_PID_FILE = Path(".tritonops/controller.json")


@dataclass(frozen=True)
class ControllerRecord:
    """What ``controller start --detach`` leaves in its pid file."""

    pid: int
    url: str
    log_path: str
    started_at: float

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> ControllerRecord:
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ConfigurationError(f"no detached controller recorded at {path} (start one with --detach)") from None
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"controller pid file {path} is unreadable: {exc}") from exc


@controller_app.command("start")
def start(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="Port of the API, /metrics, /healthz and /readyz."),
    reconcile_every: float = typer.Option(
        30.0, "--reconcile-every", min=1.0, help="Seconds between periodic reconciles (also after every change)."
    ),
    probe_every: float = typer.Option(
        1.0, "--probe-every", min=0.1, help="Seconds between checks that every endpoint still serves its models."
    ),
    metrics_url: list[str] = typer.Option(
        [], "--metrics-url", envvar="TRITONOPS_METRICS_URLS", help="Triton /metrics URL (default: gRPC port + 1)."
    ),
    prometheus_url: str = typer.Option(
        "",
        "--prometheus-url",
        envvar="TRITONOPS_PROMETHEUS_URL",
        help="Read guardrail and drift windows from this Prometheus (PromQL) instead of storing counter samples.",
    ),
    prometheus_timeout: float = typer.Option(
        5.0, "--prometheus-timeout", envvar="TRITONOPS_PROMETHEUS_TIMEOUT", help="Seconds one PromQL query may take."
    ),
    prometheus_selector: str = typer.Option(
        'job="triton"',
        "--prometheus-selector",
        envvar="TRITONOPS_PROMETHEUS_SELECTOR",
        help="Label matchers of the Triton targets in Prometheus (no braces).",
    ),
    log_format: str = typer.Option("text", "--log-format", help="text or json (one object per line)."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="Serve HTTPS with this certificate (PEM)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Private key of --tls-cert (PEM)."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background; record it in a pid file."),
    pid_file: Path = typer.Option(DEFAULT_PID_FILE, help="Pid file used with --detach."),
    log_file: Path = typer.Option(Path(".tritonops/controller.log"), help="Log of a detached controller."),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    replica: str = typer.Option("", "--replica", help="This replica's name in the lease and audit (default host:pid)."),
    lease_ttl: float = typer.Option(
        6.0, "--lease-ttl", min=0.5, help="Seconds a leader's lease lasts unrenewed (replicas sharing one state)."
    ),
) -> None:
    """Serve the API and run the reconciler and every model's guardrails until Ctrl-C or SIGTERM.

    Replicas on one PostgreSQL state all serve the API; the one holding the lease runs the reconciler and the
    guardrails (`tritonops controller status` says which).

    Tokens: the first admin token comes from TRITONOPS_BOOTSTRAP_TOKEN (or _FILE) at the first start; more with
    `tritonops token create`. Triton's admin key (TRITONOPS_ADMIN_TOKEN) is needed here only.

    Windows: without --prometheus-url, compact counter samples in the state (as long as the longest policy window
    needs); with it, PromQL over what Prometheus scraped (bearer token from TRITONOPS_PROMETHEUS_TOKEN or _FILE).
    An unanswered query leaves that guardrail step without data (logged, counted in /metrics).
    """
    if log_format not in ("text", "json"):
        raise typer.BadParameter(f"expected text or json, got {log_format!r}", param_hint="--log-format")
    scheme = "https" if tls_cert else "http"
    url = f"{scheme}://{host}:{port}"
    if detach:
        _start_detached(url, pid_file, log_file, tls_cert is not None)
        return
    from tritonops.control_plane.controller.logs import configure_logging
    from tritonops.control_plane.controller.service import Controller, ControllerOptions
    from tritonops.control_plane.prometheus import PrometheusConfig
    from tritonops.settings import read_prometheus_token

    configure_logging("json" if log_format == "json" else "text", log_level)
    settings_ = options.settings(repository, state)
    prometheus = None
    if prometheus_url:
        prometheus = PrometheusConfig(
            prometheus_url, read_prometheus_token(), timeout=prometheus_timeout, selector=prometheus_selector
        )
    controller_options = ControllerOptions(
        host=host,
        port=port,
        reconcile_every=reconcile_every,
        probe_every=probe_every,
        metrics_urls=tuple(metrics_url),
        prometheus=prometheus,
        tls_cert=tls_cert,
        tls_key=tls_key,
        lease_ttl=lease_ttl,
        replica=replica,
    )
    controller = Controller(settings_, controller_options)
    console().print(f"[bold green]controller[/] on {url} (API docs {url}/docs); Ctrl-C stops it", highlight=False)
    controller.serve()
    console().print("controller stopped")


def _start_detached(url: str, pid_file: Path, log_file: Path, tls: bool) -> None:
    import requests

    args = [a for a in sys.argv[1:] if a not in ("--detach", "-d")]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tritonops", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigurationError(f"the controller exited with code {process.returncode}; see {log_file}")
        try:
            if requests.get(f"{url}/healthz", timeout=1, verify=not tls).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    else:
        process.terminate()
        raise ConfigurationError(f"the controller did not answer {url}/healthz within 60 s; see {log_file}")
    ControllerRecord(process.pid, url, str(log_file.resolve()), time.time()).write(pid_file)
    console().print(f"controller running: pid {process.pid}, {url}; stop with `tritonops controller stop`")


@controller_app.command("stop")
def stop(
    pid_file: Path = typer.Option(DEFAULT_PID_FILE, help="Pid file written by `controller start --detach`."),
    grace: float = typer.Option(30.0, help="Seconds between SIGTERM and SIGKILL."),
) -> None:
    """Stop a controller started with --detach (SIGTERM: it finishes the request in flight, then exits)."""
    from tritonops.serving.daemon import process_alive

    record = ControllerRecord.read(pid_file)
    if process_alive(record.pid):
        os.kill(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while process_alive(record.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(record.pid):
            os.kill(record.pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    console().print(f"stopped controller pid {record.pid}")


@controller_app.command("status")
def status(state: str | None = options.STATE, as_json: bool = options.JSON) -> None:
    """Which controller replica leads (from the state database), its epoch and how long its lease still runs."""
    from tritonops.control_plane.lease import current_leader
    from tritonops.control_plane.state import StateStore
    from tritonops.control_plane.views import from_leader

    settings = options.settings(state=state)
    with StateStore.open(settings.state, create=False) as store:
        leader = current_leader(store)
    if as_json:
        print_json(from_leader(str(settings.state), leader))
        return
    if leader is None:
        console().print(f"no controller has led on {settings.state} yet")
        return
    if leader.expired:
        console().print(
            f"no leader: the lease of {leader.holder} (epoch {leader.epoch}) ran out "
            f"{leader.now - leader.expires_at:.1f} s ago",
            highlight=False,
        )
        return
    console().print(
        f"leader {leader.holder} (epoch {leader.epoch}), lease renewed {leader.now - leader.renewed_at:.1f} s ago, "
        f"runs {leader.expires_at - leader.now:.1f} s more",
        highlight=False,
    )
