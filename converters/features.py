"""How a model's features map onto Triton / ONNX input tensors, and how rows become tensors.

Numeric-only models take one FP32 matrix ``input``; models with string columns take one ``[N, 1]`` tensor per
feature named after it (sanitised to ``[A-Za-z0-9_]``), FP32 for numbers and BYTES for strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from tritonops.contract.manifest import Feature, InputTensor
from tritonops.contract.names import NUMERIC_INPUT, OUTPUTS, feature_tensor_name
from tritonops.converters.errors import FeatureMismatchError, FeatureNameError
from tritonops.model_config import TensorSpec


def is_string_column(column: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype))


@dataclass(frozen=True)
class FeatureLayout:
    """The model's features in order, and the input tensors that carry them."""

    features: tuple[Feature, ...]
    inputs: tuple[InputTensor, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_only(self) -> bool:
        return all(f.dtype == "float" for f in self.features)

    def tensor_specs(self, variable_width: bool = False) -> list[TensorSpec]:
        """Input tensors for the Triton config (batch dimension left out).

        ``variable_width`` declares the numeric matrix ``[-1]`` wide, so a request with the wrong feature count
        reaches our backend, which names the problem and counts it; Triton's own shape check counts nothing.
        """
        numeric_width = -1 if variable_width else None
        return [
            TensorSpec(
                tensor.name,
                tensor.datatype,
                (numeric_width or len(tensor.features),) if self.numeric_only else (1,),
            )
            for tensor in self.inputs
        ]

    def model_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows as the original model should see them: numbers rounded to float32 (what Triton delivers)."""
        columns: dict[str, object] = {}
        for feature in self.features:
            if feature.dtype == "float":
                columns[feature.name] = frame[feature.name].to_numpy(dtype=np.float32).astype(np.float64)
            else:
                columns[feature.name] = pd.Series(_strings(frame[feature.name]), dtype=object)
        return pd.DataFrame(columns, index=range(len(frame)))

    def onnx_feeds(self, frame: pd.DataFrame) -> dict[str, npt.NDArray[np.generic]]:
        """ONNX Runtime feeds for ``frame`` (same tensors Triton passes to the backend)."""
        if self.numeric_only:
            return {NUMERIC_INPUT: frame[self.names].to_numpy(dtype=np.float32)}
        feeds: dict[str, npt.NDArray[np.generic]] = {}
        for feature in self.features:
            column = frame[feature.name]
            if feature.dtype == "float":
                feeds[feature.tensor] = column.to_numpy(dtype=np.float32).reshape(-1, 1)
            else:
                feeds[feature.tensor] = np.asarray(_strings(column), dtype=object).reshape(-1, 1)
        return feeds


def _strings(column: pd.Series) -> list[str]:
    return ["" if pd.isna(v) else str(v) for v in column]


def build_layout(
    frame: pd.DataFrame,
    allow_nan: Mapping[str, bool],
    categories: Mapping[str, Sequence[str]],
) -> FeatureLayout:
    """The layout for ``frame``'s columns in order.

    ``allow_nan`` says which numeric features the model accepts missing values for; ``categories`` lists, for
    string features whose encoder rejects unknown values, the values it knows.
    """
    string_columns = [str(c) for c in frame.columns if is_string_column(frame[c])]
    names = [str(c) for c in frame.columns]
    if not string_columns:
        features = tuple(
            Feature(
                name=name,
                tensor=NUMERIC_INPUT,
                dtype="float",
                kind="numeric",
                column=i,
                allow_nan=allow_nan.get(name, False),
            )
            for i, name in enumerate(names)
        )
        return FeatureLayout(features, (InputTensor(name=NUMERIC_INPUT, datatype="FP32", features=names),))
    _check_tensor_names(names)
    features = tuple(
        Feature(
            name=name,
            tensor=feature_tensor_name(name),
            dtype="string" if name in string_columns else "float",
            kind="categorical" if name in string_columns else "numeric",
            column=0,
            allow_nan=False if name in string_columns else allow_nan.get(name, False),
            categories=list(categories[name]) if name in categories else None,
        )
        for name in names
    )
    inputs = tuple(
        InputTensor(name=f.tensor, datatype="BYTES" if f.dtype == "string" else "FP32", features=[f.name])
        for f in features
    )
    return FeatureLayout(features, inputs)


def _check_tensor_names(names: Sequence[str]) -> None:
    seen: dict[str, str] = {}
    for name in names:
        tensor = feature_tensor_name(name)
        if not tensor:
            raise FeatureNameError(f"feature {name!r}: empty name; expected at least one character")
        if tensor in OUTPUTS:
            raise FeatureNameError(
                f"feature {name!r}: its tensor name {tensor!r} is reserved for an output; rename the column"
            )
        if tensor in seen:
            raise FeatureNameError(
                f"features {seen[tensor]!r} and {name!r} both become tensor {tensor!r}; rename one of the columns"
            )
        seen[tensor] = name


def align_sample(sample: pd.DataFrame, expected: Sequence[str] | None, n_features: int) -> pd.DataFrame:
    """``sample``'s columns in model order; raise ``FeatureMismatchError`` on missing/extra/miscounted columns."""
    if expected is not None:
        missing = [c for c in expected if c not in sample.columns]
        extra = [str(c) for c in sample.columns if c not in set(expected)]
        if missing or extra:
            raise FeatureMismatchError(
                f"sample columns do not match the model's features: missing {missing}, unexpected {extra} "
                f"(the model was trained on {list(expected)})"
            )
        return sample.loc[:, list(expected)].reset_index(drop=True)
    if sample.shape[1] != n_features:
        raise FeatureMismatchError(
            f"the model expects {n_features} features but the sample has {sample.shape[1]} columns "
            f"({[str(c) for c in sample.columns][:10]})"
        )
    frame = sample.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def as_frame(sample: pd.DataFrame | npt.ArrayLike, feature_names: Sequence[str] | None = None) -> pd.DataFrame:
    """A DataFrame for any 2-D sample; plain arrays get ``feature_names`` or ``f0, f1, ...``."""
    if isinstance(sample, pd.DataFrame):
        return sample
    array = np.asarray(sample)
    if array.ndim != 2:
        raise FeatureMismatchError(f"sample must be 2-D (rows x features), got shape {array.shape}")
    names = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(array.shape[1])]
    if len(names) != array.shape[1]:
        raise FeatureMismatchError(f"{len(names)} feature names given for a sample with {array.shape[1]} columns")
    return pd.DataFrame(array, columns=names)
