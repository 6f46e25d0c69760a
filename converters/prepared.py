"""What a framework-specific converter hands to the parity gate and the repository writer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd

from tritonops.contract.manifest import ClassLabel, MlflowSource, Source, VersionSkew
from tritonops.converters.features import FeatureLayout

Predict = Callable[[pd.DataFrame], tuple[list[ClassLabel], npt.NDArray[np.float64]]]
"""The original model on a model-order frame: labels and class probabilities."""


@dataclass(frozen=True)
class PreparedModel:
    """An ONNX graph with the standard interface, plus the original model to check it against."""

    onnx_model: onnx.ModelProto
    frame: pd.DataFrame
    layout: FeatureLayout
    classes: list[str] | list[int]
    source: Source
    predict: Predict


@dataclass(frozen=True)
class Provenance:
    """What the artifact says about where the model came from; goes into the manifest's ``source``."""

    training_versions: dict[str, str] = field(default_factory=dict)
    version_skew: list[VersionSkew] = field(default_factory=list)
    mlflow: MlflowSource | None = None

    def applied(self, source: Source) -> Source:
        return source.model_copy(
            update={
                "training_versions": dict(self.training_versions),
                "version_skew": list(self.version_skew),
                "mlflow": self.mlflow,
            }
        )
