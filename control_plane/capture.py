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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tritonops.control_plane.errors import CaptureError
from tritonops.serving.capture import CLOSED_SUFFIX, OPEN_SUFFIX, CapturedBlock, read_spool

log = logging.getLogger("tritonops.capture")

LEGACY_SUFFIX, LEGACY_OPEN_SUFFIX = ".jsonl", ".open.jsonl"
"""Spool files of the JSON-lines writer (before the binary frames): still compacted after an upgrade."""
TIME_TYPE = pa.timestamp("us", tz="UTC")

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
    for suffix, open_suffix in ((CLOSED_SUFFIX, OPEN_SUFFIX), (LEGACY_SUFFIX, LEGACY_OPEN_SUFFIX)):
        for path in sorted(spool.glob(f"*/*/*{suffix}")):
            if path.name.endswith(open_suffix) and now - path.stat().st_mtime < stale_open_seconds:
                continue
            found.append(path)
    return found


def _spool_table(path: Path) -> pa.Table | None:
    """The rows of one spool file as a table (None when it holds none); a torn last frame or line is skipped."""
    if path.name.endswith(LEGACY_SUFFIX):
        records = _legacy_records(path)
        return _legacy_table(records) if records else None
    contents = read_spool(path)
    if contents.torn:  # a writer killed mid-frame
        log.warning("capture: %s ends in a torn frame; its whole frames are kept", path)
    return (
        pa.concat_tables([_block_table(b) for b in contents.blocks], promote_options="permissive")
        if contents.blocks
        else None
    )


def _block_table(block: CapturedBlock) -> pa.Table:
    rows, classes = block.probabilities.shape
    offsets = np.arange(rows + 1, dtype=np.int32) * classes
    columns: dict[str, Any] = {
        "request_id": pa.array(block.request_ids, type=pa.string()),
        "time": pa.array((block.times * 1_000_000).astype(np.int64), type=TIME_TYPE),
        "version": pa.array(np.full(rows, block.version, dtype=np.int64)),
        "label": pa.array([str(label) for label in block.labels], type=pa.string()),
        "probabilities": pa.ListArray.from_arrays(pa.array(offsets), pa.array(block.probabilities.reshape(-1))),
    }
    for name in sorted(block.features):
        columns[FEATURE_PREFIX + name] = pa.array(block.features[name])
    return pa.table(columns)


def _legacy_records(path: Path) -> list[dict[str, Any]]:
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


def _legacy_table(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    features = sorted({name for record in records for name in record["features"]})
    columns: dict[str, Any] = {
        "request_id": [r["request_id"] for r in records],
        "time": pa.array([datetime.fromtimestamp(r["time"], UTC) for r in records], type=TIME_TYPE),
        "version": [int(r["version"]) for r in records],
        "label": [str(r["label"]) for r in records],
        "probabilities": pa.array([r["probabilities"] for r in records], type=pa.list_(pa.float64())),
    }
    for name in features:
        columns[FEATURE_PREFIX + name] = [r["features"].get(name) for r in records]
    return pa.table(columns)


def _by_hour(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """``table`` split into its rows' UTC hours, oldest first."""
    hours = pc.cast(table["time"], pa.int64()).to_numpy() // 3_600_000_000
    return [(_hour(float(hour) * 3600), table.filter(pa.array(hours == hour))) for hour in np.unique(hours)]


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
    groups: dict[tuple[str, str], list[pa.Table]] = defaultdict(list)
    for path in files:
        table = _spool_table(path)
        if table is not None:
            groups[(path.parent.parent.name, path.parent.name)].append(table)
    written = rows = 0
    for (model, version), tables in sorted(groups.items()):
        whole = pa.concat_tables(tables, promote_options="permissive")
        rows += whole.num_rows
        for hour, part in _by_hour(whole):
            folder = parquet_root / f"model={model}" / f"version={version}" / f"hour={hour}"
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"part-{time.time_ns()}.parquet"
            partial = final.with_suffix(".parquet.tmp")
            pq.write_table(part, partial)
            os.replace(partial, final)
            written += 1
    for path in files:  # only after their rows are safely in Parquet
        path.unlink()
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
