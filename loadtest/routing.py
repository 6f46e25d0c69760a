"""The ``routing`` bench target's models: one converted version served four ways on one server.

- ``as converted``: the model's own config (no ``served_version`` output, no split): the backend's hot path as it
  was before server-side routing existed;
- ``weight 0``: the config the control plane loads (``served_version`` output, split parameter at weight 0);
- ``weight 0.2``: the same with 20% scored by the canary in-process (the same version's files: only routing differs);
- ``weight 0.2 BLS``: 20% forwarded over BLS to a ``__canary`` alias (the path of a model loaded from bytes; the
  split names a version absent from the model's folder, so the backend cannot score it in-process);
- ``shadow 1.0``: every answered row mirrored to the shadow, scored in-process in the background.

Each variant is loaded from the version's bytes under its own name, as the control plane loads aliases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc

from tritonops.contract.names import PARAM_CANARY, PARAM_SHADOW
from tritonops.contract.signature import CanarySplit
from tritonops.control_plane.desired import canary_files, version_config, with_version_output
from tritonops.model_config import to_json, with_specific_versions
from tritonops.serving.routing import ShadowRoute

AS_CONVERTED = "as converted"
WEIGHT_0 = "weight 0"
WEIGHT_02 = "weight 0.2"
WEIGHT_02_BLS = "weight 0.2 BLS"
SHADOW_1 = "shadow 1.0"


@dataclass(frozen=True)
class RoutingModel:
    label: str
    model: str
    """The Triton model the load is sent to."""


def _config(repository: Path, base: str, name: str) -> mc.ModelConfig:
    config = with_version_output(with_specific_versions(version_config(repository, base, 1), [1]))
    config.name = name
    return config


def load_routing_models(grpc_url: str, repository: Path, base: str) -> tuple[RoutingModel, ...]:
    """Load the four variants of version 1 of ``base`` (already loaded as itself) on the server at ``grpc_url``."""
    files = canary_files(repository, base, 1)
    weight0, canary, bls, shadow = f"{base}_w0", f"{base}_w02", f"{base}_bls", f"{base}_sh"
    routes = {
        weight0: (PARAM_CANARY, CanarySplit(f"{weight0}__canary", 1, 0.0).to_parameters()[PARAM_CANARY]),
        canary: (PARAM_CANARY, CanarySplit(f"{canary}__canary", 1, 0.2).to_parameters()[PARAM_CANARY]),
        bls: (
            PARAM_CANARY,
            CanarySplit(f"{bls}__canary", 2, 0.2).to_parameters()[PARAM_CANARY],
        ),  # no folder 2: over BLS
        shadow: (PARAM_SHADOW, ShadowRoute(f"{shadow}__shadow", 1, 1.0).to_parameter()),
    }
    with grpcclient.InferenceServerClient(grpc_url) as client:
        alias = _config(repository, base, f"{bls}__canary")
        client.load_model(alias.name, config=to_json(alias), files=files)
        for name, (parameter, value) in routes.items():
            config = _config(repository, base, name)
            config.parameters[parameter].string_value = value
            client.load_model(name, config=to_json(config), files=files)
    return (
        RoutingModel(AS_CONVERTED, base),
        RoutingModel(WEIGHT_0, weight0),
        RoutingModel(WEIGHT_02, canary),
        RoutingModel(WEIGHT_02_BLS, bls),
        RoutingModel(SHADOW_1, shadow),
    )
