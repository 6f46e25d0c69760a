"""Backend logic in process: request validation, batch scoring, drift counters and backend options.

Manifests and ONNX files come from the real converter (small models), so the rules are the ones served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, helper
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import tritonops.serving.drift_counters as drift_counters
from examples.train import train_mixed_pipeline
from tritonops.contract.bins import assign_bins
from tritonops.converters import ConversionOptions, ModelVersion, convert_sklearn
from tritonops.serving.backend_options import BackendOptions
from tritonops.serving.drift_counters import DriftCounters
from tritonops.serving.errors import ModelConfigError, ServingError
from tritonops.serving.scoring import (
    ModelOutputs,
    ModelRunError,
    OnnxRunner,
    execution_providers,
    score,
    session_threads,
)
from tritonops.serving.validation import Batch, InputSchema, InvalidRequestError

PLANS = ["basic", "pro"]
OPTIONS = ConversionOptions(parity_rows=200, native_export=False)


@dataclass(frozen=True)
class Converted:
    version: ModelVersion
    schema: InputSchema

    def runner(self) -> OnnxRunner:
        return OnnxRunner(self.version.model_path, ["CPUExecutionProvider"], threads=1)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("validation_repo")


@pytest.fixture(scope="module")
def numeric(repository: Path) -> Converted:
    """One FP32 ``input`` tensor of 4 columns, integer classes, no NaN allowed."""
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    model = LogisticRegression(max_iter=300).fit(x, y)
    version = convert_sklearn(model, x, name="numeric", repository=repository, options=OPTIONS)
    return Converted(version, InputSchema.from_manifest(version.manifest))


@pytest.fixture(scope="module")
def churn(repository: Path) -> Converted:
    """Per-feature tensors; numbers are imputed (NaN allowed), strings one-hot with unknowns ignored."""
    trained = train_mixed_pipeline(n_rows=200)
    version = convert_sklearn(trained.model, trained.frame, name="churn", repository=repository, options=OPTIONS)
    return Converted(version, InputSchema.from_manifest(version.manifest))


@pytest.fixture(scope="module")
def strict(repository: Path) -> Converted:
    """``plan`` goes through a one-hot encoder that refuses unknown categories."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"amount": rng.normal(50, 10, 200), "plan": rng.choice(PLANS, 200)})
    labels = np.where(frame["plan"] == "pro", "keep", "drop")
    encode = ColumnTransformer(
        [("num", StandardScaler(), ["amount"]), ("cat", OneHotEncoder(handle_unknown="error"), ["plan"])]
    )
    model = Pipeline([("encode", encode), ("classify", LogisticRegression())]).fit(frame, labels)
    version = convert_sklearn(model, frame, name="strict", repository=repository, options=OPTIONS)
    return Converted(version, InputSchema.from_manifest(version.manifest))


def _fp32(rows: list[list[float]]) -> npt.NDArray[np.float32]:
    return np.asarray(rows, dtype=np.float32)


def _bytes(rows: list[list[object]]) -> npt.NDArray[np.object_]:
    return np.asarray(rows, dtype=object)


def _churn_request(churn: Converted, rows: int = 2) -> dict[str, npt.NDArray[np.generic]]:
    request: dict[str, npt.NDArray[np.generic]] = {}
    for rule in churn.schema.rules:
        if rule.datatype == "FP32":
            request[rule.name] = np.full((rows, 1), 3.0, dtype=np.float32)
        else:
            category = churn.version.manifest.reference.features[rule.features[0]].categories[0]  # type: ignore[union-attr]
            request[rule.name] = np.full((rows, 1), category.encode(), dtype=object)
    return request


# -- schema ------------------------------------------------------------------------------------------------
def test_schema_follows_the_manifest(numeric: Converted, churn: Converted, strict: Converted) -> None:
    (rule,) = numeric.schema.rules
    assert (rule.name, rule.datatype, rule.width, rule.nan_forbidden) == ("input", "FP32", 4, (0, 1, 2, 3))
    assert [r.name for r in churn.schema.rules] == [i.name for i in churn.version.manifest.inputs]
    numbers = [r for r in churn.schema.rules if r.datatype == "FP32"]
    strings = [r for r in churn.schema.rules if r.datatype == "BYTES"]
    assert len(numbers) == 4 and all(r.nan_forbidden == () for r in numbers)
    assert len(strings) == 3 and all(r.categories == (None,) for r in strings)
    plan = next(r for r in strict.schema.rules if r.name == "plan")
    assert plan.categories == (frozenset(PLANS),)


