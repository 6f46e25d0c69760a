"""The installable parts: every module the extras map names a real extra, and a missing one becomes one line."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tritonops.errors import ConfigurationError, ExitCode
from tritonops.extras import EXTRA_OF_MODULE, MissingExtraError, missing_extra

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS = PYPROJECT["project"]["optional-dependencies"]


def _requirement_names(extra: str) -> set[str]:
    """Distribution names an extra installs, following ``tritonops[...]`` self-references."""
    names: set[str] = set()
    for requirement in EXTRAS[extra]:
        head = requirement.split(";")[0].strip()
        if head.startswith("tritonops["):
            for inner in head[len("tritonops[") : -1].split(","):
                names |= _requirement_names(inner.strip())
        else:
            names.add(head.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower())
    return names


def test_every_mapped_module_belongs_to_an_extra_that_installs_it() -> None:
    distribution = {"sklearn": "scikit-learn", "dns": "dnspython", "yaml": "pyyaml", "pytriton": "nvidia-pytriton"}
    distribution |= {"prometheus_client": "prometheus-client", "mlflow": "mlflow-skinny", "flask": "flask"}
    for module, extra in EXTRA_OF_MODULE.items():
        assert extra in EXTRAS, f"{module}: no extra {extra!r} in pyproject.toml"
        assert distribution.get(module, module) in _requirement_names(extra), f"{extra} does not install {module}"


def test_all_is_every_extra_but_the_gpu_swap_and_dev() -> None:
    assert _requirement_names("all") == set().union(
        *(_requirement_names(e) for e in EXTRAS if e not in ("all", "gpu", "dev"))
    )
    assert "onnxruntime-gpu" not in _requirement_names("all")


def test_the_sdk_base_is_tritonclient_numpy_pandas_pydantic() -> None:
    base = {r.split("[")[0].split(">")[0].split("<")[0].strip().lower() for r in PYPROJECT["project"]["dependencies"]}
    assert base == {"tritonclient", "numpy", "pandas", "pydantic"}


def test_a_missing_module_names_its_extra() -> None:
    error = missing_extra(ModuleNotFoundError("No module named 'onnx'", name="onnx.helper"))
    assert isinstance(error, MissingExtraError) and isinstance(error, ConfigurationError)
    assert (error.module, error.extra, error.exit_code) == ("onnx", "convert", ExitCode.CONFIGURATION)
    assert str(error) == (
        "this needs the 'convert' part of tritonops, which is not installed (no module named 'onnx'): "
        "pip install 'tritonops[convert]'"
    )
    assert missing_extra(ModuleNotFoundError("No module named 'not_ours'", name="not_ours")) is None
