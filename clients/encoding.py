"""Turn user data into the model's input tensors, and Triton's outputs back into labels and probabilities.

Columns are matched by name for DataFrames (any order; extra columns ignored) and by position for arrays
(manifest feature order). Numbers travel as FP32, strings as BYTES, as docs/contracts.md fixes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from clients.errors import InputError, MissingFeatureError
from clients.signature import Signature

LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"


@dataclass(frozen=True)
class Tensor:
    """One named input tensor ready for the wire (leading batch dimension included)."""

    name: str
    datatype: str
    data: npt.NDArray[Any]


def _as_frame(signature: Signature, data: Any) -> pd.DataFrame:
    names = list(signature.feature_names)
    if isinstance(data, pd.DataFrame):
        missing = [name for name in names if name not in data.columns]
        if missing:
            raise MissingFeatureError(signature.model, missing, names)
        return data.loc[:, names]
    if isinstance(data, Mapping):
        return _as_frame(signature, pd.DataFrame([data]))
    array = np.asarray(data, dtype=object if _has_strings(signature) else None)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise InputError(
            f"model {signature.model!r}: expected a 2-D table of rows, got an array of shape {array.shape}"
        )
    if array.shape[1] != len(names):
        raise InputError(
            f"model {signature.model!r}: expected {len(names)} columns in feature order {names}, got {array.shape[1]}"
        )
    return pd.DataFrame(array, columns=names)


def _has_strings(signature: Signature) -> bool:
    return any(feature.dtype == "string" for feature in signature.features)


def _column(signature: Signature, frame: pd.DataFrame, name: str, dtype: str) -> npt.NDArray[Any]:
    values = frame[name].to_numpy()
    if dtype == "string":
        return np.array([str(v) for v in values], dtype=object)
    try:
        numbers: npt.NDArray[Any] = values.astype(np.float32)
        return numbers
    except (TypeError, ValueError) as exc:
        sample = next((v for v in values if not isinstance(v, int | float | np.number)), values[0])
        raise InputError(
            f"model {signature.model!r}: feature {name!r} must be numeric, got {sample!r} ({type(sample).__name__})"
        ) from exc


def row_count(signature: Signature, data: Any) -> int:
    """How many rows ``data`` holds once shaped for ``signature``."""
    return len(_as_frame(signature, data))


def to_frame(signature: Signature, data: Any) -> pd.DataFrame:
    """``data`` (DataFrame, mapping, array or list of rows) as a DataFrame with the model's columns, in order."""
    frame = _as_frame(signature, data)
    if frame.empty:
        raise InputError(f"model {signature.model!r}: the input has no rows")
    return frame


def encode(signature: Signature, frame: pd.DataFrame) -> list[Tensor]:
    """The input tensors for ``frame`` (already in feature order, see ``to_frame``)."""
    tensors: list[Tensor] = []
    for name, features in signature.tensors().items():
        string_tensor = features[0].dtype == "string"
        columns = [_column(signature, frame, feature.name, feature.dtype) for feature in features]
        data = np.stack(columns, axis=1)
        tensors.append(Tensor(name, "BYTES" if string_tensor else "FP32", data))
    return tensors


def split_rows(frame: pd.DataFrame, rows_per_request: int) -> Iterator[pd.DataFrame]:
    """``frame`` in consecutive slices of at most ``rows_per_request`` rows."""
    for start in range(0, len(frame), rows_per_request):
        yield frame.iloc[start : start + rows_per_request]


def decode_labels(signature: Signature, raw: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Triton's ``label`` output (``[n, 1]``, bytes or int64) as a flat array of class names."""
    flat = raw.reshape(-1)
    if signature.class_dtype == "string":
        return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat], dtype=object)
    return flat.astype(np.int64)


def concat(parts: Sequence[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
