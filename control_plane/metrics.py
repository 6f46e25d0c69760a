"""Read Triton's ``/metrics``: scrape, parse, turn counters into per-window numbers, keep snapshots.

A ``Snapshot`` is one scrape of one endpoint, parsed with ``prometheus_client``'s text parser. Counters only mean
something as increases, so windows are two snapshots: ``counter_delta(before, after)`` (a counter that went down
was reset, e.g. by a model reload, and counts from zero; ``before=None`` means "since the version was loaded").
``version_stats`` turns a delta into per model/version numbers (request rate, error rate, queue and compute time,
batch size, cache hit rate, latency quantiles); ``feature_bin_counts`` / ``prediction_counts`` feed the drift
statistics. ``SnapshotStore`` keeps snapshots in the control plane's SQLite file so ``drift --window 15m`` can
look back.

Triton's own families (``nv_*``) are labelled with the name Triton loaded the model under (``rf`` or the alias
``rf__canary``); ours (``tritonops_*``) with the manifest's name and version. ``prometheus_client``'s parser
names every counter sample ``<family>_total`` (Triton's ``nv_inference_count`` becomes
``nv_inference_count_total``), so that is how series are addressed here. See docs/metrics.md.
"""

from __future__ import annotations

import json
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import requests
from prometheus_client.parser import text_string_to_metric_families

from tritonops.contract.names import base_model, canary_alias
from tritonops.control_plane.errors import MetricsError, StateError
from tritonops.control_plane.migrations import open_state_database
from tritonops.settings import StateLocation

Labels = tuple[tuple[str, str], ...]
"""A series' labels, sorted by name: hashable and JSON-friendly."""