def test_valid_requests_come_back_ready_for_onnxruntime(numeric: Converted, churn: Converted) -> None:
    checked = numeric.schema.validate({"input": _fp32([[1, 2, 3, 4]])})
    assert checked["input"].dtype == np.float32 and checked["input"].tolist() == [[1, 2, 3, 4]]
    request = _churn_request(churn)
    first_number = churn.schema.rules[0].name
    request[first_number][0, 0] = np.nan  # imputed by the model: allowed
    batch = churn.schema.validate(request)
    strings = [r.name for r in churn.schema.rules if r.datatype == "BYTES"]
    assert all(isinstance(v, str) for name in strings for v in batch[name].ravel())  # bytes decoded
    assert np.isnan(batch[first_number][0, 0])


@pytest.mark.parametrize(
    ("tensor", "reason", "fragment"),
    [
        (np.ones((1, 4), dtype=np.float64), "dtype", "expected FP32 (float32), got float64"),
        (np.ones(4, dtype=np.float32), "shape", "expected shape [batch, 4], got [4]"),
        (np.ones((0, 4), dtype=np.float32), "empty", "no rows"),
        (np.ones((1, 3), dtype=np.float32), "feature_count", "expected 4 feature column(s)"),
        (_fp32([[1, 2, 3, 4], [1, 2, float("nan"), 4]]), "nan", "is NaN at row 1"),
        (_fp32([[1, float("-inf"), 3, 4]]), "nan", "is infinite at row 0"),
    ],
)
def test_each_bad_input_names_itself_and_its_reason(
    numeric: Converted, tensor: npt.NDArray[np.generic], reason: str, fragment: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        numeric.schema.validate({"input": tensor})
    assert caught.value.reason == reason and caught.value.input_name == "input"
    assert fragment in caught.value.message and caught.value.message.startswith("input 'input': ")


def test_nan_message_names_the_feature(numeric: Converted) -> None:
    with pytest.raises(InvalidRequestError, match=r"feature '.+' is NaN at row 0"):
        numeric.schema.validate({"input": _fp32([[1, 2, float("nan"), 4]])})
    third = numeric.version.manifest.features[2].name
    with pytest.raises(InvalidRequestError, match=f"feature '{third}'"):
        numeric.schema.validate({"input": _fp32([[1, 2, float("nan"), 4]])})


def test_missing_input_and_row_mismatch(churn: Converted) -> None:
    request = _churn_request(churn)
    missing = churn.schema.rules[-1].name
    del request[missing]
    with pytest.raises(InvalidRequestError, match=f"input '{missing}': missing") as caught:
        churn.schema.validate(request)
    assert caught.value.reason == "other"
    request = _churn_request(churn)
    last = churn.schema.rules[-1].name
    request[last] = request[last][:1]
    with pytest.raises(InvalidRequestError, match="has 1 rows but the other inputs have 2") as caught:
        churn.schema.validate(request)
    assert caught.value.reason == "shape"


def test_strings_must_be_text(churn: Converted) -> None:
    name = next(r.name for r in churn.schema.rules if r.datatype == "BYTES")
    request = _churn_request(churn)
    request[name] = _bytes([[b"\xff\xfe"], [b"ok"]])
    with pytest.raises(InvalidRequestError, match="not valid UTF-8") as caught:
        churn.schema.validate(request)
    assert caught.value.reason == "dtype"
    request[name] = _bytes([[7], [b"ok"]])
    with pytest.raises(InvalidRequestError, match="expected a string, got int"):
        churn.schema.validate(request)
    request[name] = np.ones((2, 1), dtype=np.float32)
    with pytest.raises(InvalidRequestError, match="expected BYTES"):
        churn.schema.validate(request)


def test_unknown_category_only_where_the_model_refuses_it(strict: Converted, churn: Converted) -> None:
    request = {"amount": _fp32([[50.0], [40.0]]), "plan": _bytes([[b"pro"], [b"platinum"]])}
    with pytest.raises(InvalidRequestError, match="unknown category 'platinum' at row 1") as caught:
        strict.schema.validate(request)
    assert caught.value.reason == "unknown_category" and caught.value.input_name == "plan"
    request = _churn_request(churn)
    name = next(r.name for r in churn.schema.rules if r.datatype == "BYTES")
    request[name] = _bytes([[b"never-seen"], [b"also-new"]])
    assert churn.schema.validate(request)[name].tolist() == [["never-seen"], ["also-new"]]


# -- scoring -----------------------------------------------------------------------------------------------
def test_score_runs_the_good_requests_once_and_splits_their_rows(numeric: Converted) -> None:
    runner = numeric.runner()
    calls: list[int] = []

    def counting(batch: Batch) -> ModelOutputs:
        calls.append(batch["input"].shape[0])
        return runner(batch)

    rng = np.random.default_rng(3)
    good = [rng.normal(size=(n, 4)).astype(np.float32) for n in (2, 1, 3)]
    bad = _fp32([[1, 2, 3, float("nan")]])
    scored = score(
        numeric.schema, counting, [{"input": good[0]}, {"input": bad}, {"input": good[1]}, {"input": good[2]}]
    )
    assert calls == [6]
    assert [type(r).__name__ for r in scored.results] == [
        "ModelOutputs",
        "InvalidRequestError",
        "ModelOutputs",
        "ModelOutputs",
    ]
    for result, rows in zip([scored.results[0], scored.results[2], scored.results[3]], good, strict=True):
        assert isinstance(result, ModelOutputs)
        alone = runner({"input": rows})
        assert result.label.tolist() == alone.label.tolist() and result.label.shape == (rows.shape[0], 1)
        np.testing.assert_allclose(result.probabilities, alone.probabilities, atol=1e-6)
    assert scored.inputs["input"].shape == (6, 4)


def test_score_with_only_bad_requests_never_runs_the_model(numeric: Converted) -> None:
    def never(batch: Batch) -> ModelOutputs:
        raise AssertionError("the model must not run")

    scored = score(numeric.schema, never, [{"input": np.ones((1, 3), np.float32)}, {"input": None}])
    assert scored.outputs is None and scored.inputs == {}
    assert [r.reason for r in scored.results if isinstance(r, InvalidRequestError)] == ["feature_count", "other"]


def test_a_failing_model_fails_only_the_valid_requests(numeric: Converted) -> None:
    def broken(batch: Batch) -> ModelOutputs:
        raise RuntimeError("CUDA out of memory")

    good, bad = np.ones((2, 4), np.float32), np.ones((1, 5), np.float32)
    scored = score(numeric.schema, broken, [{"input": good}, {"input": bad}, {"input": good}])
    failed, refused, failed_too = scored.results
    assert isinstance(failed, ModelRunError) and failed is failed_too
    assert failed.message == "the model failed on a batch of 2 request(s): CUDA out of memory"
    assert isinstance(refused, InvalidRequestError) and refused.reason == "feature_count"
    assert scored.outputs is None


def test_runner_refuses_broken_files_and_foreign_outputs(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not onnx")
    with pytest.raises(ServingError, match="ONNX Runtime cannot load"):
        OnnxRunner(garbage, ["CPUExecutionProvider"], threads=1)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["scores"])],
        "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 2])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), foreign)
    with pytest.raises(ServingError, match="expected ONNX outputs 'label' and 'probabilities', got \\['scores'\\]"):
        OnnxRunner(foreign, ["CPUExecutionProvider"], threads=1)


