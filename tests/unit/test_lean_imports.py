"""What each process imports: the Triton backend stub and the SDK stay lean, the contract needs numpy + pydantic
(the stub: numpy only).

Each check imports in a fresh interpreter and reads ``sys.modules``. The backend module imports
``triton_python_backend_utils``, which only exists inside Triton's stub: the probe puts an empty module of that
name in place first (the backend touches it only when Triton calls it, never at import).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BACKEND_MODEL = Path(__file__).resolve().parents[2] / "serving" / "backend" / "tritonops" / "model.py"
HEAVY = ("pandas", "pyarrow", "onnx", "skl2onnx", "onnxmltools", "scipy", "sklearn", "torch", "grpc", "tritonclient")
SIBLINGS = ("tritonops.converters", "tritonops.control_plane", "tritonops.clients", "tritonops.loadtest")


def _loaded_after(code: str) -> set[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_the_backend_stub_imports_no_pandas_pyarrow_onnx_or_scipy() -> None:
    loaded = _loaded_after(
        "import importlib.util, types\n"
        "sys.modules['triton_python_backend_utils'] = types.ModuleType('triton_python_backend_utils')\n"
        f"spec = importlib.util.spec_from_file_location('tritonops_backend_model', {str(BACKEND_MODEL)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert hasattr(module, 'TritonPythonModel')"
    )
    assert "tritonops.serving.scoring" in loaded and "onnxruntime" in loaded  # it did import the backend
    assert not _top_level(loaded) & set(HEAVY), sorted(_top_level(loaded) & set(HEAVY))
    assert not {m for m in loaded if m.startswith(SIBLINGS)}, sorted(m for m in loaded if m.startswith(SIBLINGS))
    assert "tritonops.serving.triton" not in loaded and "requests" not in loaded  # nor the server launcher
    assert "asyncio" not in loaded  # imported by the BLS canary path only: every stub start would pay for it
    assert "pydantic" not in loaded  # manifests are read by tritonops.contract.served: 0.1 s of CPU per stub start


def test_the_contract_needs_only_numpy_and_pydantic() -> None:
    contract = _loaded_after("import tritonops.contract, tritonops.contract.manifest")  # the manifest loads pydantic
    loaded = _top_level(contract) - _top_level(_loaded_after(""))
    # private extension helpers (numpy's ``_cython_*``, ``cython_runtime``) are no distributions of their own
    third_party = {m for m in loaded - set(sys.stdlib_module_names) if not m.startswith(("_", "cython_"))}
    third_party -= {"tritonops"}
    pydantic_stack = {"pydantic", "pydantic_core", "typing_extensions", "annotated_types", "typing_inspection"}
    assert third_party <= {"numpy"} | pydantic_stack, sorted(third_party - {"numpy"} - pydantic_stack)


def test_the_sdk_imports_neither_the_converter_nor_onnx_runtime() -> None:
    loaded = _loaded_after("from tritonops.clients import TritonClient")
    # pandas itself loads pyarrow where it is installed; tests/packaging checks a base install has none
    unwanted = {"onnxruntime", "onnx", "scipy", "sklearn", "skl2onnx", "pytriton", "fastapi", "psycopg"}
    assert not _top_level(loaded) & unwanted, sorted(_top_level(loaded) & unwanted)
    assert not {m for m in loaded if m.startswith(("tritonops.converters", "tritonops.serving"))}
