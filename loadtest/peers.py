"""The servers Triton is compared with: seed-style Flask + joblib (gunicorn) and MLServer + mlserver-sklearn.

MLServer lives in its own virtualenv (``.venv-mlserver``, created on first use) because its pins conflict with
ours; it gets the same scikit-learn and joblib versions so it unpickles the very same model file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from tritonops.loadtest.errors import BenchmarkError
from tritonops.loadtest.processes import ManagedProcess
from tritonops.serving.triton import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MLSERVER_VENV = PROJECT_ROOT / ".venv-mlserver"
MLSERVER_VERSION = "1.7.1"


@dataclass(frozen=True)
class MLServerTuning:
    """MLServer's own knobs: inference worker processes and adaptive batching."""

    parallel_workers: int = 2
    max_batch_size: int = 32
    max_batch_time: float = 0.002


def flask_baseline(model_path: Path, work: Path, workers: int = 2) -> tuple[ManagedProcess, str]:
    """gunicorn running ``tritonops.loadtest.baselines.flask_app`` with ``workers`` sync workers.

    Returns (process, base URL).
    """
    port = free_port()
    env = {**_base_env(), "TRITONOPS_BASELINE_MODEL": str(model_path)}
    argv = [
        str(Path(sys.executable).parent / "gunicorn"),
        f"--workers={workers}",
        f"--bind=127.0.0.1:{port}",
        "--backlog=2048",
        "--log-level=warning",
        "tritonops.loadtest.baselines.flask_app:app",
    ]
    base = f"http://127.0.0.1:{port}"
    process = ManagedProcess("flask+gunicorn", argv, f"{base}/health", work / "flask.log", env=env, cwd=PROJECT_ROOT)
    return process, base


def ensure_mlserver_venv(venv: Path = MLSERVER_VENV) -> Path:
    """The ``mlserver`` executable, creating ``venv`` with pinned MLServer + our scikit-learn if it is missing."""
    executable = venv / "bin" / "mlserver"
    if executable.exists():
        return executable
    python = venv / "bin" / "python"
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            f"mlserver=={MLSERVER_VERSION}",
            f"mlserver-sklearn=={MLSERVER_VERSION}",
            f"scikit-learn=={version('scikit-learn')}",
            f"joblib=={version('joblib')}",
            "uvloop==0.21.0",  # 0.22+ has no implicit event loop; MLServer 1.7 workers need one
        ],
    ]
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # fixed argv, no shell
        if done.returncode != 0:
            raise BenchmarkError(f"creating {venv} failed at `{' '.join(argv)}`:\n{done.stderr[-1500:]}")
    return executable


def mlserver_peer(
    model_path: Path, model_name: str, work: Path, tuning: MLServerTuning = MLServerTuning()
) -> tuple[ManagedProcess, str]:
    """MLServer serving ``model_path`` (joblib) as ``model_name`` with ``tuning``; returns (process, base URL)."""
    executable = ensure_mlserver_venv()
    root = work / "mlserver"
    model_dir = root / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.joblib").write_bytes(model_path.read_bytes())
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    settings = {
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": tuning.parallel_workers,
        "debug": False,
        "host": "127.0.0.1",
    }
    model_settings = {
        "name": model_name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": tuning.max_batch_size,
        "max_batch_time": tuning.max_batch_time,
        "parameters": {"uri": "./model.joblib", "version": "1"},
    }
    (root / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings), encoding="utf-8")
    base = f"http://127.0.0.1:{http_port}"
    process = ManagedProcess(
        "mlserver",
        [str(executable), "start", str(root)],
        f"{base}/v2/models/{model_name}/ready",
        work / "mlserver.log",
        env=_base_env(),
        cwd=root,
        startup_timeout=180.0,
    )
    return process, base


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return env
