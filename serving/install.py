"""Find a ``tritonserver`` installation and lay out a writable backend directory for it.

Lookup order: an explicit path, ``TRITONSERVER_BIN``, the ``nvidia-pytriton`` wheel in this environment,
then the NGC image's ``/opt/tritonserver``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from tritonops.contract.names import BACKEND_NAME
from tritonops.serving.errors import BinaryNotFoundError, ServingError

NGC_ROOT = Path("/opt/tritonserver")
_OUR_BACKEND_SOURCE = Path(__file__).resolve().parent / "backend" / BACKEND_NAME


@dataclass(frozen=True)
class TritonInstallation:
    """Where the pieces of one Triton install live."""

    binary: Path
    backends: Path
    python_stubs: Path | None
    """Per-Python-version ``triton_python_backend_stub`` dirs (the pytriton wheel); None where the stub sits in
    ``backends/python`` already (NGC image)."""
    library_dirs: tuple[Path, ...]


def _pytriton_root() -> Path | None:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _from_root(root: Path, binary: Path, library_dirs: tuple[Path, ...]) -> TritonInstallation:
    stubs = root / "python_backend_stubs"
    return TritonInstallation(
        binary=binary,
        backends=root / "backends",
        python_stubs=stubs if stubs.is_dir() else None,
        library_dirs=library_dirs,
    )


def locate_tritonserver(explicit: Path | None = None, env: dict[str, str] | None = None) -> TritonInstallation:
    """Find ``tritonserver`` and its backends and shared libraries."""
    env = dict(os.environ) if env is None else env
    searched: list[str] = []
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(Path(explicit))
        searched.append(f"--binary {explicit}")
    elif env.get("TRITONSERVER_BIN"):
        candidates.append(Path(env["TRITONSERVER_BIN"]))
        searched.append(f"TRITONSERVER_BIN={env['TRITONSERVER_BIN']}")
    else:
        pytriton = _pytriton_root()
        if pytriton is not None:
            candidates.append(pytriton / "tritonserver" / "bin" / "tritonserver")
        searched.append("the nvidia-pytriton wheel" + (f" ({pytriton})" if pytriton else " (not installed)"))
        candidates.append(NGC_ROOT / "bin" / "tritonserver")
        searched.append(str(NGC_ROOT / "bin" / "tritonserver"))

    for binary in candidates:
        if binary.is_file() and os.access(binary, os.X_OK):
            root = binary.resolve().parent.parent
            libs = root.parent.parent / "nvidia_pytriton.libs"
            return _from_root(root, binary.resolve(), (libs,) if libs.is_dir() else ())
    raise BinaryNotFoundError(searched)


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def prepare_backend_directory(install: TritonInstallation, target: Path) -> Path:
    """Lay out ``target`` as a ``--backend-directory``: Python backend, its stub for this interpreter, ours.

    The wheel ships one stub per Python version; the Python backend runs the one next to
    ``libtriton_python.so``, so we copy the stub that matches the running interpreter there.
    """
    python_dir = target / "python"
    _copy_tree(install.backends / "python", python_dir)
    if install.python_stubs is not None:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = install.python_stubs / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServingError(
                f"the Triton Python backend has no stub for Python {version} in {install.python_stubs}; "
                f"available: {sorted(p.name for p in install.python_stubs.iterdir())}"
            )
        shutil.copy2(stub, python_dir / "triton_python_backend_stub")
    _copy_tree(_OUR_BACKEND_SOURCE, target / BACKEND_NAME)
    return target
