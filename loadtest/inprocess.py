"""The ceiling: ONNX Runtime called in-process on one thread, no network, no server, rows per second."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort


@dataclass(frozen=True)
class InProcessResult:
    batch: int
    calls: int
    seconds: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def measure(
    model_path: Path, rows: npt.NDArray[np.float32], batch: int, seconds: float, threads: int = 1
) -> InProcessResult:
    """Run ``batch``-row calls back to back for ``seconds`` (after a short warm-up)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    reps = -(-batch // len(rows))
    feed = {input_name: np.ascontiguousarray(np.tile(rows, (reps, 1))[:batch], dtype=np.float32)}
    for _ in range(20):
        session.run(None, feed)
    durations: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        began = time.perf_counter()
        session.run(None, feed)
        durations.append(time.perf_counter() - began)
    elapsed = time.perf_counter() - start
    p50, p99 = np.percentile(durations, [50, 99]) * 1000
    return InProcessResult(batch, len(durations), elapsed, len(durations) * batch / elapsed, float(p50), float(p99))
