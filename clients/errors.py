"""Errors the client SDK raises.

ClientError
 ├── SignatureError          the model's config lacks a usable ``tritonops.signature`` / ``tritonops.canary``
 ├── InputError              the data given to ``predict`` does not fit the model's features
 │    └── MissingFeatureError    a DataFrame lacks columns the model needs
 ├── InferenceError          Triton answered with an error that retrying will not fix
 └── ServerUnavailableError  no answer within the deadline (server down, overloaded or unreachable)

Ground-truth feedback is stored by the control plane; its refusals are ``tritonops.control_plane.errors.FeedbackError``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tritonops.errors import ExitCode, TritonOpsError


class ClientError(TritonOpsError):
    """Something went wrong between an application and Triton."""

    exit_code = ExitCode.CLIENT


class SignatureError(ClientError):
    """The model config does not describe features and classes the way docs/contracts.md says."""

    def __init__(self, model: str, problem: str) -> None:
        self.model = model
        self.problem = problem
        super().__init__(f"model {model!r}: {problem}")


class InputError(ClientError):
    """The input does not match what the model expects."""


class MissingFeatureError(InputError):
    def __init__(self, model: str, missing: Sequence[str], expected: Sequence[str]) -> None:
        self.model = model
        self.missing = tuple(missing)
        self.expected = tuple(expected)
        super().__init__(
            f"model {model!r}: input is missing column(s) {list(self.missing)}; "
            f"expected all of {list(self.expected)} (any order, extra columns are ignored)"
        )


class InferenceError(ClientError):
    """Triton rejected the request (bad input, unknown model...): not retried."""

    def __init__(self, model: str, status: str, detail: str, attempts: int = 1) -> None:
        self.model = model
        self.status = status
        self.detail = detail
        self.attempts = attempts
        super().__init__(f"model {model!r}: Triton rejected the request ({status}): {detail}")


class ServerUnavailableError(ClientError):
    """The server gave no usable answer before the deadline or the last retry."""

    def __init__(self, url: str, deadline: float, attempts: int, elapsed: float, last_error: str) -> None:
        self.url = url
        self.deadline = deadline
        self.attempts = attempts
        self.elapsed = elapsed
        self.last_error = last_error
        super().__init__(
            f"Triton at {url} gave no answer: {attempts} attempt(s) in {elapsed:.2f} s "
            f"(deadline {deadline:g} s); last error: {last_error}"
        )
