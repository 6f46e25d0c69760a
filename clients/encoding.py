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

from tritonops.clients.errors import InputError, MissingFeatureError
from tritonops.clients.signature import Signature

LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"


@dataclass(frozen=True)
class Tensor:
    """One named input tensor ready for the wire (leading batch dimension included)."""

    name: str
    datatype: str
    data: npt.NDArray[Any]


@dataclass(frozen=True)
class Rows:
    """Input rows reduced to the model's features: one 1-D column per feature, and the caller's row index."""

    columns: dict[str, npt.NDArray[Any]]
    index: pd.Index[Any]

    def __len__(self) -> int:
        return len(self.index)

    def slice(self, start: int, stop: int) -> Rows:
        return Rows({name: values[start:stop] for name, values in self.columns.items()}, self.index[start:stop])


def _has_strings(signature: Signature) -> bool:
    return any(feature.dtype == "string" for feature in signature.features)


def to_rows(signature: Signature, data: Any) -> Rows:
    """``data`` (DataFrame, mapping, array or list of rows) reduced to the model's features.

    DataFrame columns are matched by name (any order, extras ignored); arrays by position, in feature order.
    """
    names = list(signature.feature_names)
    if isinstance(data, pd.DataFrame):
        missing = [name for name in names if name not in data.columns]
        if missing:
            raise MissingFeatureError(signature.model, missing, names)
        rows = Rows({name: data[name].to_numpy() for name in names}, data.index)
    elif isinstance(data, Mapping):
        return to_rows(signature, pd.DataFrame([data]))
    else:
        array = np.asarray(data, dtype=object if _has_strings(signature) else None)
        if array.ndim == 1:
            array = array.reshape(1, -1)
        if array.ndim != 2:
            raise InputError(f"model {signature.model!r}: expected a 2-D table of rows, got shape {array.shape}")
        if array.shape[1] != len(names):
            raise InputError(
                f"model {signature.model!r}: expected {len(names)} columns in feature order {names}, "
                f"got {array.shape[1]}"
            )
        rows = Rows({name: array[:, i] for i, name in enumerate(names)}, pd.RangeIndex(len(array)))
    if len(rows) == 0:
        raise InputError(f"model {signature.model!r}: the input has no rows")
    return rows


def _column(signature: Signature, name: str, dtype: str, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
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


def encode(signature: Signature, rows: Rows) -> list[Tensor]:
    """The input tensors for ``rows`` in the layout of docs/contracts.md."""
    tensors: list[Tensor] = []
    for name, features in signature.tensors().items():
        string_tensor = features[0].dtype == "string"
        columns = [_column(signature, f.name, f.dtype, rows.columns[f.name]) for f in features]
        tensors.append(Tensor(name, "BYTES" if string_tensor else "FP32", np.stack(columns, axis=1)))
    return tensors


def split_rows(rows: Rows, rows_per_request: int) -> Iterator[Rows]:
    """``rows`` in consecutive slices of at most ``rows_per_request`` rows."""
    for start in range(0, len(rows), rows_per_request):
        yield rows.slice(start, start + rows_per_request)


def decode_labels(signature: Signature, raw: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Triton's ``label`` output (``[n, 1]``, bytes or int64) as a flat array of class names."""
    flat = raw.reshape(-1)
    if signature.class_dtype == "string":
        return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat], dtype=object)
    return flat.astype(np.int64)


def concat(parts: Sequence[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
