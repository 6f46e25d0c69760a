"""Row capture inside the backend: a share of scored requests appended to spool files, off the hot path.

The backend samples whole requests (``share``), turns each scored row into one JSON line (request id, time,
version, feature values, label, probabilities) with the listed columns dropped or hashed, keeps the lines in
memory and appends them to a spool file from its flush thread. A spool file is closed (renamed from
``*.open.jsonl`` to ``*.jsonl``) when it is large or old enough; the control plane compacts closed files into
Parquet (``tritonops.control_plane.capture``). No pyarrow or pandas here: the stub stays lean.

Layout: ``<directory>/<model>/<version>/<pid>-<start ns>-<n>.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tritonops.contract.errors import ModelConfigError
from tritonops.contract.names import PARAM_CAPTURE

OPEN_SUFFIX = ".open.jsonl"
CLOSED_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class CaptureSpec:
    """What one model captures: the share of requests, where to, and which columns never leave the server."""

    share: float
    directory: Path
    drop: tuple[str, ...] = ()
    hash: tuple[str, ...] = ()
    rotate_bytes: int = 8 * 1024 * 1024
    rotate_seconds: float = 10.0
    buffer_rows: int = 50_000
    """Rows held between flushes at most; beyond it rows are dropped (and counted), never memory."""

    def __post_init__(self) -> None:
        if not (0.0 <= self.share <= 1.0) or math.isnan(self.share):
            raise ModelConfigError(f"capture share: expected a number from 0 to 1, got {self.share!r}")
        overlap = sorted(set(self.drop) & set(self.hash))
        if overlap:
            raise ModelConfigError(f"capture: columns {overlap} are both dropped and hashed; choose one")
        if self.rotate_bytes <= 0 or self.rotate_seconds <= 0 or self.buffer_rows <= 0:
            raise ModelConfigError("capture: rotate_bytes, rotate_seconds and buffer_rows must be > 0")

    def to_parameter(self) -> str:
        return json.dumps(
            {
                "share": self.share,
                "directory": str(self.directory),
                "drop": list(self.drop),
                "hash": list(self.hash),
                "rotate_bytes": self.rotate_bytes,
                "rotate_seconds": self.rotate_seconds,
                "buffer_rows": self.buffer_rows,
            },
            sort_keys=True,
        )

    @classmethod
    def from_parameter(cls, text: str) -> CaptureSpec:
        try:
            raw = json.loads(text)
            return cls(
                share=float(raw["share"]),
                directory=Path(raw["directory"]),
                drop=tuple(str(c) for c in raw.get("drop", ())),
                hash=tuple(str(c) for c in raw.get("hash", ())),
                rotate_bytes=int(raw.get("rotate_bytes", 8 * 1024 * 1024)),
                rotate_seconds=float(raw.get("rotate_seconds", 10.0)),
                buffer_rows=int(raw.get("buffer_rows", 50_000)),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ModelConfigError(
                f"parameter {PARAM_CAPTURE}: expected JSON with share and directory, got {text!r} ({exc})"
            ) from exc

    @classmethod
    def from_model_config(cls, config: Mapping[str, Any]) -> CaptureSpec | None:
        """The spec in a model config JSON (what Triton hands ``initialize``), or None without one."""
        raw = (config.get("parameters") or {}).get(PARAM_CAPTURE)
        text = str(raw.get("string_value", "")) if isinstance(raw, Mapping) else ""
        return cls.from_parameter(text) if text else None


def hash_value(value: object) -> str:
    """The stored form of a hashed column: sha256 of the value's text."""
    return hashlib.sha256(str(value).encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


@dataclass
class CaptureWriter:
    """Samples requests of one model version and spools their rows; ``flush`` does the file I/O."""

    spec: CaptureSpec
    model: str
    version: int
    inputs: Sequence[tuple[str, tuple[str, ...]]]
    """(tensor name, the features its columns hold) in manifest order."""
    classes: Sequence[object]
    rng: random.Random = field(default_factory=random.Random)
    dropped: int = 0
    written: int = 0
    _records: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _path: Path | None = None
    _opened: float = 0.0
    _files: int = 0

    @property
    def folder(self) -> Path:
        return self.spec.directory / self.model / str(self.version)

    def sampled(self) -> bool:
        """Whether to keep this request (one draw per request, so a request's rows stay together)."""
        share = self.spec.share
        return share >= 1.0 or (share > 0.0 and self.rng.random() < share)

    def offer(
        self,
        request_id: str,
        tensors: Mapping[str, npt.NDArray[Any]],
        label: npt.NDArray[Any],
        probabilities: npt.NDArray[np.float32],
    ) -> None:
        """Keep every row of one scored request (call only when ``sampled()``).

        Only plain Python values are made here, on the request's path: a tensor of finite floats skips the per-value
        conversion, and the JSON encoding waits for ``flush`` (the flush thread).
        """
        now = time.time()
        rows = label.shape[0]
        drop, hashed = self.spec.drop, self.spec.hash
        columns: list[tuple[str, bool, bool, list[Any]]] = []
        for name, features in self.inputs:
            array = np.asarray(tensors[name]).reshape(rows, -1)
            plain = array.dtype.kind == "f" and bool(np.isfinite(array).all())  # floats as they are: no conversion
            by_column = array.T.tolist()
            for index, feature in enumerate(features):
                if feature not in drop:
                    columns.append((feature, feature in hashed, plain, by_column[index]))
        records = []
        for row in range(rows):
            values = {}
            for feature, hash_it, plain, column in columns:
                value = column[row] if plain else _plain(column[row])
                values[feature] = hash_value(value) if hash_it else value
            records.append(
                {
                    "request_id": request_id if rows == 1 else f"{request_id}/{row}",
                    "time": now,
                    "version": self.version,
                    "features": values,
                    "label": _plain(label[row].reshape(-1)[0]),
                    "probabilities": np.asarray(probabilities[row], dtype=np.float64).tolist(),
                }
            )
        with self._lock:
            room = self.spec.buffer_rows - len(self._records)
            if room < len(records):
                self.dropped += len(records) - max(room, 0)
                records = records[: max(room, 0)]
            self._records.extend(records)

    def flush(self, *, final: bool = False) -> None:
        """Append the buffered rows to the open spool file; close it when big or old enough (or ``final``)."""
        with self._lock:
            records, self._records = self._records, []
        lines = [json.dumps(record, separators=(",", ":")) for record in records]
        if lines:
            try:
                with self._open_path().open("a", encoding="utf-8") as handle:
                    handle.write("\n".join(lines) + "\n")
            except OSError:
                self.dropped += len(lines)  # counted, then the caller logs the error
                raise
            self.written += len(lines)
        current = self._path
        if current is not None and (
            final
            or current.stat().st_size >= self.spec.rotate_bytes
            or time.monotonic() - self._opened >= self.spec.rotate_seconds
        ):
            os.replace(current, current.with_name(current.name[: -len(OPEN_SUFFIX)] + CLOSED_SUFFIX))
            self._path = None

    def _open_path(self) -> Path:
        if self._path is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._files += 1
            self._path = self.folder / f"{os.getpid()}-{time.time_ns()}-{self._files}{OPEN_SUFFIX}"
            self._opened = time.monotonic()
        return self._path
