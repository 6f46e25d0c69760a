"""Start, watch and stop a real ``tritonserver`` process.

``TritonServer`` is a context manager: it copies the backends into a writable work directory, picks free ports,
starts the server in explicit model-control mode, waits for ``/v2/health/ready`` and stops it cleanly (SIGTERM, then
SIGKILL after a grace period). The server is bound to our lifetime by ``PR_SET_PDEATHSIG`` unless detached, so a
killed parent never leaves an orphan behind.

Each start runs from its own run directory (``tritonops.serving.processes``): the server and its Python backend
stubs are found and ended as a unit, a start first ends what a killed server of the same work directory left
running, and no start writes over a stub that a running process executes.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil
import requests

from tritonops.contract.names import ROUTE_KEY_HEADER
from tritonops.serving.allocator import Allocator, resolve_allocator, with_preload
from tritonops.serving.errors import PortInUseError, RepositoryNotFoundError, ServerStartError
from tritonops.serving.install import TritonInstallation, locate_tritonserver, prepare_backend_directory
from tritonops.serving.processes import (
    LaunchRecord,
    ProcessIdentity,
    end_leftovers,
    end_processes,
    new_run_dir,
    run_processes,
)

DEFAULT_HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1
_SECRET_WORDS = ("TOKEN", "PASSWORD", "SECRET")
STUB_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1"}
"""Set for the server (and so every backend stub) unless the caller's environment sets it: the stub's numpy does
no linear algebra (ONNX Runtime scores), and OpenBLAS's default thread pool, one thread per core with its
buffers, cost each stub start about 0.1 s of CPU: a tenth of a model load's time on a busy machine."""


def is_secret_variable(name: str) -> bool:
    """``TRITONOPS_*`` variables naming a secret or its file (admin token, state password, ...): left out of the
    server's environment, and so of every backend stub's; Triton gets the admin key on its command line."""
    return name.startswith("TRITONOPS_") and any(word in name for word in _SECRET_WORDS)


log = logging.getLogger("tritonops.serving")


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = DEFAULT_HOST) -> bool:
    """True when ``port`` can be bound on ``host`` (as a server binds it: TIME_WAIT leftovers don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class ServerPorts:
    http: int
    grpc: int
    metrics: int


@dataclass
class ServerOptions:
    """How to run one ``tritonserver``. Ports left as None are picked free at start."""

    model_repository: Path
    load_models: Sequence[str] = ()
    http_port: int | None = None
    grpc_port: int | None = None
    metrics_port: int | None = None
    host: str = DEFAULT_HOST
    binary: Path | None = None
    admin_token: str | None = None
    work_dir: Path | None = None
    log_path: Path | None = None
    startup_timeout: float = 60.0
    stop_grace: float = 30.0
    """Seconds between SIGTERM and SIGKILL; Triton gets 5 s less to unload its models (busy hosts need ~10 s)."""
    log_verbose: int = 0
    latency_summaries: bool = False
    """Triton's ``nv_inference_*_summary_us`` quantiles (real p50..p99 of whole requests). They cost about
    30% of the single-row request rate on 2 cores (docs/benchmarks.md); without them latency quantiles come
    from our backend's ``tritonops_request_duration_seconds`` histogram."""
    allocator: Allocator = "auto"
    """``malloc`` of the server and its backend stubs (``tritonops.serving.allocator``)."""
    extra_args: Sequence[str] = field(default_factory=tuple)


