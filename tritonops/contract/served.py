"""The part of ``manifest.json`` the Triton backend serves with, read with ``json`` alone.

Every model instance Triton loads starts a backend stub process, and the stub imports the backend: the pydantic
model of the manifest (``tritonops.contract.manifest``) cost each start about 0.1 s of CPU, a third of it. The
manifest was validated by that model when the converter wrote it and when the control plane read it; this reader
takes the fields serving uses (name, version, ONNX file, features, input tensors, classes, reference bins), checks
their types and how they refer to each other, and raises ``ManifestError`` naming the field otherwise.

The protocols say what serving reads; the pydantic ``Manifest`` satisfies them too, so serving code takes either
(tests/unit/test_served_manifest.py checks that both read every converted manifest alike).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from tritonops.contract.encoding import Datatype, TensorFeature
from tritonops.contract.errors import ManifestError


class NumericBins(Protocol):
    @property
    def kind(self) -> Literal["numeric"]: ...
    @property
    def bin_edges(self) -> Sequence[float]: ...
    @property
    def proportions(self) -> Sequence[float]: ...
    @property
    def nan_proportion(self) -> float: ...


class CategoricalBins(Protocol):
    @property
    def kind(self) -> Literal["categorical"]: ...
    @property
    def categories(self) -> Sequence[str]: ...
    @property
    def proportions(self) -> Sequence[float]: ...


Bins = NumericBins | CategoricalBins
"""A feature's reference bins: a manifest's ``reference.features[<name>]``."""


class FeatureSpec(TensorFeature, Protocol):
    """What serving reads of a feature: the encoder's view of it, plus its validation rules."""

    @property
    def allow_nan(self) -> bool: ...
    @property
    def categories(self) -> Sequence[str] | None: ...


class InputSpec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> Datatype: ...
    @property
    def features(self) -> Sequence[str]: ...


class OnnxSpec(Protocol):
    @property
    def file(self) -> str: ...


class ReferenceSpec(Protocol):
    @property
    def features(self) -> Mapping[str, Bins]: ...


