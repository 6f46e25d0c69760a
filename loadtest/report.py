"""The benchmark's results: one row per target, ratios to Flask and to the in-process limit, table/JSON/PNG."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class BenchRow:
    """One measured target. ``x_flask`` and ``of_limit`` are filled in by ``with_ratios``."""

    target: str
    protocol: str
    rows_per_request: int
    connections: int
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float
    rows_per_s: float
    idle_before: float | None = None
    """Share of the CPUs idle just before the run."""
    others_cpu: float | None = None
    """Share of the CPUs used by processes outside the benchmark during the run."""
    steal: float | None = None
    """Share of CPU time the hypervisor gave to other guests during the run."""
    variant: str = ""
    """Which way the target served the model, where it was measured several ways (``tritonops.loadtest.variants``)."""
    x_flask: float | None = None
    x_mlserver: float | None = None
    of_limit: float | None = None

    @property
    def name(self) -> str:
        return f"{self.target}: {self.variant}" if self.variant else self.target


def with_ratios(rows: list[BenchRow]) -> list[BenchRow]:
    """Request-rate ratios to the Flask and MLServer rows at the same connection count, and rows/s as a share of
    the best in-process rate."""
    flask = {r.connections: r.rps for r in rows if r.target == "flask"}
    mlserver = {r.connections: r.rps for r in rows if r.target == "mlserver"}
    limit = max((r.rows_per_s for r in rows if r.protocol == "in-process"), default=None)

    def ratio(row: BenchRow, peer: dict[int, float]) -> float | None:
        reference = peer.get(row.connections)
        return row.rps / reference if reference and row.protocol != "in-process" else None

    return [
        replace(
            row,
            x_flask=ratio(row, flask),
            x_mlserver=ratio(row, mlserver),
            of_limit=row.rows_per_s / limit if limit else None,
        )
        for row in rows
    ]


def _ratio(value: float | None, suffix: str = "x") -> str:
    return "-" if value is None else f"{value:,.1f}{suffix}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def render(rows: list[BenchRow], console: Console, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("target", "protocol", "rows/req", "conns", "requests", "fail", "req/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in ("target", "protocol") else "right", no_wrap=True)
    for column in ("rows/s", "x Flask", "x MLServer", "of limit", "idle before", "others' CPU", "steal"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r.name,
            r.protocol,
            str(r.rows_per_request),
            str(r.connections) if r.connections else "-",
            f"{r.requests:,}",
            str(r.failures),
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.rows_per_s:,.0f}",
            _ratio(r.x_flask),
            _ratio(r.x_mlserver),
            "-" if r.of_limit is None else f"{100 * r.of_limit:.0f}%",
            _share(r.idle_before),
            _share(r.others_cpu),
            _share(r.steal),
        )
    console.print(table)


def markdown(rows: list[BenchRow], verdicts: list[dict[str, Any]]) -> str:
    """The results table and the target verdicts as Markdown (pasted into docs/benchmarks.md)."""
    lines = [
        "| target | protocol | rows/req | conns | requests | failures | req/s | p50 ms | p99 ms | rows/s "
        "| x Flask | x MLServer | of in-process limit | CPU idle before | others' CPU during | stolen |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        limit = "-" if r.of_limit is None else f"{100 * r.of_limit:.0f}%"
        lines.append(
            f"| {r.name} | {r.protocol} | {r.rows_per_request} | {r.connections or '-'} | {r.requests:,} "
            f"| {r.failures} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.rows_per_s:,.0f} "
            f"| {_ratio(r.x_flask)} | {_ratio(r.x_mlserver)} | {limit} | {_share(r.idle_before)} "
            f"| {_share(r.others_cpu)} | {_share(r.steal)} |"
        )
    lines += ["", "| DESIGN target | measured | met |", "|---|--:|---|"]
    lines += [f"| {v['target']} | {v['value']} | {'yes' if v['met'] else 'no'} |" for v in verdicts]
    return "\n".join(lines) + "\n"


def write_json(path: Path, rows: list[BenchRow], meta: dict[str, Any], verdicts: list[dict[str, Any]]) -> None:
    path.write_text(
        json.dumps({"meta": meta, "results": [asdict(r) for r in rows], "targets": verdicts}, indent=2),
        encoding="utf-8",
    )


def _label(row: BenchRow) -> str:
    if row.protocol == "in-process":
        return f"in-process, {row.rows_per_request} row{'s' if row.rows_per_request > 1 else ''}/req"
    rows = f"{row.rows_per_request} row{'s' if row.rows_per_request > 1 else ''}/req"
    return f"{row.name} {row.protocol}, {rows}, {row.connections} conns"


def _color(row: BenchRow) -> str:
    if row.protocol == "in-process":
        return "#1f77b4"
    return "#76b900" if row.target == "triton" else "#888888"


def write_chart(path: Path, rows: list[BenchRow], title: str) -> None:
    """Two panels: requests/s of the servers and rows/s of everything, one bar per target (log scales)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    served = [r for r in rows if r.protocol != "in-process"]
    measured_once = [r for r in rows if not r.variant]  # the overhead target's rounds repeat served rows
    figure, (left, right) = plt.subplots(1, 2, figsize=(15, 0.45 * len(served) + 2.0))
    for axis, chosen, values, label in (
        (left, served, [r.rps for r in served], "requests / s"),
        (right, measured_once, [r.rows_per_s for r in measured_once], "rows / s"),
    ):
        positions = list(range(len(chosen)))
        axis.barh(positions, values, color=[_color(r) for r in chosen])
        axis.set_yticks(positions, [_label(r) for r in chosen])
        axis.set_xscale("log")
        axis.set_xlabel(f"{label} (log scale)")
        axis.invert_yaxis()
        axis.set_xlim(right=max(values, default=1.0) * 30)  # a run of variants only has no plain rows
        for position, (row, value) in enumerate(zip(chosen, values, strict=True)):
            note = f" {value:,.0f}" + ("" if row.protocol == "in-process" else f"  p99 {row.p99_ms:.1f} ms")
            axis.text(value, position, note, va="center", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
