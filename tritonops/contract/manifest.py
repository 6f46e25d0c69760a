"""The manifest of one model version (``<model>/<version>/manifest.json``), as typed pydantic models.

The schema is the contract in ``docs/contracts.md``; the converter writes it, the serving backend, the control
plane and the load tests read it with ``load_manifest`` (the backend stub reads its serving fields without pydantic:
``tritonops.contract.served``). Missing numbers (NaN) in ``reference.sample`` are stored
as JSON ``null``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tritonops.contract.errors import ManifestError
from tritonops.contract.names import OTHER_CATEGORY

SCHEMA_VERSION = 1

ClassLabel = str | int


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConverterVersions(_Frozen):
    """Versions of the tools that produced and checked the ONNX file (the exporter not used is null)."""

    skl2onnx: str | None = None
    torch: str | None = None
    onnx: str
    onnxruntime: str


class VersionSkew(_Frozen):
    """A package whose version differs between training (what the artifact says) and this conversion."""

    package: str
    trained: str
    converted: str


class MlflowSource(_Frozen):
    """Where an MLflow model came from: the URI asked for and what it resolved to."""

    tracking_uri: str
    uri: str
    """As given: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/RUN_ID/PATH``."""
    model_uri: str
    """What was loaded: the artifact location the URI resolved to (``models:/NAME/VERSION`` for registry URIs)."""
    registered_model: str | None = None
    registered_version: int | None = None
    alias: str | None = None
    run_id: str | None = None
    flavor: Literal["sklearn", "pytorch"]
    signature: dict[str, object] | None = None
    sample_from: Literal["option", "input_example"]


class Source(_Frozen):
    framework: Literal["sklearn", "pytorch"]
    framework_version: str
    estimator: str
    tritonops_version: str
    converter: ConverterVersions
    training_versions: dict[str, str] = Field(default_factory=dict)
    """Package versions the model was trained with, when the artifact says (pickled estimators, MLflow)."""
    version_skew: list[VersionSkew] = Field(default_factory=list)
    """Differences from ``training_versions`` that ``--allow-version-skew`` let through (empty otherwise)."""
    mlflow: MlflowSource | None = None


class OnnxInfo(_Frozen):
    file: str = "model.onnx"
    sha256: str
    opset: int
    ir_version: int


class Feature(_Frozen):
    """One model feature: its name, the Triton tensor that carries it and the column inside that tensor."""

    name: str
    tensor: str
    dtype: Literal["float", "string"]
    kind: Literal["numeric", "categorical"]
    column: int = Field(ge=0)
    allow_nan: bool
    categories: list[str] | None = None


class InputTensor(_Frozen):
    name: str
    datatype: Literal["FP32", "BYTES"]
    features: list[str]


class ParityThresholds(_Frozen):
    min_label_agreement: float = Field(default=1.0, ge=0.0, le=1.0)
    max_prob_diff: float = Field(default=1e-4, ge=0.0)


class ParityRow(_Frozen):
    """One row of a parity check: the original's and the ONNX model's answers (and, for generated rows, the row).

    A NaN answer (and the infinite difference it makes) is written as the JSON string ``"NaN"`` / ``"Infinity"``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")

    row: int
    label_expected: ClassLabel
    label_onnx: ClassLabel
    prob_diff: float
    probabilities_expected: list[float] | None = None
    probabilities_onnx: list[float] | None = None
    values: dict[str, float | str | None] | None = None
    """The row's features (generated rows only; NaN as null)."""


