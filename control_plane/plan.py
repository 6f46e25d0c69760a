"""Reconcile's pure half: desired state + one observation of an endpoint -> the typed steps that close the gap.

No I/O here. ``tritonops.control_plane.fleet.execute`` carries the steps out; ``differences`` says in words how
the observation differs from the desired state (what ``status`` and ``reconcile --dry-run`` print).

Order keeps clients safe: the canary alias is loaded before the live config points at it, and unloaded last,
after a drain when the live config used to send traffic to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from tritonops.contract.errors import ModelConfigError
from tritonops.contract.names import PARAM_CANARY, PARAM_CAPTURE, PARAM_SHADOW, canary_alias
from tritonops.contract.signature import CanarySplit
from tritonops.control_plane.desired import Desired


@dataclass(frozen=True)
class ModelObservation:
    """What one endpoint serves for one model, read once."""

    model: str
    config: mc.ModelConfig | None
    """The config ``<model>`` is loaded with; None when it is not loaded."""
    ready: tuple[int, ...]
    """Versions of ``<model>`` that are ready."""
    canary_ready: tuple[int, ...]
    """Versions of ``<model>__canary`` that are ready."""


@dataclass(frozen=True)
class LoadCanary:
    """Load the candidate's bytes as ``<model>__canary`` and warm it up."""

    model: str
    version: int

    def describe(self) -> str:
        return f"loaded {canary_alias(self.model)} version {self.version} (warmed up)"


@dataclass(frozen=True)
class LoadLive:
    """Load ``<model>`` with ``config`` (specific [version], the split); warm up a version that was not serving.

    A version already ready that only gets a new config (a canary split set or changed) is not smoke-checked
    again: with a split, the backend would send part of the check to the canary.
    """

    model: str
    version: int
    config: mc.ModelConfig
    warm_up: bool = True

    def describe(self) -> str:
        if self.warm_up:
            return f"loaded {self.model} version {self.version} (warmed up)"
        return f"reloaded {self.model} version {self.version} with its new config"


@dataclass(frozen=True)
class Unload:
    """Unload ``name``; with ``drain``, first wait for SDK clients to stop routing to it."""

    name: str
    drain: bool = False

    def describe(self) -> str:
        return f"unloaded {self.name}"


Step = LoadCanary | LoadLive | Unload


def canary_weight(config: mc.ModelConfig) -> float:
    """The weight published in a loaded config's ``tritonops.canary`` parameter (0 when there is none)."""
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    try:
        split = CanarySplit.published(parameters)
    except ModelConfigError:  # a split we did not write: no traffic, reconcile rewrites it
        return 0.0
    return 0.0 if split is None else split.weight


def _parameter(config: mc.ModelConfig, name: str) -> str | None:
    return config.parameters[name].string_value if name in config.parameters else None


def _differs(loaded: mc.ModelConfig, wanted: mc.ModelConfig) -> bool:
    if list(loaded.version_policy.specific.versions) != list(wanted.version_policy.specific.versions):
        return True
    if {o.name for o in wanted.output} - {o.name for o in loaded.output}:
        return True
    have = dict(loaded.parameters)
    return any(key not in have or have[key] != value for key, value in wanted.parameters.items()) or any(
        key in have and key not in wanted.parameters for key in (PARAM_CANARY, PARAM_SHADOW, PARAM_CAPTURE)
    )


def plan(desired: Desired, observed: ModelObservation) -> list[Step]:
    """The steps that bring ``observed`` to ``desired`` (empty: nothing to do)."""
    state = desired.state
    steps: list[Step] = []
    if state.canary is not None and observed.canary_ready != (state.canary,):
        steps.append(LoadCanary(state.name, state.canary))
    if state.live is not None and desired.live_config is not None:
        wanted = desired.live_config
        if observed.config is None or _differs(observed.config, wanted) or observed.ready != (state.live,):
            serving = observed.config is not None and observed.ready == (state.live,) == tuple(
                observed.config.version_policy.specific.versions
            )
            steps.append(LoadLive(state.name, state.live, wanted, warm_up=not serving))
    elif observed.ready:
        steps.append(Unload(state.name))
    if state.canary is None and observed.canary_ready:
        routed = observed.config is not None and canary_weight(observed.config) > 0
        steps.append(Unload(canary_alias(state.name), drain=routed))
    return steps


def differences(desired: Desired, observed: ModelObservation) -> list[str]:
    """How ``observed`` differs from ``desired``, one line per difference (empty: in sync)."""
    state = desired.state
    lines: list[str] = []
    if state.live is not None and desired.live_config is not None:
        loaded = observed.config
        if loaded is None:
            lines.append(f"{state.name}: not loaded (want version {state.live})")
        else:
            versions = list(loaded.version_policy.specific.versions)
            if versions != [state.live]:
                lines.append(
                    f"{state.name}: loaded with versions {versions or 'policy ' + str(loaded.version_policy)}"
                    f", want [{state.live}]"
                )
            if state.live not in observed.ready:
                lines.append(f"{state.name}: version {state.live} not ready")
            for parameter in (PARAM_CANARY, PARAM_SHADOW):
                have, want = _parameter(loaded, parameter), _parameter(desired.live_config, parameter)
                if have != want:
                    lines.append(f"{state.name}: {parameter} is {have!r}, want {want!r}")
            extra = [v for v in observed.ready if v != state.live]
            if extra:
                lines.append(f"{state.name}: versions {extra} also ready, want only {state.live}")
    elif observed.ready:
        lines.append(f"{state.name}: loaded (versions {list(observed.ready)}) but no live version is wanted")
    alias = canary_alias(state.name)
    if state.canary is not None and observed.canary_ready != (state.canary,):
        lines.append(f"{alias}: ready versions {list(observed.canary_ready)}, want [{state.canary}]")
    if state.canary is None and observed.canary_ready:
        lines.append(f"{alias}: loaded (versions {list(observed.canary_ready)}) but no candidate is wanted")
    return lines
