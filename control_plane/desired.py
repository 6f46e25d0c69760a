"""What every endpoint should serve for one model, read from the model repository.

Per model (see docs/contracts.md, "Aliases"):

- ``<model>`` loaded with ``version_policy: specific [live]``, plus the ``tritonops.canary`` parameter while a
  candidate or canary exists, so unversioned requests always reach live;
- ``<model>__canary`` loaded from the candidate version's bytes while a candidate/canary exists, absent otherwise;
- the ``tritonops.shadow`` parameter on ``<model>`` while a shadow runs (scored in-process by live's instances).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tritonops.contract.errors import ManifestError, ModelConfigError
from tritonops.contract.manifest import Manifest, load_manifest
from tritonops.contract.names import (
    BACKEND_NAME,
    PARAM_CAPTURE,
    PARAM_SHADOW,
    VERSION_OUTPUT,
    canary_alias,
    shadow_alias,
)
from tritonops.contract.signature import CanarySplit
from tritonops.control_plane.errors import UnknownModelError, UnknownVersionError
from tritonops.control_plane.state import ModelState
from tritonops.model_config import read_pbtxt, with_specific_versions
from tritonops.serving.routing import ShadowRoute


def version_dir(repository: Path, model: str, version: int) -> Path:
    if not (repository / model).is_dir():
        raise UnknownModelError(model, f"the model repository ({repository})")
    path = repository / model / str(version)
    if not path.is_dir():
        raise UnknownVersionError(model, version, f"no directory {path} in the model repository")
    return path


def version_config(repository: Path, model: str, version: int) -> mc.ModelConfig:
    """The embedded config written for this version (``<repo>/<model>/<v>/config.pbtxt``)."""
    path = version_dir(repository, model, version) / "config.pbtxt"
    if not path.is_file():
        raise UnknownVersionError(model, version, f"missing {path} (the converter writes one per version)")
    try:
        return read_pbtxt(path)
    except ModelConfigError as exc:
        raise UnknownVersionError(model, version, str(exc)) from exc


def version_manifest(repository: Path, model: str, version: int) -> Manifest:
    try:
        manifest = load_manifest(version_dir(repository, model, version))
    except ManifestError as exc:
        raise UnknownVersionError(model, version, str(exc)) from exc
    if manifest.name != model or manifest.version != version:
        raise UnknownVersionError(
            model, version, f"manifest.json names {manifest.name!r} version {manifest.version}, not this version"
        )
    return manifest


def with_version_output(config: mc.ModelConfig) -> mc.ModelConfig:
    """``config`` declaring the ``served_version`` output, so every answer names the version that scored it."""
    if config.backend == BACKEND_NAME and all(output.name != VERSION_OUTPUT for output in config.output):
        config.output.append(mc.ModelOutput(name=VERSION_OUTPUT, data_type=mc.TYPE_INT64, dims=[1]))
    return config


def live_config(repository: Path, state: ModelState) -> mc.ModelConfig:
    """``<model>`` serving exactly the live version, with the canary split when one exists.

    The backend reads the split when the config loads: a weight change reloads the live model (Triton keeps the
    old instances serving until the new ones are ready, so no request fails).
    """
    assert state.live is not None
    config = with_version_output(
        with_specific_versions(version_config(repository, state.name, state.live), [state.live])
    )
    config.name = state.name
    if state.canary is not None:
        split = CanarySplit(canary_alias(state.name), state.canary, state.canary_weight)
        for key, value in split.to_parameters().items():
            config.parameters[key].string_value = value
    if state.capture is not None:
        config.parameters[PARAM_CAPTURE].string_value = state.capture
    if state.shadow is not None and state.shadow_share > 0:
        # scored in-process from the version's folder beside live's (the alias name is only used over BLS)
        route = ShadowRoute(shadow_alias(state.name), state.shadow, state.shadow_share)
        config.parameters[PARAM_SHADOW].string_value = route.to_parameter()
    return config


def canary_config(repository: Path, model: str, version: int) -> mc.ModelConfig:
    config = with_version_output(with_specific_versions(version_config(repository, model, version), [version]))
    config.name = canary_alias(model)
    return config


def canary_files(repository: Path, model: str, version: int) -> dict[str, bytes]:
    """Every file of the version except its config, keyed the way ``load_model(files=...)`` wants."""
    root = version_dir(repository, model, version)
    return {
        f"file:{version}/{path.relative_to(root).as_posix()}": path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "config.pbtxt"
    }


@dataclass(frozen=True)
class Desired:
    """One model's desired state with the live config it implies (None: ``<model>`` should not be loaded)."""

    state: ModelState
    live_config: mc.ModelConfig | None

    @property
    def model(self) -> str:
        return self.state.name


def desired(repository: Path, state: ModelState) -> Desired:
    """``state`` with its live config read from the repository (``UnknownVersionError`` when it is missing)."""
    return Desired(state, live_config(repository, state) if state.live is not None else None)