class ParityGroup(_Frozen):
    """The gate's verdict on one group of generated rows (``docs/converters.md``: what each group probes).

    A group that is not ``enforced`` is reported but does not fail the gate.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")

    name: Literal["thresholds", "range", "float32-extremes", "missing"]
    enforced: bool
    passed: bool
    rows: int
    refused_rows: int = 0
    """Generated rows the original model itself refuses (e.g. values that overflow after scaling): not compared."""
    label_agreement: float
    max_abs_prob_diff: float
    worst_rows: list[ParityRow]


class ParityResult(_Frozen):
    """Original model vs ONNX Runtime on the same rows.

    ``label_agreement`` counts a disagreement on a *tie row* (the original's top two probabilities within
    ``max_prob_diff`` of each other, so float32 rounding may legitimately pick the other class) as agreement;
    ``tie_rows`` says how many rows were ties. The top-level numbers are the user's sample; ``groups`` are the
    generated rows, and ``passed`` needs the sample and every enforced group to pass.
    """

    passed: bool
    rows: int
    label_agreement: float
    max_abs_prob_diff: float
    tie_rows: int
    thresholds: ParityThresholds
    worst_rows: list[ParityRow]
    groups: list[ParityGroup] = Field(default_factory=list)
    seconds: float | None = None
    """How long the whole gate took (sample and generated rows)."""


class NumericReference(_Frozen):
    """Quantile bins of a numeric feature: bins ``(-inf, e1], (e1, e2], ..., (ek-1, inf)`` plus a NaN bin."""

    kind: Literal["numeric"] = "numeric"
    bin_edges: list[float]
    proportions: list[float]
    nan_proportion: float

    @model_validator(mode="after")
    def _one_proportion_per_bin(self) -> NumericReference:
        if len(self.proportions) != len(self.bin_edges) + 1:
            raise ValueError(
                f"numeric reference: {len(self.bin_edges)} inner edges need {len(self.bin_edges) + 1} "
                f"proportions, got {len(self.proportions)}"
            )
        if any(b <= a for a, b in zip(self.bin_edges, self.bin_edges[1:], strict=False)):
            raise ValueError("numeric reference: bin_edges must be strictly increasing")
        return self


class CategoricalReference(_Frozen):
    """Category proportions; the last proportion belongs to ``__other__`` (categories not listed)."""

    kind: Literal["categorical"] = "categorical"
    categories: list[str]
    proportions: list[float]

    @model_validator(mode="after")
    def _other_bin_last(self) -> CategoricalReference:
        if len(self.proportions) != len(self.categories) + 1:
            raise ValueError(
                f"categorical reference: {len(self.categories)} categories need {len(self.categories) + 1} "
                f"proportions (the last one for {OTHER_CATEGORY}), got {len(self.proportions)}"
            )
        return self


FeatureReference = Annotated[NumericReference | CategoricalReference, Field(discriminator="kind")]


class PredictionMix(_Frozen):
    classes: list[str] | list[int]
    proportions: list[float]


class ExpectedOutputs(_Frozen):
    labels: list[str] | list[int]
    probabilities: list[list[float]]


class Reference(_Frozen):
    rows: int
    features: dict[str, FeatureReference]
    predictions: PredictionMix
    sample: dict[str, list[float | str | None]]
    expected: ExpectedOutputs


class Manifest(_Frozen):
    schema_version: Literal[1] = 1
    name: str
    version: int = Field(ge=1)
    created_at: datetime
    task: Literal["classification"] = "classification"
    source: Source
    onnx: OnnxInfo
    features: list[Feature]
    inputs: list[InputTensor]
    classes: list[str] | list[int]
    class_dtype: Literal["string", "int64"]
    parity: ParityResult
    reference: Reference

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        expected_dtype = "string" if all(isinstance(c, str) for c in self.classes) else "int64"
        if self.class_dtype != expected_dtype:
            raise ValueError(f"class_dtype is {self.class_dtype!r} but classes {self.classes!r} are {expected_dtype}")
        names = {f.name for f in self.features}
        for tensor in self.inputs:
            unknown = [n for n in tensor.features if n not in names]
            if unknown:
                raise ValueError(f"input {tensor.name!r} lists unknown features {unknown}")
        return self

    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def parse_manifest(text: str, source: str = "<text>") -> Manifest:
    """Parse manifest JSON; raise ``ManifestError`` naming ``source`` and the first bad field."""
    try:
        return Manifest.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "<root>"
        raise ManifestError(source, f"field {where}: {first['msg']} ({exc.error_count()} problem(s))") from exc


def load_manifest(path: Path | str) -> Manifest:
    """Read ``manifest.json`` (or the version directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(path, f"cannot read it ({exc.strerror})") from exc
    return parse_manifest(text, str(path))
