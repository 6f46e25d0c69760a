"""tritonops: sklearn / PyTorch classifiers to ONNX, served on NVIDIA Triton, run safely in production.

The top-level packages each own one part of the stack:

- ``converters``: trained model -> parity-checked ONNX model version in the repository
- ``serving``: the embedded ``tritonserver`` and our Python-based Triton backend
- ``control_plane``: desired state, fleet reconcile, rollout, drift, guardrails, CLI
- ``clients``: gRPC/HTTP SDK for applications
- ``loadtest``: Locust scenarios and the side-by-side benchmark

This package holds only what they share: the exception root and settings.
"""

from tritonops.errors import TritonOpsError
from tritonops.settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = ["Settings", "TritonOpsError", "__version__", "load_settings"]
