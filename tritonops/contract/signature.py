"""What a served model expects and returns, and the canary split, as written in and read from its model config.

The converter writes ``tritonops.signature`` (``Signature.to_parameters``) and the control plane writes
``tritonops.canary`` on the live model (``CanarySplit.to_parameters``); clients read both back from
``get_model_config`` (``Signature.from_config``, ``CanarySplit.from_config``), so a client needs nothing but
Triton. One class owns both directions of each parameter, so writer and reader can't drift apart.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tritonops.contract.encoding import group_by_tensor
from tritonops.contract.errors import ModelConfigError, SignatureError
from tritonops.contract.names import LIVE_ROUTE_KEY, PARAM_CANARY, PARAM_SIGNATURE, VERSION_OUTPUT, key_position

FeatureDtype = Literal["float", "string"]
ClassDtype = Literal["string", "int64"]
_COMPACT = (",", ":")


def unwrap_config(response: Mapping[str, Any]) -> Mapping[str, Any]:
    """gRPC (``as_json``) wraps the config in ``{"config": ...}``; HTTP returns it bare."""
    inner = response.get("config")
    return inner if isinstance(inner, Mapping) else response


def config_parameters(model: str, config: Mapping[str, Any]) -> dict[str, str]:
    """The string parameters of a model config in its JSON form (either protocol's answer)."""
    raw = unwrap_config(config).get("parameters", {})
    if not isinstance(raw, Mapping):
        raise SignatureError(model, f"config 'parameters' should be a mapping, got {type(raw).__name__}")
    values: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping) and isinstance(value.get("string_value"), str):
            values[str(key)] = value["string_value"]
    return values


