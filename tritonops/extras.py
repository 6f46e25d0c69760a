"""The installable parts of tritonops, and the error that names the one a missing module belongs to.

The base install is the client SDK (tritonclient, numpy, pandas, pydantic); every other part is an extra
(README, "Install"). When a command imports a module of a part that is not installed, the ``tritonops`` entry point
turns the ``ModuleNotFoundError`` into ``MissingExtraError``: one line naming the extra to install.
"""

from __future__ import annotations

from tritonops.errors import ConfigurationError

EXTRA_OF_MODULE: dict[str, str] = {
    "typer": "cli",
    "rich": "cli",
    "onnx": "convert",
    "onnxruntime": "convert",
    "skl2onnx": "convert",
    "onnxmltools": "convert",
    "sklearn": "convert",
    "pyarrow": "convert",
    "joblib": "convert",
    "skops": "convert",
    "pytriton": "server",
    "requests": "server",
    "fastapi": "controller",
    "uvicorn": "controller",
    "psycopg": "controller",
    "kubernetes": "controller",
    "dns": "controller",
    "prometheus_client": "controller",
    "yaml": "controller",
    "scipy": "controller",
    "lightgbm": "boosting",
    "xgboost": "boosting",
    "catboost": "boosting",
    "torch": "torch",
    "mlflow": "mlflow",
    "locust": "loadtest",
    "flask": "loadtest",
    "gunicorn": "loadtest",
    "matplotlib": "loadtest",
    "psutil": "loadtest",
}
"""Top-level module -> the extra that installs it (pyproject.toml ``[project.optional-dependencies]``)."""


class MissingExtraError(ConfigurationError):
    """A command needs a part of tritonops that is not installed."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"this needs the '{extra}' part of tritonops, which is not installed (no module named {module!r}): "
            f"pip install 'tritonops[{extra}]'"
        )


def missing_extra(error: ModuleNotFoundError) -> MissingExtraError | None:
    """The ``MissingExtraError`` for ``error`` when the missing module belongs to an extra, else None."""
    top = (error.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    return None if extra is None else MissingExtraError(top, extra)
