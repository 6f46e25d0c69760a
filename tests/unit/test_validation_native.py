"""The GPU deployment pair (front + native ``onnxruntime_onnx`` export) is built and checked from real converter
output; every kind of disagreement is reported with the model, the tensor and both sides."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from tritonclient.grpc import model_config_pb2 as mc

from tritonops.converters import ConversionOptions, convert_sklearn
from tritonops.model_config import parse_pbtxt, read_pbtxt, to_pbtxt
from tritonops.serving.errors import ModelConfigError
from tritonops.serving.native import check_gpu_model, front_config, native_name


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("gpu_repo")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 3)).astype(np.float32)
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    convert_sklearn(model, x, name="gpu", repository=repository, options=ConversionOptions(parity_rows=150))
    return repository


@pytest.fixture
def repository(converted: Path, tmp_path: Path) -> Path:
    """A private copy each test may break."""
    copy = tmp_path / "repo"
    shutil.copytree(converted, copy)
    return copy


def _edit_native(repository: Path, change: str, value: object) -> None:
    path = repository / native_name("gpu") / "config.pbtxt"
    config = read_pbtxt(path)
    if change == "dims":
        config.input[0].dims[:] = [7]
    elif change == "type":
        config.output[1].data_type = mc.TYPE_FP64
    elif change == "missing_output":
        del config.output[0]
    elif change == "max_batch_size":
        config.max_batch_size = int(value)  # type: ignore[call-overload]
    elif change == "platform":
        config.platform = str(value)
    path.write_text(to_pbtxt(config), encoding="utf-8")


def test_converter_output_makes_a_consistent_gpu_pair(repository: Path) -> None:
    pair = check_gpu_model(repository, "gpu")
    assert pair.versions == (1,)
    assert pair.native.platform == "onnxruntime_onnx"
    assert pair.native.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert pair.front.backend == "tritonops" and pair.front.name == "gpu"
    assert pair.front.parameters["tritonops.runner"].string_value == "bls:gpu__onnxruntime"
    assert [g.kind for g in pair.front.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    # the front keeps batching and parameters, and still round-trips through Triton's protobuf
    embedded = read_pbtxt(repository / "gpu" / "config.pbtxt")
    assert pair.front.dynamic_batching == embedded.dynamic_batching
    assert pair.front.parameters["tritonops.model"].string_value == "gpu"
    assert parse_pbtxt(to_pbtxt(pair.front)) == pair.front


@pytest.mark.parametrize(
    ("change", "value", "message"),
    [
        ("dims", None, "model.onnx: graph input 'input' has dims [3], the config [7]"),
        ("type", None, "output 'probabilities' has type TYPE_FP64, the front TYPE_FP32"),
        ("missing_output", None, "output 'label' is missing (the front has it)"),
        ("max_batch_size", 8, "max_batch_size 8 is below the front's 1024"),
        ("platform", "tensorflow_savedmodel", "platform must be 'onnxruntime_onnx', got 'tensorflow_savedmodel'"),
    ],
)
def test_disagreements_are_listed(repository: Path, change: str, value: object, message: str) -> None:
    _edit_native(repository, change, value)
    with pytest.raises(ModelConfigError, match="GPU deployment of 'gpu' is not consistent") as caught:
        check_gpu_model(repository, "gpu")
    assert message in caught.value.message


def test_onnx_files_are_checked_against_the_native_config(repository: Path) -> None:
    model = repository / native_name("gpu") / "1" / "model.onnx"
    model.write_bytes(b"not an onnx file")
    with pytest.raises(ModelConfigError, match="not a readable ONNX model"):
        check_gpu_model(repository, "gpu")
    model.unlink()
    with pytest.raises(ModelConfigError, match=r"model\.onnx: not a readable ONNX model"):
        check_gpu_model(repository, "gpu")


def test_missing_export_and_wrong_starting_point(repository: Path) -> None:
    with pytest.raises(ModelConfigError, match="front config starts from the embedded config"):
        front_config(read_pbtxt(repository / native_name("gpu") / "config.pbtxt"))
    shutil.rmtree(repository / native_name("gpu"))
    with pytest.raises(ModelConfigError, match=r"config\.pbtxt is missing: convert with the native export on"):
        check_gpu_model(repository, "gpu")
