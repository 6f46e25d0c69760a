"""Per-request input validation for the serving backend: pure numpy, no Triton imports.

``InputSchema.from_manifest`` turns a manifest into one rule per Triton input tensor; ``validate`` checks the
tensors of one request and returns them ready for ONNX Runtime (FP32 matrices, ``str`` object matrices), or
raises ``InvalidRequestError`` naming the input, the reason and what came. The reasons are the label values of
``tritonops_invalid_requests_total``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from tritonops.contract.served import ServingManifest
from tritonops.serving.errors import ServingError

Reason = Literal["shape", "dtype", "feature_count", "nan", "unknown_category", "empty", "other"]
REASONS: tuple[Reason, ...] = ("shape", "dtype", "feature_count", "nan", "unknown_category", "empty", "other")

Batch = dict[str, npt.NDArray[np.generic]]
"""Validated tensors of one request (or of a whole batch), by Triton input name, each ``[rows, columns]``."""
_NUMPY_DTYPES: dict[str, np.dtype[np.generic]] = {"FP32": np.dtype(np.float32), "BYTES": np.dtype(np.object_)}


class InvalidRequestError(ServingError):
    """One inference request was rejected; the rest of its batch is unaffected."""

    def __init__(self, input_name: str, reason: Reason, detail: str) -> None:
        self.input_name = input_name
        self.reason = reason
        self.detail = detail
        super().__init__(f"input '{input_name}': {detail} [reason: {reason}]")


@dataclass(frozen=True)
class InputRule:
    """What one Triton input tensor must look like (batch dimension first)."""

    name: str
    datatype: Literal["FP32", "BYTES"]
    features: tuple[str, ...]
    nan_forbidden: tuple[int, ...]
    """Columns (FP32) that must not hold NaN; infinity is refused in every column."""
    categories: tuple[frozenset[str] | None, ...]
    """Per column (BYTES): the categories the model knows, or None when any string is accepted."""

    @property
    def width(self) -> int:
        return len(self.features)

    @property
    def dtype(self) -> np.dtype[np.generic]:
        """The numpy dtype Triton hands over for this input."""
        return _NUMPY_DTYPES[self.datatype]


@dataclass(frozen=True)
class InputSchema:
    """The rules for every input of one model version, in manifest order."""

    rules: tuple[InputRule, ...]

    @classmethod
    def from_manifest(cls, manifest: ServingManifest) -> InputSchema:
        by_name = {feature.name: feature for feature in manifest.features}
        rules = []
        for tensor in manifest.inputs:
            features = [by_name[name] for name in tensor.features]
            rules.append(
                InputRule(
                    name=tensor.name,
                    datatype=tensor.datatype,
                    features=tuple(f.name for f in features),
                    nan_forbidden=tuple(i for i, f in enumerate(features) if f.dtype == "float" and not f.allow_nan),
                    categories=tuple(frozenset(f.categories) if f.categories is not None else None for f in features),
                )
            )
        return cls(tuple(rules))

    def validate(self, tensors: Mapping[str, npt.NDArray[np.generic] | None]) -> Batch:
        """Check one request's tensors; return them as ONNX Runtime wants them, or raise ``InvalidRequestError``."""
        batch: Batch = {}
        rows: int | None = None
        for rule in self.rules:
            array = tensors.get(rule.name)
            if array is None:
                raise InvalidRequestError(rule.name, "other", "missing from the request")
            checked = _check_fp32(rule, array) if rule.datatype == "FP32" else _check_bytes(rule, array)
            if rows is not None and checked.shape[0] != rows:
                raise InvalidRequestError(
                    rule.name, "shape", f"has {checked.shape[0]} rows but the other inputs have {rows}"
                )
            rows = checked.shape[0]
            batch[rule.name] = checked
        return batch

    def validate_all(self, requests: Sequence[Mapping[str, npt.NDArray[np.generic] | None]]) -> ValidatedBatch | None:
        """Check a whole dynamic batch at once and concatenate it; None when any request fails any check.

        The fast path: per request only shapes and dtypes are compared, the values of each FP32 input are
        checked in one vectorised pass over the concatenated batch. It accepts exactly what ``validate``
        accepts and returns the same arrays; on None, ``validate`` per request names each bad request.
        """
        parts: dict[str, list[npt.NDArray[np.generic]]] = {rule.name: [] for rule in self.rules}
        sizes: list[int] = []
        for tensors in requests:
            rows = -1
            for rule in self.rules:
                array = tensors.get(rule.name)
                if array is None or array.dtype != rule.dtype or array.ndim != 2 or array.shape[1] != rule.width:
                    return None
                if array.shape[0] == 0 or (rows >= 0 and array.shape[0] != rows):
                    return None
                rows = array.shape[0]
                parts[rule.name].append(array)
            sizes.append(rows)
        if not sizes:
            return None
        batch: Batch = {}
        for rule in self.rules:
            if rule.datatype == "FP32":
                joined = np.concatenate(parts[rule.name])
                if not (np.isfinite(joined).all() or _only_allowed_nan(rule, joined)):
                    return None
                batch[rule.name] = joined
            else:
                try:
                    batch[rule.name] = np.concatenate([_check_bytes(rule, part) for part in parts[rule.name]])
                except InvalidRequestError:
                    return None
        return ValidatedBatch(batch, tuple(sizes))


