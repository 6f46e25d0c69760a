"""Captured rows: the backend's spool files compacted into Parquet, bounded in size, exported with their labels.

``compact`` turns closed spool files (``tritonops.serving.capture``) into Parquet partitioned by model, version and
hour (``model=<m>/version=<v>/hour=<YYYY-MM-DDTHH>/part-<ns>.parquet``) and deletes them; when the Parquet tree
grows over its bound the oldest hours go first. ``export`` reads a model's rows since a time and joins the ground
truth recorded for their request ids, so a retraining job gets rows with labels.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tritonops.control_plane.errors import CaptureError
from tritonops.serving.capture import CLOSED_SUFFIX, OPEN_SUFFIX

log = logging.getLogger("tritonops.capture")

FEATURE_PREFIX = "feature."
"""Feature columns are named ``feature.<name>`` so no feature can clash with request_id, label, ..."""


@dataclass(frozen=True)
class CompactionReport:
    """What one ``compact`` run did."""

    files: int
    rows: int
    parquet_files: int
    deleted_for_size: int
    bytes_after: int


def _hour(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H")


def _spool_files(spool: Path, stale_open_seconds: float) -> list[Path]:
    """Closed spool files, plus open ones nobody has written to for a while (their writer died)."""
    now = time.time()
    found = []
    for path in sorted(spool.glob(f"*/*/*{CLOSED_SUFFIX}")):
        if path.name.endswith(OPEN_SUFFIX) and now - path.stat().st_mtime < stale_open_seconds:
            continue
        found.append(path)
    return found


def _read_records(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a writer killed mid-line leaves one torn last line
                log.warning("capture: %s line %d is not a whole record; skipped", path, number)
    return records


def _table(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    features = sorted({name for record in records for name in record["features"]})
    columns: dict[str, list[Any]] = {
        "request_id": [r["request_id"] for r in records],
        "time": [datetime.fromtimestamp(r["time"], UTC) for r in records],
        "version": [int(r["version"]) for r in records],
        "label": [str(r["label"]) for r in records],
        "probabilities": [r["probabilities"] for r in records],
    }
    for name in features:
        columns[FEATURE_PREFIX + name] = [r["features"].get(name) for r in records]
    return pa.table(columns)


def _tree_bytes(root: Path) -> list[tuple[str, Path, int]]:
    """(hour, file, size) of every Parquet file under ``root``, oldest hour first."""
    files = []
    for path in root.glob("model=*/version=*/hour=*/*.parquet"):
        files.append((path.parent.name.removeprefix("hour="), path, path.stat().st_size))
    return sorted(files, key=lambda item: (item[0], item[1].name))


def compact(spool: Path, parquet_root: Path, *, max_bytes: int, stale_open_seconds: float = 120.0) -> CompactionReport:
    """Move every closed spool file into Parquet, then delete the oldest Parquet files over ``max_bytes``."""
    if max_bytes <= 0:
        raise CaptureError(f"capture size bound: expected bytes > 0, got {max_bytes}")
    files = _spool_files(spool, stale_open_seconds) if spool.is_dir() else []
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for path in files:
        model, version = path.parent.parent.name, path.parent.name
        for record in _read_records(path):
            groups[(model, version, _hour(float(record["time"])))].append(record)
    written = 0
    for (model, version, hour), records in sorted(groups.items()):
        folder = parquet_root / f"model={model}" / f"version={version}" / f"hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"part-{time.time_ns()}.parquet"
        partial = final.with_suffix(".parquet.tmp")
        pq.write_table(_table(records), partial)
        os.replace(partial, final)
        written += 1
    for path in files:  # only after their rows are safely in Parquet
        path.unlink()
    rows = sum(len(r) for r in groups.values())
    tree = _tree_bytes(parquet_root) if parquet_root.is_dir() else []
    total = sum(size for _, _, size in tree)
    deleted = 0
    for _, path, size in tree:
        if total <= max_bytes:
            break
        path.unlink()
        total -= size
        deleted += 1
        if not any(path.parent.iterdir()):
            shutil.rmtree(path.parent)
    if files or deleted:
        log.info(
            "capture: compacted %d spool files (%d rows) into %d Parquet files; %d deleted for the %d-byte bound",
            len(files),
            rows,
            written,
            deleted,
            max_bytes,
        )
    return CompactionReport(len(files), rows, written, deleted, total)


def export(
    parquet_root: Path,
    model: str,
    *,
    since: float | None = None,
    labels: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
) -> pa.Table:
    """A model's captured rows (every version) from ``since`` (unix time) on, oldest first, with ``true_label``.

    ``labels`` maps request ids to the ground truth recorded for them (``FeedbackStore.true_labels``); rows
    without one get null.
    """
    folder = parquet_root / f"model={model}"
    paths = sorted(folder.glob("version=*/hour=*/*.parquet")) if folder.is_dir() else []
    if since is not None:
        first_hour = _hour(since)
        paths = [p for p in paths if p.parent.name.removeprefix("hour=") >= first_hour]
    if not paths:
        raise CaptureError(f"capture {model!r}: no captured rows under {folder}" + _since_text(since))
    tables = [pq.read_table(p) for p in paths]
    table = pa.concat_tables(tables, promote_options="permissive").sort_by("time")
    if since is not None:
        cutoff = pa.scalar(datetime.fromtimestamp(since, UTC), type=table.schema.field("time").type)
        table = table.filter(pc.greater_equal(table["time"], cutoff))
    ids = table["request_id"].to_pylist()
    truth = labels(ids) if labels is not None else {}
    return table.append_column("true_label", pa.array([truth.get(i) for i in ids], type=pa.string()))


def _since_text(since: float | None) -> str:
    return "" if since is None else f" since {datetime.fromtimestamp(since, UTC).isoformat(timespec='seconds')}"


def write_parquet(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, partial)
    os.replace(partial, path)
    return path
