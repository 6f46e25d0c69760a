"""Names written once: Triton tensors, model-config parameters, the backend, aliases and the model-name rule.

The converter writes these names, the backend and the SDK read them and the control plane rewrites some of them
(docs/contracts.md); every side imports them from here.
"""

from __future__ import annotations

import hashlib
import re

# -- tensors ---------------------------------------------------------------------------------------
NUMERIC_INPUT = "input"
"""The one FP32 matrix of a numeric-only model (columns in feature order)."""
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
OUTPUTS = (LABEL_OUTPUT, PROBABILITIES_OUTPUT)
VERSION_OUTPUT = "served_version"
"""Output tensor (INT64, one per row) naming the version that scored the request; declared on fleet-loaded models."""
REQUEST_ID_PARAMETER = "request_id"
"""Optional request parameter: echoed in error messages, keys ground-truth feedback."""
ROUTE_KEY_PARAMETER = "tritonops_route_key"
"""Optional request parameter: the sticky key of the server-side canary split."""
ROUTE_KEY_HEADER = "tritonops-route-key"
"""HTTP header / gRPC metadata with the same meaning; the server forwards it as a request parameter of this name."""
LIVE_ONLY_PARAMETER = "tritonops_live_only"
"""Request parameter (bool) that keeps a request on live whatever the split (the control plane's smoke check)."""
LIVE_ROUTE_KEY = "\x00live"
"""The routing key of a request pinned to live: no canary weight sends it to the canary."""

# -- the backend and its model-config parameters (all string values) --------------------------------
BACKEND_NAME = "tritonops"
"""Model configs of our Python-based backend say ``backend: "tritonops"``."""
PARAM_MODEL = "tritonops.model"
PARAM_VERSION = "tritonops.version"
PARAM_DRIFT_FLUSH_SECONDS = "tritonops.drift_flush_seconds"
PARAM_DRIFT_COUNTERS = "tritonops.drift_counters"
PARAM_RESPONSE_CACHE_ENTRIES = "tritonops.response_cache_entries"
PARAM_RUNNER = "tritonops.runner"
PARAM_TENSORRT = "tritonops.tensorrt"
PARAM_SIGNATURE = "tritonops.signature"
"""Compact JSON written by the converter: features, classes, class dtype (``Signature.to_parameters``)."""
PARAM_CANARY = "tritonops.canary"
"""Compact JSON on the live model while a candidate exists: alias, version, weight (``CanarySplit``)."""
PARAM_SHADOW = "tritonops.shadow"
"""Compact JSON on the live model while a shadow runs: alias, version, share (``tritonops.serving.routing``)."""
PARAM_SHADOW_QUEUE_BATCHES = "tritonops.shadow_queue_batches"
PARAM_CAPTURE = "tritonops.capture"
"""Row capture: a ``tritonops.serving.capture.CaptureSpec`` as JSON; absent = no capture."""
SMOKE_REQUEST_ID = "tritonops-smoke"
"""The request id of the control plane's smoke checks and warm-ups: synthetic rows, never captured."""

# -- model names and the aliases derived from them ---------------------------------------------------
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
ALIAS_SEPARATOR = "__"
"""Reserved inside model names: ``<model>__canary`` and ``<model>__onnxruntime`` are derived names."""
CANARY_SUFFIX = "__canary"
SHADOW_SUFFIX = "__shadow"
NATIVE_SUFFIX = "__onnxruntime"
"""The export for Triton's native ``onnxruntime_onnx`` platform (GPU / NGC image)."""
MODEL_NAME_RULE = (
    "a letter followed by up to 62 letters, digits, '_' or '-', without '__' (reserved for aliases such as "
    "<model>__canary)"
)


def model_name_problem(name: str) -> str | None:
    """Why ``name`` can't be a model name (Triton's and our aliases' rule), or None when it can."""
    if MODEL_NAME_PATTERN.match(name) and ALIAS_SEPARATOR not in name:
        return None
    return f"model name {name!r} is not allowed: expected {MODEL_NAME_RULE}"


def key_position(key: str) -> float:
    """A stable position in [0, 1) for a routing key (same on every host, process and Python run): a canary of
    weight ``w`` answers the keys below ``w``, in the backend and in SDK clients alike."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def canary_alias(model: str) -> str:
    """The name the candidate version of ``model`` is loaded under."""
    return f"{model}{CANARY_SUFFIX}"


def shadow_alias(model: str) -> str:
    """The name the shadow version of ``model`` is known by (BLS, metrics)."""
    return f"{model}{SHADOW_SUFFIX}"


def native_name(model: str) -> str:
    """The name of ``model``'s native ``onnxruntime_onnx`` export in the repository."""
    return f"{model}{NATIVE_SUFFIX}"


def base_model(served: str) -> str:
    """The model a Triton name serves: ``rf__canary`` -> ``rf`` (aliases use ``__``)."""
    return served.split(ALIAS_SEPARATOR, 1)[0]


def feature_tensor_name(feature: str) -> str:
    """The Triton tensor of a per-feature input: the feature name with other characters than ``[A-Za-z0-9_]``
    replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", feature)


OTHER_CATEGORY = "__other__"
"""The reference bin that collects categories not seen in the reference data."""
