"""Server-side traffic split and mirror, read from the live model's config parameters.

The control plane publishes two parameters on the live model ``<model>`` (``tritonops.control_plane.fleet``):

- ``tritonops.canary`` = ``{"model": "<model>__canary", "version": v, "weight": w}``: the backend of ``<model>``
  forwards the share ``w`` of requests to the canary alias over BLS and answers the rest itself;
- ``tritonops.shadow`` = ``{"model": "<model>__shadow", "version": v, "share": s}``: a copy of the share ``s`` of
  the requests live answered is scored by the shadow alias in the background and compared, never returned.

Choice per request: random, unless the request carries a routing key (request parameter ``tritonops_route_key``,
or the header ``tritonops-route-key`` that the server forwards as a parameter). A key's hash decides, so one key
always gets the same version while the weight stays the same, and raising the weight only moves keys from live to
the canary (``tritonops.contract.CanarySplit.to_canary``). Pure Python, no Triton imports: the backend and unit
tests use the same code. The parameter names and the canary split belong to the contract (``tritonops.contract``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tritonops.contract.errors import ModelConfigError
from tritonops.contract.names import (
    LIVE_ONLY_PARAMETER,
    LIVE_ROUTE_KEY,
    PARAM_SHADOW,
    ROUTE_KEY_HEADER,
    ROUTE_KEY_PARAMETER,
)
from tritonops.contract.signature import CanarySplit


def route_key(parameters_json: str) -> str | None:
    """The routing key in a request's parameters JSON (parameter first, then the forwarded header),
    ``LIVE_ROUTE_KEY`` for a request pinned to live, or None."""
    if "tritonops" not in parameters_json:
        return None  # the common case: no key, no JSON parsing on the hot path
    try:
        parameters = json.loads(parameters_json)
    except json.JSONDecodeError:
        return None
    if parameters.get(LIVE_ONLY_PARAMETER) is True:
        return LIVE_ROUTE_KEY
    for name in (ROUTE_KEY_PARAMETER, ROUTE_KEY_HEADER):
        value = parameters.get(name)
        if value is not None and value != "":
            return str(value)
    return None


@dataclass(frozen=True)
class ShadowRoute:
    """Where the shadow is served and the share of answered requests mirrored to it."""

    model: str
    version: int
    share: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ModelConfigError(f"parameter {PARAM_SHADOW}: share must lie in [0, 1], got {self.share}")

    def mirrors(self, draw: float | None = None) -> bool:
        """True when this request is copied to the shadow."""
        return self.share >= 1.0 or (random.random() if draw is None else draw) < self.share

    def to_parameter(self) -> str:
        return json.dumps({"model": self.model, "version": self.version, "share": self.share}, separators=(",", ":"))

    @classmethod
    def from_parameter(cls, text: str) -> ShadowRoute:
        raw = _mapping(PARAM_SHADOW, text, ("model", "version", "share"))
        return cls(
            model=str(raw["model"]),
            version=_int(PARAM_SHADOW, raw["version"]),
            share=_share(PARAM_SHADOW, "share", raw["share"]),
        )


@dataclass(frozen=True)
class Routes:
    """The canary and shadow of one live model, as its config publishes them (None: not set, or no traffic)."""

    canary: CanarySplit | None = None
    shadow: ShadowRoute | None = None

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> Routes:
        shadow_text = params.get(PARAM_SHADOW, "").strip()
        canary = CanarySplit.published(params)
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
