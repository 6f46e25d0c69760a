"""The backend's settings, read from the ``parameters`` of a Triton model config (all values are strings)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tritonops.contract.errors import ModelConfigError
from tritonops.contract.names import (
    PARAM_DRIFT_COUNTERS,
    PARAM_DRIFT_FLUSH_SECONDS,
    PARAM_RESPONSE_CACHE_ENTRIES,
    PARAM_RUNNER,
    PARAM_SHADOW_QUEUE_BATCHES,
    PARAM_TENSORRT,
)
from tritonops.serving.routing import Routes

RUNNER_ONNXRUNTIME = "onnxruntime"
RUNNER_BLS_PREFIX = "bls:"


@dataclass(frozen=True)
class BackendOptions:
    """``tritonops.*`` model-config parameters the backend reacts to."""

    drift_flush_seconds: float = 1.0
    drift_counters: bool = True
    """Off: no per-feature, per-class, row or duration metrics (invalid requests are still counted)."""
    runner: str = RUNNER_ONNXRUNTIME
    """``onnxruntime`` (a session in this instance) or ``bls:<model>`` (forward each batch to a Triton model,
    e.g. the native ``onnxruntime_onnx`` export on GPU)."""
    tensorrt: bool = False
    """On GPU instances, put TensorRT in front of CUDA."""
    instance_count: int = 1
    response_cache_entries: int = 0
    """Successful answers each instance keeps for repeated requests (``tritonops.serving.response_cache``); 0: none."""
    routes: Routes = field(default_factory=Routes)
    """The canary split and shadow mirror published on this (live) model, ``tritonops.serving.routing``."""
    shadow_queue_batches: int = 64
    """Mirrored batches an instance holds for its shadow; when the shadow falls behind, further copies drop."""

    @property
    def bls_target(self) -> str | None:
        return self.runner[len(RUNNER_BLS_PREFIX) :] if self.runner.startswith(RUNNER_BLS_PREFIX) else None

    @classmethod
    def from_model_config(cls, config: Mapping[str, Any]) -> BackendOptions:
        """Options from the model config JSON that Triton hands to ``initialize``."""
        raw = config.get("parameters") or {}
        params = {key: str(value.get("string_value", "")) for key, value in raw.items()}
        groups = config.get("instance_group") or [{}]
        return cls(
            drift_flush_seconds=_positive_float(params, PARAM_DRIFT_FLUSH_SECONDS, 1.0),
            drift_counters=_flag(params, PARAM_DRIFT_COUNTERS, True),
            runner=_runner(params.get(PARAM_RUNNER, RUNNER_ONNXRUNTIME)),
            tensorrt=_flag(params, PARAM_TENSORRT, False),
            instance_count=sum(int(group.get("count", 1)) for group in groups),
            response_cache_entries=_count(params, PARAM_RESPONSE_CACHE_ENTRIES, 0),
            routes=Routes.from_parameters(params),
            shadow_queue_batches=max(1, _count(params, PARAM_SHADOW_QUEUE_BATCHES, 64)),
        )


def _positive_float(params: Mapping[str, str], key: str, default: float) -> float:
    text = params.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:  # also refuses NaN
        raise ModelConfigError(f"parameter {key}: expected a number of seconds > 0, got {text!r}")
    return value


def _count(params: Mapping[str, str], key: str, default: int) -> int:
    text = params.get(key)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()):
        raise ModelConfigError(f"parameter {key}: expected a whole number >= 0, got {text!r}")
    return int(text)


def _flag(params: Mapping[str, str], key: str, default: bool) -> bool:
    text = params.get(key)
    if text is None:
        return default
    if text.lower() not in ("true", "false"):
        raise ModelConfigError(f"parameter {key}: expected 'true' or 'false', got {text!r}")
    return text.lower() == "true"


def _runner(text: str) -> str:
    if text == RUNNER_ONNXRUNTIME or (text.startswith(RUNNER_BLS_PREFIX) and len(text) > len(RUNNER_BLS_PREFIX)):
        return text
    raise ModelConfigError(
        f"parameter {PARAM_RUNNER}: expected '{RUNNER_ONNXRUNTIME}' or '{RUNNER_BLS_PREFIX}<model name>', got {text!r}"
    )
