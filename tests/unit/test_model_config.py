"""Triton model configs are built from typed objects and round-trip through Triton's own protobuf."""

from __future__ import annotations

import json

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tritonops.model_config import (
    GpuAccelerator,
    ServingOptions,
    TensorSpec,
    embedded_config,
    native_onnx_config,
    parse_pbtxt,
    to_json,
    to_pbtxt,
    with_specific_versions,
)
from tritonops.serving.errors import ModelConfigError

INPUTS = [TensorSpec("input", "FP32", (20,))]
OUTPUTS = [TensorSpec("label", "BYTES", (1,)), TensorSpec("probabilities", "FP32", (3,))]


def test_embedded_config_round_trips_through_pbtxt() -> None:
    options = ServingOptions(preferred_batch_sizes=(64, 16), instance_count=3, response_cache=True)
    config = embedded_config("churn", 4, INPUTS, OUTPUTS, options)
    parsed = parse_pbtxt(to_pbtxt(config))
    assert parsed == config
    assert parsed.backend == "tritonops"
    assert parsed.max_batch_size == 1024
    assert list(parsed.dynamic_batching.preferred_batch_size) == [16, 64]
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 200
    assert parsed.instance_group[0].count == 3
    assert parsed.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    # the cache lives in our backend: Triton's own would replay a rejected request as an empty success
    assert not parsed.HasField("response_cache")
    assert parsed.parameters["tritonops.response_cache_entries"].string_value == "4096"
    assert parsed.input[0].data_type == mc.TYPE_FP32 and list(parsed.input[0].dims) == [20]
    assert parsed.output[0].data_type == mc.TYPE_STRING
    assert parsed.parameters["tritonops.version"].string_value == "4"
    assert parsed.parameters["tritonops.model"].string_value == "churn"
    assert parsed.parameters["tritonops.drift_counters"].string_value == "true"
    quiet = embedded_config("churn", 1, INPUTS, OUTPUTS, ServingOptions(drift_counters=False))
    assert quiet.parameters["tritonops.drift_counters"].string_value == "false"


def test_response_cache_entries_parameter_is_zero_when_off_and_sized_when_on() -> None:
    off = embedded_config("churn", 1, INPUTS, OUTPUTS, ServingOptions())
    assert off.parameters["tritonops.response_cache_entries"].string_value == "0"
    sized = embedded_config("churn", 1, INPUTS, OUTPUTS, ServingOptions(response_cache=True, response_cache_entries=8))
    assert sized.parameters["tritonops.response_cache_entries"].string_value == "8"
    native = native_onnx_config("churn__onnxruntime", INPUTS, OUTPUTS, ServingOptions(response_cache=True))
    assert not native.HasField("response_cache")
    with pytest.raises(ModelConfigError, match="response_cache_entries must be >= 1, got 0"):
        ServingOptions(response_cache=True, response_cache_entries=0)


def test_json_override_pins_versions_and_keeps_fields() -> None:
    config = with_specific_versions(embedded_config("churn", 2, INPUTS, OUTPUTS), [2])
    data = json.loads(to_json(config))
    assert data["version_policy"] == {"specific": {"versions": ["2"]}}  # int64 as JSON strings
    assert data["backend"] == "tritonops"
    assert data["input"][0]["dims"] == ["20"]  # protobuf JSON renders int64 as strings; Triton accepts both


def test_native_config_asks_for_tensorrt_on_gpu() -> None:
    config = native_onnx_config(
        "churn__onnxruntime", INPUTS, OUTPUTS, accelerator=GpuAccelerator(precision_mode="FP16")
    )
    parsed = parse_pbtxt(to_pbtxt(config))
    assert parsed.platform == "onnxruntime_onnx"
    assert parsed.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    accelerators = parsed.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt"]
    assert accelerators[0].parameters["precision_mode"] == "FP16"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"instance_count": 0}, "instance_count"),
        ({"max_queue_delay_microseconds": -1}, "max_queue_delay_microseconds"),
        ({"preferred_batch_sizes": (4096,)}, "preferred_batch_sizes"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ModelConfigError) as info:
        ServingOptions(**kwargs)  # type: ignore[arg-type]
    assert field in str(info.value)


def test_parse_error_names_the_source() -> None:
    with pytest.raises(ModelConfigError) as info:
        parse_pbtxt("max_batch_size: 'many'", "m/config.pbtxt")
    assert "m/config.pbtxt" in str(info.value)
