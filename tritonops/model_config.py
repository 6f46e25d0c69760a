"""Triton model configs built from typed objects (``model_config_pb2.ModelConfig``), never from strings.

Two flavours of the same model:

- ``embedded_config``: our Python-based backend (``backend: "tritonops"``), used by the embedded server and the
  GPU image of our backend.
- ``native_onnx_config``: Triton's own ``onnxruntime_onnx`` platform with CUDA / TensorRT execution accelerators
  for the NGC image.

Both render to pbtxt (files on disk) and to JSON (the ``load_model`` config override). The converter writes them,
the serving and control-plane parts read and adjust them; it lives here, beside the contract, so neither of the
first two imports the other. Parameter and tensor names come from ``tritonops.contract``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from tritonops.contract.errors import ModelConfigError
from tritonops.contract.names import (
    BACKEND_NAME,
    PARAM_DRIFT_COUNTERS,
    PARAM_DRIFT_FLUSH_SECONDS,
    PARAM_MODEL,
    PARAM_RESPONSE_CACHE_ENTRIES,
    PARAM_VERSION,
)

TensorType = Literal["FP32", "FP64", "INT64", "INT32", "BYTES", "BOOL"]

_DATA_TYPES: dict[str, int] = {
    "FP32": mc.TYPE_FP32,
    "FP64": mc.TYPE_FP64,
    "INT64": mc.TYPE_INT64,
    "INT32": mc.TYPE_INT32,
    "BYTES": mc.TYPE_STRING,
    "BOOL": mc.TYPE_BOOL,
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor, without the batch dimension."""

    name: str
    datatype: TensorType
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ServingOptions:
    """Batching, instances and cache for one model. Defaults suit a 2-core CPU host.

    ``response_cache`` caches answers to repeated inputs inside the tritonops backend (``response_cache_entries``
    per instance, in the model parameter ``tritonops.response_cache_entries``). Triton's own response cache is
    never enabled: Triton 2.51 answers a repeated rejected request from it as an empty success.
    """

    max_batch_size: int = 1024
    preferred_batch_sizes: tuple[int, ...] = (16, 64, 256)
    max_queue_delay_microseconds: int = 200
    instance_count: int = 2
    instance_kind: Literal["KIND_CPU", "KIND_GPU"] = "KIND_CPU"
    response_cache: bool = False
    response_cache_entries: int = 4096
    drift_flush_seconds: float = 1.0
    drift_counters: bool = True
    """Off: no per-feature, per-class, row or duration metrics (validation and invalid-request counts stay)."""
    extra_parameters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ModelConfigError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.instance_count < 1:
            raise ModelConfigError(f"instance_count must be >= 1, got {self.instance_count}")
        if self.response_cache_entries < 1:
            raise ModelConfigError(f"response_cache_entries must be >= 1, got {self.response_cache_entries}")
        if self.max_queue_delay_microseconds < 0:
            raise ModelConfigError(
                f"max_queue_delay_microseconds must be >= 0, got {self.max_queue_delay_microseconds}"
            )
        too_big = [size for size in self.preferred_batch_sizes if size < 1 or size > self.max_batch_size]
        if too_big:
            raise ModelConfigError(
                f"preferred_batch_sizes {too_big} must lie in 1..max_batch_size ({self.max_batch_size})"
            )


def _tensor(spec: TensorSpec, output: bool) -> mc.ModelInput | mc.ModelOutput:
    if spec.datatype not in _DATA_TYPES:
        raise ModelConfigError(f"tensor {spec.name!r}: unsupported datatype {spec.datatype!r}")
    cls = mc.ModelOutput if output else mc.ModelInput
    return cls(name=spec.name, data_type=_DATA_TYPES[spec.datatype], dims=list(spec.dims))


