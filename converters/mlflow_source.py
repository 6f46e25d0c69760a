"""MLflow as a model source: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` and ``runs:/RUN_ID/PATH``.

The URI is resolved once against ``MLFLOW_TRACKING_URI`` (an alias to the version it points to now), the model's
artifacts are downloaded, and its ``sklearn`` or ``pytorch`` flavor is loaded. The logged ``input_example`` is the
parity sample when no sample is given; the manifest records the URI, the registered version, the run and the
signature, and the training versions from the model's ``requirements.txt``. The MLflow client is the ``mlflow``
extra (mlflow-skinny); it is imported only here.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from tritonops.contract.manifest import MlflowSource, VersionSkew
from tritonops.converters.convert import ConversionOptions, Progress, convert_sklearn, convert_torch
from tritonops.converters.errors import ClassesError, MlflowSourceError, VersionSkewError
from tritonops.converters.extras import missing_dependency
from tritonops.converters.prepared import Provenance
from tritonops.converters.repository import ModelVersion
from tritonops.converters.torch import ModuleOutput
from tritonops.converters.versions import package_version

MLFLOW_SCHEMES = ("models:/", "runs:/")
FLAVORS = {"sklearn": "sklearn", "pytorch": "pytorch"}
_CHECKED_PACKAGES = ("scikit-learn", "torch", "xgboost", "lightgbm", "catboost")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)")


def is_mlflow_uri(text: str) -> bool:
    return text.startswith(MLFLOW_SCHEMES)


@dataclass(frozen=True)
class ResolvedUri:
    """What a URI points to, resolved once: load ``model_uri``, record the rest."""

    uri: str
    model_uri: str
    run_id: str | None
    registered_model: str | None = None
    registered_version: int | None = None
    alias: str | None = None


def _client(tracking_uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ModuleNotFoundError as exc:
        raise missing_dependency(exc) or MlflowSourceError(str(exc)) from exc
    return MlflowClient(tracking_uri=tracking_uri)


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise MlflowSourceError("MLFLOW_TRACKING_URI is not set: point it at the MLflow tracking server")
    return uri


def _call(what: str, tracking: str, function: Any, *args: object) -> Any:
    """Run one client call; the server's or the network's error becomes one ``MlflowSourceError`` line."""
    from mlflow.exceptions import MlflowException

    try:
        return function(*args)
    except MlflowException as exc:
        first = str(exc.message).splitlines()[0] if exc.message else type(exc).__name__
        raise MlflowSourceError(f"{what} at {tracking}: {first}") from exc
    except OSError as exc:  # connection refused, DNS, timeouts (requests' errors are OSErrors)
        raise MlflowSourceError(
            f"{what}: the MLflow server at {tracking} is unreachable ({type(exc).__name__})"
        ) from exc


def resolve(uri: str, tracking: str) -> ResolvedUri:
    """Resolve ``uri`` once: an alias becomes the version it points to now."""
    client = _client(tracking)
    if uri.startswith("runs:/"):
        run_id = uri.removeprefix("runs:/").split("/", 1)[0]
        if not run_id or "/" not in uri.removeprefix("runs:/"):
            raise MlflowSourceError(f"{uri!r}: expected runs:/RUN_ID/PATH")
        _call(f"run {run_id!r}", tracking, client.get_run, run_id)
        return ResolvedUri(uri=uri, model_uri=uri, run_id=run_id)
    path = uri.removeprefix("models:/")
    if "@" in path:
        name, _, alias = path.partition("@")
        found = _call(f"alias {alias!r} of model {name!r}", tracking, client.get_model_version_by_alias, name, alias)
    else:
        name, _, version = path.partition("/")
        if not version.isdigit():
            raise MlflowSourceError(f"{uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION (a number)")
        alias = None
        found = _call(f"version {version} of model {name!r}", tracking, client.get_model_version, name, version)
    number = int(found.version)
    return ResolvedUri(
        uri=uri,
        model_uri=f"models:/{name}/{number}",
        run_id=found.run_id,
        registered_model=name,
        registered_version=number,
        alias=alias,
    )


def _training_versions(local: Path) -> dict[str, str]:
    """Pinned versions of the packages we check, from the model's requirements.txt (or conda.yaml's pip list)."""
    lines: list[str] = []
    for name in ("requirements.txt", "conda.yaml"):
        if (local / name).is_file():
            lines += [line.strip().lstrip("- ").strip() for line in (local / name).read_text().splitlines()]
    found = {}
    for line in lines:
        match = _REQUIREMENT.match(line)
        if match and match.group(1).lower() in _CHECKED_PACKAGES:
            found[match.group(1).lower()] = match.group(2)
    return found


def _skew(path: str, training: dict[str, str], allow: bool) -> list[VersionSkew]:
    skews = []
    for package, trained in sorted(training.items()):
        here = package_version(package).split("+")[0]
        if here != "unknown" and here != trained.split("+")[0]:
            if not allow:
                raise VersionSkewError(path, package, trained, here)
            skews.append(VersionSkew(package=package, trained=trained, converted=here))
    return skews


@dataclass(frozen=True)
class MlflowModel:
    """A downloaded MLflow model: the loaded object, its flavor, sample and provenance."""

    model: Any
    flavor: Literal["sklearn", "pytorch"]
    sample: pd.DataFrame | None
    provenance: Provenance


def load_mlflow_model(
    uri: str,
    *,
    tracking: str | None = None,
    allow_version_skew: bool = False,
    sample_given: bool = False,
    resolved: ResolvedUri | None = None,
) -> MlflowModel:
    """Resolve (unless ``resolved``), download and load ``uri`` (sklearn or pytorch flavor).

    The logged input example becomes the sample unless ``sample_given``.
    """
    tracking = tracking or tracking_uri()
    resolved = resolved or resolve(uri, tracking)
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="tritonops-mlflow-") as workdir:
        local = Path(
            _call(
                f"downloading {resolved.model_uri}",
                tracking,
                lambda: download_artifacts(artifact_uri=resolved.model_uri, dst_path=workdir, tracking_uri=tracking),
            )
        )
        if not (local / "MLmodel").is_file():
            raise MlflowSourceError(f"{uri}: {resolved.model_uri} holds no MLmodel file (not an MLflow model)")
        meta = Model.load(str(local / "MLmodel"))
        flavors = [FLAVORS[f] for f in meta.flavors if f in FLAVORS]
        if not flavors:
            raise MlflowSourceError(
                f"{uri}: the model's flavors are {sorted(meta.flavors)}; tritonops converts classifiers logged with "
                "the sklearn or pytorch flavor (mlflow.sklearn.log_model / mlflow.pytorch.log_model)"
            )
        flavor: Literal["sklearn", "pytorch"] = "sklearn" if "sklearn" in flavors else "pytorch"
        training = _training_versions(local)
        skews = _skew(uri, training, allow_version_skew)
        example = None if sample_given else meta.load_input_example(str(local))
        model = _load_flavor(flavor, local)
    sample = None
    sample_from: Literal["option", "input_example"] = "option"
    if not sample_given:
        if example is None:
            columns = meta.signature.inputs.input_names() if meta.signature is not None else []
            named = f" (the signature names the columns: {', '.join(map(str, columns))})" if columns else ""
            raise MlflowSourceError(
                f"{uri}: no input_example was logged with the model; pass --sample with rows in the training "
                f"format{named}"
            )
        sample = pd.DataFrame(example) if not isinstance(example, pd.DataFrame) else example
        sample_from = "input_example"
    source = MlflowSource(
        tracking_uri=tracking,
        uri=uri,
        model_uri=resolved.model_uri,
        registered_model=resolved.registered_model,
        registered_version=resolved.registered_version,
        alias=resolved.alias,
        run_id=resolved.run_id,
        flavor=flavor,
        signature=meta.signature.to_dict() if meta.signature is not None else None,
        sample_from=sample_from,
    )
    return MlflowModel(model, flavor, sample, Provenance(training, skews, source))


def _load_flavor(flavor: str, local: Path) -> Any:
    try:
        if flavor == "sklearn":
            import mlflow.sklearn

            return mlflow.sklearn.load_model(str(local))
        import mlflow.pytorch

        return mlflow.pytorch.load_model(str(local), map_location="cpu")
    except ModuleNotFoundError as exc:
        raise missing_dependency(exc) or MlflowSourceError(str(exc)) from exc


def convert_mlflow(
    uri: str,
    *,
    name: str | None,
    repository: Path,
    sample: pd.DataFrame | None = None,
    classes: Sequence[str] | Sequence[int] | None = None,
    torch_output: ModuleOutput = "logits",
    options: ConversionOptions | None = None,
    progress: Progress | None = None,
    allow_version_skew: bool = False,
    tracking: str | None = None,
    resolved: ResolvedUri | None = None,
) -> ModelVersion:
    """Convert the model ``uri`` points to into the next version of ``name`` (default: the registered name).

    ``resolved``: the URI already resolved (``mlflow sync`` resolves the alias once, before deciding to convert).
    """
    report = progress or (lambda _: None)
    report(f"resolving {uri} at {tracking or tracking_uri()}")
    loaded = load_mlflow_model(
        uri,
        tracking=tracking,
        allow_version_skew=allow_version_skew,
        sample_given=sample is not None,
        resolved=resolved,
    )
    mlflow = loaded.provenance.mlflow
    assert mlflow is not None
    if mlflow.registered_model:
        report(f"{uri} is version {mlflow.registered_version} of {mlflow.registered_model!r} (run {mlflow.run_id})")
    target = name or mlflow.registered_model
    if target is None:
        raise MlflowSourceError(f"{uri}: a runs:/ URI has no registered name; pass --name")
    rows = sample if sample is not None else loaded.sample
    assert rows is not None
    if sample is None:
        report(f"no --sample given: using the logged input_example ({len(rows)} rows) as the parity sample")
    if loaded.flavor == "pytorch":
        if classes is None:
            raise ClassesError("PyTorch models need --classes: the class names in the order of the module outputs")
        return convert_torch(
            loaded.model, rows, classes=classes, name=target, repository=repository, output=torch_output,
            options=options, progress=report, provenance=loaded.provenance,
        )  # fmt: skip
    if classes is not None:
        raise ClassesError("--classes is for PyTorch models; scikit-learn models carry their classes (classes_)")
    return convert_sklearn(
        loaded.model, rows, name=target, repository=repository, options=options, progress=report,
        provenance=loaded.provenance,
    )  # fmt: skip
