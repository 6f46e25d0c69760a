"""PyTorch modules -> ONNX: softmax probabilities, user class names as labels, dynamic batch, parity."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from examples.train import Trained, train_torch_mlp
from tritonops.converters import ClassesError, FeatureMismatchError, UnsupportedModelError, convert_torch


@pytest.fixture(scope="module")
def trained() -> Trained:
    return train_torch_mlp(n_rows=300, epochs=60)


def _reference_outputs(trained: Trained, rows: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(trained.model(torch.from_numpy(rows)), dim=1).numpy()


def test_logits_module_with_string_classes(trained: Trained, tmp_path: Path) -> None:
    version = convert_torch(trained.model, trained.frame, classes=trained.classes, name="mlp", repository=tmp_path)
    manifest = version.manifest
    assert manifest.source.framework == "pytorch"
    assert manifest.source.converter.torch == torch.__version__
    assert manifest.classes == ["alpha", "beta", "gamma"]
    assert manifest.parity.passed and manifest.parity.label_agreement == 1.0
    assert manifest.parity.max_abs_prob_diff <= 1e-5
    assert [t.name for t in manifest.inputs] == ["input"]
    # any batch size works and the labels are the class names
    session = ort.InferenceSession(str(version.model_path), providers=["CPUExecutionProvider"])
    rows = np.random.default_rng(5).normal(0, 10, size=(7, 16)).astype(np.float32)
    label, probabilities = session.run(None, {"input": rows})
    expected = _reference_outputs(trained, rows)
    assert label.shape == (7, 1)
    assert label.reshape(-1).tolist() == [trained.classes[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_probability_module_with_int_classes(trained: Trained, tmp_path: Path) -> None:
    module = torch.nn.Sequential(trained.model, torch.nn.Softmax(dim=1))
    version = convert_torch(
        module, trained.frame, classes=[7, 8, 9], name="mlp", repository=tmp_path, output="probabilities"
    )
    assert version.manifest.class_dtype == "int64"
    session = ort.InferenceSession(str(version.model_path), providers=["CPUExecutionProvider"])
    rows = np.array(trained.frame.to_numpy(dtype=np.float32)[:5])
    label, probabilities = session.run(None, {"input": rows})
    assert label.dtype == np.int64
    assert label.reshape(-1).tolist() == [[7, 8, 9][i] for i in _reference_outputs(trained, rows).argmax(axis=1)]
    np.testing.assert_allclose(probabilities, _reference_outputs(trained, rows), atol=1e-5)


def test_torchscript_module_converts(trained: Trained, tmp_path: Path) -> None:
    with warnings.catch_warnings():  # users still ship TorchScript files; making one is deprecated in torch
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(trained.model)
    version = convert_torch(scripted, trained.frame, classes=trained.classes, name="scripted", repository=tmp_path)
    assert version.manifest.parity.passed


def test_class_count_must_match_outputs(trained: Trained, tmp_path: Path) -> None:
    with pytest.raises(ClassesError, match=r"returns \(3,\) scores per row but 2 class names"):
        convert_torch(trained.model, trained.frame, classes=["a", "b"], name="m", repository=tmp_path)
    with pytest.raises(ClassesError, match="must be unique"):
        convert_torch(trained.model, trained.frame, classes=["a", "a", "b"], name="m", repository=tmp_path)
    with pytest.raises(ClassesError, match="all strings or all integers"):
        convert_torch(trained.model, trained.frame, classes=["a", 1, "b"], name="m", repository=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_sample_width_must_match_the_module(trained: Trained, tmp_path: Path) -> None:
    with pytest.raises(FeatureMismatchError, match="fails on the sample's 10 columns"):
        convert_torch(trained.model, trained.frame.iloc[:, :10], classes=trained.classes, name="m", repository=tmp_path)


def test_not_a_module(tmp_path: Path, trained: Trained) -> None:
    with pytest.raises(UnsupportedModelError, match=r"torch\.nn\.Module"):
        convert_torch(object(), trained.frame, classes=trained.classes, name="m", repository=tmp_path)
