"""The backend stub's pydantic-free manifest reader (``tritonops.contract.served``) against the pydantic model: the
same fields from every kind of converted manifest, the same rules and drift bins built from either, and errors that
name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from examples.train import train_mixed_pipeline, train_numeric_pipeline
from tritonops.contract.errors import ManifestError
from tritonops.contract.manifest import Manifest, load_manifest
from tritonops.contract.served import ServedManifest, load_served_manifest
from tritonops.converters import ConversionOptions, convert_sklearn
from tritonops.serving.drift_counters import DriftCounters
from tritonops.serving.validation import InputSchema

OPTIONS = ConversionOptions(parity_rows=100, native_export=False)


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A numeric model (one FP32 tensor) and a mixed one (per-feature tensors, categories, string classes)."""
    repository = tmp_path_factory.mktemp("served")
    numeric = train_numeric_pipeline(n_rows=200, n_features=5, seed=1)
    mixed = train_mixed_pipeline(n_rows=200)
    return [
        convert_sklearn(numeric.model, numeric.frame, name="num", repository=repository, options=OPTIONS).path,
        convert_sklearn(mixed.model, mixed.frame, name="mix", repository=repository, options=OPTIONS).path,
    ]


def _same(served: ServedManifest, full: Manifest) -> None:
    assert (served.name, served.version, served.onnx.file) == (full.name, full.version, full.onnx.file)
    assert list(served.classes) == list(full.classes)
    assert [(f.name, f.tensor, f.dtype, f.column, f.allow_nan) for f in served.features] == [
        (f.name, f.tensor, f.dtype, f.column, f.allow_nan) for f in full.features
    ]
    assert [None if f.categories is None else list(f.categories) for f in served.features] == [
        f.categories for f in full.features
    ]
    assert [(i.name, i.datatype, list(i.features)) for i in served.inputs] == [
        (i.name, i.datatype, i.features) for i in full.inputs
    ]
    assert served.reference.features.keys() == full.reference.features.keys()
    for name, bins in served.reference.features.items():
        reference = full.reference.features[name]
        assert bins.kind == reference.kind
        assert list(bins.proportions) == reference.proportions
        if bins.kind == "numeric" and reference.kind == "numeric":
            assert list(bins.bin_edges) == reference.bin_edges and bins.nan_proportion == reference.nan_proportion
        elif bins.kind == "categorical" and reference.kind == "categorical":
            assert list(bins.categories) == reference.categories


def test_it_reads_what_the_pydantic_model_reads_and_serving_builds_the_same_from_both(manifests: list[Path]) -> None:
    kinds = set()
    for path in manifests:
        served, full = load_served_manifest(path), load_manifest(path)
        _same(served, full)
        assert InputSchema.from_manifest(served) == InputSchema.from_manifest(full)
        lean, typed = DriftCounters(served), DriftCounters(full)
        assert [(f.feature, f.tensor, f.column, f.labels) for f in lean.features] == [
            (f.feature, f.tensor, f.column, f.labels) for f in typed.features
        ]
        assert lean.classes == typed.classes
        kinds |= {b.kind for b in served.reference.features.values()} | {i.datatype for i in served.inputs}
    assert kinds == {"numeric", "categorical", "FP32", "BYTES"}  # the fixtures cover every kind


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("inputs"), r"field inputs: missing"),
        (lambda m: m.update(version=0), r"field version: expected a whole number >= 1, got 0"),
        (lambda m: m["features"][0].update(allow_nan="yes"), r"field features\.0\.allow_nan: expected true or false"),
        (lambda m: m["inputs"][0].update(datatype="INT8"), r"field inputs\.0\.datatype: expected 'FP32' or 'BYTES'"),
        (lambda m: m["inputs"][0]["features"].append("ghost"), r"inputs\.0\.features: expected names of listed"),
        (lambda m: m.update(classes=["a", 1]), r"field classes: expected all strings or all whole numbers"),
        (
            lambda m: next(iter(m["reference"]["features"].values()))["proportions"].pop(),
            r"field reference\.features\.\w+\.proportions: expected \d+ proportions",
        ),
    ],
)
def test_a_bad_field_is_named(manifests: list[Path], tmp_path: Path, change: object, message: str) -> None:
    raw = json.loads((manifests[1] / "manifest.json").read_text())
    change(raw)  # type: ignore[operator]
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=message):
        load_served_manifest(bad)


def test_unreadable_and_non_json_files_are_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"cannot read it"):
        load_served_manifest(tmp_path / "missing.json")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match=r"not JSON"):
        load_served_manifest(tmp_path)
