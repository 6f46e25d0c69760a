"""THE encoder: rows (a DataFrame, a mapping, an array or a list of rows) -> the model's Triton input tensors.

The SDK, the control plane's smoke test and the load tests all build their requests here, so every request has
the layout of docs/contracts.md: one FP32 matrix ``input`` for numeric-only models, otherwise one ``[N, 1]``
tensor per feature (FP32 for numbers, BYTES for strings). Numbers are float32 (None becomes NaN), strings ``str``.

Columns are matched by name for tables (a pandas DataFrame or a mapping of columns: any order, extra columns
ignored) and by position for arrays and lists of rows (feature order). pandas is not imported: a DataFrame is
recognised by its ``columns``/``index`` and read column by column.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from tritonops.contract.errors import InputError, MissingFeatureError

Datatype = Literal["FP32", "BYTES"]


class TensorFeature(Protocol):
    """What the encoder needs of a feature: ``Signature`` features and manifest features both have it."""

    @property
    def name(self) -> str: ...
    @property
    def tensor(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def column(self) -> int: ...


_F = TypeVar("_F", bound=TensorFeature)


def group_by_tensor(features: Sequence[_F]) -> dict[str, list[_F]]:
    """Tensor name -> its features ordered by column, in first-appearance order."""
    grouped: dict[str, list[_F]] = {}
    for feature in features:
        grouped.setdefault(feature.tensor, []).append(feature)
    for members in grouped.values():
        members.sort(key=lambda feature: feature.column)
    return grouped


@dataclass(frozen=True)
class Tensor:
    """One named input tensor ready for the wire (leading batch dimension included)."""

    name: str
    datatype: Datatype
    data: npt.NDArray[Any]

    def json_data(self) -> list[Any]:
        """The values as nested lists for KServe v2 JSON (NaN stays a float: JSON's bare ``NaN`` token)."""
        values: list[Any] = self.data.tolist()
        return values


@dataclass(frozen=True)
class Rows:
    """Input rows reduced to the model's features: one 1-D column per feature, and the caller's row index."""

    columns: dict[str, npt.NDArray[Any]]
    index: Sequence[Any]
    """The DataFrame's index, else ``range(n)``."""

    def __len__(self) -> int:
        return len(self.index)

    def slice(self, start: int, stop: int) -> Rows:
        return Rows({name: values[start:stop] for name, values in self.columns.items()}, self.index[start:stop])


def _is_frame(data: Any) -> bool:
    return hasattr(data, "columns") and hasattr(data, "index") and hasattr(data, "to_numpy")


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bytes) or np.ndim(value) == 0


def _table(model: str, names: Sequence[str], columns: Any, present: Sequence[Any], index: Any) -> Rows:
    missing = [name for name in names if name not in present]
    if missing:
        raise MissingFeatureError(model, missing, names)
    values = {name: np.asarray(columns[name]).reshape(-1) for name in names}
    lengths = {name: len(v) for name, v in values.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(f"model {model!r}: columns have different lengths {lengths}")
    return Rows(values, range(lengths[names[0]]) if index is None else index)


def to_rows(model: str, features: Sequence[TensorFeature], data: Any) -> Rows:
    """``data`` reduced to the model's ``features`` (see the module docstring for what ``data`` may be)."""
    names = [feature.name for feature in features]
    if _is_frame(data):
        columns = {name: data[name].to_numpy() for name in names if name in data.columns}
        rows = _table(model, names, columns, list(columns), data.index)
    elif isinstance(data, Mapping):
        if all(_is_scalar(value) for value in data.values()):  # one row as {feature: value}
            data = {key: [value] for key, value in data.items()}
        rows = _table(model, names, data, list(data), None)
    else:
        strings = any(feature.dtype == "string" for feature in features)
        array = np.asarray(data, dtype=object if strings else None)
        if array.ndim == 1:
            array = array.reshape(1, -1)
        if array.ndim != 2:
            raise InputError(f"model {model!r}: expected a 2-D table of rows, got shape {array.shape}")
        if array.shape[1] != len(names):
            raise InputError(
                f"model {model!r}: expected {len(names)} columns in feature order {names}, got {array.shape[1]}"
            )
        rows = Rows({name: array[:, i] for i, name in enumerate(names)}, range(len(array)))
    if len(rows) == 0:
        raise InputError(f"model {model!r}: the input has no rows")
    return rows


def _column(model: str, feature: TensorFeature, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if feature.dtype == "string":
        return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=object)
    try:
        numbers: npt.NDArray[Any] = np.asarray(values).astype(np.float32)
        return numbers
    except (TypeError, ValueError) as exc:
        sample = next((v for v in values if not isinstance(v, int | float | np.number)), values[0])
        raise InputError(
            f"model {model!r}: feature {feature.name!r} must be numeric, got {sample!r} ({type(sample).__name__})"
        ) from exc


def encode(model: str, features: Sequence[TensorFeature], rows: Rows) -> list[Tensor]:
    """The input tensors for ``rows`` in the layout of docs/contracts.md."""
    tensors: list[Tensor] = []
    for name, members in group_by_tensor(features).items():
        string_tensor = members[0].dtype == "string"
        columns = [_column(model, f, rows.columns[f.name]) for f in members]
        tensors.append(Tensor(name, "BYTES" if string_tensor else "FP32", np.stack(columns, axis=1)))
    return tensors


def encode_rows(model: str, features: Sequence[TensorFeature], data: Any) -> list[Tensor]:
    """``encode(to_rows(...))`` in one call, for callers that don't keep the rows."""
    return encode(model, features, to_rows(model, features, data))


def split_rows(rows: Rows, rows_per_request: int) -> Iterator[Rows]:
    """``rows`` in consecutive slices of at most ``rows_per_request`` rows."""
    for start in range(0, len(rows), rows_per_request):
        yield rows.slice(start, start + rows_per_request)
