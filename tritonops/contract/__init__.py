"""The contract every part of tritonops points down to (docs/contracts.md), written once.

Depends on numpy and pydantic only, so the SDK, the Triton backend stub, the converter and the control plane can
all import it without pulling in each other (pydantic only when a manifest is parsed with it: the stub never does):

- ``names``: tensor and output names, model-config parameter names, the backend name, aliases, the model-name rule
- ``manifest``: the pydantic model of ``<version>/manifest.json`` and ``load_manifest``
- ``served``: the fields of a manifest serving uses, read without pydantic (``load_served_manifest``), and the
  protocols both readings satisfy
- ``bins``: ``assign_bins`` / ``bin_labels`` / ``reference_proportions`` (drift reference bins)
- ``signature``: ``Signature`` (``tritonops.signature``) and ``CanarySplit`` (``tritonops.canary``), each with
  ``to_parameters`` and ``from_config`` / ``from_parameters``
- ``encoding``: THE encoder from rows / DataFrames to Triton tensors (``to_rows``, ``encode``, ``encode_rows``)
- ``errors``: ``ContractError`` and its subclasses
"""

import typing as _typing

from tritonops.contract.bins import NAN_BIN_LABEL, assign_bins, bin_labels, reference_proportions
from tritonops.contract.encoding import Rows, Tensor, TensorFeature, encode, encode_rows, split_rows, to_rows
from tritonops.contract.errors import (
    ContractError,
    InputError,
    ManifestError,
    MissingFeatureError,
    ModelConfigError,
    SignatureError,
)
from tritonops.contract.names import (
    BACKEND_NAME,
    CANARY_SUFFIX,
    LABEL_OUTPUT,
    MODEL_NAME_PATTERN,
    NATIVE_SUFFIX,
    NUMERIC_INPUT,
    OTHER_CATEGORY,
    OUTPUTS,
    PARAM_CANARY,
    PARAM_DRIFT_COUNTERS,
    PARAM_DRIFT_FLUSH_SECONDS,
    PARAM_MODEL,
    PARAM_RESPONSE_CACHE_ENTRIES,
    PARAM_RUNNER,
    PARAM_SIGNATURE,
    PARAM_TENSORRT,
    PARAM_VERSION,
    PROBABILITIES_OUTPUT,
    REQUEST_ID_PARAMETER,
    base_model,
    canary_alias,
    feature_tensor_name,
    model_name_problem,
    native_name,
)
from tritonops.contract.signature import CanarySplit, Signature, SignatureFeature, config_parameters, unwrap_config

if _typing.TYPE_CHECKING:
    from tritonops.contract.manifest import Manifest, load_manifest, parse_manifest

_PYDANTIC_NAMES = ("Manifest", "load_manifest", "parse_manifest")
"""Imported on first use: the backend stub imports this package but reads manifests without pydantic."""


def __getattr__(name: str) -> _typing.Any:
    if name in _PYDANTIC_NAMES:
        from tritonops.contract import manifest

        return getattr(manifest, name)
    raise AttributeError(f"module 'tritonops.contract' has no attribute {name!r}")


__all__ = [
    "BACKEND_NAME",
    "CANARY_SUFFIX",
    "LABEL_OUTPUT",
    "MODEL_NAME_PATTERN",
    "NAN_BIN_LABEL",
    "NATIVE_SUFFIX",
    "NUMERIC_INPUT",
    "OTHER_CATEGORY",
    "OUTPUTS",
    "PARAM_CANARY",
    "PARAM_DRIFT_COUNTERS",
    "PARAM_DRIFT_FLUSH_SECONDS",
    "PARAM_MODEL",
    "PARAM_RESPONSE_CACHE_ENTRIES",
    "PARAM_RUNNER",
    "PARAM_SIGNATURE",
    "PARAM_TENSORRT",
    "PARAM_VERSION",
    "PROBABILITIES_OUTPUT",
    "REQUEST_ID_PARAMETER",
    "CanarySplit",
    "ContractError",
    "InputError",
    "Manifest",
    "ManifestError",
    "MissingFeatureError",
    "ModelConfigError",
    "Rows",
    "Signature",
    "SignatureError",
    "SignatureFeature",
    "Tensor",
    "TensorFeature",
    "assign_bins",
    "base_model",
    "bin_labels",
    "canary_alias",
    "config_parameters",
    "encode",
    "encode_rows",
    "feature_tensor_name",
    "load_manifest",
    "model_name_problem",
    "native_name",
    "parse_manifest",
    "reference_proportions",
    "split_rows",
    "to_rows",
    "unwrap_config",
]
