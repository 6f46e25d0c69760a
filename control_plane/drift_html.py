"""A drift report as one self-contained HTML page: the verdict first, then every feature's histograms.

Each feature (and the class mix) gets its reference and live shares side by side as an inline SVG bar chart, with
the statistics its rule uses (PSI, Jensen-Shannon, KS, chi-squared) and their thresholds. No scripts, fonts or
images are fetched: the file opens the same from a laptop, a CI artifact or an e-mail attachment. When rows are
captured, a table lists the most drifted of them (``tritonops.control_plane.drift_rows`` defines the score).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from html import escape
from pathlib import Path

from tritonops.control_plane.drift import PREDICTION, DriftReport, FeatureDrift, TestResult
from tritonops.control_plane.drift_rows import DriftedRow

REFERENCE_COLOUR = "#5b7db1"
LIVE_COLOUR = "#e07b39"
_CHART_HEIGHT = 180
_BAR_AREA_TOP = 12
_LABEL_SPACE = 70
_MAX_BAR_WIDTH = 28

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       color: #1d232b; padding: 0 1rem; }
h1 { margin-bottom: .2rem; } .meta { color: #5a6470; margin-top: 0; }
.verdict { padding: .8rem 1rem; border-radius: .4rem; font-size: 1.15rem; margin: 1rem 0; }
.verdict.drift { background: #fde3e1; border: 1px solid #d9534f; }
.verdict.ok { background: #e3f5e5; border: 1px solid #4caf50; }
.verdict.unknown { background: #fff6da; border: 1px solid #e0b000; }
section.feature { border-top: 1px solid #d8dde3; padding: 1rem 0; }
section.feature h2 { font-size: 1.1rem; margin: 0 0 .4rem 0; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: .8rem; font-size: .8rem; margin-left: .4rem; }
.badge.drift { background: #d9534f; color: white; } .badge.ok { background: #4caf50; color: white; }
.badge.few { background: #9aa3ad; color: white; }
.row { display: flex; gap: 2rem; flex-wrap: wrap; align-items: flex-start; }
table.stats { border-collapse: collapse; font-size: .9rem; }
table.stats td, table.stats th { padding: .15rem .6rem; border-bottom: 1px solid #eceff2; text-align: left; }
table.stats td.num { text-align: right; font-variant-numeric: tabular-nums; }
.legend span { display: inline-block; width: .8rem; height: .8rem; margin: 0 .3rem 0 1rem; vertical-align: -1px; }
ul.notes { color: #7a5b00; }
table.rows { border-collapse: collapse; font-size: .85rem; margin-top: .5rem; }
table.rows td, table.rows th { padding: .2rem .5rem; border-bottom: 1px solid #eceff2; text-align: right; }
table.rows td.id { text-align: left; font-family: ui-monospace, monospace; }
table.rows td.hot { background: #fde3e1; }
"""


def _number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}g}"


def _window_text(report: DriftReport) -> str:
    if report.window_seconds is None:
        return "since the version was loaded"
    seconds = report.window_seconds
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"last {seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"last {seconds / 60:g} min"
    return f"last {seconds:g} s"


def _verdict(report: DriftReport) -> tuple[str, str]:
    """(css class, sentence) of the dataset verdict."""
    if not report.enough_data:
        return "unknown", (
            f"Not enough data: {report.rows:.0f} rows in the window, at least {report.min_rows} needed for a verdict."
        )
    drifted = len(report.drifted_features)
    share = f"{drifted} of {len(report.features)} features drifted (dataset threshold: share >= {report.drift_share:g})"
    extra = "; the class mix moved away from the reference" if report.prediction_drift else ""
    if report.dataset_drift:
        return "drift", f"Dataset drift: {share}{extra}."
    if report.prediction_drift:
        return "drift", f"Prediction drift: {share}{extra}."
    return "ok", f"No dataset drift: {share}."


