"""Row capture without a server: the backend's sampler and spool writer, compaction to Parquet, the size bound,
export with ground truth joined by request id."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tritonops.control_plane.capture import FEATURE_PREFIX, compact, export
from tritonops.control_plane.errors import CaptureError
from tritonops.serving.capture import CaptureSpec, CaptureWriter, hash_value, read_spool
from tritonops.serving.errors import ModelConfigError

INPUTS = [("input", ("amount", "age")), ("country", ("country",))]


def _writer(tmp_path: Path, share: float = 1.0, **spec: object) -> CaptureWriter:
    return CaptureWriter(
        CaptureSpec(share=share, directory=tmp_path / "spool", **spec),  # type: ignore[arg-type]
        "churn",
        3,
        INPUTS,
        ["no", "yes"],
        rng=random.Random(5),
    )


def _request(rows: int, start: float = 0.0) -> dict[str, np.ndarray]:
    numbers = np.arange(start, start + 2 * rows, dtype=np.float32).reshape(rows, 2)
    return {"input": numbers, "country": np.array([[b"fr"]] * rows, dtype=object)}


def _scored(rows: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array([["yes"]] * rows, dtype=object), np.tile(np.array([[0.25, 0.75]], dtype=np.float32), (rows, 1))


def test_spec_round_trips_through_the_model_config_parameter_and_refuses_nonsense(tmp_path: Path) -> None:
    spec = CaptureSpec(share=0.05, directory=tmp_path, drop=("age",), hash=("country",))
    config = {"parameters": {"tritonops.capture": {"string_value": spec.to_parameter()}}}
    assert CaptureSpec.from_model_config(config) == spec
    assert CaptureSpec.from_model_config({"parameters": {}}) is None
    with pytest.raises(ModelConfigError, match=r"share: expected a number from 0 to 1, got 1.5"):
        CaptureSpec(share=1.5, directory=tmp_path)
    with pytest.raises(ModelConfigError, match=r"\['age'\] are both dropped and hashed"):
        CaptureSpec(share=0.1, directory=tmp_path, drop=("age",), hash=("age",))
    with pytest.raises(ModelConfigError, match=r"tritonops.capture: expected JSON with share and directory"):
        CaptureSpec.from_parameter('{"share": 0.1}')


def test_sampling_keeps_about_the_share_of_requests(tmp_path: Path) -> None:
    writer = _writer(tmp_path, share=0.1)
    kept = sum(writer.sampled() for _ in range(20_000))
    assert 1_800 < kept < 2_200  # binomial(20000, 0.1): sd 42, so +-4.7 sd
    assert not any(_writer(tmp_path, share=0.0).sampled() for _ in range(1_000))


def test_rows_are_spooled_with_columns_dropped_and_hashed_then_compacted_by_hour(tmp_path: Path) -> None:
    writer = _writer(tmp_path, drop=("age",), hash=("country",))
    writer.offer("req-1", _request(1), *_scored(1))
    writer.offer("req-2", _request(3, start=10), *_scored(3))
    writer.flush()
    (open_file,) = list((tmp_path / "spool" / "churn" / "3").iterdir())
    assert open_file.name.endswith(".open.rows")
    (block,) = read_spool(open_file).blocks  # one flush, one frame
    assert set(block.features) == {"amount", "country"}  # age never written
    assert block.features["amount"].tolist() == [0.0, 10.0, 12.0, 14.0]  # type: ignore[union-attr]
    assert block.features["country"] == [hash_value("fr")] * 4
    assert block.request_ids == ["req-1", "req-2/0", "req-2/1", "req-2/2"] and block.labels == ["yes"] * 4
    assert block.probabilities.tolist() == [[0.25, 0.75]] * 4
    assert compact(tmp_path / "spool", tmp_path / "rows", max_bytes=10**9).files == 0  # still open: not yet
    writer.flush(final=True)

    report = compact(tmp_path / "spool", tmp_path / "rows", max_bytes=10**9)
    assert (report.files, report.rows, report.parquet_files, report.deleted_for_size) == (1, 4, 1, 0)
    assert not list((tmp_path / "spool" / "churn" / "3").iterdir())  # spooled rows are in Parquet now
    (part,) = list((tmp_path / "rows").glob("model=churn/version=3/hour=*/*.parquet"))
    table = pq.read_table(part)
    assert table["request_id"].to_pylist() == ["req-1", "req-2/0", "req-2/1", "req-2/2"]
    assert table[FEATURE_PREFIX + "amount"].to_pylist() == [0.0, 10.0, 12.0, 14.0]
    assert FEATURE_PREFIX + "age" not in table.column_names
    assert set(table[FEATURE_PREFIX + "country"].to_pylist()) == {hash_value("fr")}


def test_a_full_buffer_drops_whole_requests_and_counts_their_rows_instead_of_growing(tmp_path: Path) -> None:
    writer = _writer(tmp_path, buffer_rows=5)
    for i in range(4):
        writer.offer(f"r{i}", _request(2), *_scored(2))
    assert writer.dropped == 4  # r2 and r3 did not fit after r0 and r1
    writer.flush(final=True)
    assert writer.written == 4
    (spooled,) = list((tmp_path / "spool" / "churn" / "3").iterdir())
    assert read_spool(spooled).blocks[0].request_ids == ["r0/0", "r0/1", "r1/0", "r1/1"]
    writer.offer("r4", _request(2), *_scored(2))  # the flush made room again
    assert writer.dropped == 4


def test_export_joins_labels_filters_by_time_and_the_size_bound_drops_oldest_hours(tmp_path: Path) -> None:
    # spooled as JSON lines, the format before binary frames: still compacted after an upgrade
    spool = tmp_path / "spool" / "churn" / "3"
    spool.mkdir(parents=True)
    middle = (time.time() // 3600) * 3600 - 1800  # mid-hour: 50 rows a second apart never cross into the next one
    for hours_ago in (5, 3, 0):
        lines = [
            json.dumps(
                {
                    "request_id": f"h{hours_ago}-{i}",
                    "time": middle - hours_ago * 3600 + i,
                    "version": 3,
                    "features": {"amount": float(i)},
                    "label": "yes",
                    "probabilities": [0.4, 0.6],
                }
            )
            for i in range(50)
        ]
        (spool / f"1-{hours_ago}-1.jsonl").write_text("\n".join(lines) + "\n{torn")
    compact(tmp_path / "spool", tmp_path / "rows", max_bytes=10**9)

    recent = export(tmp_path / "rows", "churn", since=middle - 60, labels=lambda ids: {ids[0]: "no"})
    assert recent.num_rows == 50 and recent["request_id"].to_pylist()[0] == "h0-0"
    assert recent["true_label"].to_pylist()[:2] == ["no", None]
    assert export(tmp_path / "rows", "churn").num_rows == 150

    by_hour = sorted((p.parent.name, p.stat().st_size) for p in (tmp_path / "rows").rglob("*.parquet"))
    bound = sum(size for _, size in by_hour[1:])  # room for all but the oldest hour
    report = compact(tmp_path / "spool", tmp_path / "rows", max_bytes=bound)
    assert report.deleted_for_size == 1 and report.bytes_after == bound
    assert export(tmp_path / "rows", "churn")["request_id"].to_pylist()[0] == "h3-0"  # the oldest hour went
    with pytest.raises(CaptureError, match=r"capture 'other': no captured rows"):
        export(tmp_path / "rows", "other")


def test_an_abandoned_open_file_is_compacted_once_stale(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.offer("only", _request(1), *_scored(1))
    writer.flush()
    (left,) = list((tmp_path / "spool" / "churn" / "3").iterdir())
    old = time.time() - 600
    os.utime(left, (old, old))
    assert compact(tmp_path / "spool", tmp_path / "rows", max_bytes=10**9, stale_open_seconds=120).rows == 1


def test_a_torn_last_frame_keeps_the_whole_frames_and_values_stay_exact(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    odd = {
        "input": np.array([[np.nan, np.inf], [1e-45, -0.0]], dtype=np.float32),
        "country": np.array([[b"d\xc3\xa9"]] * 2, dtype=object),
    }
    writer.offer("odd", odd, *_scored(2))
    writer.flush()
    writer.offer("lost", _request(1), *_scored(1))
    writer.flush()
    (path,) = list((tmp_path / "spool" / "churn" / "3").iterdir())
    path.write_bytes(path.read_bytes()[:-7])  # the writer died inside its second frame
    contents = read_spool(path)
    assert contents.torn and [b.request_ids for b in contents.blocks] == [["odd/0", "odd/1"]]
    amount = contents.blocks[0].features["amount"]
    assert np.isnan(amount[0]) and amount[1:].tolist() == [float(np.float32(1e-45))]  # type: ignore[union-attr]
    assert contents.blocks[0].features["age"].tolist() == [np.inf, -0.0]  # type: ignore[union-attr]
    assert contents.blocks[0].features["country"] == ["dé", "dé"]
    os.utime(path, (time.time() - 600, time.time() - 600))
    assert compact(tmp_path / "spool", tmp_path / "rows", max_bytes=10**9, stale_open_seconds=120).rows == 2
    table = export(tmp_path / "rows", "churn")
    assert table["request_id"].to_pylist() == ["odd/0", "odd/1"]
    assert table[FEATURE_PREFIX + "country"].to_pylist() == ["dé", "dé"]
    assert table["probabilities"].to_pylist() == [[0.25, 0.75]] * 2