def test_threads_share_the_cores_between_instances() -> None:
    assert session_threads(1, cpus=2) == 2
    assert session_threads(2, cpus=2) == 1
    assert session_threads(4, cpus=2) == 1
    assert session_threads(2, cpus=16) == 8


def test_providers_follow_the_instance_kind() -> None:
    assert execution_providers("CPU", 0, tensorrt=False) == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider" not in ort.get_available_providers()  # the CPU wheel of this environment
    with pytest.raises(ServingError, match=r"instance kind GPU needs ONNX Runtime providers.*onnxruntime-gpu"):
        execution_providers("GPU", 0, tensorrt=True)


# -- drift counters ------------------------------------------------------------------------------------------
def _scored_churn(churn: Converted, rows: int, seed: int) -> tuple[Batch, npt.NDArray[np.generic]]:
    rng = np.random.default_rng(seed)
    request = _churn_request(churn, rows)
    for rule in churn.schema.rules:
        if rule.datatype == "FP32":
            request[rule.name] = rng.normal(20, 15, (rows, 1)).astype(np.float32)
            request[rule.name][rng.random(rows) < 0.2] = np.nan
        else:
            known = churn.version.manifest.reference.features[rule.features[0]].categories  # type: ignore[union-attr]
            request[rule.name] = rng.choice([*known, "unseen"], (rows, 1)).astype(object)
    scored = score(churn.schema, churn.runner(), [request])
    assert scored.outputs is not None
    return scored.inputs, scored.outputs.label