def _bind_to_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM to it when its parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class TritonServer:
    """One ``tritonserver`` process.

    >>> with TritonServer(ServerOptions(model_repository=Path("model_repository"))) as server:
    ...     print(server.http_url)
    """

    def __init__(self, options: ServerOptions, *, detach: bool = False) -> None:
        self.options = options
        self.detach = detach
        self.install: TritonInstallation | None = None
        self.ports: ServerPorts | None = None
        self.preloaded_allocator: Path | None = None
        """The allocator library preloaded into the running server (None: the system's)."""
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.identity: ProcessIdentity | None = None
        """The running server's pid, start time and executable."""
        self.run_dir: Path | None = None
        """This start's directory: backends, the stub copy, ``launch.json``."""
        self.ended_leftovers: list[int] = []
        """Pids of processes a dead earlier server of the same work directory left running, ended by ``start``."""
        self._own_work_dir: tempfile.TemporaryDirectory[str] | None = None

    # -- addresses --------------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"{self.options.host}:{self._ports().http}"

    @property
    def grpc_url(self) -> str:
        return f"{self.options.host}:{self._ports().grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.options.host}:{self._ports().metrics}/metrics"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def _ports(self) -> ServerPorts:
        if self.ports is None:
            raise RuntimeError("the server has not been started")
        return self.ports

    # -- lifecycle --------------------------------------------------------------------------------
    def command(self, backend_dir: Path) -> list[str]:
        """The full ``tritonserver`` command line for these options."""
        opts, ports = self.options, self._ports()
        assert self.install is not None
        args = [
            str(self.install.binary),
            f"--model-repository={opts.model_repository.resolve()}",
            f"--backend-directory={backend_dir}",
            "--model-control-mode=explicit",
            f"--http-address={opts.host}",
            f"--grpc-address={opts.host}",
            f"--metrics-address={opts.host}",
            f"--http-port={ports.http}",
            f"--grpc-port={ports.grpc}",
            f"--metrics-port={ports.metrics}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=true",
            f"--metrics-config=summary_latencies={str(opts.latency_summaries).lower()}",
            # Ready = the server is up; per-model readiness is /v2/models/<m>/ready. Strict readiness reports the
            # whole server unready for a moment after every version switch, which would make balancers drop it.
            "--strict-readiness=false",
            # every config we load is complete (tritonops.model_config): without this, each Python-backend model load
            # starts one more stub process only to offer the model a config completion; loads took 2-4x as long
            # (3 models loaded one by one on 2 busy cores: 5.0-7.6 s each, 1.1-4.1 s with it)
            "--disable-auto-complete-config",
            # the sticky canary key may come as a header: Triton hands matching headers to the backend as
            # request parameters (tritonops.serving.routing)
            f"--http-header-forward-pattern={ROUTE_KEY_HEADER}",
            f"--grpc-header-forward-pattern={ROUTE_KEY_HEADER}",
            f"--exit-timeout-secs={max(1, int(opts.stop_grace) - 5)}",
            f"--log-verbose={opts.log_verbose}",
        ]
        args += [f"--load-model={name}" for name in opts.load_models]
        if opts.admin_token:
            args += [
                f"--grpc-restricted-protocol=model-repository:admin-key={opts.admin_token}",
                f"--http-restricted-api=model-repository:admin-key={opts.admin_token}",
            ]
        args += list(opts.extra_args)
        return args

    def environment(self) -> dict[str, str]:
        """The server's environment: our interpreter first on PATH (the Python stub imports from it), no secrets."""
        assert self.install is not None
        env = {key: value for key, value in os.environ.items() if not is_secret_variable(key)}
        interpreter_bin = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([interpreter_bin, env.get("PATH", "/usr/bin:/bin")])
        libs = [str(p) for p in self.install.library_dirs]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        if libs:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        # The stub does not see the venv's site-packages through sys.prefix; make imports explicit.
        site_paths = [p for p in sys.path if p.endswith("site-packages")]
        project_root = str(Path(__file__).parent.parent.parent)  # the folder holding the `tritonops` package
        env["PYTHONPATH"] = os.pathsep.join([project_root, *site_paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.update({key: value for key, value in STUB_ENVIRONMENT.items() if key not in os.environ})
        return with_preload(env, self.preloaded_allocator)

    def _check_ports(self) -> None:
        for purpose, port in (
            ("HTTP", self.options.http_port),
            ("gRPC", self.options.grpc_port),
            ("Metrics", self.options.metrics_port),
        ):
            if port is not None and not port_is_free(port, self.options.host):
                raise PortInUseError(port, purpose)

    def _pick_ports(self) -> ServerPorts:
        chosen: list[int] = []
        for port in (self.options.http_port, self.options.grpc_port, self.options.metrics_port):
            if port is None:
                port = free_port(self.options.host)
                while port in chosen:
                    port = free_port(self.options.host)
            chosen.append(port)
        return ServerPorts(*chosen)

    def start(self) -> TritonServer:
        """Start the server and wait until it is ready; raise a ``ServingError`` otherwise."""
        if not self.options.model_repository.is_dir():
            raise RepositoryNotFoundError(self.options.model_repository)
        self.install = locate_tritonserver(self.options.binary)
        self.preloaded_allocator = resolve_allocator(self.options.allocator)
        try:
            work = self._work_dir()
            self.ended_leftovers = end_leftovers(work)
            self._check_ports()
            self.ports = self._pick_ports()
            self.run_dir = new_run_dir(work)
            backend_dir = prepare_backend_directory(self.install, self.run_dir / "backends")
            self.log_path = self.options.log_path or work / "tritonserver.log"
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._launch(backend_dir)
            self.wait_ready(self.options.startup_timeout)
        except OSError as exc:
            self.stop()
            raise ServerStartError(f"cannot prepare or launch the server: {exc}") from exc
        except BaseException:
            self.stop()  # ends what was started and removes the run (and temporary work) directory
            raise
        return self

    def _work_dir(self) -> Path:
        if self.options.work_dir is not None:
            self.options.work_dir.mkdir(parents=True, exist_ok=True)
            return self.options.work_dir.resolve()
        self._own_work_dir = tempfile.TemporaryDirectory(prefix="tritonops-server-")
        return Path(self._own_work_dir.name)

    def _launch(self, backend_dir: Path) -> None:
        assert self.log_path is not None and self.run_dir is not None
        preexec: Callable[[], None] | None = None if self.detach else _bind_to_parent
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.command(backend_dir),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                start_new_session=True,  # a terminal's Ctrl-C reaches us only; we stop the server ourselves
                preexec_fn=preexec,
            )
        try:
            self.identity = ProcessIdentity.of(self.process.pid)
        except psutil.NoSuchProcess:
            return  # exited at once: wait_ready reports it with the log
        LaunchRecord(ProcessIdentity.of(os.getpid()), self.identity, str(self.run_dir)).write()

    def wait_ready(self, timeout: float) -> None:
        """Poll ``/v2/health/ready`` until 200; fail fast if the process exits."""
        deadline = time.monotonic() + timeout
        url = f"http://{self.http_url}/v2/health/ready"
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise ServerStartError(
                    f"the process exited with code {self.process.returncode} before becoming ready",
                    self.log_tail(),
                    self.log_path,
                )
            try:
                if requests.get(url, timeout=1.0).status_code == 200:
                    return
            except requests.RequestException:
                pass  # not listening yet: keep polling until the deadline
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"not ready after {timeout:.0f} s (polled {url})", self.log_tail(), self.log_path
                )
            time.sleep(0.1)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, wait up to ``stop_grace`` seconds, then SIGKILL. Returns the exit code."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(self.options.stop_grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._end_run()
        if self._own_work_dir is not None:
            self._own_work_dir.cleanup()
            self._own_work_dir = None
        return process.returncode if process is not None else None

    def _end_run(self) -> None:
        """End whatever of this start outlived the server (backend stubs) and remove its run directory."""
        if self.run_dir is None:
            return
        leftovers = run_processes(self.run_dir)
        if leftovers:
            log.warning("ended %d process(es) left by the server: pids %s", len(leftovers), end_processes(leftovers))
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir = None

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the server log."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
