"""PyTorch classifiers (``nn.Module`` returning logits or probabilities) -> ONNX with ``torch.onnx.export``.

The module is exported as it is (TorchScript modules too), taking one FP32 ``input`` ``[N, n_features]`` with a
dynamic batch; ONNX nodes appended to its scores apply softmax when they are logits and map the arg-max to the
class names the user supplies, so ``label`` carries those names.
torch is imported lazily: it is an optional extra.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd

from tritonops.contract.manifest import ClassLabel, ConverterVersions, Source
from tritonops.contract.names import NUMERIC_INPUT
from tritonops.converters.errors import ClassesError, ExportError, FeatureMismatchError, UnsupportedModelError
from tritonops.converters.features import as_frame, build_layout, is_string_column
from tritonops.converters.graph import classifier_head, deduplicate_opsets, order_outputs
from tritonops.converters.prepared import Predict, PreparedModel
from tritonops.converters.versions import package_version

if TYPE_CHECKING:
    from torch import nn

ModuleOutput = Literal["logits", "probabilities"]
TORCH_OPSET = 17
_SCORES = "tritonops_scores"


def check_classes(classes: Sequence[object]) -> list[str] | list[int]:
    """User-supplied class names as all-str or all-int, unique; raise ``ClassesError`` otherwise."""
    values = list(classes)
    if len(values) < 2:
        raise ClassesError(f"need at least 2 class names, got {values}")
    if len(set(values)) != len(values):
        raise ClassesError(f"class names must be unique, got {values}")
    if all(isinstance(c, str) for c in values):
        return [str(c) for c in values]
    if all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in values):
        return [int(c) for c in values]  # type: ignore[call-overload]
    raise ClassesError(f"class names must be all strings or all integers, got {values}")


def torch_to_onnx(
    module: nn.Module, n_features: int, classes: list[str] | list[int], output: ModuleOutput = "logits"
) -> onnx.ModelProto:
    """Export ``module`` (in eval mode) to the standard interface."""
    import torch

    try:
        with tempfile.TemporaryDirectory(prefix="tritonops-torch-") as workdir, warnings.catch_warnings():
            # the TorchScript-based exporter is deprecated in favour of the dynamo one, which needs onnxscript
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module,
                (torch.zeros(2, n_features, dtype=torch.float32),),
                f"{workdir}/model.onnx",
                input_names=[NUMERIC_INPUT],
                output_names=[_SCORES],
                dynamic_axes={NUMERIC_INPUT: {0: "N"}, _SCORES: {0: "N"}},
                opset_version=TORCH_OPSET,
                dynamo=False,
            )
            onx = onnx.load(f"{workdir}/model.onnx")
    except Exception as exc:  # torch.onnx raises many error types (tracing, unsupported operators, shapes)
        raise ExportError("torch.onnx.export", f"{type(exc).__name__}: {exc}") from exc
    classifier_head(onx, _SCORES, softmax=output == "logits", classes=classes)
    order_outputs(onx)
    deduplicate_opsets(onx)
    return onx


def _probabilities(module: nn.Module, frame: pd.DataFrame, output: ModuleOutput) -> npt.NDArray[np.float64]:
    import torch

    with torch.no_grad():
        scores = module(torch.from_numpy(frame.to_numpy(dtype=np.float32, copy=True)))
        probabilities = torch.softmax(scores, dim=1) if output == "logits" else scores
    return np.asarray(probabilities.numpy(), dtype=np.float64)


def _predict_fn(module: nn.Module, classes: list[str] | list[int], output: ModuleOutput) -> Predict:
    names = np.asarray(classes, dtype=object)

    def predict(frame: pd.DataFrame) -> tuple[list[ClassLabel], npt.NDArray[np.float64]]:
        values = _probabilities(module, frame, output)
        return list(names[values.argmax(axis=1)]), values

    return predict


def prepare_torch(
    module: object,
    sample: pd.DataFrame | npt.ArrayLike,
    classes: Sequence[object],
    feature_names: Sequence[str] | None = None,
    output: ModuleOutput = "logits",
) -> PreparedModel:
    """Validate ``module`` against ``sample`` (numeric columns) and export it."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise UnsupportedModelError(
            f"an object of type {type(module).__module__}.{type(module).__qualname__}",
            ["torch.nn.Module (including TorchScript modules)"],
        )
    names = check_classes(classes)
    frame = as_frame(sample, feature_names).reset_index(drop=True)
    strings = [str(c) for c in frame.columns if is_string_column(frame[c])]
    if strings:
        raise FeatureMismatchError(f"PyTorch models take numbers only; sample columns {strings} hold strings")
    frame.columns = [str(c) for c in frame.columns]
    try:
        module.eval()
    except NotImplementedError as exc:  # a torch.export program refuses eval(): MLflow 3's default "pt2" format
        raise UnsupportedModelError(
            f"a torch.export program ({type(module).__module__}.{type(module).__qualname__}, e.g. MLflow's 'pt2' "
            "format); the ONNX exporter needs the nn.Module: log it with mlflow.pytorch.log_model(..., "
            "serialization_format='pickle') or save it with torch.jit.save",
            ["torch.nn.Module (including TorchScript modules)"],
        ) from exc
    layout = build_layout(frame, {}, {})
    predict = _predict_fn(module, names, output)
    try:
        probabilities = _probabilities(module, layout.model_frame(frame.iloc[:2]), output)
    except RuntimeError as exc:
        raise FeatureMismatchError(
            f"the module fails on the sample's {frame.shape[1]} columns ({exc}); check --input-dim / the sample"
        ) from exc
    if probabilities.ndim != 2 or probabilities.shape[1] != len(names):
        raise ClassesError(
            f"the module returns {tuple(probabilities.shape[1:])} scores per row but {len(names)} class names "
            f"were given ({names})"
        )
    onx = torch_to_onnx(module, frame.shape[1], names, output)
    source = Source(
        framework="pytorch",
        framework_version=torch.__version__,
        estimator=f"{type(module).__module__}.{type(module).__qualname__}",
        tritonops_version=package_version("tritonops"),
        converter=ConverterVersions(
            torch=torch.__version__, onnx=package_version("onnx"), onnxruntime=package_version("onnxruntime")
        ),
    )
    return PreparedModel(onx, frame, layout, names, source, predict)
