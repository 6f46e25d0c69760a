"""converters: trained sklearn / PyTorch classifiers -> parity-checked ONNX model versions in a Triton repository.

version = convert_sklearn(pipeline, training_frame, name="churn", repository=Path("model_repository"))
version.manifest.parity.max_abs_prob_diff
"""

from tritonops.contract.bins import assign_bins
from tritonops.contract.errors import ManifestError
from tritonops.contract.manifest import Manifest, ParityThresholds, load_manifest
from tritonops.converters.convert import ConversionOptions, convert_sklearn, convert_torch
from tritonops.converters.errors import (
    ClassesError,
    ConversionError,
    ExportError,
    FeatureMismatchError,
    FeatureNameError,
    ModelLoadError,
    NotAClassifierError,
    NotFittedError,
    OnnxRuntimeError,
    ParityError,
    RepositoryError,
    UnsupportedModelError,
)
from tritonops.converters.repository import ModelVersion, list_models, list_versions

__all__ = [
    "ClassesError",
    "ConversionError",
    "ConversionOptions",
    "ExportError",
    "FeatureMismatchError",
    "FeatureNameError",
    "Manifest",
    "ManifestError",
    "ModelLoadError",
    "ModelVersion",
    "NotAClassifierError",
    "NotFittedError",
    "OnnxRuntimeError",
    "ParityError",
    "ParityThresholds",
    "RepositoryError",
    "UnsupportedModelError",
    "assign_bins",
    "convert_sklearn",
    "convert_torch",
    "list_models",
    "list_versions",
    "load_manifest",
]