class ServingManifest(Protocol):
    """What serving reads of a manifest (``ServedManifest`` or the pydantic ``Manifest``)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def onnx(self) -> OnnxSpec: ...
    @property
    def features(self) -> Sequence[FeatureSpec]: ...
    @property
    def inputs(self) -> Sequence[InputSpec]: ...
    @property
    def classes(self) -> Sequence[str] | Sequence[int]: ...
    @property
    def reference(self) -> ReferenceSpec: ...


@dataclass(frozen=True)
class ServedNumericBins:
    kind: Literal["numeric"]
    bin_edges: tuple[float, ...]
    proportions: tuple[float, ...]
    nan_proportion: float


@dataclass(frozen=True)
class ServedCategoricalBins:
    kind: Literal["categorical"]
    categories: tuple[str, ...]
    proportions: tuple[float, ...]


@dataclass(frozen=True)
class ServedFeature:
    name: str
    tensor: str
    dtype: str
    column: int
    allow_nan: bool
    categories: tuple[str, ...] | None


@dataclass(frozen=True)
class ServedInput:
    name: str
    datatype: Datatype
    features: tuple[str, ...]


@dataclass(frozen=True)
class ServedOnnx:
    file: str


@dataclass(frozen=True)
class ServedReference:
    features: dict[str, ServedNumericBins | ServedCategoricalBins]


@dataclass(frozen=True)
class ServedManifest:
    """The serving fields of one version's manifest."""

    name: str
    version: int
    onnx: ServedOnnx
    features: tuple[ServedFeature, ...]
    inputs: tuple[ServedInput, ...]
    classes: tuple[str, ...] | tuple[int, ...]
    reference: ServedReference


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class _Reader:
    """Typed access to the parsed JSON, with the field's path in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, expected: str, got: object) -> ManifestError:
        return ManifestError(self.source, f"field {where}: expected {expected}, got {got!r}")

    def mapping(self, raw: object, where: str) -> Mapping[str, Any]:
        if not isinstance(raw, Mapping):
            raise self.fail(where, "an object", raw)
        return raw

    def get(self, raw: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in raw:
            raise ManifestError(self.source, f"field {_at(where, key)}: missing")
        return raw[key]

    def text(self, raw: Mapping[str, Any], key: str, where: str) -> str:
        value = self.get(raw, key, where)
        if not isinstance(value, str):
            raise self.fail(_at(where, key), "a string", value)
        return value

    def whole(self, raw: Mapping[str, Any], key: str, where: str, least: int) -> int:
        value = self.get(raw, key, where)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise self.fail(_at(where, key), f"a whole number >= {least}", value)
        return value

    def flag(self, raw: Mapping[str, Any], key: str, where: str) -> bool:
        value = self.get(raw, key, where)
        if not isinstance(value, bool):
            raise self.fail(_at(where, key), "true or false", value)
        return value

    def items(self, raw: Mapping[str, Any], key: str, where: str) -> list[Any]:
        value = self.get(raw, key, where)
        if not isinstance(value, list):
            raise self.fail(_at(where, key), "a list", value)
        return value

    def texts(self, raw: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        values = self.items(raw, key, where)
        if not all(isinstance(v, str) for v in values):
            raise self.fail(_at(where, key), "a list of strings", values)
        return tuple(values)

    def numbers(self, raw: Mapping[str, Any], key: str, where: str) -> tuple[float, ...]:
        values = self.items(raw, key, where)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise self.fail(_at(where, key), "a list of numbers", values)
        return tuple(float(v) for v in values)


def _bins(read: _Reader, raw: object, where: str) -> ServedNumericBins | ServedCategoricalBins:
    entry = read.mapping(raw, where)
    kind = read.get(entry, "kind", where)
    if kind == "numeric":
        edges, proportions = read.numbers(entry, "bin_edges", where), read.numbers(entry, "proportions", where)
        nan = read.get(entry, "nan_proportion", where)
        if isinstance(nan, bool) or not isinstance(nan, int | float):
            raise read.fail(f"{where}.nan_proportion", "a number", nan)
        if len(proportions) != len(edges) + 1:
            raise read.fail(f"{where}.proportions", f"{len(edges) + 1} proportions", len(proportions))
        return ServedNumericBins("numeric", edges, proportions, float(nan))
    if kind == "categorical":
        categories, proportions = read.texts(entry, "categories", where), read.numbers(entry, "proportions", where)
        if len(proportions) != len(categories) + 1:
            raise read.fail(f"{where}.proportions", f"{len(categories) + 1} proportions", len(proportions))
        return ServedCategoricalBins("categorical", categories, proportions)
    raise read.fail(f"{where}.kind", "'numeric' or 'categorical'", kind)


def served_manifest(raw: object, source: str = "<manifest>") -> ServedManifest:
    """The serving fields of a parsed manifest document."""
    read = _Reader(source)
    top = read.mapping(raw, "<root>")
    features = []
    for index, item in enumerate(read.items(top, "features", "")):
        where = f"features.{index}"
        entry = read.mapping(item, where)
        categories = entry.get("categories")
        features.append(
            ServedFeature(
                name=read.text(entry, "name", where),
                tensor=read.text(entry, "tensor", where),
                dtype=read.text(entry, "dtype", where),
                column=read.whole(entry, "column", where, 0),
                allow_nan=read.flag(entry, "allow_nan", where),
                categories=None if categories is None else read.texts(entry, "categories", where),
            )
        )
    names = {f.name for f in features}
    inputs = []
    for index, item in enumerate(read.items(top, "inputs", "")):
        where = f"inputs.{index}"
        entry = read.mapping(item, where)
        listed = read.texts(entry, "features", where)
        unknown = [n for n in listed if n not in names]
        if unknown:
            raise read.fail(f"{where}.features", "names of listed features", unknown)
        datatype = read.text(entry, "datatype", where)
        if datatype not in ("FP32", "BYTES"):
            raise read.fail(f"{where}.datatype", "'FP32' or 'BYTES'", datatype)
        inputs.append(ServedInput(read.text(entry, "name", where), "FP32" if datatype == "FP32" else "BYTES", listed))
    classes = read.items(top, "classes", "")
    if not (all(isinstance(c, str) for c in classes) or all(type(c) is int for c in classes)):
        raise read.fail("classes", "all strings or all whole numbers", classes)
    reference = read.mapping(read.get(top, "reference", ""), "reference")
    bins = read.mapping(read.get(reference, "features", "reference"), "reference.features")
    onnx = read.mapping(read.get(top, "onnx", ""), "onnx")
    return ServedManifest(
        name=read.text(top, "name", ""),
        version=read.whole(top, "version", "", 1),
        onnx=ServedOnnx(read.text(onnx, "file", "onnx") if "file" in onnx else "model.onnx"),
        features=tuple(features),
        inputs=tuple(inputs),
        classes=tuple(classes),
        reference=ServedReference({name: _bins(read, b, f"reference.features.{name}") for name, b in bins.items()}),
    )


def load_served_manifest(path: Path | str) -> ServedManifest:
    """Read the serving fields of ``manifest.json`` (or of the version directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestError(path, f"cannot read it ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(path, f"not JSON: {exc}") from exc
    return served_manifest(raw, str(path))
