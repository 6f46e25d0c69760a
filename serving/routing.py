"""Server-side traffic split and mirror, read from the live model's config parameters.

The control plane publishes two parameters on the live model ``<model>`` (``tritonops.control_plane.fleet``):

- ``tritonops.canary`` = ``{"model": "<model>__canary", "version": v, "weight": w}``: the backend of ``<model>``
  forwards the share ``w`` of requests to the canary alias over BLS and answers the rest itself;
- ``tritonops.shadow`` = ``{"model": "<model>__shadow", "version": v, "share": s}``: a copy of the share ``s`` of
  the requests live answered is scored by the shadow alias in the background and compared, never returned.

Choice per request: random, unless the request carries a routing key (request parameter ``tritonops_route_key``,
or the header ``tritonops-route-key`` that the server forwards as a parameter). A key's hash decides, so one key
always gets the same version while the weight stays the same, and raising the weight only moves keys from live to
the canary. Pure Python, no Triton imports: the backend and unit tests use the same code.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tritonops.serving.errors import ModelConfigError

CANARY_PARAMETER = "tritonops.canary"
SHADOW_PARAMETER = "tritonops.shadow"
ROUTE_KEY_PARAMETER = "tritonops_route_key"
"""Request parameter carrying the sticky routing key."""
ROUTE_KEY_HEADER = "tritonops-route-key"
"""HTTP header / gRPC metadata with the same meaning; the server forwards it as a request parameter of this name
(``--http-header-forward-pattern`` / ``--grpc-header-forward-pattern``, set by ``tritonops.serving.triton``)."""
LIVE_ONLY_PARAMETER = "tritonops_live_only"
"""Request parameter (bool) that keeps a request on live whatever the split: the control plane's smoke check of the
live version sends it, so its answers are live's own."""
VERSION_OUTPUT = "served_version"
"""Output tensor (INT64, one per row) naming the version that scored the request; declared on fleet-loaded models."""


def key_position(key: str) -> float:
    """A stable position in [0, 1) for ``key`` (same on every host, process and Python run)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


LIVE = "\x00live"
"""``route_key``'s answer for a request pinned to live (``tritonops_live_only``)."""


def route_key(parameters_json: str) -> str | None:
    """The routing key in a request's parameters JSON (parameter first, then the forwarded header), ``LIVE`` for
    a request pinned to live, or None."""
    if "tritonops" not in parameters_json:
        return None  # the common case: no key, no JSON parsing on the hot path
    try:
        parameters = json.loads(parameters_json)
    except json.JSONDecodeError:
        return None
    if parameters.get(LIVE_ONLY_PARAMETER) is True:
        return LIVE
    for name in (ROUTE_KEY_PARAMETER, ROUTE_KEY_HEADER):
        value = parameters.get(name)
        if value is not None and value != "":
            return str(value)
    return None


@dataclass(frozen=True)
class CanaryRoute:
    """Where the canary is served and the share of requests it answers."""

    model: str
    version: int
    weight: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ModelConfigError(f"parameter {CANARY_PARAMETER}: weight must lie in [0, 1], got {self.weight}")

    def to_canary(self, key: str | None, draw: float | None = None) -> bool:
        """True when this request goes to the canary: the key's position, else a uniform draw, below the weight."""
        if key == LIVE:
            return False
        if key is not None:
            return key_position(key) < self.weight
        return (random.random() if draw is None else draw) < self.weight

    def to_parameter(self) -> str:
        return json.dumps({"model": self.model, "version": self.version, "weight": self.weight}, separators=(",", ":"))

    @classmethod
    def from_parameter(cls, text: str) -> CanaryRoute:
        raw = _mapping(CANARY_PARAMETER, text, ("model", "version", "weight"))
        return cls(
            model=str(raw["model"]),
            version=_int(CANARY_PARAMETER, raw["version"]),
            weight=_share(CANARY_PARAMETER, "weight", raw["weight"]),
        )


@dataclass(frozen=True)
class ShadowRoute:
    """Where the shadow is served and the share of answered requests mirrored to it."""

    model: str
    version: int
    share: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ModelConfigError(f"parameter {SHADOW_PARAMETER}: share must lie in [0, 1], got {self.share}")

    def mirrors(self, draw: float | None = None) -> bool:
        """True when this request is copied to the shadow."""
        return self.share >= 1.0 or (random.random() if draw is None else draw) < self.share

    def to_parameter(self) -> str:
        return json.dumps({"model": self.model, "version": self.version, "share": self.share}, separators=(",", ":"))

    @classmethod
    def from_parameter(cls, text: str) -> ShadowRoute:
        raw = _mapping(SHADOW_PARAMETER, text, ("model", "version", "share"))
        return cls(
            model=str(raw["model"]),
            version=_int(SHADOW_PARAMETER, raw["version"]),
            share=_share(SHADOW_PARAMETER, "share", raw["share"]),
        )


@dataclass(frozen=True)
class Routes:
    """The canary and shadow of one live model, as its config publishes them (None: not set, or no traffic)."""

    canary: CanaryRoute | None = None
    shadow: ShadowRoute | None = None

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> Routes:
        canary_text = params.get(CANARY_PARAMETER, "").strip()
        shadow_text = params.get(SHADOW_PARAMETER, "").strip()
        canary = CanaryRoute.from_parameter(canary_text) if canary_text else None
        shadow = ShadowRoute.from_parameter(shadow_text) if shadow_text else None
        return cls(
            canary=canary if canary is not None and canary.weight > 0.0 else None,
            shadow=shadow if shadow is not None and shadow.share > 0.0 else None,
        )


def _mapping(parameter: str, text: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelConfigError(f"parameter {parameter}: expected JSON {{{', '.join(keys)}}}, got {text!r}") from exc
    if not isinstance(raw, Mapping) or not set(keys) <= set(raw):
        raise ModelConfigError(f"parameter {parameter}: expected JSON {{{', '.join(keys)}}}, got {text!r}")
    return raw


def _int(parameter: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelConfigError(f"parameter {parameter}: version must be a whole number >= 1, got {value!r}")
    return value


def _share(parameter: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelConfigError(f"parameter {parameter}: {name} must be a number in [0, 1], got {value!r}")
    return float(value)
