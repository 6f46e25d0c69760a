"""Side-by-side loads: several URLs under the same load in interleaved rounds.

A shared 2-core machine drifts by tens of percent within minutes; running A, B, C, A, B, C, ... and comparing each
round's numbers pairwise keeps that drift out of the ratios. ``paired_median`` is the ratio we report.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from tritonops.loadtest.generators import LoadResult, run_wrk

Runs = dict[tuple[str, int], list[LoadResult]]
"""Every round's load per (label, connections)."""


def interleaved(
    urls: Mapping[str, str],
    body: str,
    connections: Sequence[int],
    rounds: int,
    seconds: float,
    threads: int = 1,
    report: Callable[[str, int, LoadResult], None] | None = None,
) -> Runs:
    """POST ``body`` to each URL for ``seconds`` with ``wrk``, round after round, at each connection count."""
    runs: Runs = {}
    for level in connections:
        for _ in range(rounds):
            for label, url in urls.items():
                load = run_wrk(url, body, level, seconds, threads)
                runs.setdefault((label, level), []).append(load)
                if report is not None:
                    report(label, level, load)
    return runs


def rounds_rps(runs: Runs, level: int) -> dict[str, list[float]]:
    """Each label's req/s, round by round, at ``level`` connections."""
    return {label: [load.rps for load in loads] for (label, at), loads in runs.items() if at == level}


def paired_median(values: Sequence[float], references: Sequence[float]) -> float:
    """Median over rounds of value / reference (each round measured both back to back)."""
    return statistics.median(v / r for v, r in zip(values, references, strict=True) if r > 0)


def pooled(loads: Sequence[LoadResult]) -> LoadResult:
    """Several runs as one: counts and time added up, the median round's latencies, the worst CPU readings."""
    seconds = sum(load.seconds for load in loads)
    requests = sum(load.requests for load in loads)
    return replace(
        loads[0],
        seconds=seconds,
        requests=requests,
        failures=sum(load.failures for load in loads),
        rps=requests / seconds if seconds > 0 else 0.0,
        p50_ms=statistics.median(load.p50_ms for load in loads),
        p95_ms=statistics.median(load.p95_ms for load in loads),
        p99_ms=statistics.median(load.p99_ms for load in loads),
        idle_before=min(load.idle_before for load in loads),
        others_cpu=max(load.others_cpu for load in loads),
        steal=max(load.steal for load in loads),
    )