QUANTILES = (0.5, 0.9, 0.95, 0.99)
FRONTEND_GAP = "frontend refusals not counted"
"""What every error rate shown leaves out: requests Triton's frontend refuses before our backend (malformed JSON,
wrong datatype or rank, a missing input, a batch too large) appear in no statistic and no metric of Triton 2.51
(docs/contracts.md, "Malformed requests"), so no error rate can include them."""
_COUNTER_SUFFIXES = {"counter": ("",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
KEPT_PREFIXES = ("nv_inference_", "nv_cache_num_", "tritonops_")
"""The families the control plane reads (what a counter sample keeps, what ``PrometheusWindows`` asks for)."""


def _labels(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted(mapping.items()))


@dataclass(frozen=True)
class Snapshot:
    """Every sample of one scrape: ``series[sample name][labels] = value``; ``counters``: monotonic sample names."""

    taken_at: float
    series: Mapping[str, Mapping[Labels, float]]
    counters: frozenset[str] = frozenset()

    def samples(self, name: str, **match: str) -> Iterator[tuple[dict[str, str], float]]:
        """The series of ``name`` whose labels include ``match``."""
        wanted = match.items()
        for labels, value in self.series.get(name, {}).items():
            as_dict = dict(labels)
            if all(as_dict.get(k) == v for k, v in wanted):
                yield as_dict, value

    def total(self, name: str, **match: str) -> float:
        """Sum of the matching series of ``name`` (0 when there is none)."""
        return float(sum(value for _, value in self.samples(name, **match)))

    def has(self, name: str, **match: str) -> bool:
        return any(True for _ in self.samples(name, **match))

    def restricted(self, prefixes: Sequence[str] = KEPT_PREFIXES) -> Snapshot:
        """Only the families the control plane reads (what ``SnapshotStore`` keeps)."""
        kept = {n: s for n, s in self.series.items() if n.startswith(tuple(prefixes))}
        return Snapshot(self.taken_at, kept, frozenset(n for n in self.counters if n in kept))

    def to_json(self) -> str:
        body = {
            "taken_at": self.taken_at,
            "counters": sorted(self.counters),
            "series": {n: [[dict(labels), v] for labels, v in s.items()] for n, s in self.series.items()},
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        body = json.loads(text)
        series = {n: {_labels(labels): float(v) for labels, v in rows} for n, rows in body["series"].items()}
        return cls(float(body["taken_at"]), series, frozenset(body["counters"]))


def parse_metrics(text: str, taken_at: float | None = None, source: str = "<text>") -> Snapshot:
    """Parse Prometheus text exposition format; raise ``MetricsError`` naming ``source`` when it is not."""
    series: dict[str, dict[Labels, float]] = {}
    counters: set[str] = set()
    try:
        for family in text_string_to_metric_families(text):
            suffixes = _COUNTER_SUFFIXES.get(family.type, ())
            for sample in family.samples:
                series.setdefault(sample.name, {})[_labels(sample.labels)] = float(sample.value)
                if any(sample.name == family.name + s or sample.name == family.name + "_total" for s in suffixes):
                    counters.add(sample.name)
    except ValueError as exc:
        raise MetricsError(source, f"not Prometheus text format ({exc})") from exc
    return Snapshot(time.time() if taken_at is None else taken_at, series, frozenset(counters))


def scrape(url: str, timeout: float = 3.0, session: requests.Session | None = None) -> Snapshot:
    """GET ``url`` (a Triton ``/metrics`` address) and parse it; ``MetricsError`` on any failure."""
    getter = session or requests
    try:
        response = getter.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise MetricsError(url, f"scrape failed ({type(exc).__name__}: {exc})") from exc
    if response.status_code != 200:
        raise MetricsError(url, f"scrape failed: HTTP {response.status_code}, expected 200")
    return parse_metrics(response.text, time.time(), url)


@dataclass(frozen=True)
class Window:
    """Counter increases between two scrapes of one endpoint, and the later scrape (gauges, summary quantiles)."""

    start: float | None  # None: counters from zero, i.e. since the version was loaded
    delta: Snapshot
    latest: Snapshot

    @property
    def end(self) -> float:
        return self.latest.taken_at

    @property
    def seconds(self) -> float | None:
        return None if self.start is None else max(self.end - self.start, 0.0)


def window(before: Snapshot | None, after: Snapshot) -> Window:
    """The window from ``before`` to ``after``; a counter that shrank was reset and counts from zero."""
    series: dict[str, dict[Labels, float]] = {}
    for name in after.counters:
        old = before.series.get(name, {}) if before is not None else {}
        series[name] = {
            labels: value - old.get(labels, 0.0) if value >= old.get(labels, 0.0) else value
            for labels, value in after.series.get(name, {}).items()
        }
    delta = Snapshot(after.taken_at, series, after.counters)
    return Window(before.taken_at if before is not None else None, delta, after)


def merge_deltas(deltas: Iterable[Snapshot]) -> Snapshot:
    """Counter increases of several endpoints added up (the fleet's traffic)."""
    series: dict[str, dict[Labels, float]] = {}
    counters: set[str] = set()
    taken_at = 0.0
    for delta in deltas:
        taken_at = max(taken_at, delta.taken_at)
        counters |= delta.counters
        for name, values in delta.series.items():
            target = series.setdefault(name, {})
            for labels, value in values.items():
                target[labels] = target.get(labels, 0.0) + value
    return Snapshot(taken_at, series, frozenset(counters))


# -- per model/version serving numbers --------------------------------------------------------------------------


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Quantile ``q`` of a cumulative histogram ``[(upper bound, count <= bound)]``, interpolated in its bucket.

    Same rule as PromQL's ``histogram_quantile``: linear inside the bucket, the highest finite bound when the rank
    falls into ``+Inf``; None without observations.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass(frozen=True)
class VersionStats:
    """What one model version did over a window (one endpoint, or the fleet added up)."""

    model: str  # the name Triton serves it under (may be an alias such as rf__canary)
    version: str
    seconds: float | None
    success: float = 0.0
    failure: float = 0.0
    invalid: float = 0.0  # requests the backend answered with an error (validation), counted as success by Triton
    inferences: float = 0.0
    executions: float = 0.0
    queue_us: float = 0.0
    compute_us: float = 0.0
    cache_hits: float = 0.0  # tritonops response cache (the backend's counters), else Triton's own
    cache_misses: float = 0.0
    compute_skipped: float = 0.0  # requests Triton answered from its own cache: they record no compute time
    latency_ms: Mapping[float, float] = field(default_factory=dict)
    latency_source: str = "none"

    @property
    def requests(self) -> float:
        return self.success + self.failure

    @property
    def errors(self) -> float:
        return self.failure + self.invalid

    @property
    def request_rate(self) -> float | None:
        return self.requests / self.seconds if self.seconds else None

    @property
    def error_rate(self) -> float | None:
        return min(self.errors / self.requests, 1.0) if self.requests else None

    @property
    def mean_queue_ms(self) -> float | None:
        return self.queue_us / self.requests / 1000 if self.requests else None

    @property
    def mean_compute_ms(self) -> float | None:
        executed = self.requests - self.compute_skipped
        return self.compute_us / executed / 1000 if executed > 0 else None

    @property
    def avg_batch_size(self) -> float | None:
        return self.inferences / self.executions if self.executions else None

    @property
    def cache_hit_rate(self) -> float | None:
        lookups = self.cache_hits + self.cache_misses
        return self.cache_hits / lookups if lookups else None

    @property
    def p99_ms(self) -> float | None:
        return self.latency_ms.get(0.99)


def _summary_quantiles(latest: Snapshot, model: str, version: str) -> dict[float, float]:
    found = {}
    for labels, value in latest.samples("nv_inference_request_summary_us", model=model, version=version):
        if "quantile" in labels and not math.isnan(value):
            found[float(labels["quantile"])] = value / 1000
    return found


def _histogram_quantiles(delta: Snapshot, model: str, version: str) -> dict[float, float]:
    buckets = [
        (float(labels["le"]), value)
        for labels, value in delta.samples("tritonops_request_duration_seconds_bucket", model=model, version=version)
    ]
    found = {}
    for q in QUANTILES:
        seconds = histogram_quantile(q, buckets)
        if seconds is not None:
            found[q] = seconds * 1000
    return found


def _cache_lookups(delta: Snapshot, model: str, base: Mapping[str, str]) -> tuple[float, float]:
    """(hits, misses): the tritonops backend's cache counters where the version exports them, else Triton's."""
    ours = ("tritonops_cache_hits_total", "tritonops_cache_misses_total")
    if any(delta.has(name, **base) for name in ours):
        return delta.total(ours[0], **base), delta.total(ours[1], **base)
    version = base["version"]
    return (
        delta.total("nv_cache_num_hits_per_model_total", model=model, version=version),
        delta.total("nv_cache_num_misses_per_model_total", model=model, version=version),
    )


def version_stats(win: Window) -> dict[tuple[str, str], VersionStats]:
    """Per (Triton model name, version) numbers over ``win``.

    Latency: Triton's ``nv_inference_request_summary_us`` quantiles (real percentiles of the whole request, over
    the summary's own sliding time window) when the server exports them; otherwise quantiles estimated from the
    backend's ``tritonops_request_duration_seconds`` histogram increases over this window (backend time only).
    """
    delta, latest = win.delta, win.latest
    keys = {
        (labels["model"], labels["version"])
        for name in ("nv_inference_request_success_total", "nv_inference_request_failure_total")
        for labels, _ in delta.samples(name)
    }
    routed = canary_routed(delta)
    keys |= set(routed)
    result = {}
    for model, version in sorted(keys):
        m = {"model": model, "version": version}
        base = {"model": base_model(model), "version": version}
        latency = _summary_quantiles(latest, model, version)
        source = "triton summary"
        if not latency:
            latency = _histogram_quantiles(delta, base["model"], version)
            source = "backend histogram" if latency else "none"
        cache_hits, cache_misses = _cache_lookups(delta, model, base)
        answered, fell_back = routed.get((model, version), (0.0, 0.0))
        result[(model, version)] = VersionStats(
            model=model,
            version=version,
            seconds=win.seconds,
            success=delta.total("nv_inference_request_success_total", **m) + answered,
            failure=delta.total("nv_inference_request_failure_total", **m) + fell_back,
            invalid=delta.total("tritonops_invalid_requests_total", **base),
            inferences=delta.total("nv_inference_count_total", **m),
            executions=delta.total("nv_inference_exec_count_total", **m),
            queue_us=delta.total("nv_inference_queue_duration_us_total", **m),
            compute_us=sum(
                delta.total(f"nv_inference_compute_{part}_duration_us_total", **m)
                for part in ("input", "infer", "output")
            ),
            cache_hits=cache_hits,
            cache_misses=cache_misses,
            compute_skipped=delta.total("nv_cache_num_hits_per_model_total", **m),
            latency_ms=latency,
            latency_source=source,
        )
    return result


def canary_routed(delta: Snapshot) -> dict[tuple[str, str], tuple[float, float]]:
    """Requests the live model's backend scored with its canary in-process, by (canary alias, canary version):
    (answered, fell back to live). Triton counts them under the live model only, so ``version_stats`` adds them
    to the canary alias's numbers: answered ones as successes, fallbacks (the canary failed on them) as failures.
    """
    routed: dict[tuple[str, str], tuple[float, float]] = {}
    for labels, value in delta.samples("tritonops_canary_requests_total"):
        key = (canary_alias(labels["model"]), labels["canary_version"])
        answered, fell_back = routed.get(key, (0.0, 0.0))
        if labels.get("outcome") == "fallback":
            fell_back += value
        else:
            answered += value
        routed[key] = (answered, fell_back)
    return routed


def combine_stats(
    per_endpoint: Iterable[Mapping[tuple[str, str], VersionStats]],
) -> dict[tuple[str, str], VersionStats]:
    """The fleet's numbers: counts added up; latency quantiles can't be merged, the worst endpoint's are kept."""
    combined: dict[tuple[str, str], VersionStats] = {}
    summed = ("success", "failure", "invalid", "inferences", "executions", "queue_us", "compute_us", "compute_skipped")
    for stats in per_endpoint:
        for key, s in stats.items():
            old = combined.get(key)
            if old is None:
                combined[key] = s
                continue
            latency = dict(old.latency_ms)
            for q, ms in s.latency_ms.items():
                latency[q] = max(latency.get(q, ms), ms)
            values = {name: getattr(old, name) + getattr(s, name) for name in summed}
            combined[key] = VersionStats(
                model=s.model,
                version=s.version,
                seconds=max(old.seconds or 0.0, s.seconds or 0.0) or None,
                cache_hits=old.cache_hits + s.cache_hits,
                cache_misses=old.cache_misses + s.cache_misses,
                latency_ms=latency,
                latency_source=old.latency_source if old.latency_ms else s.latency_source,
                **values,
            )
    return combined


# -- drift counters ---------------------------------------------------------------------------------------------


def feature_bin_counts(delta: Snapshot, model: str, version: int | str) -> dict[str, dict[str, float]]:
    """``tritonops_feature_bin_total`` increases: feature -> bin label -> count."""
    counts: dict[str, dict[str, float]] = {}
    for labels, value in delta.samples("tritonops_feature_bin_total", model=model, version=str(version)):
        feature = counts.setdefault(labels["feature"], {})
        feature[labels["bin"]] = feature.get(labels["bin"], 0.0) + value
    return counts


def prediction_counts(delta: Snapshot, model: str, version: int | str) -> dict[str, float]:
    """``tritonops_prediction_total`` increases: class -> count."""
    counts: dict[str, float] = {}
    for labels, value in delta.samples("tritonops_prediction_total", model=model, version=str(version)):
        counts[labels["class"]] = counts.get(labels["class"], 0.0) + value
    return counts


def rows_scored(delta: Snapshot, model: str, version: int | str) -> float:
    """``tritonops_rows_total`` increase."""
    return delta.total("tritonops_rows_total", model=model, version=str(version))


# -- history ----------------------------------------------------------------------------------------------------


def compact_counters(snapshot: Snapshot) -> bytes:
    """The counters the control plane reads from ``snapshot``, zero series left out (a window counts a missing
    series as 0), as zlib-compressed JSON: what one counter sample stores."""
    kept = snapshot.restricted()
    series = {
        name: [[dict(labels), value] for labels, value in kept.series[name].items() if value != 0.0]
        for name in sorted(kept.counters)
    }
    body = {"taken_at": snapshot.taken_at, "counters": {n: rows for n, rows in series.items() if rows}}
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode("utf-8"), 6)


def expand_counters(blob: bytes) -> Snapshot:
    body = json.loads(zlib.decompress(bytes(blob)))
    series = {n: {_labels(labels): float(v) for labels, v in rows} for n, rows in body["counters"].items()}
    return Snapshot(float(body["taken_at"]), series, frozenset(series))


class SnapshotStore:
    """Compact counter samples in the control plane's state database (own table), so windows can reach back.

    A sample holds only the counters the control plane reads, without zero series, compressed (a whole scrape was
    about 59 KB of JSON). Only what the longest window needs is kept: samples older than ``keep_seconds`` are
    forgotten at every record, and one is stored at most every ``min_spacing`` seconds per endpoint.
    """

    def __init__(
        self,
        location: StateLocation | Path,
        busy_timeout: float = 10.0,
        keep_seconds: float = 86400.0,
        min_spacing: float = 0.0,
    ) -> None:
        self.keep_seconds = keep_seconds
        self.min_spacing = min_spacing
        self._last: dict[str, float] = {}
        try:
            self._db = open_state_database(location, busy_timeout)
        except StateError as exc:
            raise MetricsError(str(location), f"cannot open the counter history ({exc})") from exc
        self.location = self._db.location

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SnapshotStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except StateError as exc:
            raise MetricsError(str(self.location), f"counter history: {exc}") from exc

    def record(self, endpoint: str, snapshot: Snapshot) -> bool:
        """Keep ``snapshot``'s counters (unless one was kept less than ``min_spacing`` ago); forget samples older
        than ``keep_seconds``. True when it was stored."""
        last = self._last.get(endpoint)
        if last is not None and snapshot.taken_at - last < self.min_spacing:
            return False
        with self._errors():
            self._db.execute(
                "INSERT INTO tritonops_counter_samples (endpoint, taken_at, body) VALUES (?, ?, ?)",
                (endpoint, snapshot.taken_at, compact_counters(snapshot)),
            )
        if len(self._last) >= 1024:  # endpoints that left the fleet: forget them, stay bounded
            self._last.clear()
        self._last[endpoint] = snapshot.taken_at
        self.prune(snapshot.taken_at - self.keep_seconds)
        return True

    def _one(self, query: str, args: tuple[object, ...]) -> Snapshot | None:
        with self._errors():
            row = self._db.execute(query, args).fetchone()
        return expand_counters(row[0]) if row else None

    def at_or_before(self, endpoint: str, at: float) -> Snapshot | None:
        """The newest sample of ``endpoint`` taken at or before ``at``."""
        return self._one(
            "SELECT body FROM tritonops_counter_samples WHERE endpoint = ? AND taken_at <= ? "
            "ORDER BY taken_at DESC LIMIT 1",
            (endpoint, at),
        )

    def oldest(self, endpoint: str) -> Snapshot | None:
        """The oldest sample kept for ``endpoint``."""
        return self._one(
            "SELECT body FROM tritonops_counter_samples WHERE endpoint = ? ORDER BY taken_at ASC LIMIT 1",
            (endpoint,),
        )

    def prune(self, before: float) -> int:
        """Forget samples taken before ``before``; returns how many."""
        with self._errors():
            cursor = self._db.execute("DELETE FROM tritonops_counter_samples WHERE taken_at < ?", (before,))
        return cursor.rowcount

    def size(self) -> tuple[int, int]:
        """(samples kept, bytes of their bodies)."""
        with self._errors():
            count, total = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM tritonops_counter_samples"
            ).fetchone()
        return int(count), int(total)


class MemoryHistory:
    """Snapshots kept in memory (a watcher without a state file, tests); same reads as ``SnapshotStore``."""

    def __init__(self, keep_seconds: float = 3600.0) -> None:
        self.keep_seconds = keep_seconds
        self._kept: dict[str, list[Snapshot]] = {}

    def record(self, endpoint: str, snapshot: Snapshot) -> bool:
        kept = self._kept.setdefault(endpoint, [])
        kept.append(snapshot.restricted())
        kept.sort(key=lambda s: s.taken_at)
        horizon = snapshot.taken_at - self.keep_seconds
        self._kept[endpoint] = [s for s in kept if s.taken_at >= horizon]
        return True

    def at_or_before(self, endpoint: str, at: float) -> Snapshot | None:
        earlier = [s for s in self._kept.get(endpoint, []) if s.taken_at <= at]
        return earlier[-1] if earlier else None

    def oldest(self, endpoint: str) -> Snapshot | None:
        kept = self._kept.get(endpoint, [])
        return kept[0] if kept else None


History = SnapshotStore | MemoryHistory


@dataclass(frozen=True)
class FleetWindow:
    """One scrape of every endpoint against its baseline: windows, endpoints that failed, notes for the reader."""

    windows: Mapping[str, Window]
    failures: Mapping[str, str]
    notes: tuple[str, ...] = ()

    @property
    def delta(self) -> Snapshot:
        return merge_deltas(w.delta for w in self.windows.values())

    @property
    def stats(self) -> dict[tuple[str, str], VersionStats]:
        return combine_stats(version_stats(w) for w in self.windows.values())

    @property
    def seconds(self) -> float | None:
        """The shortest window among endpoints; None when some endpoint counts since load."""
        spans = [w.seconds for w in self.windows.values()]
        if not spans or any(s is None for s in spans):
            return None
        return min(s for s in spans if s is not None)


def fleet_window(
    urls: Sequence[str],
    lookback_seconds: float | None,
    history: History | None,
    *,
    timeout: float = 3.0,
    session: requests.Session | None = None,
) -> FleetWindow:
    """Scrape every URL and pair it with the snapshot ``lookback_seconds`` ago from ``history``.

    Without that old a snapshot, the oldest one kept is used (a shorter window, noted); without any, the counters
    count since the version was loaded (noted). ``lookback_seconds=None`` always means since load. A URL that can't
    be scraped is reported in ``failures`` and left out; the others still count. Every scrape is recorded.
    """
    scraped, failures = scrape_all(urls, timeout, session)
    fleet = windows_from(scraped, failures, lookback_seconds, history)
    if history is not None:  # after the windows: recording may prune what a short window starts from
        for url, now in scraped.items():
            history.record(url, now)
    return fleet


def scrape_all(
    urls: Sequence[str], timeout: float = 3.0, session: requests.Session | None = None
) -> tuple[dict[str, Snapshot], dict[str, str]]:
    """One scrape of each URL: the snapshots, and why the others failed."""
    scraped: dict[str, Snapshot] = {}
    failures: dict[str, str] = {}
    for url in urls:
        try:
            scraped[url] = scrape(url, timeout, session)
        except MetricsError as exc:
            failures[url] = str(exc)
    return scraped, failures


def windows_from(
    scraped: Mapping[str, Snapshot],
    failures: Mapping[str, str],
    lookback_seconds: float | None,
    history: History | None,
) -> FleetWindow:
    """Each scrape against its baseline ``lookback_seconds`` earlier in ``history`` (see ``fleet_window``)."""
    windows: dict[str, Window] = {}
    notes: list[str] = []
    for url, now in scraped.items():
        before = None
        if lookback_seconds is not None and history is not None:
            before = history.at_or_before(url, now.taken_at - lookback_seconds)
            if before is None:
                before = history.oldest(url)
                if before is not None and before.taken_at >= now.taken_at:
                    before = None
                if before is not None:
                    notes.append(
                        f"{url}: only {now.taken_at - before.taken_at:.0f} s of history, "
                        f"shorter than the {lookback_seconds:.0f} s window"
                    )
        if before is None:
            notes.append(f"{url}: no earlier snapshot; counting since the version was loaded")
        windows[url] = window(before, now)
    return FleetWindow(windows, dict(failures), tuple(notes))


class WindowSource(Protocol):
    """Where windows come from: ``FleetSampler`` (scrapes, with compact counter samples as history) or
    ``PrometheusWindows`` (PromQL over what Prometheus scraped). Both give the same ``FleetWindow``, so the
    guardrails and the drift report never know which one they read."""

    def window(self, lookback_seconds: float | None) -> FleetWindow: ...

    def close(self) -> None: ...


class FleetSampler:
    """Scrapes the fleet for every reader at once: one scrape per endpoint at most every ``max_age`` seconds,
    recorded in ``history``; each reader gets windows of its own length from the same scrapes. Thread-safe."""

    def __init__(
        self,
        urls: Callable[[], Sequence[str]],
        history: History | None,
        *,
        max_age: float = 1.0,
        timeout: float = 3.0,
    ) -> None:
        self.urls = urls
        self.history = history
        self.max_age = max_age
        self.timeout = timeout
        self._session = requests.Session()
        self._lock = threading.Lock()
        self._scraped: dict[str, Snapshot] = {}
        self._failures: dict[str, str] = {}
        self._at = -math.inf

    def window(self, lookback_seconds: float | None) -> FleetWindow:
        with self._lock:
            if time.monotonic() - self._at >= self.max_age:
                self._scraped, self._failures = scrape_all(self.urls(), self.timeout, self._session)
                self._at = time.monotonic()
                if self.history is not None:
                    for url, now in self._scraped.items():
                        self.history.record(url, now)
            return windows_from(self._scraped, self._failures, lookback_seconds, self.history)

    def close(self) -> None:
        self._session.close()


def metrics_urls(explicit: Sequence[str], grpc_endpoints: Sequence[str]) -> list[str]:
    """Where to scrape: ``explicit`` URLs, else each fleet endpoint's metrics port (its gRPC port + 1)."""
    if explicit:
        return list(explicit)
    urls = []
    for endpoint in grpc_endpoints:
        host, _, port = endpoint.rpartition(":")
        urls.append(f"http://{host}:{int(port) + 1}/metrics")
    return urls
