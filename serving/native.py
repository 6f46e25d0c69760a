"""The GPU deployment: Triton's native ``onnxruntime_onnx`` model behind a tritonops front model.

On a GPU host (NGC image) the model runs in Triton's own ONNX Runtime backend (CUDA / TensorRT), which knows
nothing about our validation or drift counters. The front model keeps the public name ``<model>``, runs the
tritonops backend on CPU with ``tritonops.runner = "bls:<model>__onnxruntime"``: it validates every request,
counts drift, and forwards each valid batch to the native model in one BLS call (docs/gpu.md).

``front_config`` builds the front from the embedded config the converter wrote; ``check_gpu_model`` checks a
repository's pair (both configs parse with Triton's protobuf, agree on tensors, and every native version holds an
ONNX file whose graph matches the config) before it is shipped to a GPU fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from tritonclient.grpc import model_config_pb2 as mc

from tritonops.contract.errors import ModelConfigError
from tritonops.contract.names import BACKEND_NAME, PARAM_RUNNER, native_name
from tritonops.model_config import read_pbtxt
from tritonops.serving.backend_options import RUNNER_BLS_PREFIX

NATIVE_PLATFORM = "onnxruntime_onnx"

_ONNX_TYPES: dict[int, int] = {
    onnx.TensorProto.FLOAT: mc.TYPE_FP32,
    onnx.TensorProto.DOUBLE: mc.TYPE_FP64,
    onnx.TensorProto.INT64: mc.TYPE_INT64,
    onnx.TensorProto.INT32: mc.TYPE_INT32,
    onnx.TensorProto.STRING: mc.TYPE_STRING,
    onnx.TensorProto.BOOL: mc.TYPE_BOOL,
}


def front_config(embedded: mc.ModelConfig, instance_count: int = 1) -> mc.ModelConfig:
    """The front model of the GPU deployment: the embedded config, forwarding batches to the native export.

    The front runs on CPU (validation and counting only); batching options and parameters stay as they were.
    """
    if embedded.backend != BACKEND_NAME:
        raise ModelConfigError(
            f"model {embedded.name!r}: a front config starts from the embedded config (backend "
            f"{BACKEND_NAME!r}), got backend {embedded.backend!r} platform {embedded.platform!r}"
        )
    front = mc.ModelConfig()
    front.CopyFrom(embedded)
    del front.instance_group[:]
    group = front.instance_group.add()
    group.kind = mc.ModelInstanceGroup.KIND_CPU
    group.count = instance_count
    front.parameters[PARAM_RUNNER].string_value = f"{RUNNER_BLS_PREFIX}{native_name(embedded.name)}"
    return front


def _tensor_table(tensors: list[mc.ModelInput] | list[mc.ModelOutput]) -> dict[str, tuple[int, tuple[int, ...]]]:
    return {t.name: (t.data_type, tuple(t.dims)) for t in tensors}


def check_pair(front: mc.ModelConfig, native: mc.ModelConfig) -> list[str]:
    """Every way the native config disagrees with the front it serves (empty when they fit)."""
    problems = []
    if native.platform != NATIVE_PLATFORM:
        problems.append(f"{native.name}: platform must be {NATIVE_PLATFORM!r}, got {native.platform!r}")
    if native.max_batch_size < front.max_batch_size:
        problems.append(
            f"{native.name}: max_batch_size {native.max_batch_size} is below the front's {front.max_batch_size}; "
            "a full front batch could not be forwarded"
        )
    for kind, ours, theirs in (
        ("input", _tensor_table(list(front.input)), _tensor_table(list(native.input))),
        ("output", _tensor_table(list(front.output)), _tensor_table(list(native.output))),
    ):
        for name, (data_type, dims) in ours.items():
            if name not in theirs:
                problems.append(f"{native.name}: {kind} {name!r} is missing (the front has it)")
                continue
            their_type, their_dims = theirs[name]
            if their_type != data_type:
                problems.append(
                    f"{native.name}: {kind} {name!r} has type {mc.DataType.Name(their_type)}, "
                    f"the front {mc.DataType.Name(data_type)}"
                )
            fixed = all(d > 0 for d in dims)  # the embedded numeric matrix is declared [-1] wide
            if fixed and their_dims != dims:
                problems.append(f"{native.name}: {kind} {name!r} has dims {list(their_dims)}, the front {list(dims)}")
    return problems


def check_onnx_file(native: mc.ModelConfig, path: Path) -> list[str]:
    """Ways the ONNX graph at ``path`` disagrees with the native config's tensor names, types and input widths."""
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except (OSError, DecodeError) as exc:
        return [f"{path}: not a readable ONNX model ({exc})"]
    problems = []
    for kind, declared, actual in (
        ("input", native.input, graph.input),
        ("output", native.output, graph.output),
    ):
        types = {v.name: _ONNX_TYPES.get(v.type.tensor_type.elem_type) for v in actual}
        for tensor in declared:
            if tensor.name not in types:
                problems.append(f"{path}: the graph has no {kind} {tensor.name!r} (it has {sorted(types)})")
            elif types[tensor.name] != tensor.data_type:
                problems.append(f"{path}: graph {kind} {tensor.name!r} is not {mc.DataType.Name(tensor.data_type)}")
    for graph_input in graph.input:  # feature widths must agree (outputs may drop a trailing [1])
        declared_dims = next((list(t.dims) for t in native.input if t.name == graph_input.name), None)
        widths = [d.dim_value if d.HasField("dim_value") else -1 for d in graph_input.type.tensor_type.shape.dim[1:]]
        if declared_dims is not None and any(
            a > 0 and b > 0 and a != b for a, b in zip(widths, declared_dims, strict=False)
        ):
            problems.append(f"{path}: graph input {graph_input.name!r} has dims {widths}, the config {declared_dims}")
    return problems


@dataclass(frozen=True)
class GpuModel:
    """A checked GPU deployment of one model: the front config and the native config it forwards to."""

    front: mc.ModelConfig
    native: mc.ModelConfig
    versions: tuple[int, ...]


def check_gpu_model(repository: Path, model: str) -> GpuModel:
    """Read and check ``<model>`` and ``<model>__onnxruntime`` in ``repository``; raise on any problem."""
    embedded = read_pbtxt(repository / model / "config.pbtxt")
    native_dir = repository / native_name(model)
    if not (native_dir / "config.pbtxt").is_file():
        raise ModelConfigError(
            f"{native_dir}/config.pbtxt is missing: convert with the native export on (ConversionOptions"
            ".native_export) to deploy {model!r} on a GPU fleet"
        )
    native = read_pbtxt(native_dir / "config.pbtxt")
    front = front_config(embedded)
    problems = check_pair(front, native)
    versions = sorted(int(p.name) for p in native_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        problems.append(f"{native_dir}: no version directories")
    for version in versions:
        problems += check_onnx_file(native, native_dir / str(version) / "model.onnx")
    if problems:
        raise ModelConfigError(f"GPU deployment of {model!r} is not consistent:\n  " + "\n  ".join(problems))
    return GpuModel(front=front, native=native, versions=tuple(versions))
