"""converters: trained sklearn / PyTorch classifiers -> parity-checked ONNX model versions in a Triton repository."""

from converters.errors import ConversionError
from converters.manifest import Manifest, load_manifest
from converters.reference import assign_bins

__all__ = ["ConversionError", "Manifest", "assign_bins", "load_manifest"]
