"""The root of every error tritonops raises on purpose, and the one table of exit codes.

Each subsystem defines narrow subclasses next to its code (``tritonops.converters.errors``,
``tritonops.serving.errors``, ``tritonops.control_plane.errors``, ``tritonops.clients.errors``,
``tritonops.loadtest.errors``). Every family names its code from ``ExitCode``; the CLI turns any
``TritonOpsError`` into one line (message, then its notes) and ``exc.exit_code``, in one place.

    TritonOpsError
     ├── ConfigurationError                              CONFIGURATION
     ├── tritonops.converters.errors.ConversionError     CONVERSION
     ├── tritonops.serving.errors.ServingError           SERVING
     ├── tritonops.control_plane.errors.ControlPlaneError CONTROL_PLANE
     │    ├── PolicyError                                CONFIGURATION (a policy file is configuration)
     │    ├── RolloutInProgressError                     BUSY
     │    ├── GuardrailActedError                        GUARDRAIL_ACTED
     │    └── AccessError                                ACCESS (the controller API refused the token)
     ├── tritonops.contract.errors.ContractError         CONTRACT
     ├── tritonops.clients.errors.ClientError            CLIENT
     └── tritonops.loadtest.errors.BenchmarkError        BENCHMARK

Messages are fixed when raised; context found later goes in ``exc.add_note()``.
"""

from __future__ import annotations

from enum import IntEnum, unique


@unique
class ExitCode(IntEnum):
    """Exit status of ``tritonops``: one per error family (docs/operations.md, "Exit codes")."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    CONFIGURATION = 3
    CONVERSION = 4
    SERVING = 5
    CONTROL_PLANE = 6
    CONTRACT = 7
    CLIENT = 8
    BENCHMARK = 9
    GUARDRAIL_ACTED = 10
    ACCESS = 11
    BUSY = 12
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "done",
    ExitCode.INTERNAL: "unexpected error (a bug: the traceback is printed; please report it)",
    ExitCode.USAGE: "bad command line: unknown option, missing or invalid argument",
    ExitCode.CONFIGURATION: "a setting, environment variable, token file or policy file is missing or malformed",
    ExitCode.CONVERSION: "the trained model could not be converted (parity, loading, export); nothing was written",
    ExitCode.SERVING: "tritonserver could not be found, started or configured, or is not running / ready",
    ExitCode.CONTROL_PLANE: "no state, unknown model or version, gate refused, endpoint unreachable or refusing "
    "the key, load failed, partial apply",
    ExitCode.CONTRACT: "data or a model config does not match the contract (manifest, signature, "
    "tritonops.* parameter, rows that don't fit the features)",
    ExitCode.CLIENT: "the SDK's request failed (bad input, inference refused, server unavailable)",
    ExitCode.BENCHMARK: "a load test or benchmark failed to start, run or report",
    ExitCode.GUARDRAIL_ACTED: "`watch --exit-on-action` stopped after an automatic rollback or canary abort",
    ExitCode.ACCESS: "remote mode: the controller refused the token (missing, unknown, revoked, expired or its "
    "role too low)",
    ExitCode.BUSY: "another rollout of the same model holds its lock: nothing changed, run it again later",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


class TritonOpsError(Exception):
    """Base class: a message meant for the user plus the exit code of its family for the CLI."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def describe(self) -> str:
        """The message followed by the notes added on the way up (``add_note``), ``; ``-separated."""
        return "; ".join([self.message, *getattr(self, "__notes__", ())])


class ConfigurationError(TritonOpsError):
    """A setting, token file or policy is missing or malformed."""

    exit_code = ExitCode.CONFIGURATION
