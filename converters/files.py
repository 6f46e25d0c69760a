"""Conversion from files: model files (joblib / pickle / skops / TorchScript / state dict + factory) and samples.

``convert_file`` is what ``tritonops convert`` runs.
"""

from __future__ import annotations

import importlib
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from tritonops.contract.manifest import VersionSkew
from tritonops.converters.convert import ConversionOptions, Progress, convert_sklearn, convert_torch
from tritonops.converters.errors import ClassesError, FeatureMismatchError, ModelLoadError, VersionSkewError
from tritonops.converters.extras import missing_dependency
from tritonops.converters.prepared import Provenance
from tritonops.converters.repository import ModelVersion
from tritonops.converters.torch import ModuleOutput

SKLEARN_SUFFIXES = (".joblib", ".pkl", ".pickle")
SKOPS_SUFFIXES = (".skops",)
TORCH_SUFFIXES = (".pt", ".pth", ".ts")
SAMPLE_SUFFIXES = (".csv", ".parquet", ".pq")
TRUSTED_SKOPS_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")
"""skops files may only hold types from these packages; anything else is refused, not executed."""


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    framework: Literal["sklearn", "pytorch"]
    provenance: Provenance = field(default_factory=Provenance)


def _torch_factory(spec: str, input_dim: int | None) -> Any:
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ModelLoadError(Path(spec), "--torch-factory must look like 'package.module:function'")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(Path(spec), f"cannot import the factory {spec!r} ({exc})") from exc
    return factory(input_dim) if input_dim is not None else factory()


def _load_torch(path: Path, torch_factory: str | None, input_dim: int | None) -> Any:
    try:
        import torch
    except ModuleNotFoundError as exc:
        raise missing_dependency(exc) or ModelLoadError(path, str(exc)) from exc

    if torch_factory is None:
        try:
            return torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        except (RuntimeError, ValueError) as exc:
            raise ModelLoadError(
                path,
                f"not a TorchScript file ({str(exc).splitlines()[0]}); for a state dict pass "
                "--torch-factory module:function (and --input-dim N)",
            ) from exc
    module = _torch_factory(torch_factory, input_dim)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(path, f"the state dict does not load into {torch_factory} ({reason})") from exc
    return module


def _load_skops(path: Path) -> Any:
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
        refused = [t for t in untrusted if not t.startswith(TRUSTED_SKOPS_PREFIXES)]
        if refused:
            raise ModelLoadError(path, f"the skops file holds types outside scikit-learn/numpy/scipy: {refused}")
        return skops.io.load(path, trusted=untrusted)
    except ModelLoadError:
        raise
    except Exception as exc:  # skops raises zipfile/JSON/type errors for damaged files
        raise ModelLoadError(path, f"{type(exc).__name__}: {exc}") from exc


def _load_pickle(path: Path, allow_version_skew: bool) -> LoadedModel:
    """joblib / pickle, refusing (unless allowed) an estimator pickled by another scikit-learn version.

    scikit-learn stores its version in every pickled estimator (``_sklearn_version``) and warns with
    ``InconsistentVersionWarning`` when it differs; that warning is where the training version comes from.
    """
    import joblib
    import sklearn
    from sklearn.exceptions import InconsistentVersionWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        try:
            model = joblib.load(path)
        except ModuleNotFoundError as exc:
            missing = missing_dependency(exc)
            if missing is None:
                raise ModelLoadError(path, f"{type(exc).__name__}: {exc}") from exc
            raise missing from exc
        except Exception as exc:  # unpickling runs arbitrary code paths and raises anything
            raise ModelLoadError(path, f"{type(exc).__name__}: {exc}") from exc
    trained = {
        str(w.message.original_sklearn_version) for w in caught if isinstance(w.message, InconsistentVersionWarning)
    }
    for other in caught:
        if not isinstance(other.message, InconsistentVersionWarning):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    if not trained:
        return LoadedModel(model, "sklearn", Provenance(training_versions={"scikit-learn": sklearn.__version__}))
    version = sorted(trained)[0]
    if not allow_version_skew:
        raise VersionSkewError(path, "scikit-learn", version, sklearn.__version__)
    skew = VersionSkew(package="scikit-learn", trained=version, converted=sklearn.__version__)
    return LoadedModel(model, "sklearn", Provenance(training_versions={"scikit-learn": version}, version_skew=[skew]))


