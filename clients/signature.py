"""What a served model expects and returns, read from its Triton model config.

The converter writes the config parameter ``tritonops.signature`` (compact JSON: features with tensor name,
dtype and column, the classes and their dtype) and the control plane writes ``tritonops.canary`` on the live
model (see docs/contracts.md). Both arrive through ``get_model_config``, so a client needs nothing but Triton.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tritonops.clients.errors import SignatureError

SIGNATURE_PARAMETER = "tritonops.signature"
CANARY_PARAMETER = "tritonops.canary"
VERSION_OUTPUT = "served_version"
CANARY_SUFFIX = "__canary"
"""Output naming the version that scored a request (declared on models the control plane loads)."""

FeatureDtype = Literal["float", "string"]
ClassDtype = Literal["string", "int64"]


@dataclass(frozen=True)
class Feature:
    """One model feature: its column name, the tensor that carries it and its column inside that tensor."""

    name: str
    tensor: str
    dtype: FeatureDtype
    column: int


@dataclass(frozen=True)
class Signature:
    """Features in model order, classes in probability-column order, and the batch limit."""

    model: str
    features: tuple[Feature, ...]
    classes: tuple[str | int, ...]
    class_dtype: ClassDtype
    max_batch_size: int
    names_version: bool = False
    """The model declares the ``served_version`` output (the server may split it with a canary)."""

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(feature.name for feature in self.features)

    def tensors(self) -> dict[str, list[Feature]]:
        """Tensor name -> its features ordered by column, in first-appearance order."""
        grouped: dict[str, list[Feature]] = {}
        for feature in self.features:
            grouped.setdefault(feature.tensor, []).append(feature)
        for members in grouped.values():
            members.sort(key=lambda feature: feature.column)
        return grouped


@dataclass(frozen=True)
class CanarySplit:
    """The canary the control plane runs next to the live model: where it is served and its traffic share."""

    model: str
    version: int
    weight: float


def _parameters(model: str, config: Mapping[str, Any]) -> dict[str, str]:
    raw = config.get("parameters", {})
    if not isinstance(raw, Mapping):
        raise SignatureError(model, f"config 'parameters' should be a mapping, got {type(raw).__name__}")
    values: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping) and isinstance(value.get("string_value"), str):
            values[str(key)] = value["string_value"]
    return values


def unwrap_config(response: Mapping[str, Any]) -> Mapping[str, Any]:
    """gRPC (``as_json``) wraps the config in ``{"config": ...}``; HTTP returns it bare."""
    inner = response.get("config")
    return inner if isinstance(inner, Mapping) else response


def _load_json(model: str, key: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SignatureError(model, f"parameter {key!r} is not valid JSON ({exc.msg}): {text[:80]!r}") from exc


def _feature(model: str, index: int, raw: Any) -> Feature:
    if not isinstance(raw, Mapping):
        raise SignatureError(model, f"signature feature #{index} should be an object, got {raw!r}")
    missing = [key for key in ("name", "tensor", "dtype", "column") if key not in raw]
    if missing:
        raise SignatureError(model, f"signature feature #{index} lacks {missing}: {dict(raw)}")
    dtype = raw["dtype"]
    if dtype not in ("float", "string"):
        raise SignatureError(
            model, f"signature feature {raw['name']!r}: dtype should be 'float' or 'string', got {dtype!r}"
        )
    column = raw["column"]
    if not isinstance(column, int) or column < 0:
        raise SignatureError(
            model, f"signature feature {raw['name']!r}: column should be an integer >= 0, got {column!r}"
        )
    return Feature(name=str(raw["name"]), tensor=str(raw["tensor"]), dtype=dtype, column=column)


def parse_signature(model: str, config: Mapping[str, Any]) -> Signature:
    """The ``Signature`` in a model config (as returned by either protocol); ``SignatureError`` if absent/bad."""
    config = unwrap_config(config)
    parameters = _parameters(model, config)
    if SIGNATURE_PARAMETER not in parameters:
        raise SignatureError(
            model,
            f"config has no parameter {SIGNATURE_PARAMETER!r}: it was not converted by tritonops "
            f"(parameters present: {sorted(parameters)})",
        )
    raw = _load_json(model, SIGNATURE_PARAMETER, parameters[SIGNATURE_PARAMETER])
    if not isinstance(raw, Mapping):
        raise SignatureError(model, f"{SIGNATURE_PARAMETER} should be a JSON object, got {type(raw).__name__}")
    features_raw, classes_raw, class_dtype = raw.get("features"), raw.get("classes"), raw.get("class_dtype")
    if not isinstance(features_raw, list) or not features_raw:
        raise SignatureError(model, f"{SIGNATURE_PARAMETER}.features should be a non-empty list")
    if not isinstance(classes_raw, list) or not classes_raw:
        raise SignatureError(model, f"{SIGNATURE_PARAMETER}.classes should be a non-empty list")
    if class_dtype not in ("string", "int64"):
        raise SignatureError(
            model, f"{SIGNATURE_PARAMETER}.class_dtype should be 'string' or 'int64', got {class_dtype!r}"
        )
    classes = tuple(str(c) for c in classes_raw) if class_dtype == "string" else tuple(int(c) for c in classes_raw)
    features = tuple(_feature(model, i, item) for i, item in enumerate(features_raw))
    max_batch_size = int(config.get("max_batch_size", 0) or 0)
    if max_batch_size < 1:
        raise SignatureError(model, f"max_batch_size should be >= 1 (contract), got {max_batch_size}")
    names_version = any(output.get("name") == VERSION_OUTPUT for output in config.get("output", []) or [])
    return Signature(model, features, classes, class_dtype, max_batch_size, names_version)


def parse_canary(model: str, config: Mapping[str, Any]) -> CanarySplit | None:
    """The canary split written on the live model's config, or None when no canary takes traffic."""
    parameters = _parameters(model, unwrap_config(config))
    text = parameters.get(CANARY_PARAMETER, "").strip()
    if not text:
        return None
    raw = _load_json(model, CANARY_PARAMETER, text)
    if not isinstance(raw, Mapping) or not {"model", "version", "weight"} <= set(raw):
        raise SignatureError(model, f"{CANARY_PARAMETER} should be {{model, version, weight}}, got {text!r}")
    weight = float(raw["weight"])
    if not 0.0 <= weight <= 1.0:
        raise SignatureError(model, f"{CANARY_PARAMETER}.weight should lie in [0, 1], got {weight}")
    if weight == 0.0:
        return None
    return CanarySplit(model=str(raw["model"]), version=int(raw["version"]), weight=weight)
