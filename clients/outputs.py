"""Triton's outputs back into labels and probabilities (the inputs are encoded by ``tritonops.contract``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tritonops.contract.signature import Signature


def decode_labels(signature: Signature, raw: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Triton's ``label`` output (``[n, 1]``, bytes or int64) as a flat array of class names."""
    flat = raw.reshape(-1)
    if signature.class_dtype == "string":
        return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat], dtype=object)
    return flat.astype(np.int64)


def concat(parts: Sequence[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
