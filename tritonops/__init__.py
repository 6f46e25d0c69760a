"""tritonops: sklearn / PyTorch classifiers to ONNX, served on NVIDIA Triton, run safely in production.

One namespace; each subpackage owns one part of the stack (in the checkout they are the top-level folders
``converters/``, ``serving/``, ``control_plane/``, ``clients/`` and ``loadtest/``):

- ``tritonops.converters``: trained model -> parity-checked ONNX model version in the repository
- ``tritonops.serving``: the embedded ``tritonserver`` and our Python-based Triton backend
- ``tritonops.control_plane``: desired state, fleet reconcile, rollout, drift, guardrails, CLI
- ``tritonops.clients``: gRPC/HTTP SDK for applications
- ``tritonops.loadtest``: Locust scenarios and the side-by-side benchmark

This package holds only what they share: the exception root and settings.
"""

import logging

from tritonops.errors import TritonOpsError
from tritonops.settings import Settings, load_settings

# A library logs, the application decides where to: without a handler nothing is printed (the controller and
# long-running commands configure one).
logging.getLogger("tritonops").addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = ["Settings", "TritonOpsError", "__version__", "load_settings"]
