"""One trained model served three ways on one server, so the benchmark can price our backend's extra work.

- ``tritonops``: the model as converted (validation, drift counters, class names): what users run;
- ``counters off``: the same conversion with ``ServingOptions(drift_counters=False)``;
- ``bare backend``: ``loadtest/baselines/bare_backend/model.py`` on the same ONNX file and batching config,
  the kind of model DESIGN's reference figure was measured on (no validation, no counters).

Measured in interleaved rounds on one server, the ratios between them are the cost of the counters and of the
whole backend, free of the machine's drift between runs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.converters.repository import publish_live
from tritonops.model_config import ServingOptions, read_pbtxt, to_pbtxt

BARE_BACKEND_SOURCE = Path(__file__).resolve().parent / "baselines" / "bare_backend" / "model.py"


@dataclass(frozen=True)
class Variant:
    model: str
    """Triton model name."""
    label: str
    """How tables name it."""


TRITONOPS = "tritonops"
NO_COUNTERS = "counters off"
BARE = "bare backend"


def write_variants(model: Any, frame: pd.DataFrame, repository: Path, base: str) -> tuple[Variant, ...]:
    """Add the counters-off and bare variants of model ``base`` (already converted in ``repository``)."""
    quiet = convert_sklearn(
        model,
        frame,
        name=f"{base}_nocounters",
        repository=repository,
        options=ConversionOptions(serving=ServingOptions(drift_counters=False)),
    )
    publish_live(repository, quiet.name, quiet.version)  # served from disk: as after a promote
    bare = write_bare_model(repository, base, f"{base}_bare")
    return Variant(base, TRITONOPS), Variant(quiet.name, NO_COUNTERS), Variant(bare, BARE)


def write_bare_model(repository: Path, source: str, name: str) -> str:
    """Model ``name``: version 1 of ``source``'s ONNX file behind the bare Python backend, same batching config."""
    config = read_pbtxt(repository / source / "config.pbtxt")
    config.name = name
    config.backend = "python"
    config.ClearField("parameters")
    for output in config.output:
        output.ClearField("label_filename")
    version = repository / name / "1"
    version.mkdir(parents=True)
    shutil.copy2(repository / source / "1" / "model.onnx", version / "model.onnx")
    shutil.copy2(BARE_BACKEND_SOURCE, version / "model.py")
    (repository / name / "config.pbtxt").write_text(to_pbtxt(config), encoding="utf-8")
    return name
