"""The ``capture`` bench target's models: one converted version served with row capture off (twice) and at 0.1.

All are loaded from the version's bytes under their own names with the same config (as the control plane loads
a live version), one with the ``tritonops.capture`` parameter the control plane sets for ``tritonops capture set
MODEL --share 0.1``: the backend samples a tenth of the requests and spools their rows from its flush thread.
Measured in interleaved rounds on one server, the req/s ratio of capture 0.1 to capture off is what capture costs,
and that of the copy to capture off what the method reads when nothing differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as grpcclient

from tritonops.contract.names import PARAM_CAPTURE
from tritonops.control_plane.desired import canary_files, version_config
from tritonops.model_config import to_json, with_specific_versions
from tritonops.serving.capture import CLOSED_SUFFIX, CaptureSpec, read_spool

CAPTURE_OFF = "capture off"
CAPTURE_OFF_COPY = "capture off, a copy"
"""The same model as ``capture off`` under another name: their ratio is what the method reads with no difference
at all (the noise floor the capture figure is read against)."""
CAPTURE_01 = "capture 0.1"
CAPTURE_SHARE = 0.1


@dataclass(frozen=True)
class CaptureModel:
    label: str
    model: str
    """The Triton model the load is sent to."""


def load_capture_models(grpc_url: str, repository: Path, base: str, spool: Path) -> tuple[CaptureModel, ...]:
    """Load version 1 of ``base`` three times on the server at ``grpc_url``: twice without capture, and once
    capturing 10% into ``spool``."""
    files = canary_files(repository, base, 1)
    spec = CaptureSpec(share=CAPTURE_SHARE, directory=spool)
    models = (
        CaptureModel(CAPTURE_OFF, f"{base}_nocap"),
        CaptureModel(CAPTURE_01, f"{base}_cap"),
        CaptureModel(CAPTURE_OFF_COPY, f"{base}_nocap2"),
    )
    with grpcclient.InferenceServerClient(grpc_url) as client:
        for variant in models:
            config = with_specific_versions(version_config(repository, base, 1), [1])
            config.name = variant.model
            if variant.label == CAPTURE_01:
                config.parameters[PARAM_CAPTURE].string_value = spec.to_parameter()
            client.load_model(variant.model, config=to_json(config), files=files)
    return models


def spooled_rows(spool: Path) -> int:
    """Rows the capturing model wrote to its spool so far (open and closed files)."""
    return sum(len(block.request_ids) for path in spool.rglob(f"*{CLOSED_SUFFIX}") for block in read_spool(path).blocks)
