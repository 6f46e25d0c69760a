"""Errors the client SDK raises.

ClientError
 ├── InferenceError          Triton answered with an error that retrying will not fix
 └── ServerUnavailableError  no answer within the deadline (server down, overloaded or unreachable)

What the contract refuses is a ``tritonops.contract.errors.ContractError``, re-exported here: ``SignatureError``
(the model's config lacks a usable ``tritonops.signature`` / ``tritonops.canary``), ``InputError`` (the data given
to ``predict`` does not fit the model's features) and its ``MissingFeatureError`` (a DataFrame lacks columns).

Ground-truth feedback is stored by the control plane; its refusals are ``tritonops.control_plane.errors.FeedbackError``.
"""

from __future__ import annotations

from tritonops.contract.errors import InputError, MissingFeatureError, SignatureError
from tritonops.errors import ExitCode, TritonOpsError

__all__ = [
    "ClientError",
    "InferenceError",
    "InputError",
    "MissingFeatureError",
    "ServerUnavailableError",
    "SignatureError",
]


class ClientError(TritonOpsError):
    """Something went wrong between an application and Triton."""

    exit_code = ExitCode.CLIENT


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