def load_model_file(
    path: Path, torch_factory: str | None = None, input_dim: int | None = None, allow_version_skew: bool = False
) -> LoadedModel:
    """Load a trained model; the suffix picks the loader.

    A pickle made with another scikit-learn version raises ``VersionSkewError`` unless ``allow_version_skew``.
    """
    if not path.is_file():
        raise ModelLoadError(path, "no such file")
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES or torch_factory is not None:
        return LoadedModel(_load_torch(path, torch_factory, input_dim), "pytorch")
    if suffix in SKOPS_SUFFIXES:
        return LoadedModel(_load_skops(path), "sklearn")
    if suffix in SKLEARN_SUFFIXES:
        return _load_pickle(path, allow_version_skew)
    supported = ", ".join(SKLEARN_SUFFIXES + SKOPS_SUFFIXES + TORCH_SUFFIXES)
    raise ModelLoadError(path, f"unknown file type {suffix!r}; expected one of {supported}")


def load_sample(path: Path, label_column: str | None = None) -> pd.DataFrame:
    """Rows from a CSV or Parquet file, without ``label_column`` when given."""
    if not path.is_file():
        raise FeatureMismatchError(f"sample file {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise FeatureMismatchError(f"sample file {path}: expected one of {', '.join(SAMPLE_SUFFIXES)}")
    except (ValueError, OSError) as exc:
        raise FeatureMismatchError(f"sample file {path}: cannot read it ({exc})") from exc
    if frame.empty:
        raise FeatureMismatchError(f"sample file {path}: no rows")
    if label_column is not None:
        if label_column not in frame.columns:
            raise FeatureMismatchError(f"sample file {path}: no column {label_column!r} to drop as the label")
        frame = frame.drop(columns=[label_column])
    return frame


def parse_classes(text: str) -> list[str] | list[int]:
    """``"a,b,c"`` -> ``["a", "b", "c"]``; all-integer lists become ints (``"0,1,2"`` -> ``[0, 1, 2]``)."""
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise ClassesError(f"--classes {text!r}: empty class name; expected a comma-separated list like a,b,c")
    if all(re.fullmatch(r"-?\d+", item) for item in items):
        return [int(item) for item in items]
    return items


def convert_file(
    model_path: Path,
    sample_path: Path,
    *,
    name: str,
    repository: Path,
    classes: Sequence[str] | Sequence[int] | None = None,
    torch_factory: str | None = None,
    input_dim: int | None = None,
    torch_output: ModuleOutput = "logits",
    label_column: str | None = None,
    options: ConversionOptions | None = None,
    progress: Progress | None = None,
    allow_version_skew: bool = False,
) -> ModelVersion:
    """Load ``model_path`` and ``sample_path`` and convert the model into the next version of ``name``."""
    report = progress or (lambda _: None)
    report(f"loading {model_path}")
    loaded = load_model_file(model_path, torch_factory, input_dim, allow_version_skew)
    for skew in loaded.provenance.version_skew:
        report(f"version skew allowed: trained with {skew.package} {skew.trained}, converting with {skew.converted}")
    report(f"loading the sample {sample_path}")
    sample = load_sample(sample_path, label_column)
    if loaded.framework == "pytorch":
        if classes is None:
            raise ClassesError("PyTorch models need --classes: the class names in the order of the module outputs")
        return convert_torch(
            loaded.model,
            sample,
            classes=classes,
            name=name,
            repository=repository,
            output=torch_output,
            options=options,
            progress=report,
            provenance=loaded.provenance,
        )
    if classes is not None:
        raise ClassesError("--classes is for PyTorch models; scikit-learn models carry their classes (classes_)")
    return convert_sklearn(
        loaded.model,
        sample,
        name=name,
        repository=repository,
        options=options,
        progress=report,
        provenance=loaded.provenance,
    )
