"""The root of every error tritonops raises on purpose.

Each subsystem defines narrow subclasses next to its code (``tritonops.converters.errors``,
``tritonops.serving.errors``, ``tritonops.control_plane.errors``, ``tritonops.clients.errors``); the CLI maps any
``TritonOpsError`` to a one-line message and the exit code below, in one place.

    TritonOpsError
     ├── ConfigurationError          (settings, token files, policies)
     ├── tritonops.converters.errors.ConversionError
     ├── tritonops.serving.errors.ServingError
     ├── tritonops.control_plane.errors.ControlPlaneError
     └── tritonops.clients.errors.ClientError
"""

from __future__ import annotations


class TritonOpsError(Exception):
    """Base class: a message meant for the user plus an exit code for the CLI."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigurationError(TritonOpsError):
    """A setting, token file or policy is missing or malformed."""

    exit_code = 2
