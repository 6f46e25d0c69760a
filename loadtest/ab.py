"""Side-by-side loads: several URLs under the same load in interleaved rounds.

A shared 2-core machine drifts by tens of percent within minutes; running the URLs round after round and comparing
each round's numbers pairwise keeps that drift out of the ratios. ``paired_median`` is the ratio we report. The
order alternates (A, B, C, then C, B, A, ...) so no URL always runs first, and a round in which the hypervisor
stole more than ``max_steal`` of the CPU from any run is measured again (a virtual machine's neighbours are the
noise no pairing removes), up to as many extra rounds as were asked for.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from tritonops.loadtest.generators import LoadResult

Runs = dict[tuple[str, int], list[LoadResult]]
"""Every kept round's load per (label, connections)."""

Measure = Callable[[str, int], LoadResult]
"""``(url, connections) -> one run``."""


@dataclass(frozen=True)
class Interleaved:
    """The kept rounds, and how many were measured again because of stolen CPU, per connection count."""

    runs: Runs
    repeated: dict[int, int]


def interleaved(
    urls: Mapping[str, str],
    connections: Sequence[int],
    rounds: int,
    measure: Measure,
    max_steal: float = 1.0,
    report: Callable[[str, int, LoadResult], None] | None = None,
) -> Interleaved:
    """Run ``measure`` on each URL, round after round in alternating order, at each connection count; a round
    with a run that saw more than ``max_steal`` of the CPU stolen is dropped and measured again (at most
    ``rounds`` times per connection count; after that the round is kept as it is)."""
    runs: Runs = {}
    repeated: dict[int, int] = {}
    labels = list(urls)
    for level in connections:
        kept = retries = 0
        while kept < rounds:
            order = labels if (kept + retries) % 2 == 0 else labels[::-1]
            measured = {}
            for label in order:
                measured[label] = measure(urls[label], level)
                if report is not None:
                    report(label, level, measured[label])
            if retries < rounds and max(load.steal for load in measured.values()) > max_steal:
                retries += 1
                continue
            for label in labels:
                runs.setdefault((label, level), []).append(measured[label])
            kept += 1
        repeated[level] = retries
    return Interleaved(runs, repeated)


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
