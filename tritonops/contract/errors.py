"""Errors raised when data or a config does not match the contract.

ContractError
 ├── ManifestError           a manifest.json is missing or doesn't match the schema
 ├── SignatureError          a model config lacks a usable ``tritonops.signature`` / ``tritonops.canary``
 ├── ModelConfigError        a Triton model config or one of its ``tritonops.*`` parameters is invalid
 └── InputError              rows don't fit the model's features (the encoder)
      └── MissingFeatureError    a table lacks columns the model needs
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tritonops.errors import ExitCode, TritonOpsError


class ContractError(TritonOpsError):
    """Data or a model config does not match docs/contracts.md."""

    exit_code = ExitCode.CONTRACT


class ManifestError(ContractError):
    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = path
        super().__init__(f"manifest {path}: {reason}")


class SignatureError(ContractError):
    """The model config does not describe features and classes the way docs/contracts.md says."""

    def __init__(self, model: str, problem: str) -> None:
        self.model = model
        self.problem = problem
        super().__init__(f"model {model!r}: {problem}")


class ModelConfigError(ContractError):
    """A model config could not be built, rendered or parsed, or a ``tritonops.*`` parameter is invalid."""


class InputError(ContractError):
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
