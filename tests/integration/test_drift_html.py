"""The HTML drift report as a person sees it: rendered by headless Chromium, one chart per feature, verdict first."""

from __future__ import annotations

import math
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import RenderedPage
from tritonops.contract.manifest import NumericReference
from tritonops.control_plane.drift import PREDICTION, BinnedReference, DriftConfig, DriftReport, drift_report
from tritonops.control_plane.drift_html import LIVE_COLOUR, REFERENCE_COLOUR, render_html, write_html
from tritonops.control_plane.drift_rows import most_drifted_rows

pytestmark = pytest.mark.integration


class _Page(HTMLParser):
    """The parts of the rendered DOM the test checks."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.charts: list[str] = []
        self.sections: list[tuple[str, str]] = []
        self.bars: dict[str, int] = {}
        self.images = 0
        self.drifted_rows: list[str] = []
        self.first_block = ""
        self._in_title = False
        self._chart: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        classes = (values.get("class") or "").split()
        if tag == "title" and not self.title and self._chart is None:
            self._in_title = True
        if tag == "svg" and "chart" in classes:
            self._chart = values["data-feature"] or ""
            self.charts.append(self._chart)
        if tag == "rect" and "bar" in classes and self._chart is not None:
            self.bars[self._chart] = self.bars.get(self._chart, 0) + 1
        if tag == "section" and "feature" in classes:
            self.sections.append((values["data-feature"] or "", values["data-drifted"] or ""))
        if tag == "img":
            self.images += 1
        if tag == "tr" and "drifted-row" in classes:
            self.drifted_rows.append(values["data-request-id"] or "")
        if tag == "div" and not self.first_block:
            self.first_block = " ".join(classes)

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


EDGES = [-1.0, 0.0, 1.0]


def _references() -> dict[str, NumericReference]:
    """The manifest references behind ``_report``'s bins: edges -1, 0, 1 and a NaN bin."""
    return {
        f"sensor_{i}": NumericReference(bin_edges=EDGES, proportions=[0.2, 0.3, 0.3, 0.2], nan_proportion=0.0)
        for i in range(3)
    }


def _captured_rows() -> list[dict[str, object]]:
    """Captured rows as the capture store exports them: a calm one per bin of sensor_1, and moved ones on top."""
    rows: list[dict[str, object]] = []
    for i, value in enumerate([-2.0, -0.5, 0.5, 3.0, 2.5, None]):
        rows.append(
            {"request_id": f"r{i}", "time": f"2026-12-01T00:00:0{i}", "label": "ok", "version": 3,
             "feature.sensor_0": 0.5, "feature.sensor_1": value, "feature.sensor_2": -0.5}
        )  # fmt: skip
    return rows


def _report() -> DriftReport:
    """A three-feature report whose second feature moved to its top bins."""
    labels = ("(-inf, -1]", "(-1, 0]", "(0, 1]", "(1, inf)", "NaN")
    shares = (0.2, 0.3, 0.3, 0.2, 0.0)
    references = [BinnedReference(f"sensor_{i}", "numeric", labels, shares, 1000) for i in range(3)]
    references.append(BinnedReference(PREDICTION, "categorical", ("ok", "fault"), (0.7, 0.3), 1000))
    calm = dict(zip(labels, (200.0, 300.0, 300.0, 200.0, 0.0), strict=True))
    moved = dict(zip(labels, (20.0, 80.0, 300.0, 600.0, 0.0), strict=True))
    counts = {"sensor_0": calm, "sensor_1": moved, "sensor_2": calm}
    return drift_report(
        "pump", 3, references, counts, {"ok": 690.0, "fault": 310.0}, DriftConfig(min_rows=100, drift_share=0.3), 900.0
    )


def test_report_renders_in_chromium_with_one_chart_per_feature(
    tmp_path: Path, chromium: Callable[[Path], RenderedPage]
) -> None:
    report = _report()
    assert report.drifted_features == ["sensor_1"]
    drifted = most_drifted_rows(report, _references(), _captured_rows(), limit=5)
    page = write_html(
        report, tmp_path / "reports" / "drift.html", generated_at="2026-12-01T00:00:00Z", drifted_rows=drifted
    )
    rendered = chromium(page)

    dom = _Page()
    dom.feed(rendered.dom)
    assert dom.title == "Drift report: pump version 3"
    assert dom.first_block == "verdict drift"  # the verdict comes before any feature
    assert "1 of 3 features drifted" in rendered.dom
    assert dom.charts == ["sensor_1", "sensor_0", "sensor_2", PREDICTION]  # drifted first, class mix last
    assert dom.sections[0] == ("sensor_1", "true") and {d for _, d in dom.sections[1:]} == {"false"}
    assert dom.bars == {"sensor_1": 10, "sensor_0": 10, "sensor_2": 10, PREDICTION: 4}  # reference + live per bin
    assert dom.images == 0  # every chart is inline SVG: nothing to load, nothing to break
    assert "PSI" in rendered.dom and "Jensen-Shannon distance" in rendered.dom and "chi-squared" in rendered.dom
    # sensor_1's top bin holds 60% live against 20% reference: the only over-filled bin of any feature, whose PSI
    # term (0.6 - 0.2) * ln(0.6 / 0.2) is each of its rows' drift score; the rest score 0 and are not listed
    assert dom.drifted_rows == ["r3", "r4"]
    assert [round(r.score, 6) for r in drifted] == [round(0.4 * math.log(3.0), 6)] * 2
    assert drifted[0].contributions == {"sensor_0": 0.0, "sensor_1": drifted[0].score, "sensor_2": 0.0}
    assert "Most drifted rows" in rendered.dom
    pixels = np.asarray(Image.open(rendered.screenshot).convert("RGB")).reshape(-1, 3)
    for colour in (LIVE_COLOUR, REFERENCE_COLOUR):  # both series were drawn, not only the text
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        assert int(np.sum(np.all(np.abs(pixels.astype(int) - rgb) <= 2, axis=1))) > 500, colour


def test_text_is_escaped_and_too_little_data_says_so() -> None:
    labels = ("<script>", "b&c")
    reference = BinnedReference("<b>odd</b>", "categorical", labels, (0.5, 0.5), 10)
    mix = BinnedReference(PREDICTION, "categorical", ("x",), (1.0,), 10)
    report = drift_report("m", 1, [reference, mix], {"<b>odd</b>": {"b&c": 3.0}}, {"x": 3.0}, DriftConfig(), None)
    html = render_html(report, generated_at="now")
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;odd&lt;/b&gt;" in html
    assert 'class="verdict unknown"' in html and "Not enough data: 3 rows" in html
    assert "since the version was loaded" in html