def _load_json(model: str, key: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SignatureError(model, f"parameter {key!r} is not valid JSON ({exc.msg}): {text[:80]!r}") from exc


@dataclass(frozen=True)
class SignatureFeature:
    """One model feature: its column name, the tensor that carries it and its column inside that tensor."""

    name: str
    tensor: str
    dtype: FeatureDtype
    column: int

    @classmethod
    def from_json(cls, model: str, index: int, raw: Any) -> SignatureFeature:
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
        return cls(name=str(raw["name"]), tensor=str(raw["tensor"]), dtype=dtype, column=column)

    def to_json(self) -> dict[str, str | int]:
        return {"name": self.name, "tensor": self.tensor, "dtype": self.dtype, "column": self.column}


@dataclass(frozen=True)
class Signature:
    """Features in model order, classes in probability-column order, and the batch limit."""

    model: str
    features: tuple[SignatureFeature, ...]
    classes: tuple[str | int, ...]
    class_dtype: ClassDtype
    max_batch_size: int
    names_version: bool = False
    """The model declares the ``served_version`` output (the server may split it with a canary)."""

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(feature.name for feature in self.features)

    def tensors(self) -> dict[str, list[SignatureFeature]]:
        """Tensor name -> its features ordered by column, in first-appearance order."""
        return group_by_tensor(self.features)

    def to_parameters(self) -> dict[str, str]:
        """The ``tritonops.signature`` parameter (compact JSON; ``max_batch_size`` is the config's own field)."""
        body = {
            "features": [feature.to_json() for feature in self.features],
            "classes": list(self.classes),
            "class_dtype": self.class_dtype,
        }
        return {PARAM_SIGNATURE: json.dumps(body, separators=_COMPACT)}

    @classmethod
    def from_config(cls, model: str, config: Mapping[str, Any]) -> Signature:
        """The signature in a model config's JSON (either protocol's answer); ``SignatureError`` if absent/bad."""
        inner = unwrap_config(config)
        max_batch_size = int(inner.get("max_batch_size", 0) or 0)
        signature = cls.from_parameters(model, config_parameters(model, config), max_batch_size)
        outputs = inner.get("output", []) or []
        if any(isinstance(o, Mapping) and o.get("name") == VERSION_OUTPUT for o in outputs):
            return cls(model, signature.features, signature.classes, signature.class_dtype, max_batch_size, True)
        return signature

    @classmethod
    def from_parameters(cls, model: str, parameters: Mapping[str, str], max_batch_size: int) -> Signature:
        """The signature from a config's string parameters and its ``max_batch_size``."""
        if PARAM_SIGNATURE not in parameters:
            raise SignatureError(
                model,
                f"config has no parameter {PARAM_SIGNATURE!r}: it was not converted by tritonops "
                f"(parameters present: {sorted(parameters)})",
            )
        raw = _load_json(model, PARAM_SIGNATURE, parameters[PARAM_SIGNATURE])
        if not isinstance(raw, Mapping):
            raise SignatureError(model, f"{PARAM_SIGNATURE} should be a JSON object, got {type(raw).__name__}")
        features_raw, classes_raw, class_dtype = raw.get("features"), raw.get("classes"), raw.get("class_dtype")
        if not isinstance(features_raw, list) or not features_raw:
            raise SignatureError(model, f"{PARAM_SIGNATURE}.features should be a non-empty list")
        if not isinstance(classes_raw, list) or not classes_raw:
            raise SignatureError(model, f"{PARAM_SIGNATURE}.classes should be a non-empty list")
        if class_dtype not in ("string", "int64"):
            raise SignatureError(
                model, f"{PARAM_SIGNATURE}.class_dtype should be 'string' or 'int64', got {class_dtype!r}"
            )
        classes = tuple(str(c) for c in classes_raw) if class_dtype == "string" else tuple(int(c) for c in classes_raw)
        features = tuple(SignatureFeature.from_json(model, i, item) for i, item in enumerate(features_raw))
        if max_batch_size < 1:
            raise SignatureError(model, f"max_batch_size should be >= 1 (contract), got {max_batch_size}")
        return cls(model, features, classes, class_dtype, max_batch_size)


@dataclass(frozen=True)
class CanarySplit:
    """The canary next to the live model: the alias it is served under, its version and its traffic share.

    The control plane writes it on the live model (``to_parameters``); the backend splits by it and SDK clients
    that route themselves read it back (``from_parameters`` / ``from_config``). A bad value is a
    ``ModelConfigError`` naming the parameter and the field.
    """

    model: str
    version: int
    weight: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ModelConfigError(f"parameter {PARAM_CANARY}: weight must lie in [0, 1], got {self.weight}")

    def to_canary(self, key: str | None, draw: float | None = None) -> bool:
        """True when this request goes to the canary: the key's position, else a uniform draw, below the weight.

        A key always lands on the same side while the weight stays the same; raising the weight only moves keys
        from live to the canary."""
        if key == LIVE_ROUTE_KEY:
            return False
        if key is not None:
            return key_position(key) < self.weight
        return (random.random() if draw is None else draw) < self.weight

    def to_parameters(self) -> dict[str, str]:
        """The ``tritonops.canary`` parameter the live model's config carries (compact JSON)."""
        body = {"model": self.model, "version": self.version, "weight": self.weight}
        return {PARAM_CANARY: json.dumps(body, separators=_COMPACT)}

    @classmethod
    def from_config(cls, model: str, config: Mapping[str, Any]) -> CanarySplit | None:
        """The split written on the live model's config JSON, or None when no canary takes traffic."""
        return cls.from_parameters(config_parameters(model, config))

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> CanarySplit | None:
        """The split in a config's string parameters, or None when there is none or its weight is 0."""
        split = cls.published(parameters)
        return None if split is None or split.weight == 0.0 else split

    @classmethod
    def published(cls, parameters: Mapping[str, str]) -> CanarySplit | None:
        """The split as written, weight 0 included (a candidate deployed without traffic); None when absent."""
        text = parameters.get(PARAM_CANARY, "").strip()
        if not text:
            return None
        expected = f"parameter {PARAM_CANARY}: expected JSON {{model, version, weight}}, got {text!r}"
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelConfigError(expected) from exc
        if not isinstance(raw, Mapping) or not {"model", "version", "weight"} <= set(raw):
            raise ModelConfigError(expected)
        version, weight = raw["version"], raw["weight"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ModelConfigError(f"parameter {PARAM_CANARY}: version must be a whole number >= 1, got {version!r}")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ModelConfigError(f"parameter {PARAM_CANARY}: weight must be a number in [0, 1], got {weight!r}")
        return cls(model=str(raw["model"]), version=version, weight=float(weight))
