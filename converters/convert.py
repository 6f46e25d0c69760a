"""The conversion flow shared by every framework: export -> parity gate -> reference statistics -> repository.

Nothing touches the repository before the parity gate has passed; the version is then written atomically.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from tritonops.contract.manifest import (
    ExpectedOutputs,
    FeatureReference,
    Manifest,
    OnnxInfo,
    ParityGroup,
    ParityResult,
    ParityThresholds,
    PredictionMix,
    Reference,
)
from tritonops.contract.names import LABEL_OUTPUT, PROBABILITIES_OUTPUT, native_name
from tritonops.contract.signature import Signature, SignatureFeature
from tritonops.converters.errors import ClassesError, ParityError
from tritonops.converters.features import FeatureLayout
from tritonops.converters.graph import opset
from tritonops.converters.parity import Outputs, check_parity, native_labels
from tritonops.converters.prepared import Predict, PreparedModel, Provenance
from tritonops.converters.probes import ProbeGroup, probe_groups
from tritonops.converters.reference import DEFAULT_NUMERIC_BINS, categorical_reference, numeric_reference
from tritonops.converters.repository import (
    ModelVersion,
    VersionContent,
    validate_model_name,
    write_version,
)
from tritonops.converters.runtime import OnnxClassifier
from tritonops.converters.torch import ModuleOutput
from tritonops.converters.trees import tree_nodes
from tritonops.model_config import (
    GpuAccelerator,
    ServingOptions,
    TensorSpec,
    embedded_config,
    native_onnx_config,
    to_pbtxt,
)

Progress = Callable[[str], None]
_FLOAT32_ULPS = 4 * 2.0**-24
LABELS_FILE = "labels.txt"


@dataclass(frozen=True)
class ConversionOptions:
    """How to check, describe and serve a converted model."""

    thresholds: ParityThresholds = field(default_factory=ParityThresholds)
    serving: ServingOptions = field(default_factory=ServingOptions)
    parity_rows: int = 2000
    """Rows drawn (seeded) from the sample for the parity gate."""
    sample_rows: int = 32
    """Rows kept in the manifest for smoke tests (at most 64)."""
    numeric_bins: int = DEFAULT_NUMERIC_BINS
    seed: int = 0
    native_export: bool = True
    gpu_accelerator: GpuAccelerator | None = field(default_factory=lambda: GpuAccelerator(precision_mode="FP32"))
    """TensorRT at FP32 by default: FP16 would move probabilities beyond the parity threshold."""


def _quiet(_: str) -> None:
    return None


def _draw(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    picked = np.sort(np.random.default_rng(seed).choice(len(frame), size=rows, replace=False))
    return frame.iloc[picked].reset_index(drop=True)


def run_parity(
    prepared: PreparedModel, onnx_model: OnnxClassifier, options: ConversionOptions
) -> tuple[ParityResult, pd.DataFrame]:
    """The parity gate: the sample (a seeded draw) and the generated groups; returns the result and sample rows.

    The sample's rows may be explained by a float32 neighbour (``parity`` module doc); generated rows may not:
    they are placed on float32 values on purpose, where the two sides must take the same branch.
    """
    started = time.perf_counter()
    rows = prepared.layout.model_frame(_draw(prepared.frame, options.parity_rows, options.seed))
    expected_labels, expected_probabilities = prepared.predict(rows)
    if expected_probabilities.shape[1] != len(prepared.classes):
        raise ClassesError(
            f"the model outputs {expected_probabilities.shape[1]} probabilities per row but "
            f"{len(prepared.classes)} classes were given ({prepared.classes})"
        )
    onnx_labels, onnx_probabilities = onnx_model.predict(prepared.layout.onnx_feeds(rows))
    result = check_parity(
        expected_labels,
        expected_probabilities,
        native_labels(onnx_labels),
        onnx_probabilities,
        options.thresholds,
        neighbour_outputs(prepared, rows),
    )
    groups = [
        _check_group(prepared, onnx_model, group, options)
        for group in probe_groups(prepared.onnx_model, prepared.layout, rows)
    ]
    passed = result.passed and all(g.passed for g in groups if g.enforced)
    seconds = time.perf_counter() - started
    return result.model_copy(update={"passed": passed, "groups": groups, "seconds": seconds}), rows


def _answered(predict: Predict, rows: pd.DataFrame) -> tuple[npt.NDArray[np.intp], Outputs]:
    """The rows the original answers (scikit-learn refuses e.g. values that overflow float32 after scaling).

    Halves the rows until each part is answered or is a single refused row, so a few refused rows cost few calls.
    """
    try:
        with warnings.catch_warnings():
            # the original's own float64 -> float32 casts overflow on the float32 extremes (after scaling)
            warnings.simplefilter("ignore", RuntimeWarning)
            labels, probabilities = predict(rows)
        return np.arange(len(rows)), (labels, probabilities)
    except ValueError:
        if len(rows) == 1:
            return np.zeros(0, dtype=np.intp), ([], np.zeros((0, 0)))
    half = len(rows) // 2
    parts = [_answered(predict, rows.iloc[:half].reset_index(drop=True)),
             _answered(predict, rows.iloc[half:].reset_index(drop=True))]  # fmt: skip
    kept = [(index + offset, outputs) for (index, outputs), offset in zip(parts, (0, half), strict=True) if index.size]
    if not kept:
        return np.zeros(0, dtype=np.intp), ([], np.zeros((0, 0)))
    index = np.concatenate([k[0] for k in kept])
    labels = [label for _, (part, _) in kept for label in part]
    return index, (labels, np.concatenate([np.asarray(k[1][1]) for k in kept]))


def _check_group(
    prepared: PreparedModel, onnx_model: OnnxClassifier, group: ProbeGroup, options: ConversionOptions
) -> ParityGroup:
    """Original vs ONNX on one generated group, its worst rows with their values and both probabilities.

    Rows the original refuses to answer are left out and counted (``refused_rows``).
    """
    answered, (expected_labels, expected_probabilities) = _answered(prepared.predict, group.rows)
    rows = group.rows.iloc[answered].reset_index(drop=True)
    if rows.empty:
        return ParityGroup(
            name=group.name, enforced=False, passed=True, rows=0, refused_rows=len(group.rows),
            label_agreement=1.0, max_abs_prob_diff=0.0, worst_rows=[],
        )  # fmt: skip
    onnx_labels, onnx_probabilities = onnx_model.predict(prepared.layout.onnx_feeds(rows))
    result = check_parity(
        expected_labels, expected_probabilities, native_labels(onnx_labels), onnx_probabilities, options.thresholds
    )
    picked = rows.iloc[[row.row for row in result.worst_rows]]
    values = {f.name: _json_column(picked[f.name], f.dtype) for f in prepared.layout.features}
    worst = [
        row.model_copy(
            update={
                "probabilities_expected": np.asarray(expected_probabilities[row.row], dtype=np.float64).tolist(),
                "probabilities_onnx": onnx_probabilities[row.row].astype(np.float64).tolist(),
                "values": {name: column[i] for name, column in values.items()},
            }
        )
        for i, row in enumerate(result.worst_rows)
    ]
    enforced = group.name != "float32-extremes" or any(True for _ in tree_nodes(prepared.onnx_model))
    return ParityGroup(
        name=group.name,
        enforced=enforced,
        passed=result.passed,
        rows=result.rows,
        refused_rows=len(group.rows) - len(rows),
        label_agreement=result.label_agreement,
        max_abs_prob_diff=result.max_abs_prob_diff,
        worst_rows=worst,
    )


def neighbour_outputs(prepared: PreparedModel, rows: pd.DataFrame) -> list[Outputs]:
    """The original model on ``rows`` with every numeric input moved ~4 float32 ulps up, then down.

    The step scales with the value and its column's typical magnitude, so it also covers the rounding of
    centring (``x - mean``).
    """
    numeric = [f.name for f in prepared.layout.features if f.dtype == "float"]
    if not numeric or rows.empty:
        return []
    values = rows[numeric].to_numpy(dtype=np.float64)
    magnitude = np.nan_to_num(np.abs(values)) + np.nan_to_num(np.nanmean(np.abs(values), axis=0))
    outputs: list[Outputs] = []
    for sign in (1.0, -1.0):
        moved = rows.copy()
        moved[numeric] = values + sign * _FLOAT32_ULPS * magnitude
        outputs.append(prepared.predict(moved))
    return outputs


def _json_column(values: pd.Series, dtype: str) -> list[float | str | None]:
    if dtype == "string":
        return [str(v) for v in values]
    return [None if np.isnan(v) else float(v) for v in values.to_numpy(dtype=np.float64)]


def build_reference(
    prepared: PreparedModel, onnx_model: OnnxClassifier, parity_rows: pd.DataFrame, options: ConversionOptions
) -> Reference:
    """Drift reference from the whole sample, plus a smoke-test sample with its expected ONNX outputs."""
    layout = prepared.layout
    frame = layout.model_frame(prepared.frame)
    features: dict[str, FeatureReference] = {}
    for feature in layout.features:
        if feature.dtype == "float":
            features[feature.name] = numeric_reference(frame[feature.name], options.numeric_bins)
        else:
            features[feature.name] = categorical_reference(frame[feature.name], feature.categories)
    predicted, _ = onnx_model.predict(layout.onnx_feeds(frame))
    labels = native_labels(predicted)
    counts = pd.Series(labels, dtype=object).value_counts()
    mix = [float(counts.get(c, 0)) / max(len(labels), 1) for c in prepared.classes]
    sample = parity_rows.iloc[: min(options.sample_rows, 64)].reset_index(drop=True)
    sample_labels, sample_probabilities = onnx_model.predict(layout.onnx_feeds(sample))
    return Reference(
        rows=len(frame),
        features=features,
        predictions=PredictionMix(classes=prepared.classes, proportions=mix),
        sample={f.name: _json_column(sample[f.name], f.dtype) for f in layout.features},
        expected=ExpectedOutputs(
            labels=native_labels(sample_labels),  # type: ignore[arg-type]  # all str or all int, as the classes
            probabilities=sample_probabilities.astype(np.float64).tolist(),
        ),
    )


def signature(
    name: str, layout: FeatureLayout, classes: Sequence[str] | Sequence[int], options: ServingOptions
) -> Signature:
    """What clients read back from the model config (``tritonops.signature``)."""
    return Signature(
        model=name,
        features=tuple(SignatureFeature(f.name, f.tensor, f.dtype, f.column) for f in layout.features),
        classes=tuple(classes),
        class_dtype="string" if all(isinstance(c, str) for c in classes) else "int64",
        max_batch_size=options.max_batch_size,
    )


def _output_specs(classes: Sequence[str] | Sequence[int], class_dtype: str) -> list[TensorSpec]:
    return [
        TensorSpec(LABEL_OUTPUT, "BYTES" if class_dtype == "string" else "INT64", (1,)),
        TensorSpec(PROBABILITIES_OUTPUT, "FP32", (len(classes),)),
    ]


def _render(
    name: str,
    prepared: PreparedModel,
    onnx_bytes: bytes,
    parity: ParityResult,
    reference: Reference,
    options: ConversionOptions,
) -> Callable[[int], VersionContent]:
    classes = prepared.classes
    class_dtype: Literal["string", "int64"] = "string" if all(isinstance(c, str) for c in classes) else "int64"
    parameters = {
        **options.serving.extra_parameters,
        **signature(name, prepared.layout, classes, options.serving).to_parameters(),
    }
    inputs = prepared.layout.tensor_specs()
    embedded_inputs = prepared.layout.tensor_specs(variable_width=True)
    outputs = _output_specs(classes, class_dtype)
    onnx_info = OnnxInfo(
        sha256=hashlib.sha256(onnx_bytes).hexdigest(),
        opset=opset(prepared.onnx_model),
        ir_version=int(prepared.onnx_model.ir_version),
    )
    labels_text = "".join(f"{c}\n" for c in classes).encode("utf-8")

    def render(version: int) -> VersionContent:
        manifest = Manifest(
            name=name,
            version=version,
            created_at=datetime.now(UTC),
            source=prepared.source,
            onnx=onnx_info,
            features=list(prepared.layout.features),
            inputs=list(prepared.layout.inputs),
            classes=classes,
            class_dtype=class_dtype,
            parity=parity,
            reference=reference,
        )
        config = embedded_config(
            name, version, embedded_inputs, outputs, replace(options.serving, extra_parameters=parameters)
        )
        config.output[1].label_filename = f"{version}/{LABELS_FILE}"
        config_bytes = to_pbtxt(config).encode("utf-8")
        content = VersionContent(
            files={
                onnx_info.file: onnx_bytes,
                "manifest.json": manifest.to_json().encode("utf-8"),
                LABELS_FILE: labels_text,
                "config.pbtxt": config_bytes,
            },
            model_config=config_bytes,
        )
        if not options.native_export:
            return content
        native = native_onnx_config(
            native_name(name),
            inputs,
            outputs,
            replace(options.serving, instance_kind="KIND_GPU", instance_count=1, extra_parameters=parameters),
            options.gpu_accelerator,
        )
        native.output[1].label_filename = f"{version}/{LABELS_FILE}"
        return replace(
            content,
            native_files={onnx_info.file: onnx_bytes, LABELS_FILE: labels_text},
            native_config=to_pbtxt(native).encode("utf-8"),
        )

    return render


def publish(
    prepared: PreparedModel,
    name: str,
    repository: Path,
    options: ConversionOptions,
    progress: Progress = _quiet,
    provenance: Provenance | None = None,
) -> ModelVersion:
    """Parity-check ``prepared``; if it passes, compute the reference and write the next version."""
    validate_model_name(name)
    if provenance is not None:
        prepared = replace(prepared, source=provenance.applied(prepared.source))
    onnx_bytes = prepared.onnx_model.SerializeToString()
    onnx_model = OnnxClassifier(onnx_bytes)
    progress("checking parity: original model vs ONNX Runtime on the sample and generated rows")
    parity, rows = run_parity(prepared, onnx_model, options)
    if not parity.passed:
        raise ParityError(parity)
    generated = ", ".join(
        f"{g.name} {g.rows} rows (max {g.max_abs_prob_diff:.1e}{'' if g.enforced else ', not enforced'})"
        for g in parity.groups
    )
    progress(
        f"parity passed in {parity.seconds or 0.0:.2f} s on {parity.rows} sample rows: label agreement "
        f"{parity.label_agreement:.4f}, max |prob diff| {parity.max_abs_prob_diff:.2e}; "
        f"generated: {generated or 'none'}"
    )
    progress("computing reference statistics")
    reference = build_reference(prepared, onnx_model, rows, options)
    progress(f"writing the next version of {name!r} to {repository}")
    return write_version(repository, name, _render(name, prepared, onnx_bytes, parity, reference, options))


def convert_sklearn(
    model: object,
    sample: pd.DataFrame | npt.ArrayLike,
    *,
    name: str,
    repository: Path,
    options: ConversionOptions | None = None,
    progress: Progress = _quiet,
    provenance: Provenance | None = None,
) -> ModelVersion:
    """Convert a fitted scikit-learn classifier (or pipeline) into the next version of ``name``.

    ``sample`` holds rows in the training format (a DataFrame with the training columns, or a 2-D array for
    models fitted on arrays): the parity gate runs on a seeded draw of it and the drift reference is built from it.
    """
    from tritonops.converters.sklearn import prepare_sklearn

    validate_model_name(name)
    progress("exporting the scikit-learn model with skl2onnx")
    prepared = prepare_sklearn(model, sample)
    return publish(prepared, name, Path(repository), options or ConversionOptions(), progress, provenance)


def convert_torch(
    module: object,
    sample: pd.DataFrame | npt.ArrayLike,
    *,
    classes: Sequence[str] | Sequence[int],
    name: str,
    repository: Path,
    feature_names: Sequence[str] | None = None,
    output: ModuleOutput = "logits",
    options: ConversionOptions | None = None,
    progress: Progress = _quiet,
    provenance: Provenance | None = None,
) -> ModelVersion:
    """Convert a PyTorch classifier whose outputs are ``classes`` (logits or probabilities, in that order)."""
    from tritonops.converters.torch import prepare_torch

    validate_model_name(name)
    progress("exporting the PyTorch module with torch.onnx.export")
    prepared = prepare_torch(module, sample, classes, feature_names, output)
    return publish(prepared, name, Path(repository), options or ConversionOptions(), progress, provenance)
