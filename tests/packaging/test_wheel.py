"""The wheel as users install it: the SDK alone in a fresh virtualenv, beside a project with its own ``clients/``
and ``serving/`` packages, and one top-level name for the whole stack.

The wheel is built from a copy of the checkout (symlinks under ``tritonops/`` kept, so setuptools follows them as
it does for a release). The fresh environment gets the wheel's base dependencies from the registries, pinned by
``constraints.txt`` (pip's cache makes repeated runs quick).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import pytest

from tritonops.errors import ExitCode

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "tritonops", "converters", "serving", "control_plane", "clients", "loadtest")
PARTS = ("clients", "serving", "converters", "control_plane", "loadtest")
NOT_IN_THE_SDK = ("onnxruntime", "onnxruntime-gpu", "pyarrow", "scipy", "scikit-learn", "nvidia-pytriton", "onnx")


def _run(argv: list[str | Path], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``argv`` without this checkout on the path (no PYTHONPATH): what an installed environment sees."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    argv_text = [str(a) for a in argv]
    return subprocess.run(argv_text, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    started = time.perf_counter()
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", source, "-w", out]
    done = _run(build, 300)
    assert done.returncode == 0, done.stderr[-2000:]
    print(f"wheel built in {time.perf_counter() - started:.1f} s")
    (built,) = out.glob("tritonops-*.whl")
    return built


@pytest.fixture(scope="module")
def sdk_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the wheel with its base dependencies only."""
    home = tmp_path_factory.mktemp("sdk-venv")
    venv.create(home, with_pip=False)
    python = home / "bin" / "python"
    started = time.perf_counter()
    install = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile"]
    install += ["-c", ROOT / "constraints.txt", wheel]
    done = _run(install, 600)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"SDK installed into a fresh venv in {time.perf_counter() - started:.1f} s")
    return python


def _installed(python: Path) -> set[str]:
    done = _run([sys.executable, "-m", "pip", "--python", python, "list", "--format=json"], 120)
    assert done.returncode == 0, done.stderr
    return {row["name"].lower() for row in json.loads(done.stdout)}


def test_the_sdk_installs_alone_and_imports(sdk_env: Path) -> None:
    installed = _installed(sdk_env)
    assert {"tritonops", "tritonclient", "numpy", "pandas"} <= installed
    assert not installed & set(NOT_IN_THE_SDK), sorted(installed & set(NOT_IN_THE_SDK))
    done = _run([sdk_env, "-c", "from tritonops.clients import TritonClient; print(TritonClient.__name__)"], 120)
    assert done.returncode == 0 and done.stdout.strip() == "TritonClient", done.stderr


def test_the_command_names_the_missing_extra_instead_of_a_traceback(sdk_env: Path) -> None:
    for argv in ([sdk_env.parent / "tritonops", "--help"], [sdk_env, "-m", "tritonops", "status"]):
        done = _run(argv, 120)
        assert done.returncode == ExitCode.CONFIGURATION, (done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        assert "pip install 'tritonops[cli]'" in done.stderr and "no module named 'typer'" in done.stderr


def test_a_project_with_its_own_clients_and_serving_packages_imports_the_sdk(sdk_env: Path, tmp_path: Path) -> None:
    for package in ("clients", "serving"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"OWNER = 'project {package}'\n", encoding="utf-8")
    probe = (
        "import clients, serving\n"
        "from tritonops.clients import TritonClient\n"
        "print(clients.OWNER, '|', serving.OWNER, '|', TritonClient.__module__)"
    )
    done = _run([sdk_env, "-c", probe], 120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "project clients | project serving | tritonops.clients.client"


def test_the_wheel_has_one_top_level_name_and_every_part(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"tritonops", "tritonops-0.1.0.dist-info"}
    for part in (*PARTS, "contract"):
        assert f"tritonops/{part}/__init__.py" in names, part
    assert "tritonops/py.typed" in names
    assert "tritonops/serving/backend/tritonops/model.py" in names
    metadata = zipfile.ZipFile(wheel).read("tritonops-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Python: <3.14,>=3.11" in metadata
    for extra in ("cli", "convert", "server", "controller", "boosting", "torch", "gpu", "mlflow", "loadtest", "all"):
        assert f"Provides-Extra: {extra}" in metadata, extra


def test_the_full_install_has_no_generic_top_level_packages(tmp_path: Path) -> None:
    # the shared .venv holds tritonops with every extra: from outside the checkout none of the parts is top level
    probe = f"import importlib.util; print([p for p in {PARTS!r} if importlib.util.find_spec(p) is not None])"
    done = _run([sys.executable, "-c", probe], 120, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "[]", (done.stdout, done.stderr)
