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
     │    └── VersionSkewError     it was saved with another version of its framework (--allow-version-skew)
     ├── MissingDependencyError    the model needs a library that is not installed (names the extra)
     ├── MlflowSourceError         an MLflow URI can't be resolved or loaded (server, alias, flavor)
     ├── OnnxRuntimeError          ONNX Runtime can't load or run the converted model
     ├── ParityError               ONNX outputs differ from the original model beyond the thresholds
     └── RepositoryError           model name, repository path or version directory problems

``ManifestError`` (a manifest.json is missing or doesn't match the schema) belongs to the contract
(``tritonops.contract.errors``); ``tritonops.converters`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tritonops.errors import ExitCode, TritonOpsError

if TYPE_CHECKING:
    from tritonops.contract.manifest import ParityResult, ParityRow


class ConversionError(TritonOpsError):
    """A trained model could not be turned into a parity-checked ONNX model version."""

    exit_code = ExitCode.CONVERSION


class UnsupportedModelError(ConversionError):
    def __init__(self, what: str, supported: Sequence[str]) -> None:
        self.what = what
        self.supported = tuple(supported)
        super().__init__(f"cannot convert {what}: supported are {', '.join(self.supported)}")


class NotAClassifierError(ConversionError):
    def __init__(self, estimator: str, reason: str, supported: Sequence[str] = ()) -> None:
        self.estimator = estimator
        self.supported = tuple(supported)
        listed = f": supported classifiers are {', '.join(self.supported)}" if self.supported else ""
        super().__init__(f"{estimator} is not a classifier ({reason}); tritonops converts classifiers only{listed}")


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
    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = path
        super().__init__(f"cannot load model file {path}: {reason}")


class VersionSkewError(ModelLoadError):
    def __init__(self, path: Path | str, package: str, trained: str, here: str) -> None:
        self.package, self.trained, self.here = package, trained, here
        super().__init__(
            Path(path),
            f"it was saved with {package} {trained} but this environment has {package} {here}; a model loaded across "
            f"versions can predict differently without an error. Convert it where {package} {trained} is installed, "
            "or pass --allow-version-skew to convert anyway (recorded in the manifest)",
        )


class MissingDependencyError(ConversionError):
    def __init__(self, module: str, hint: str) -> None:
        self.module = module
        super().__init__(f"No module named {module!r}: {hint}")


class MlflowSourceError(ConversionError):
    """An MLflow URI can't be used: server unreachable, unknown model/alias/run, or a flavor we can't convert."""


class OnnxRuntimeError(ConversionError):
    """The converted model does not load or run in ONNX Runtime (e.g. a corrupted file)."""


class ParityError(ConversionError):
    def __init__(self, parity: ParityResult) -> None:
        self.parity = parity
        thresholds = parity.thresholds
        verdict = "passed" if parity.rows and parity.max_abs_prob_diff <= thresholds.max_prob_diff else "failed"
        failed = [g for g in parity.groups if g.enforced and not g.passed]
        lines = [
            f"parity check failed ({', '.join(g.name for g in failed) or 'sample'}); nothing was written. "
            f"Sample ({verdict}): {parity.rows} rows, label agreement {parity.label_agreement:.6f} "
            f"(required >= {thresholds.min_label_agreement}), max |prob diff| {parity.max_abs_prob_diff:.3g} "
            f"(allowed <= {thresholds.max_prob_diff}), {parity.tie_rows} tie rows. Worst rows:"
        ]
        lines += [_row_line(row) for row in parity.worst_rows]
        for group in failed:
            lines.append(
                f"generated rows {group.name!r} failed: {group.rows} rows, label agreement "
                f"{group.label_agreement:.6f}, max |prob diff| {group.max_abs_prob_diff:.3g}. Worst rows:"
            )
            lines += [_row_line(row) for row in group.worst_rows]
        super().__init__("\n".join(lines))


def _row_line(row: ParityRow) -> str:
    line = f"  row {row.row}: original {row.label_expected!r}, onnx {row.label_onnx!r}, |prob diff| {row.prob_diff:.3g}"
    if row.probabilities_expected is not None and row.probabilities_onnx is not None:
        expected = ", ".join(f"{p:.6g}" for p in row.probabilities_expected)
        onnx = ", ".join(f"{p:.6g}" for p in row.probabilities_onnx)
        line += f"; probabilities original [{expected}] vs onnx [{onnx}]"
    if row.values is not None:
        line += "; row " + ", ".join(f"{k}={v!r}" for k, v in row.values.items())
    return line


class RepositoryError(ConversionError):
    """The model name, the repository or a version directory is not usable."""
