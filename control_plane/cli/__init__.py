"""The ``tritonops`` command line: a thin layer that parses, calls one library function and renders.

Each command group lives in its own module and registers itself on ``app`` here. Errors derived from
``TritonOpsError`` become one red line on stderr and the error's exit code (see ``tritonops.control_plane.cli.app``).
"""

from tritonops.control_plane.cli.app import app, main

# Command groups: importing a module registers its commands on ``app``.
from tritonops.control_plane.cli import server as _server  # noqa: F401  isort: skip
from tritonops.control_plane.cli import convert as _convert  # noqa: F401  isort: skip
from tritonops.control_plane.cli import rollout as _rollout  # noqa: F401  isort: skip
from tritonops.control_plane.cli import drift as _drift  # noqa: F401  isort: skip
from tritonops.control_plane.cli import watch as _watch  # noqa: F401  isort: skip
from tritonops.control_plane.cli import feedback as _feedback  # noqa: F401  isort: skip
from tritonops.control_plane.cli import top as _top  # noqa: F401  isort: skip
from tritonops.control_plane.cli import controller as _controller  # noqa: F401  isort: skip
from tritonops.control_plane.cli import tokens as _tokens  # noqa: F401  isort: skip
from tritonops.control_plane.cli import policy as _policy  # noqa: F401  isort: skip
from tritonops.control_plane.cli import webhooks as _webhooks  # noqa: F401  isort: skip
from tritonops.control_plane.cli import capture as _capture  # noqa: F401  isort: skip
from tritonops.control_plane.cli import mlflow as _mlflow  # noqa: F401  isort: skip
from tritonops.control_plane.cli import shadow as _shadow  # noqa: F401  isort: skip
from tritonops.control_plane.cli import progressive as _progressive  # noqa: F401  isort: skip

__all__ = ["app", "main"]
