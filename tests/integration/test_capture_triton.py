"""Row capture on the real tritonserver under concurrent load: the rows exported from Parquet are exactly the rows
sent (by request id), the listed columns are dropped or hashed, and the sampled share is the configured one."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as httpclient

from examples.data import CHURN_CATEGORICAL, CHURN_NUMERIC
from examples.train import train_mixed_pipeline
from tritonops.contract.names import PARAM_CAPTURE
from tritonops.control_plane.capture import FEATURE_PREFIX, compact, export
from tritonops.control_plane.feedback import FeedbackStore
from tritonops.converters import ConversionOptions, ModelVersion, convert_sklearn
from tritonops.model_config import ServingOptions, read_pbtxt, to_json, with_specific_versions
from tritonops.serving.capture import OPEN_SUFFIX, CaptureSpec, hash_value
from tritonops.serving.triton import TritonServer

pytestmark = pytest.mark.integration

ALIAS = "cap_churn"
REQUESTS = 2000
SHARE = 0.1


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@pytest.fixture(scope="module")
def churn(triton_repository: Path) -> tuple[ModelVersion, pd.DataFrame]:
    trained = train_mixed_pipeline(n_rows=300, seed=4)
    options = ConversionOptions(serving=ServingOptions(drift_flush_seconds=0.1), parity_rows=200, native_export=False)
    version = convert_sklearn(trained.model, trained.frame, name="cap_churn_src", repository=triton_repository,
                              options=options)  # fmt: skip
    return version, trained.frame


@pytest.fixture(scope="module")
def captured(
    triton_server: TritonServer, churn: tuple[ModelVersion, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, dict[str, object]], Path]]:
    """2,000 single-row requests with ids over HTTP, 8 at a time, to a model capturing 10%; then the spool."""
    version, frame = churn
    spool = tmp_path_factory.mktemp("capture_spool")
    spec = CaptureSpec(share=SHARE, directory=spool, drop=("data_gb",), hash=("payment_method",))
    config = read_pbtxt(version.config_path)
    config.name = ALIAS
    config.parameters[PARAM_CAPTURE].string_value = spec.to_parameter()
    files = {
        f"file:{version.version}/{name}": (version.path / name).read_bytes()
        for name in ("model.onnx", "manifest.json", "labels.txt")
    }
    admin = httpclient.InferenceServerClient(triton_server.http_url)
    admin.load_model(ALIAS, config=to_json(with_specific_versions(config, [version.version])), files=files)
    rows = frame.sample(REQUESTS, replace=True, random_state=3).reset_index(drop=True)
    rows.loc[rows.index % 97 == 0, "tenure_months"] = np.nan  # NaN travels too (the imputer takes it)
    sent: dict[str, dict[str, object]] = {}

    def send(start: int) -> int:
        client = httpclient.InferenceServerClient(triton_server.http_url)
        try:
            for i in range(start, REQUESTS, 8):
                row = rows.iloc[[i]]
                inputs = []
                for spec_input in version.manifest.inputs:
                    block = row[spec_input.features]
                    if spec_input.datatype == "FP32":
                        array = block.to_numpy(dtype=np.float32)
                    else:
                        array = block.astype(str).to_numpy(dtype=object)
                    tensor = httpclient.InferInput(spec_input.name, list(array.shape), spec_input.datatype)
                    tensor.set_data_from_numpy(array, binary_data=True)
                    inputs.append(tensor)
                result = client.infer(ALIAS, inputs, request_id=f"cap-{i}")
                sent[f"cap-{i}"] = {
                    **{c: float(np.float32(row[c].iloc[0])) for c in CHURN_NUMERIC},
                    **{c: str(row[c].iloc[0]) for c in CHURN_CATEGORICAL},
                    "label": _text(result.as_numpy("label").reshape(-1)[0]),
                }
            return 0
        finally:
            client.close()

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(send, range(8))) == 0
    admin.unload_model(ALIAS)  # finalize closes the open spool file
    yield sent, spool
    admin.close()


def test_exported_rows_are_the_rows_sent_with_columns_dropped_and_hashed(
    captured: tuple[dict[str, dict[str, object]], Path], churn: tuple[ModelVersion, pd.DataFrame], tmp_path: Path
) -> None:
    sent, spool = captured
    assert len(sent) == REQUESTS
    deadline = time.monotonic() + 30
    while list(spool.rglob(f"*{OPEN_SUFFIX}")) and time.monotonic() < deadline:  # the unload finishes asynchronously
        time.sleep(0.2)
    report = compact(spool, tmp_path / "rows", max_bytes=10**9)
    labelled = sorted(sent)[::2]  # ground truth arrives for every other request
    with FeedbackStore(tmp_path / "state.db") as feedback:
        for request_id in labelled:
            feedback.record_prediction(request_id, churn[0].name, churn[0].version, sent[request_id]["label"])
            feedback.record_feedback(request_id, "churn")
        rows = export(tmp_path / "rows", churn[0].name, labels=feedback.true_labels)
    table = rows.to_pandas()  # rows carry the manifest's model name, as the metrics do
    assert report.rows > 0 and len(table) == table["request_id"].nunique()
    # binomial(2000, 0.1): mean 200, sd 13.4; +-5 sd
    assert abs(len(table) - REQUESTS * SHARE) < 5 * math.sqrt(REQUESTS * SHARE * (1 - SHARE)), len(table)
    assert FEATURE_PREFIX + "data_gb" not in table.columns  # dropped before it was written
    table = table.astype({"true_label": object}).where(table.notna(), None)
    for record in table.to_dict("records"):
        original = sent[record["request_id"]]
        for column in CHURN_NUMERIC:
            if column == "data_gb":
                continue
            value = record[FEATURE_PREFIX + column]
            if math.isnan(float(original[column])):  # type: ignore[arg-type]
                assert value is None or (isinstance(value, float) and math.isnan(value))
            else:
                assert value == original[column], (record["request_id"], column)
        assert record[FEATURE_PREFIX + "payment_method"] == hash_value(original["payment_method"])
        assert record[FEATURE_PREFIX + "contract"] == original["contract"]
        assert record["label"] == original["label"]
        assert len(record["probabilities"]) == 2 and record["version"] == churn[0].version
        assert record["true_label"] == ("churn" if record["request_id"] in labelled else None)