def test_counters_equal_assign_bins_over_everything_counted(churn: Converted) -> None:
    counters = DriftCounters(churn.version.manifest)
    batches = [_scored_churn(churn, rows, seed) for rows, seed in ((30, 1), (17, 2))]
    for inputs, labels in batches:
        counters.count_batch(inputs, labels, seconds=0.002)
    counters.count_invalid("nan")
    counters.count_invalid("nan")
    counters.count_invalid("unknown_category")
    snapshot = counters.take()
    manifest = churn.version.manifest
    assert snapshot.rows == 47 and snapshot.durations == [0.002, 0.002]
    assert snapshot.invalid["nan"] == 2 and snapshot.invalid["unknown_category"] == 1 and snapshot.invalid["shape"] == 0
    for feature in manifest.features:
        values = np.concatenate([inputs[feature.tensor][:, feature.column] for inputs, _ in batches])
        expected = np.bincount(assign_bins(manifest.reference.features[feature.name], values))
        got = snapshot.feature_bins[feature.name]
        assert got.tolist() == np.pad(expected, (0, len(got) - len(expected))).tolist(), feature.name
        assert got.sum() == 47
    labels = [str(v) for _, batch_labels in batches for v in batch_labels.ravel()]
    assert snapshot.predictions.tolist() == [labels.count(str(c)) for c in manifest.classes]
    empty = counters.take()
    assert empty.rows == 0 and not any(empty.invalid.values()) and empty.predictions.sum() == 0


def test_counters_bin_early_when_too_many_rows_wait(churn: Converted, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = [_scored_churn(churn, rows, seed) for rows, seed in ((5, 3), (6, 4), (7, 5))]
    lazy, eager = DriftCounters(churn.version.manifest), DriftCounters(churn.version.manifest)
    for inputs, labels in batches:
        lazy.count_batch(inputs, labels)
    monkeypatch.setattr(drift_counters, "MAX_PENDING_ROWS", 4)
    for inputs, labels in batches:
        eager.count_batch(inputs, labels)
    assert eager._pending == []  # every batch was binned on arrival
    one, other = lazy.take(), eager.take()
    assert one.rows == other.rows == 18
    assert {k: v.tolist() for k, v in one.feature_bins.items()} == {
        k: v.tolist() for k, v in other.feature_bins.items()
    }
    assert one.predictions.tolist() == other.predictions.tolist()


# -- backend options -----------------------------------------------------------------------------------------
def _config(**parameters: str) -> dict[str, object]:
    return {
        "parameters": {key: {"string_value": value} for key, value in parameters.items()},
        "instance_group": [{"count": 2, "kind": "KIND_CPU"}, {"count": 1, "kind": "KIND_CPU"}],
    }


def test_options_from_model_config() -> None:
    defaults = BackendOptions.from_model_config({})
    assert defaults == BackendOptions(
        drift_flush_seconds=1.0, drift_counters=True, runner="onnxruntime", instance_count=1
    )
    options = BackendOptions.from_model_config(
        _config(
            **{
                "tritonops.drift_flush_seconds": "0.25",
                "tritonops.drift_counters": "False",
                "tritonops.runner": "bls:churn__onnxruntime",
                "tritonops.tensorrt": "true",
                "tritonops.response_cache_entries": "512",
            }
        )
    )
    assert options.drift_flush_seconds == 0.25 and options.drift_counters is False and options.tensorrt is True
    assert options.response_cache_entries == 512 and defaults.response_cache_entries == 0
    assert options.bls_target == "churn__onnxruntime" and options.instance_count == 3
    assert defaults.bls_target is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tritonops.drift_flush_seconds", "0", "expected a number of seconds > 0, got '0'"),
        ("tritonops.drift_flush_seconds", "soon", "expected a number of seconds > 0, got 'soon'"),
        ("tritonops.drift_flush_seconds", "nan", "expected a number of seconds > 0, got 'nan'"),
        ("tritonops.drift_counters", "yes", "expected 'true' or 'false', got 'yes'"),
        ("tritonops.runner", "bls:", "expected 'onnxruntime' or 'bls:<model name>', got 'bls:'"),
        ("tritonops.runner", "tensorflow", "got 'tensorflow'"),
        ("tritonops.response_cache_entries", "-1", "expected a whole number >= 0, got '-1'"),
        ("tritonops.response_cache_entries", "4k", "expected a whole number >= 0, got '4k'"),
    ],
)
def test_bad_options_name_the_parameter(key: str, value: str, message: str) -> None:
    with pytest.raises(ModelConfigError, match=re.escape(f"parameter {key}: ") + ".*" + re.escape(message)):
        BackendOptions.from_model_config(_config(**{key: value}))
