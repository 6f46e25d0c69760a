"""Errors raised while converting a trained model into a repository version.

Nothing is written to the model repository when any of these is raised.

    ConversionError
     ├── UnsupportedModelError     estimator / step we can't convert (lists what we can)
     ├── NotAClassifierError       a regressor, transformer or anything without classes
     ├── NotFittedError            the model was never fitted
     ├── ClassesError              class labels we can't serve (type, count, duplicates)
     ├── ExportError               the ONNX exporter (skl2onnx / torch.onnx) failed
     ├── FeatureMismatchError      sample columns don't match what the model was trained on
     ├── FeatureNameError          a feature name can't become a Triton tensor name
     ├── ModelLoadError            a joblib / pickle / skops / TorchScript file fails to load
     ├── OnnxRuntimeError          ONNX Runtime can't load or run the converted model
     ├── ParityError               ONNX outputs differ from the original model beyond the thresholds
     └── RepositoryError           model name, repository path or version directory problems

``ManifestError`` (a manifest.json is missing or doesn't match the schema) belongs to the contract
(``tritonops.contract.errors``) and is re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tritonops.errors import TritonOpsError

if TYPE_CHECKING:
    from tritonops.contract.manifest import ParityResult


class ConversionError(TritonOpsError):
    """A trained model could not be turned into a parity-checked ONNX model version."""

    exit_code = 4


class UnsupportedModelError(ConversionError):
    def __init__(self, what: str, supported: Sequence[str]) -> None:
        self.what = what
        self.supported = tuple(supported)
        super().__init__(f"cannot convert {what}: supported are {', '.join(self.supported)}")


class NotAClassifierError(ConversionError):
    def __init__(self, estimator: str, reason: str) -> None:
        self.estimator = estimator
        super().__init__(f"{estimator} is not a classifier ({reason}); tritonops converts classifiers only")


class NotFittedError(ConversionError):
    def __init__(self, estimator: str) -> None:
        self.estimator = estimator
        super().__init__(f"{estimator} is not fitted: call fit() on it before converting")


class ClassesError(ConversionError):
    """The class labels can't be served: not str/int, duplicated, or not matching the model's outputs."""


class ExportError(ConversionError):
    def __init__(self, exporter: str, reason: str) -> None:
        self.exporter = exporter
        super().__init__(f"{exporter} could not export the model to ONNX: {reason}")


class FeatureMismatchError(ConversionError):
    """The sample's columns disagree with the model's training columns."""


class FeatureNameError(ConversionError):
    """A feature name is empty, reserved, or collides with another after sanitising."""


class ModelLoadError(ConversionError):
    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(f"cannot load model file {path}: {reason}")


class OnnxRuntimeError(ConversionError):
    """The converted model does not load or run in ONNX Runtime (e.g. a corrupted file)."""


class ParityError(ConversionError):
    def __init__(self, parity: ParityResult) -> None:
        self.parity = parity
        thresholds = parity.thresholds
        lines = [
            f"parity check failed on {parity.rows} rows: label agreement {parity.label_agreement:.6f} "
            f"(required >= {thresholds.min_label_agreement}), max |prob diff| {parity.max_abs_prob_diff:.3g} "
            f"(allowed <= {thresholds.max_prob_diff}), {parity.tie_rows} tie rows; nothing was written. Worst rows:"
        ]
        for row in parity.worst_rows:
            lines.append(
                f"  row {row.row}: original {row.label_expected!r}, onnx {row.label_onnx!r}, "
                f"|prob diff| {row.prob_diff:.3g}"
            )
        super().__init__("\n".join(lines))


class RepositoryError(ConversionError):
    """The model name, the repository or a version directory is not usable."""