@dataclass(frozen=True)
class ValidatedBatch:
    """A whole dynamic batch that passed validation: the concatenated inputs and each request's row count."""

    inputs: Batch
    sizes: tuple[int, ...]


def _only_allowed_nan(rule: InputRule, values: npt.NDArray[np.generic]) -> bool:
    """True when the only non-finite values are NaN in columns that may hold NaN."""
    if np.isinf(values).any():
        return False
    return not (rule.nan_forbidden and np.isnan(values[:, list(rule.nan_forbidden)]).any())


def _check_layout(rule: InputRule, array: npt.NDArray[np.generic]) -> None:
    if array.ndim != 2:
        raise InvalidRequestError(rule.name, "shape", f"expected shape [batch, {rule.width}], got {list(array.shape)}")
    if array.shape[0] == 0:
        raise InvalidRequestError(rule.name, "empty", "the request holds no rows (batch dimension is 0)")
    if array.shape[1] != rule.width:
        raise InvalidRequestError(
            rule.name,
            "feature_count",
            f"expected {rule.width} feature column(s) {list(rule.features)}, got {array.shape[1]}",
        )


def _check_fp32(rule: InputRule, array: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    if array.dtype != np.float32:
        raise InvalidRequestError(rule.name, "dtype", f"expected FP32 (float32), got {array.dtype}")
    _check_layout(rule, array)
    values: npt.NDArray[np.float32] = array.astype(np.float32, copy=False)
    if np.isfinite(values).all():  # the common case costs one vectorised pass
        return values
    if np.isinf(values).any():
        row, column = (int(i) for i in np.argwhere(np.isinf(values))[0])
        raise InvalidRequestError(
            rule.name, "nan", f"feature '{rule.features[column]}' is infinite at row {row}; finite values only"
        )
    if rule.nan_forbidden:
        bad = np.isnan(values[:, list(rule.nan_forbidden)])
        if bad.any():
            row, position = (int(i) for i in np.argwhere(bad)[0])
            feature = rule.features[rule.nan_forbidden[position]]
            raise InvalidRequestError(
                rule.name, "nan", f"feature '{feature}' is NaN at row {row}; this model can't take missing values"
            )
    return values


def _decode(rule: InputRule, value: object, column: int) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(
                rule.name, "dtype", f"feature '{rule.features[column]}' is not valid UTF-8 text ({exc.reason})"
            ) from exc
    if isinstance(value, str):
        return value
    raise InvalidRequestError(
        rule.name, "dtype", f"feature '{rule.features[column]}' expected a string, got {type(value).__name__}"
    )


def _check_bytes(rule: InputRule, array: npt.NDArray[np.generic]) -> npt.NDArray[np.object_]:
    if array.dtype != np.object_:
        raise InvalidRequestError(rule.name, "dtype", f"expected BYTES (strings), got {array.dtype}")
    _check_layout(rule, array)
    text = np.empty(array.shape, dtype=np.object_)
    for column in range(array.shape[1]):
        known = rule.categories[column]
        for row in range(array.shape[0]):
            value = _decode(rule, array[row, column], column)
            if known is not None and value not in known:
                raise InvalidRequestError(
                    rule.name,
                    "unknown_category",
                    f"feature '{rule.features[column]}' has unknown category {value[:64]!r} at row {row}; "
                    f"known: {sorted(known)[:10]}",
                )
            text[row, column] = value
    return text
