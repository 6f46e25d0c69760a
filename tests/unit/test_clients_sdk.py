"""Client SDK logic that needs no server: signature parsing, encoding, routing, retry classification."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tritonclient.utils import InferenceServerException

import tritonops.clients
from tritonops.clients.errors import InputError, MissingFeatureError, SignatureError
from tritonops.clients.outputs import decode_labels
from tritonops.clients.retry import RetryPolicy, is_retryable
from tritonops.clients.routing import CanaryRouter
from tritonops.contract.encoding import Rows, Tensor, encode, split_rows, to_rows
from tritonops.contract.errors import ModelConfigError
from tritonops.contract.names import key_position
from tritonops.contract.signature import CanarySplit, Signature
from tritonops.errors import ConfigurationError


def _rows(signature: Signature, data: Any) -> Rows:
    return to_rows(signature.model, signature.features, data)


def _encode(signature: Signature, rows: Rows) -> list[Tensor]:
    return encode(signature.model, signature.features, rows)


def _config(signature: dict[str, Any], canary: dict[str, Any] | None = None, grpc: bool = False) -> dict[str, Any]:
    parameters = {"tritonops.signature": {"string_value": json.dumps(signature)}}
    if canary is not None:
        parameters["tritonops.canary"] = {"string_value": json.dumps(canary)}
    config = {"name": "m", "max_batch_size": 8, "parameters": parameters}
    return {"config": config} if grpc else config


NUMERIC = {
    "features": [
        {"name": "a", "tensor": "input", "dtype": "float", "column": 0},
        {"name": "b", "tensor": "input", "dtype": "float", "column": 1},
        {"name": "c", "tensor": "input", "dtype": "float", "column": 2},
    ],
    "classes": ["no", "yes"],
    "class_dtype": "string",
}
MIXED = {
    "features": [
        {"name": "age", "tensor": "age", "dtype": "float", "column": 0},
        {"name": "plan type", "tensor": "plan_type", "dtype": "string", "column": 0},
    ],
    "classes": [0, 1, 2],
    "class_dtype": "int64",
}


@pytest.mark.parametrize("grpc", [False, True])
def test_signature_from_either_protocol(grpc: bool) -> None:
    signature = Signature.from_config("m", _config(NUMERIC, grpc=grpc))
    assert signature.feature_names == ("a", "b", "c")
    assert signature.classes == ("no", "yes")
    assert signature.max_batch_size == 8
    assert [f.name for f in signature.tensors()["input"]] == ["a", "b", "c"]


def test_missing_signature_names_the_parameter() -> None:
    with pytest.raises(SignatureError, match=r"no parameter 'tritonops.signature'.*parameters present: \[\]"):
        Signature.from_config("m", {"max_batch_size": 8, "parameters": {}})


def test_bad_feature_dtype_is_named() -> None:
    bad = {**NUMERIC, "features": [{"name": "a", "tensor": "input", "dtype": "int", "column": 0}]}
    with pytest.raises(SignatureError, match=r"feature 'a': dtype should be 'float' or 'string', got 'int'"):
        Signature.from_config("m", _config(bad))


def test_canary_split_parsed_and_zero_weight_means_none() -> None:
    split = CanarySplit.from_config("m", _config(NUMERIC, {"model": "m__canary", "version": 3, "weight": 0.25}))
    assert split == CanarySplit("m__canary", 3, 0.25)
    assert CanarySplit.from_config("m", _config(NUMERIC, {"model": "m__canary", "version": 3, "weight": 0.0})) is None
    assert CanarySplit.from_config("m", _config(NUMERIC)) is None
    # one CanarySplit for the backend and the SDK: a bad split is a model-config error naming the parameter
    with pytest.raises(ModelConfigError, match=r"parameter tritonops\.canary: weight must lie in \[0, 1\], got 1.5"):
        CanarySplit.from_config("m", _config(NUMERIC, {"model": "m__canary", "version": 3, "weight": 1.5}))


def test_shuffled_columns_are_reordered_and_extra_ignored() -> None:
    signature = Signature.from_config("m", _config(NUMERIC))
    frame = pd.DataFrame({"c": [3.0, 6.0], "extra": ["x", "y"], "a": [1, 4], "b": [2.0, 5.0]})
    (tensor,) = _encode(signature, _rows(signature, frame))
    assert tensor.name == "input" and tensor.datatype == "FP32"
    np.testing.assert_array_equal(tensor.data, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))


def test_missing_column_lists_what_is_missing() -> None:
    signature = Signature.from_config("m", _config(NUMERIC))
    with pytest.raises(MissingFeatureError, match=r"missing column\(s\) \['b'\]; expected all of \['a', 'b', 'c'\]"):
        _rows(signature, pd.DataFrame({"a": [1.0], "c": [2.0]}))


def test_array_with_wrong_width_and_non_numeric_value() -> None:
    signature = Signature.from_config("m", _config(NUMERIC))
    with pytest.raises(InputError, match=r"expected 3 columns in feature order \['a', 'b', 'c'\], got 2"):
        _rows(signature, [[1.0, 2.0]])
    with pytest.raises(InputError, match=r"feature 'b' must be numeric, got 'high' \(str\)"):
        _encode(signature, _rows(signature, pd.DataFrame({"a": [1.0], "b": ["high"], "c": [0.0]})))
    with pytest.raises(InputError, match="has no rows"):
        _rows(signature, pd.DataFrame({"a": [], "b": [], "c": []}))


def test_mixed_model_gets_one_tensor_per_feature() -> None:
    signature = Signature.from_config("m", _config(MIXED))
    tensors = _encode(signature, _rows(signature, {"plan type": "gold", "age": 31}))
    assert [(t.name, t.datatype, t.data.shape) for t in tensors] == [
        ("age", "FP32", (1, 1)),
        ("plan_type", "BYTES", (1, 1)),
    ]
    assert tensors[1].data[0, 0] == "gold"
    assert decode_labels(signature, np.array([[2], [0]], dtype=np.int64)).tolist() == [2, 0]


def test_split_rows_covers_every_row_once() -> None:
    signature = Signature.from_config("m", _config(NUMERIC))
    rows = _rows(signature, np.arange(30).reshape(10, 3))
    chunks = list(split_rows(rows, 4))
    assert [len(chunk) for chunk in chunks] == [4, 4, 2]
    assert np.concatenate([chunk.columns["b"] for chunk in chunks]).tolist() == list(range(1, 30, 3))


def test_unkeyed_routing_gives_the_exact_share() -> None:
    router, split = CanaryRouter(), CanarySplit("m__canary", 2, 0.1)
    chosen = [router.choose("m", split) for _ in range(5000)]
    assert chosen.count("m__canary") == 500
    assert router.choose("m", None) == "m"


def test_keyed_routing_is_sticky_and_close_to_the_weight() -> None:
    router, split = CanaryRouter(), CanarySplit("m__canary", 2, 0.2)
    first = [router.choose("m", split, key=f"user-{i}") for i in range(5000)]
    again = [router.choose("m", split, key=f"user-{i}") for i in range(5000)]
    assert first == again
    assert abs(first.count("m__canary") / 5000 - 0.2) < 0.02
    assert 0.0 <= key_position("anything") < 1.0


def test_retry_classification() -> None:
    assert is_retryable(InferenceServerException("down", status="StatusCode.UNAVAILABLE"))
    assert is_retryable(InferenceServerException("busy", status="503"))
    assert is_retryable(ConnectionRefusedError(111, "refused"))
    assert not is_retryable(InferenceServerException("bad", status="StatusCode.INVALID_ARGUMENT"))
    assert not is_retryable(InferenceServerException("bad", status="400"))
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=0.3)
    assert all(0.0 <= policy.backoff(n) <= min(0.3, 0.1 * 2 ** (n - 1)) for n in range(1, 8) for _ in range(20))


def test_bad_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"protocol: expected 'grpc' or 'http', got 'grcp'"):
        tritonops.clients.TritonClient("127.0.0.1:1", "m", protocol="grcp")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"ClientOptions.deadline must be > 0 seconds, got 0"):
        tritonops.clients.ClientOptions(deadline=0)
    with pytest.raises(ConfigurationError, match=r"RetryPolicy.max_attempts must be >= 1, got 0"):
        RetryPolicy(max_attempts=0)
