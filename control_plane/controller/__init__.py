"""The controller: one long-running process that serves the API and runs the reconciler and the guardrails.

Extending it: add an ``APIRouter`` to ``routes.ROUTERS`` (or pass ``routers`` to ``create_app``), and periodic work
as a ``PeriodicTask`` (``ControllerOptions.extra_tasks``, or ``Controller.guardrail_runner.add``).
"""

from tritonops.control_plane.controller.app import create_app
from tritonops.control_plane.controller.context import ApiContext
from tritonops.control_plane.controller.loop import PeriodicTask, TaskRunner
from tritonops.control_plane.controller.service import Controller, ControllerOptions

__all__ = ["ApiContext", "Controller", "ControllerOptions", "PeriodicTask", "TaskRunner", "create_app"]
