"""Row capture inside the backend: a share of scored requests appended to spool files, off the hot path.

The backend samples whole requests (``share``) and keeps, per sampled request, copies of its input tensors and
references to its label and probabilities: no per-value work on the request's path. Its flush thread packs the
buffered requests into one binary frame (a small JSON header with request ids, times, labels and hashed or string
columns; numeric columns and probabilities as raw little-endian arrays) and appends it to a spool file. Listed
columns are dropped or hashed before a frame is written. A spool file is closed (renamed from ``*.open.rows`` to
``*.rows``) when it is large or old enough; the control plane compacts closed files into Parquet
(``tritonops.control_plane.capture``) with ``read_spool``. No pyarrow or pandas here: the stub stays lean.

Layout: ``<directory>/<model>/<version>/<pid>-<start ns>-<n>.rows``. A frame is ``FRAME_MAGIC``, the header's and
the body's lengths (``<4sIQ``), the UTF-8 JSON header, then the body; a writer killed mid-frame leaves one torn
last frame, which ``read_spool`` reports and skips.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import struct
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

OPEN_SUFFIX = ".open.rows"
CLOSED_SUFFIX = ".rows"
FRAME_MAGIC = b"TOC1"
_FRAME_HEAD = struct.Struct("<4sIQ")
_NUMERIC_KINDS = "biuf"


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
    """Rows held between flushes at most; a sampled request that does not fit is dropped (and counted), never
    memory."""

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
    """The stored form of a hashed column: sha256 of the value's text (bytes decoded as UTF-8 first)."""
    return hashlib.sha256(str(_plain(value)).encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    """A value JSON can carry: bytes decoded, numpy scalars as Python ones."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class CapturedBlock:
    """The rows of one spool frame, column by column (``features`` keeps the written columns only)."""

    version: int
    request_ids: list[str]
    times: npt.NDArray[np.float64]
    labels: list[Any]
    probabilities: npt.NDArray[np.float64]
    """``[rows, n_classes]``."""
    features: dict[str, npt.NDArray[Any] | list[Any]]
    """Numeric columns as float64/int64/bool arrays; string and hashed ones as lists."""


@dataclass(frozen=True)
class SpoolContents:
    """What ``read_spool`` found in one file: its whole frames, and whether a torn frame ended it."""

    blocks: list[CapturedBlock]
    torn: bool


def read_spool(path: Path) -> SpoolContents:
    """Every whole frame of a spool file, in the order written."""
    data = path.read_bytes()
    blocks: list[CapturedBlock] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _FRAME_HEAD.size:
            return SpoolContents(blocks, torn=True)
        magic, header_bytes, body_bytes = _FRAME_HEAD.unpack_from(data, offset)
        start = offset + _FRAME_HEAD.size
        end = start + header_bytes + body_bytes
        if magic != FRAME_MAGIC or end > len(data):
            return SpoolContents(blocks, torn=True)
        header = json.loads(data[start : start + header_bytes])
        blocks.append(_block(header, memoryview(data)[start + header_bytes : end]))
        offset = end
    return SpoolContents(blocks, torn=False)


def _block(header: Mapping[str, Any], body: memoryview) -> CapturedBlock:
    arrays = [
        np.frombuffer(body, dtype=np.dtype(b["dtype"]), count=math.prod(b["shape"]), offset=b["offset"]).reshape(
            b["shape"]
        )
        for b in header["buffers"]
    ]
    features: dict[str, npt.NDArray[Any] | list[Any]] = {}
    for column in header["columns"]:
        if "values" in column:
            features[column["name"]] = list(column["values"])
        else:
            values = arrays[column["buffer"]][:, column["column"]]
            wide = np.float64 if values.dtype.kind == "f" else np.int64 if values.dtype.kind in "iu" else None
            features[column["name"]] = values.astype(wide) if wide is not None else values.copy()
    return CapturedBlock(
        version=int(header["version"]),
        request_ids=list(header["request_ids"]),
        times=np.asarray(header["times"], dtype=np.float64),
        labels=list(header["labels"]),
        probabilities=arrays[header["probabilities"]].astype(np.float64),
        features=features,
    )


@dataclass(frozen=True)
class _Sampled:
    """One sampled request as the request path leaves it: copies of its inputs, its outputs by reference."""

    request_id: str
    time: float
    rows: int
    tensors: dict[str, npt.NDArray[Any]]
    label: npt.NDArray[Any]
    probabilities: npt.NDArray[np.float32]


@dataclass
class CaptureWriter:
    """Samples requests of one model version and spools their rows; ``flush`` does the encoding and file I/O."""

    spec: CaptureSpec
    model: str
    version: int
    inputs: Sequence[tuple[str, tuple[str, ...]]]
    """(tensor name, the features its columns hold) in manifest order."""
    classes: Sequence[object]
    rng: random.Random = field(default_factory=random.Random)
    dropped: int = 0
    written: int = 0
    _pending: list[_Sampled] = field(default_factory=list)
    _pending_rows: int = 0
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
        """Keep one scored request (call only when ``sampled()``): its input tensors are copied (they live in the
        request's shared memory), its outputs kept as they are; a request that does not fit the buffer is dropped
        whole."""
        rows = label.shape[0]
        with self._lock:
            if self._pending_rows + rows > self.spec.buffer_rows:
                self.dropped += rows
                return
            self._pending_rows += rows
        copies = {name: np.array(tensors[name]).reshape(rows, -1) for name, _ in self.inputs}
        sampled = _Sampled(request_id, time.time(), rows, copies, label, probabilities)
        with self._lock:
            self._pending.append(sampled)

    def flush(self, *, final: bool = False) -> None:
        """Append the buffered requests as one frame to the open spool file; close it when big or old enough (or
        ``final``)."""
        with self._lock:
            pending, self._pending = self._pending, []
            rows = sum(sampled.rows for sampled in pending)
            self._pending_rows -= rows
        if pending:
            frame = self._frame(pending)
            try:
                with self._open_path().open("ab") as handle:
                    handle.write(frame)
            except OSError:
                self.dropped += rows  # counted, then the caller logs the error
                raise
            self.written += rows
        current = self._path
        if current is not None and (
            final
            or current.stat().st_size >= self.spec.rotate_bytes
            or time.monotonic() - self._opened >= self.spec.rotate_seconds
        ):
            os.replace(current, current.with_name(current.name[: -len(OPEN_SUFFIX)] + CLOSED_SUFFIX))
            self._path = None

    def _frame(self, pending: Sequence[_Sampled]) -> bytes:
        """One spool frame holding every row of ``pending``."""
        request_ids: list[str] = []
        times: list[float] = []
        for sampled in pending:
            if sampled.rows == 1:
                request_ids.append(sampled.request_id)
            else:
                request_ids.extend(f"{sampled.request_id}/{row}" for row in range(sampled.rows))
            times.extend([sampled.time] * sampled.rows)
        buffers: list[npt.NDArray[Any]] = []
        columns: list[dict[str, Any]] = []
        drop, hashed = self.spec.drop, self.spec.hash
        for name, features in self.inputs:
            array = np.concatenate([sampled.tensors[name] for sampled in pending])
            numeric = array.dtype.kind in _NUMERIC_KINDS
            raw = [i for i, feature in enumerate(features) if feature not in drop and feature not in hashed]
            if numeric and raw:
                buffers.append(np.ascontiguousarray(array[:, raw]))
                columns += [{"name": features[i], "buffer": len(buffers) - 1, "column": j} for j, i in enumerate(raw)]
            for index, feature in enumerate(features):
                if feature in drop or (numeric and index in raw):
                    continue
                values = array[:, index].tolist()
                kept = [hash_value(v) for v in values] if feature in hashed else [_plain(v) for v in values]
                columns.append({"name": feature, "values": kept})
        labels = np.concatenate([sampled.label.reshape(sampled.rows, -1)[:, 0] for sampled in pending])
        buffers.append(np.concatenate([sampled.probabilities for sampled in pending]).astype("<f4"))
        described, body, offset = [], [], 0
        for buffer in buffers:
            little = buffer.dtype.newbyteorder("<")
            data = buffer.astype(little, copy=False).tobytes()
            described.append({"dtype": little.str, "shape": list(buffer.shape), "offset": offset})
            body.append(data)
            offset += len(data)
        header = json.dumps(
            {
                "version": self.version,
                "request_ids": request_ids,
                "times": times,
                "labels": [_plain(v) for v in labels.tolist()],
                "columns": columns,
                "buffers": described,
                "probabilities": len(buffers) - 1,
            },
            separators=(",", ":"),
        ).encode("utf-8")
        return _FRAME_HEAD.pack(FRAME_MAGIC, len(header), offset) + header + b"".join(body)

    def _open_path(self) -> Path:
        if self._path is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._files += 1
            self._path = self.folder / f"{os.getpid()}-{time.time_ns()}-{self._files}{OPEN_SUFFIX}"
            self._opened = time.monotonic()
        return self._path
