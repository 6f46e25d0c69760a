"""The parity rule (ties, boundary rows, worst rows), the manifest schema on disk, and the public API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import tritonops.converters
from examples.data import churn_frame
from tritonops.converters import ManifestError, ParityThresholds, convert_sklearn, load_manifest
from tritonops.converters.parity import check_parity


def test_identical_outputs_pass() -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8]])
    result = check_parity(["a", "b"], probabilities, ["a", "b"], probabilities, ParityThresholds())
    assert result.passed and result.label_agreement == 1.0 and result.max_abs_prob_diff == 0.0
    assert result.tie_rows == 0


def test_near_tie_label_flip_is_forgiven_but_probabilities_still_count() -> None:
    expected = np.array([[0.50002, 0.49998], [0.9, 0.1]])
    onnx = np.array([[0.49999, 0.50001], [0.9, 0.1]])
    result = check_parity(["a", "a"], expected, ["b", "a"], onnx, ParityThresholds())
    assert result.passed
    assert result.tie_rows == 1
    assert result.label_agreement == 1.0
    assert result.max_abs_prob_diff == pytest.approx(3e-5)
    strict = check_parity(["a", "a"], expected, ["b", "a"], onnx, ParityThresholds(max_prob_diff=1e-6))
    assert not strict.passed and strict.label_agreement == 0.5


def test_real_disagreement_fails_and_comes_first_in_worst_rows() -> None:
    expected = np.array([[0.9, 0.1], [0.7, 0.3], [0.6, 0.4]])
    onnx = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4001]])
    result = check_parity(["a", "a", "a"], expected, ["a", "b", "a"], onnx, ParityThresholds())
    assert not result.passed
    assert result.label_agreement == pytest.approx(2 / 3)
    assert result.worst_rows[0].row == 1
    assert (result.worst_rows[0].label_expected, result.worst_rows[0].label_onnx) == ("a", "b")
    assert result.worst_rows[1].row == 2  # then by probability difference


def test_rows_explained_by_a_neighbour_are_forgiven() -> None:
    rows = 4
    expected = np.tile([0.8, 0.2], (rows, 1))
    labels = ["a"] * rows
    onnx, onnx_labels = expected.copy(), labels.copy()
    onnx[1], onnx_labels[1] = [0.3, 0.7], "b"  # row 1 sits on a threshold: ONNX takes the other branch
    onnx[2], onnx_labels[2] = [0.1, 0.9], "b"  # row 2 is simply wrong
    up = (labels, expected)
    down_probabilities = expected.copy()
    down_probabilities[1] = [0.3, 0.7]  # the original, nudged down, agrees with ONNX on row 1 only
    down = (["a", "b", "a", "a"], down_probabilities)
    result = check_parity(labels, expected, onnx_labels, onnx, ParityThresholds(), [up, down])
    assert not result.passed
    assert result.label_agreement == 0.75  # row 2 counts, row 1 is forgiven
    assert result.max_abs_prob_diff == pytest.approx(0.7)
    assert result.tie_rows == 1
    assert [w.row for w in result.worst_rows[:2]] == [2, 1]
    onnx[2], onnx_labels[2] = expected[2], "a"
    fixed = check_parity(labels, expected, onnx_labels, onnx, ParityThresholds(), [up, down])
    assert fixed.passed and fixed.max_abs_prob_diff == 0.0 and fixed.tie_rows == 1
    assert not check_parity(labels, expected, onnx_labels, onnx, ParityThresholds()).passed  # no neighbours


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = churn_frame(n_rows=120, seed=6)
    frame = data.frame[["tenure_months", "support_calls"]]
    version = convert_sklearn(
        LogisticRegression(max_iter=500).fit(frame, data.labels),
        frame,
        name="tiny",
        repository=tmp_path_factory.mktemp("repo"),
    )
    return version.path / "manifest.json"


def test_manifest_on_disk_has_the_contract_fields(manifest_path: Path) -> None:
    raw = json.loads(manifest_path.read_text())
    assert raw["schema_version"] == 1
    assert set(raw) == {
        "schema_version", "name", "version", "created_at", "task", "source", "onnx", "features", "inputs",
        "classes", "class_dtype", "parity", "reference",
    }  # fmt: skip
    assert raw["created_at"].endswith("Z") or raw["created_at"].endswith("+00:00")
    assert set(raw["parity"]) == {
        "passed", "rows", "label_agreement", "max_abs_prob_diff", "tie_rows", "thresholds", "worst_rows", "groups",
        "seconds",
    }  # fmt: skip
    assert {g["name"] for g in raw["parity"]["groups"]} >= {"range", "float32-extremes"}
    reference = raw["reference"]
    assert set(reference) == {"rows", "features", "predictions", "sample", "expected"}
    tenure = reference["features"]["tenure_months"]
    assert tenure["kind"] == "numeric" and len(tenure["proportions"]) == len(tenure["bin_edges"]) + 1
    assert sum(reference["predictions"]["proportions"]) == pytest.approx(1.0)
    assert len(reference["expected"]["labels"]) == len(reference["sample"]["tenure_months"])
    assert raw["source"]["converter"]["skl2onnx"] and raw["source"]["converter"]["torch"] is None


def test_manifest_round_trip_and_bad_field(manifest_path: Path, tmp_path: Path) -> None:
    manifest = load_manifest(manifest_path)
    assert load_manifest(manifest_path.parent) == manifest
    raw = json.loads(manifest_path.read_text())
    raw["class_dtype"] = "float"
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="field class_dtype"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="cannot read it"):
        load_manifest(tmp_path / "missing.json")


def test_public_api_is_pinned() -> None:
    assert sorted(tritonops.converters.__all__) == sorted(
        [
            "ClassesError", "ConversionError", "ConversionOptions", "ExportError", "FeatureMismatchError",
            "FeatureNameError", "Manifest", "ManifestError", "ModelLoadError", "ModelVersion", "NotAClassifierError",
            "NotFittedError", "OnnxRuntimeError", "ParityError", "ParityThresholds", "RepositoryError",
            "UnsupportedModelError", "assign_bins", "convert_sklearn", "convert_torch", "list_models",
            "list_versions", "load_manifest",
        ]
    )  # fmt: skip
    assert all(hasattr(tritonops.converters, name) for name in tritonops.converters.__all__)