def _common(
    name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], options: ServingOptions
) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, max_batch_size=options.max_batch_size)
    config.input.extend([_tensor(spec, output=False) for spec in inputs])
    config.output.extend([_tensor(spec, output=True) for spec in outputs])
    config.dynamic_batching.preferred_batch_size.extend(
        sorted(s for s in options.preferred_batch_sizes if s <= options.max_batch_size)
    )
    config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_microseconds
    group = config.instance_group.add()
    group.count = options.instance_count
    group.kind = mc.ModelInstanceGroup.Kind.Value(options.instance_kind)
    return config


def _set_parameters(config: mc.ModelConfig, parameters: Mapping[str, str]) -> None:
    for key, value in parameters.items():
        config.parameters[key].string_value = value


def embedded_config(
    name: str,
    version: int,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    options: ServingOptions = ServingOptions(),
) -> mc.ModelConfig:
    """Config for our Python-based backend serving ``name`` version ``version``."""
    config = _common(name, inputs, outputs, options)
    config.backend = BACKEND_NAME
    _set_parameters(
        config,
        {
            PARAM_MODEL: name,
            PARAM_VERSION: str(version),
            PARAM_DRIFT_FLUSH_SECONDS: repr(float(options.drift_flush_seconds)),
            PARAM_DRIFT_COUNTERS: str(options.drift_counters).lower(),
            PARAM_RESPONSE_CACHE_ENTRIES: str(options.response_cache_entries if options.response_cache else 0),
            **options.extra_parameters,
        },
    )
    return config


@dataclass(frozen=True)
class GpuAccelerator:
    """Execution accelerators for the native ``onnxruntime_onnx`` platform on GPU."""

    tensorrt: bool = True
    precision_mode: Literal["FP32", "FP16"] = "FP16"
    max_workspace_size_bytes: int = 1 << 30
    cuda_graphs: bool = False


def native_onnx_config(
    name: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    options: ServingOptions = ServingOptions(instance_kind="KIND_GPU", instance_count=1),
    accelerator: GpuAccelerator | None = GpuAccelerator(),
) -> mc.ModelConfig:
    """Config for Triton's native ONNX Runtime backend (NGC image), optionally with TensorRT on the GPU.

    No response cache here, even with ``options.response_cache``: the front model (``tritonops.serving.native``) caches
    repeated requests before they reach this model, which only sees whole forwarded batches over BLS; Triton's
    cache could also hand a failed execution back as an empty success, as it does for the Python-based backend.
    """
    config = _common(name, inputs, outputs, options)
    config.platform = "onnxruntime_onnx"
    config.backend = "onnxruntime"
    if accelerator is not None and options.instance_kind == "KIND_GPU":
        gpu = config.optimization.execution_accelerators.gpu_execution_accelerator
        if accelerator.tensorrt:
            trt = gpu.add()
            trt.name = "tensorrt"
            trt.parameters["precision_mode"] = accelerator.precision_mode
            trt.parameters["max_workspace_size_bytes"] = str(accelerator.max_workspace_size_bytes)
        if accelerator.cuda_graphs:
            config.optimization.cuda.graphs = True
    _set_parameters(config, dict(options.extra_parameters))
    return config


def with_specific_versions(config: mc.ModelConfig, versions: Sequence[int]) -> mc.ModelConfig:
    """A copy of ``config`` that serves exactly ``versions``."""
    copy = mc.ModelConfig()
    copy.CopyFrom(config)
    copy.version_policy.specific.versions[:] = list(versions)
    return copy


def to_pbtxt(config: mc.ModelConfig) -> str:
    return str(text_format.MessageToString(config))


def to_json(config: mc.ModelConfig) -> str:
    """JSON for ``load_model(config=...)`` (Triton wants the protobuf JSON mapping, field names as in proto)."""
    return json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True))


def parse_pbtxt(text: str, source: str = "<text>") -> mc.ModelConfig:
    """Parse a ``config.pbtxt``; raise ``ModelConfigError`` naming ``source`` on a syntax error."""
    config = mc.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ModelConfigError(f"{source}: not a valid Triton model config: {exc}") from exc
    return config


def read_pbtxt(path: Path) -> mc.ModelConfig:
    return parse_pbtxt(path.read_text(encoding="utf-8"), str(path))