def _chart(feature: FeatureDrift) -> str:
    """Grouped bars, reference and live share per bin, as an inline SVG."""
    live = feature.live_shares()
    top = max([*feature.reference, *live, 1e-12])
    bins = len(feature.labels)
    group = max(2 * 6 + 4, min(2 * _MAX_BAR_WIDTH + 8, 640 // max(bins, 1)))
    bar = (group - 6) / 2
    width = 40 + bins * group
    plot_height = _CHART_HEIGHT - _BAR_AREA_TOP - _LABEL_SPACE
    base = _BAR_AREA_TOP + plot_height
    parts = [
        f'<svg class="chart" data-feature="{escape(feature.name)}" role="img" width="{width}" '
        f'height="{_CHART_HEIGHT}" viewBox="0 0 {width} {_CHART_HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(_display_name(feature))}: reference vs live share per bin</title>",
        f'<line x1="36" y1="{base}" x2="{width}" y2="{base}" stroke="#9aa3ad"/>',
        f'<text x="32" y="{_BAR_AREA_TOP + 4}" font-size="10" text-anchor="end">{top:.0%}</text>',
        f'<text x="32" y="{base}" font-size="10" text-anchor="end">0</text>',
    ]
    for i, label in enumerate(feature.labels):
        x = 40 + i * group
        for offset, share, colour, kind in (
            (0.0, feature.reference[i], REFERENCE_COLOUR, "reference"),
            (bar + 2, live[i], LIVE_COLOUR, "live"),
        ):
            height = plot_height * share / top
            parts.append(
                f'<rect class="bar {kind}" x="{x + offset:.1f}" y="{base - height:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{colour}"><title>{escape(label)}: {kind} {share:.2%}</title></rect>'
            )
        cx = x + group / 2 - 3
        parts.append(
            f'<text x="{cx:.1f}" y="{base + 10}" font-size="9" text-anchor="end" '
            f'transform="rotate(-45 {cx:.1f} {base + 10})">{escape(_short(label))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _short(label: str, limit: int = 14) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _display_name(feature: FeatureDrift) -> str:
    return "class mix (predictions)" if feature.name == PREDICTION else feature.name


def _test_cells(result: TestResult | None) -> tuple[str, str]:
    return (_number(result.statistic), _number(result.p_value)) if result else ("-", "-")


def _stats_table(feature: FeatureDrift) -> str:
    rule = f"{feature.method.value} {'<' if feature.method.is_p_value else '>='} {feature.threshold:g} means drift"
    ks_stat, ks_p = _test_cells(feature.ks)
    chi_stat, chi_p = _test_cells(feature.chi_squared)
    rows = [
        ("rule", rule),
        ("score", _number(feature.score)),
        ("live rows", f"{feature.live_rows:.0f}"),
        ("PSI", f"{_number(feature.psi)} {feature.psi_band or ''}".strip()),
        ("Jensen-Shannon distance", _number(feature.jensen_shannon)),
        ("KS statistic / p-value", f"{ks_stat} / {ks_p}"),
        ("chi-squared / p-value", f"{chi_stat} / {chi_p}"),
    ]
    body = "".join(f'<tr><th>{escape(k)}</th><td class="num">{escape(v)}</td></tr>' for k, v in rows)
    return f'<table class="stats">{body}</table>'


def _badge(feature: FeatureDrift) -> str:
    if not feature.enough_data:
        return '<span class="badge few">too few rows</span>'
    return '<span class="badge drift">drift</span>' if feature.drifted else '<span class="badge ok">ok</span>'


def _section(feature: FeatureDrift) -> str:
    return (
        f'<section class="feature" data-feature="{escape(feature.name)}" data-drifted="{str(feature.drifted).lower()}">'
        f"<h2>{escape(_display_name(feature))} <small>({escape(feature.kind)})</small>{_badge(feature)}</h2>"
        f'<div class="row">{_chart(feature)}{_stats_table(feature)}</div></section>'
    )


def _value(value: object) -> str:
    return _number(value) if isinstance(value, float) else ("-" if value is None else str(value))


def _rows_table(rows: Sequence[DriftedRow]) -> str:
    """The most drifted captured rows: score, then each feature's value (shaded where it contributes)."""
    names = list(rows[0].values)
    head = "".join(f"<th>{escape(n)}</th>" for n in ["#", "request id", "time", "label", "drift score", *names])
    body = []
    for rank, row in enumerate(rows, 1):
        cells = "".join(
            f'<td class="{"hot" if row.contributions[n] > 0 else ""}" '
            f'title="contribution {row.contributions[n]:.4g}">{escape(_value(row.values[n]))}</td>'
            for n in names
        )
        body.append(
            f'<tr class="drifted-row" data-request-id="{escape(row.request_id)}"><td>{rank}</td>'
            f'<td class="id">{escape(row.request_id)}</td><td class="id">{escape(row.time)}</td>'
            f'<td class="id">{escape(row.label)}</td><td>{row.score:.4g}</td>{cells}</tr>'
        )
    return (
        '<section id="drifted-rows"><h2>Most drifted rows</h2><p class="meta">Captured rows of this version in the '
        "window, ranked by drift score: the sum over features of the PSI term of the bin each value falls in, "
        "counted only for bins the live window over-fills against the reference (shaded cells).</p>"
        f'<table class="rows"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></section>'
    )


def render_html(report: DriftReport, *, generated_at: str, drifted_rows: Sequence[DriftedRow] = ()) -> str:
    """The whole page; drifted features come first, then the rest in manifest order, then the class mix, then
    the most drifted captured rows (when there are any)."""
    css_class, sentence = _verdict(report)
    ordered = sorted(report.features, key=lambda f: not f.drifted)
    sections = [_section(f) for f in ordered]
    if report.prediction is not None:
        sections.append(_section(report.prediction))
    notes = "".join(f"<li>{escape(n)}</li>" for n in report.notes)
    title = f"Drift report: {report.model} version {report.version}"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head><body>'
        f"<h1>{escape(title)}</h1>"
        f'<p class="meta">{report.rows:.0f} rows scored, {escape(_window_text(report))}; '
        f"generated {escape(generated_at)}</p>"
        f'<div class="verdict {css_class}" id="verdict">{escape(sentence)}</div>'
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
        + f'<p class="legend"><span style="background:{REFERENCE_COLOUR}"></span>reference (training sample)'
        f'<span style="background:{LIVE_COLOUR}"></span>live (window)</p>'
        + "".join(sections)
        + (_rows_table(drifted_rows) if drifted_rows else "")
        + "</body></html>\n"
    )


def write_html(report: DriftReport, path: Path, *, generated_at: str, drifted_rows: Sequence[DriftedRow] = ()) -> Path:
    """Write the page atomically (a reader never sees half a file) and return its path."""
    return write_page(render_html(report, generated_at=generated_at, drifted_rows=drifted_rows), path)


def write_page(text: str, path: Path) -> Path:
    """Write a rendered page (e.g. the controller's) to ``path`` atomically and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
