"""``tritonops server start|stop|status``: the embedded Triton server."""

from __future__ import annotations

import signal
import threading
import time
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.output import console, print_json, styled
from tritonops.settings import DEFAULT_PID_FILE

if TYPE_CHECKING:
    from tritonops.serving.triton import TritonServer

server_app = typer.Typer(help="Run the embedded Triton Inference Server.", no_args_is_help=True)
app.add_typer(server_app, name="server")

_STATE_DIR = Path(".tritonops")


class AllocatorChoice(StrEnum):
    """``tritonops.serving.allocator.Allocator``: tcmalloc when installed (auto), tcmalloc or fail, glibc."""

    AUTO = "auto"
    TCMALLOC = "tcmalloc"
    SYSTEM = "system"


@server_app.command("start")
def start(
    repository: Path | None = options.REPOSITORY,
    load_model: list[str] = typer.Option([], "--load-model", "-m", help="Model to load at start (repeatable)."),
    http_port: int = typer.Option(8000, help="HTTP/REST port (0 = pick a free one)."),
    grpc_port: int = typer.Option(8001, help="gRPC port (0 = pick a free one)."),
    metrics_port: int = typer.Option(8002, help="Prometheus metrics port (0 = pick a free one)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    binary: Path = typer.Option(None, help="tritonserver executable (default: $TRITONSERVER_BIN, else the wheel's)."),
    log_file: Path = typer.Option(_STATE_DIR / "tritonserver.log", help="Where the server log goes."),
    timeout: float = typer.Option(60.0, help="Seconds to wait for the server to become ready."),
    latency_summaries: bool = typer.Option(
        False,
        "--latency-summaries/--no-latency-summaries",
        help="Triton's per-request latency quantiles (nv_inference_request_summary_us: real end-to-end p99 for "
        "watch, top and alerts). They cost about 30% of the single-row request rate on 2 cores; without them "
        "p99 comes from the backend histogram (backend time per batch).",
    ),
    allocator: AllocatorChoice = typer.Option(
        AllocatorChoice.AUTO,
        help="malloc of the server: auto (tcmalloc when installed), tcmalloc (or fail), system (glibc).",
    ),
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background; record it in a pid file."),
    pid_file: Path = typer.Option(DEFAULT_PID_FILE, help="Pid file used with --detach."),
) -> None:
    """Start tritonserver (explicit model control) and wait until it is ready.

    In the foreground it serves until Ctrl-C; with --detach it returns once ready and `server stop` ends it.
    """
    from tritonops.serving.allocator import ALLOCATORS
    from tritonops.serving.daemon import ServerRecord
    from tritonops.serving.triton import ServerOptions, TritonServer

    settings = options.settings(repository)
    server_options = ServerOptions(
        model_repository=settings.repository,
        load_models=tuple(load_model),
        http_port=http_port or None,
        grpc_port=grpc_port or None,
        metrics_port=metrics_port or None,
        host=host,
        binary=binary,
        admin_token=settings.admin_token,
        work_dir=_STATE_DIR / "server",
        log_path=log_file,
        startup_timeout=timeout,
        latency_summaries=latency_summaries,
        allocator=next(a for a in ALLOCATORS if a == allocator.value),
    )
    server = TritonServer(server_options, detach=detach)
    with console().status("starting tritonserver ..."):
        server.start()
    if server.ended_leftovers:
        left = f"ended {len(server.ended_leftovers)} process(es) a dead server of {server_options.work_dir} left"
        left += " running"
        pids = ", ".join(map(str, server.ended_leftovers))
        console().print(styled(left, "yellow"), f": pids {pids}", sep="", markup=False)
    _banner(server, locked=settings.admin_token is not None)
    if detach:
        identity = server.identity
        assert identity is not None and server.ports is not None and server_options.work_dir is not None
        ServerRecord(
            pid=identity.pid,
            host=host,
            http_port=server.ports.http,
            grpc_port=server.ports.grpc,
            metrics_port=server.ports.metrics,
            repository=str(server_options.model_repository.resolve()),
            log_path=str(log_file.resolve()),
            started_at=time.time(),
            create_time=identity.create_time,
            exe=identity.exe,
            work_dir=str(server_options.work_dir.resolve()),
        ).write(pid_file)
        console().print(f"detached: pid {server.pid}, recorded in {pid_file}; stop with `tritonops server stop`")
        return
    _serve_until_interrupted(server)


def _banner(server: TritonServer, locked: bool) -> None:
    console().print(styled("tritonserver ready", "bold green"), f"(pid {server.pid})")
    console().print(f"  HTTP     http://{server.http_url}   (curl http://{server.http_url}/v2/health/ready)")
    console().print(f"  gRPC     {server.grpc_url}")
    console().print(f"  metrics  {server.metrics_url}")
    console().print(f"  log      {server.log_path}")
    console().print(
        f"  admin    model-repository API {'locked (admin-key)' if locked else 'open (no admin token set)'}"
    )
    malloc = server.preloaded_allocator
    console().print(f"  malloc   {malloc if malloc else 'system (glibc)'}")
    summaries = server.options.latency_summaries
    console().print(
        f"  latency  {'Triton summaries (end-to-end p99)' if summaries else 'backend histogram (summaries off)'}"
    )


def _serve_until_interrupted(server: TritonServer) -> None:
    from tritonops.serving.errors import ServerStartError

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    console().print("serving; press Ctrl-C to stop")
    while not stop.wait(0.5):
        if not server.is_running():
            server.stop()  # ends the backend stubs a killed server leaves behind
            raise ServerStartError(
                f"tritonserver exited unexpectedly with code {server.process.returncode if server.process else '?'}",
                server.log_tail(),
                server.log_path,
            )
    console().print("stopping tritonserver ...")
    code = server.stop()
    console().print(f"stopped (exit code {code})")


@server_app.command("stop")
def stop(
    pid_file: Path = typer.Option(DEFAULT_PID_FILE, help="Pid file written by `server start --detach`."),
    grace: float = typer.Option(30.0, help="Seconds between SIGTERM and SIGKILL."),
) -> None:
    """Stop a server started with --detach (only if the recorded pid is still that server)."""
    from rich.markup import escape

    from tritonops.serving.daemon import stop_recorded_server

    result = stop_recorded_server(pid_file, grace)
    if result.stale is not None:
        console().print(
            f"[yellow]stale pid file {escape(str(pid_file))}[/]: {escape(result.stale)}; "
            "nothing signalled, file removed"
        )
    else:
        console().print(f"stopped tritonserver pid {result.record.pid}")
    if result.leftovers:
        console().print(f"ended processes the server left running: pids {', '.join(map(str, result.leftovers))}")


@server_app.command("status")
def status(
    pid_file: Path = typer.Option(DEFAULT_PID_FILE, help="Pid file written by `server start --detach`."),
    as_json: bool = options.JSON,
) -> None:
    """Show whether the detached server is running and ready; exit code 5 (serving) when it is not ready."""
    from tritonops.control_plane.views import from_server_status
    from tritonops.serving.daemon import server_status
    from tritonops.serving.errors import ServerNotReadyError

    view = from_server_status(server_status(pid_file))
    if as_json:
        print_json(view)
    else:
        console().print(
            f"pid {view.pid}: {'running' if view.running else 'not running'}, {'ready' if view.ready else 'NOT ready'}"
        )
        if view.stale is not None:
            console().print(f"  stale pid file: {view.stale} (`tritonops server stop` removes it)", markup=False)
        console().print(
            f"  HTTP {view.host}:{view.http_port}  gRPC {view.host}:{view.grpc_port}  "
            f"metrics {view.host}:{view.metrics_port}"
        )
        console().print(f"  repository {view.repository}\n  log {view.log_path}", markup=False)
    if not view.ready:
        raise ServerNotReadyError(view.pid, view.running)
