"""The public names of tritonops and each of its parts, pinned: adding or removing one is a decision, made here.

Every name in ``__all__`` must import, and no public, non-module attribute of a package may sit outside ``__all__``.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

PUBLIC: dict[str, set[str]] = {
    "tritonops": {"Settings", "TritonOpsError", "__version__", "load_settings"},
    "tritonops.contract": {
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
    },
    "tritonops.converters": {
        "ClassesError",
        "ConversionError",
        "ConversionOptions",
        "ExportError",
        "FeatureMismatchError",
        "FeatureNameError",
        "Manifest",
        "ManifestError",
        "ModelLoadError",
        "ModelVersion",
        "NotAClassifierError",
        "NotFittedError",
        "OnnxRuntimeError",
        "ParityError",
        "ParityThresholds",
        "RepositoryError",
        "UnsupportedModelError",
        "assign_bins",
        "convert_sklearn",
        "convert_torch",
        "list_models",
        "list_versions",
        "load_manifest",
    },
    "tritonops.clients": {
        "AsyncTritonClient",
        "CanaryRouter",
        "CanarySplit",
        "ClientError",
        "ClientOptions",
        "Feature",
        "FeedbackSink",
        "FeedbackStats",
        "HttpFeedbackSink",
        "GrpcChannelOptions",
        "InferenceError",
        "InputError",
        "MissingFeatureError",
        "Prediction",
        "RetryPolicy",
        "ServerUnavailableError",
        "Signature",
        "SignatureError",
        "TlsOptions",
        "TritonClient",
    },
    "tritonops.control_plane": {
        "AuditEvent",
        "EndpointStatus",
        "ModelState",
        "ModelStatus",
        "ReconcileReport",
        "RolloutResult",
        "StateStore",
        "abort_canary",
        "canary",
        "deploy",
        "fleet_add",
        "fleet_list",
        "fleet_remove",
        "history",
        "promote",
        "reconcile",
        "resolve_actor",
        "rollback",
        "set_capture",
        "status",
    },
    "tritonops.serving": {
        "AllocatorNotFoundError",
        "BinaryNotFoundError",
        "ModelConfigError",
        "PortInUseError",
        "RepositoryNotFoundError",
        "ServerOptions",
        "ServerStartError",
        "ServingError",
        "ServingOptions",
        "TritonInstallation",
        "TritonServer",
        "locate_tritonserver",
    },
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_all_is_exactly_the_pinned_names(package: str) -> None:
    exported = importlib.import_module(package).__all__
    assert len(exported) == len(set(exported)), f"{package}.__all__ repeats a name"
    assert set(exported) == PUBLIC[package], (
        f"{package}.__all__ changed: added {sorted(set(exported) - PUBLIC[package])}, "
        f"removed {sorted(PUBLIC[package] - set(exported))}"
    )


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_every_public_name_imports(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)  # what `import *` gives a user is exactly __all__
    assert set(namespace) - {"__builtins__"} == set(module.__all__)


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_nothing_public_leaks_outside_all(package: str) -> None:
    module = importlib.import_module(package)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(module.__all__), f"{package} leaks {sorted(public - set(module.__all__))}"


def test_public_errors_derive_from_the_one_root() -> None:
    from tritonops import TritonOpsError

    for package, names in PUBLIC.items():
        module = importlib.import_module(package)
        for name in names:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, Exception):
                assert issubclass(value, TritonOpsError), f"{package}.{name}"


def test_the_backend_stub_does_not_load_the_server_launcher() -> None:
    # Triton's backend stub imports serving.* (and so serving/__init__) in every model instance
    probe = (
        "import sys, tritonops.serving.backend_options, tritonops.serving.validation, tritonops.serving.scoring; "
        "print(sorted(m for m in ('tritonops.serving.triton', 'requests') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
