"""Every tree family is exact under float32: on held-out rows and on rows placed on and beside every split
threshold, ONNX Runtime gives the original's labels and probabilities within 1e-5 (iris with string labels, wine,
breast_cancer, digits and a mixed numeric + string frame); and the gate catches a conversion broken at one
threshold that the user's sample alone would pass."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from examples.tree_families import DATASETS, FAMILIES, fit
from tritonops.converters import ConversionOptions, ParityError, convert_sklearn
from tritonops.converters.convert import publish
from tritonops.converters.features import FeatureLayout
from tritonops.converters.probes import threshold_rows
from tritonops.converters.sklearn import prepare_sklearn
from tritonops.converters.trees import tree_nodes

TOLERANCE = 1e-5


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


def _onnx(model_path: Path, layout: FeatureLayout, rows: pd.DataFrame) -> tuple[list[object], np.ndarray]:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], layout.onnx_feeds(rows))
    return [v.decode() if isinstance(v, bytes) else v for v in label.reshape(-1).tolist()], probabilities


def _layout(version: object) -> FeatureLayout:
    manifest = version.manifest  # type: ignore[attr-defined]
    return FeatureLayout(tuple(manifest.features), tuple(manifest.inputs))


@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_held_out_and_threshold_rows_are_exact(family: str, dataset: str, tmp_path: Path) -> None:
    model, data = fit(dataset, family)
    version = convert_sklearn(model, data.train, name=f"{family}_{dataset}", repository=tmp_path)

    layout = _layout(version)
    parity = version.manifest.parity
    assert parity.passed
    names = {g.name for g in parity.groups}
    assert {"range", "float32-extremes"} <= names
    probes = threshold_rows(onnx.load(str(version.model_path)), layout, layout.model_frame(data.train))
    assert "thresholds" in names and probes is not None and len(probes) > 0
    groups = {"held_out": layout.model_frame(data.test)}
    if probes is not None:
        groups["thresholds"] = probes
    for group, rows in groups.items():
        expected_labels = model.predict(rows).reshape(-1).tolist()
        expected = model.predict_proba(rows)
        labels, probabilities = _onnx(version.model_path, layout, rows)
        assert labels == expected_labels, group
        np.testing.assert_allclose(probabilities, expected, atol=TOLERANCE, err_msg=group)
    assert version.manifest.classes == [c if isinstance(c, str) else int(c) for c in model.classes_.tolist()]


def _nudge_one_threshold(model: onnx.ModelProto, rows: pd.DataFrame, layout: FeatureLayout) -> None:
    """Move one split threshold up by a few float32 steps: rows exactly at it now go left, the original's right.

    The chosen threshold is one no sample row sits on or next to, so the sample alone can't see the change.
    """
    values_in_sample = {float(v) for v in np.unique(rows[layout.names].to_numpy(np.float32))}
    (node,) = tree_nodes(model)
    attributes = {a.name: a for a in node.attribute}
    values = list(attributes["nodes_values"].floats)
    modes = [m.decode() for m in attributes["nodes_modes"].strings]
    for index, mode in enumerate(modes):
        nudged = float(np.nextafter(np.float32(values[index]), np.float32(np.inf)))
        above = float(np.nextafter(np.float32(nudged), np.float32(np.inf)))
        if mode == "BRANCH_LEQ" and not {values[index], nudged, above} & values_in_sample:
            values[index] = nudged
            break
    else:
        raise AssertionError("no threshold away from the sample to break")
    node.attribute.remove(attributes["nodes_values"])
    node.attribute.append(onnx.helper.make_attribute("nodes_values", values))


def test_the_gate_catches_a_broken_threshold_the_sample_alone_passes(tmp_path: Path) -> None:
    model, data = fit("wine", "hist_gradient_boosting")
    prepared = prepare_sklearn(model, data.train)
    _nudge_one_threshold(prepared.onnx_model, prepared.layout.model_frame(data.train), prepared.layout)

    with pytest.raises(ParityError) as caught:
        publish(prepared, "broken", tmp_path, ConversionOptions())

    parity = caught.value.parity
    # the user's sample alone passes: every sample row agrees
    assert parity.label_agreement == 1.0 and parity.max_abs_prob_diff <= ConversionOptions().thresholds.max_prob_diff
    failed = [g for g in parity.groups if not g.passed]
    assert [g.name for g in failed] == ["thresholds"]
    worst = failed[0].worst_rows[0]
    assert worst.prob_diff > 1e-3 and worst.values is not None
    assert worst.probabilities_expected != worst.probabilities_onnx
    message = str(caught.value)
    assert "generated rows 'thresholds' failed" in message and "nothing was written" in message
    assert list(tmp_path.iterdir()) == []
