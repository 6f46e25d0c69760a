"""The model repository writer and reader: numbered versions, written atomically, never rewritten.

A version is assembled in ``<model>/.tmp-<random>/`` and renamed to ``<model>/<version>/``; the number is taken
under an exclusive ``fcntl.flock`` on ``<model>/.lock`` held until the version is in place, so concurrent
writers (threads or processes) get distinct numbers and a crash or Ctrl-C leaves at most a ``.tmp-*`` directory,
which Triton ignores and the next writer removes.

Each version holds its own ``config.pbtxt`` (the embedded one in ``<model>/<v>/``, the native export's in
``<model>__onnxruntime/<v>/``). The model-level ``config.pbtxt`` is what a stock Triton (model-control mode
``none`` or ``poll``, KServe) serves, so a new version never changes it: ``publish_live`` rewrites it atomically with
``version_policy { specific { versions: [live] } }`` on every promote and rollback. Until the first promote it is a
placeholder with an empty ``specific`` policy, which every Triton refuses to load ("at least one version must be
available under the version policy"): a never-promoted model is never served by accident (with no model-level file
at all, a Triton with the ONNX Runtime backend would auto-complete ``<v>/model.onnx`` and serve the newest version).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tritonops.contract.manifest import Manifest, load_manifest
from tritonops.contract.names import model_name_problem, native_name
from tritonops.converters.errors import RepositoryError
from tritonops.model_config import parse_pbtxt, to_pbtxt, with_specific_versions
from tritonops.serving.errors import ModelConfigError

LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"
CONFIG_FILE = "config.pbtxt"


def validate_model_name(name: str) -> str:
    """Return ``name`` if Triton and our aliases can use it, else raise ``RepositoryError``."""
    problem = model_name_problem(name)
    if problem is not None:
        raise RepositoryError(problem)
    return name


@dataclass(frozen=True)
class VersionContent:
    """Everything written for one version, rendered once its number is known."""

    files: Mapping[str, bytes]
    """Files of ``<model>/<version>/`` by name."""
    model_config: bytes
    """The version's config; the model-level placeholder is made from it when the model has no config yet."""
    native_files: Mapping[str, bytes] = field(default_factory=dict)
    """Files of ``<model>__onnxruntime/<version>/`` (empty: no native export)."""
    native_config: bytes = b""
    """The native export's config for this version, written as ``<model>__onnxruntime/<version>/config.pbtxt``."""


@dataclass(frozen=True)
class ModelVersion:
    """One version in the repository."""

    name: str
    version: int
    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.onnx.file

    @property
    def config_path(self) -> Path:
        return self.path / "config.pbtxt"


def version_numbers(model_dir: Path) -> list[int]:
    """The version numbers present in ``model_dir`` (directories named by digits only), ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _replace_file(path: Path, data: bytes) -> None:
    """Write ``path`` so readers see the old or the new content, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    os.close(fd)
    try:
        _write_file(Path(tmp), data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _place_directory(parent: Path, version: int, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` into a temp directory of ``parent`` and rename it to ``parent/<version>``."""
    target = parent / str(version)
    if target.exists():
        raise RepositoryError(f"{target} already exists; versions are never rewritten")
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent))
    try:
        for name in files:
            _write_file(tmp / name, files[name])
        tmp.chmod(0o755)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _remove_leftovers(directory: Path) -> None:
    """Remove temp directories/files of writers that died; only called while holding the model lock."""
    for path in directory.glob(f"{TMP_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def write_version(repository: Path, name: str, render: Callable[[int], VersionContent]) -> ModelVersion:
    """Add the next version of ``name`` to ``repository``; ``render(version)`` produces its files."""
    validate_model_name(name)
    model_dir = repository / name
    native_dir = repository / native_name(name)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RepositoryError(f"cannot create {model_dir}: {exc.strerror}") from exc
    with _exclusive(model_dir / LOCK_FILE):
        _remove_leftovers(model_dir)
        existing = version_numbers(model_dir)
        version = (existing[-1] if existing else 0) + 1
        content = render(version)
        path = _place_directory(model_dir, version, content.files)
        _write_placeholder(model_dir, content.model_config)
        if content.native_files:
            native_dir.mkdir(exist_ok=True)
            _remove_leftovers(native_dir)
            _place_directory(native_dir, version, {**content.native_files, CONFIG_FILE: content.native_config})
            _write_placeholder(native_dir, content.native_config)
    return ModelVersion(name, version, path, load_manifest(path))


def _write_placeholder(model_dir: Path, version_config: bytes) -> None:
    """Give a model that has no model-level config one that no Triton can load (nothing is live yet)."""
    target = model_dir / CONFIG_FILE
    if target.exists():
        return  # a live version's config (or the placeholder already): a new version never changes it
    config = parse_pbtxt(version_config.decode("utf-8"), str(target))
    config.version_policy.specific.SetInParent()
    del config.version_policy.specific.versions[:]
    _replace_file(target, to_pbtxt(config).encode("utf-8"))


def publish_live(repository: Path, name: str, version: int) -> list[Path]:
    """Rewrite ``<name>/config.pbtxt`` (and the native export's) to serve exactly ``version``; the files changed.

    Called after every promote and rollback (and by reconcile, which repairs a file a failed write left stale), so a
    stock Triton pointed at the repository serves the live version. A file already right is not rewritten.
    """
    validate_model_name(name)
    written = []
    for model_dir in (repository / name, repository / native_name(name)):
        source = model_dir / str(version) / CONFIG_FILE
        if model_dir == repository / name and not source.is_file():
            raise RepositoryError(f"cannot publish {name!r} version {version}: {source} is missing")
        if not source.is_file():
            continue  # no native export of this version
        try:
            with _exclusive(repository / name / LOCK_FILE):
                config = with_specific_versions(parse_pbtxt(source.read_text(encoding="utf-8"), str(source)), [version])
                wanted = to_pbtxt(config).encode("utf-8")
                target = model_dir / CONFIG_FILE
                if target.is_file() and target.read_bytes() == wanted:
                    continue
                _replace_file(target, wanted)
        except (OSError, ModelConfigError) as exc:
            raise RepositoryError(f"cannot publish {name!r} version {version} in {model_dir}: {exc}") from exc
        written.append(target)
    return written


def list_versions(repository: Path, name: str) -> list[ModelVersion]:
    """Every version of ``name``, oldest first; raise ``RepositoryError`` if the model has none."""
    validate_model_name(name)
    model_dir = repository / name
    numbers = version_numbers(model_dir)
    if not numbers:
        raise RepositoryError(f"model {name!r} has no versions in {repository} (looked for {model_dir}/<n>/)")
    return [ModelVersion(name, n, model_dir / str(n), load_manifest(model_dir / str(n))) for n in numbers]


def list_models(repository: Path) -> list[str]:
    """Names of the models in ``repository`` that have at least one version (aliases and exports left out)."""
    if not repository.is_dir():
        raise RepositoryError(f"model repository {repository} does not exist or is not a directory")
    return sorted(
        p.name for p in repository.iterdir() if p.is_dir() and model_name_problem(p.name) is None and version_numbers(p)
    )
