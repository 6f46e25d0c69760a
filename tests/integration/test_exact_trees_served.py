"""The served tree models are exact too: every tree family (datasets rotated so each of iris with string labels,
wine, breast_cancer, digits and the mixed frame is served), plus XGBoost and CatBoost binary / multi-class / string
labels inside pipelines, loaded on the real Triton; held-out rows and threshold rows over HTTP and gRPC give the
original's labels and probabilities within 1e-5. ``tests/unit/test_converters_exact_trees.py`` runs the full
family x dataset matrix through ONNX Runtime."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits

from examples.tree_families import fit
from tritonops.converters import ConversionOptions, convert_sklearn
from tritonops.converters.features import FeatureLayout
from tritonops.converters.probes import threshold_rows
from tritonops.converters.repository import publish_live
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import TritonServer

pytestmark = pytest.mark.integration
TOLERANCE = 1e-5
CHUNK = 512
SERVED = [
    ("decision_tree", "iris"),
    ("random_forest", "wine"),
    ("extra_trees", "breast_cancer"),
    ("gradient_boosting", "digits"),
    ("hist_gradient_boosting", "mixed"),
    ("lightgbm", "iris"),
    ("xgboost", "mixed"),  # binary, inside a ColumnTransformer pipeline
    ("xgboost", "wine"),  # multi-class
    ("catboost", "mixed"),  # binary string labels, inside a pipeline
    ("catboost", "iris"),  # multi-class string labels
]


@dataclass(frozen=True)
class Case:
    name: str
    model: BaseEstimator
    layout: FeatureLayout
    rows: dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def cases(triton_server: TritonServer, triton_repository: Path) -> Iterator[list[Case]]:
    options = ConversionOptions(
        serving=ServingOptions(instance_count=1, max_batch_size=CHUNK), parity_rows=300, native_export=False
    )
    built = []
    with threadpool_limits(1):
        for family, dataset in SERVED:
            model, data = fit(dataset, family)
            name = f"exact_{family}_{dataset}"
            version = convert_sklearn(model, data.train, name=name, repository=triton_repository, options=options)
            layout = FeatureLayout(tuple(version.manifest.features), tuple(version.manifest.inputs))
            probes = threshold_rows(onnx.load(str(version.model_path)), layout, layout.model_frame(data.train))
            assert probes is not None and len(probes) > 0
            rows = {"held_out": layout.model_frame(data.test), "thresholds": probes}
            built.append(Case(name, model, layout, rows))
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    for case in built:
        publish_live(triton_repository, case.name, 1)  # loaded from disk, as after a promote
        client.load_model(case.name)
    yield built
    for case in built:
        client.unload_model(case.name)


def _inputs(module: object, layout: FeatureLayout, rows: pd.DataFrame) -> list[object]:
    inputs = []
    for name, array in layout.onnx_feeds(rows).items():
        datatype = "BYTES" if array.dtype == object else "FP32"
        tensor = module.InferInput(name, list(array.shape), datatype)  # type: ignore[attr-defined]
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _served(client: object, case: Case, rows: pd.DataFrame) -> tuple[list[object], np.ndarray]:
    module = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    labels: list[object] = []
    probabilities = []
    for start in range(0, len(rows), CHUNK):
        part = rows.iloc[start : start + CHUNK].reset_index(drop=True)
        result = client.infer(case.name, _inputs(module, case.layout, part))  # type: ignore[attr-defined]
        labels += [v.decode() if isinstance(v, bytes) else int(v) for v in result.as_numpy("label").reshape(-1)]
        probabilities.append(result.as_numpy("probabilities"))
    return labels, np.concatenate(probabilities)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_trees_match_the_original_on_held_out_and_threshold_rows(
    cases: list[Case], triton_server: TritonServer, protocol: str
) -> None:
    client: object = (
        grpcclient.InferenceServerClient(triton_server.grpc_url)
        if protocol == "grpc"
        else httpclient.InferenceServerClient(triton_server.http_url)
    )
    for case in cases:
        for group, rows in case.rows.items():
            with threadpool_limits(1):
                expected_labels = [
                    v if isinstance(v, str) else int(v) for v in np.asarray(case.model.predict(rows)).reshape(-1)
                ]
                expected = case.model.predict_proba(rows)
            labels, probabilities = _served(client, case, rows)
            assert labels == expected_labels, (case.name, group)
            np.testing.assert_allclose(probabilities, expected, atol=TOLERANCE, err_msg=f"{case.name} {group}")
