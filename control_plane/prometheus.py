"""Windows from Prometheus: the same ``FleetWindow`` as the compact counter samples give, read with PromQL.

With a Prometheus URL (``tritonops controller start --prometheus-url``) the controller keeps no counter history of
its own: Prometheus already scrapes every Triton (job ``triton`` in ``deploy/prometheus``) and keeps the series. A
window of ``W`` seconds is, per Triton target (Prometheus's ``instance`` label), over the HTTP API
(``/api/v1/query``):

- ``increase(NAME{selector}[W])`` for each counter the control plane reads (Triton's ``nv_inference_*`` and
  ``nv_cache_num_*``, the backend's ``tritonops_*``: successes, failures, invalid requests, the latency histogram's
  buckets, drift bins, predictions, rows), so error rate, request counts, p99 and the drift statistics come out of
  ``version_stats`` and ``drift_report`` exactly as they do from two samples;
- the newest value of every series of those families (``{__name__=~"...", selector}``): gauges, Triton's summary
  quantiles, and the counters themselves for a window "since load" (``lookback_seconds=None``);
- ``up{selector} == 0``: targets Prometheus could not scrape, reported as failures (like an unscrapable endpoint).

Which families are counters comes from Prometheus's metadata (``/api/v1/metadata``); samples are named as
``parse_metrics`` names them (a counter sample is ``<family>_total``), so readers can't tell the sources apart.
The shipped recording rules are fixed one-minute rates (dashboards, alerts); a guardrail window has any length
(the policy's ``window_seconds``), so it is PromQL over the raw counters those rules are computed from.
``increase`` extrapolates to the window's edges and does not count a series' very first sample: counts can differ
from two samples' by about one scrape interval of traffic; ratios (the error rate) and quantiles do not.

When Prometheus does not answer (unreachable, timeout, HTTP error, an ``error`` status, a malformed answer) the
window has no data and the reason as its failure: the guardrails give no verdict that step (a streak neither grows
nor resets), the failure is logged once per outage and counted in ``tritonops_prometheus_failures_total``. There
is no fallback to samples: with a Prometheus URL the controller does not store them.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from tritonops.control_plane.errors import PrometheusError
from tritonops.control_plane.exporter import ControlPlaneExporter
from tritonops.control_plane.metrics import KEPT_PREFIXES, FleetWindow, Labels, Snapshot, Window, window
from tritonops.errors import ConfigurationError

_log = logging.getLogger("tritonops.controller.prometheus")

Row = tuple[dict[str, str], float]
"""One sample of an instant vector: its labels (``__name__`` included when the query keeps it) and value."""

_TARGET_LABELS = ("instance", "job")
NO_DATA = "no data from Prometheus this step: no guardrail verdict"


@dataclass(frozen=True)
class PrometheusConfig:
    """Where the controller's windows come from when it has a Prometheus."""

    url: str
    token: str | None = field(default=None, repr=False)
    """Bearer token (``TRITONOPS_PROMETHEUS_TOKEN`` or ``..._FILE``); never on a command line or in a log."""
    timeout: float = 5.0
    """Seconds one query may take (sent to Prometheus as its own ``timeout`` too)."""
    selector: str = 'job="triton"'
    """Label matchers picking the Triton targets, without braces (empty: every target)."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"--prometheus-url {self.url!r}: expected http(s)://HOST[:PORT][/PATH]")
        if parts.username or parts.password:
            raise ConfigurationError(
                "--prometheus-url holds credentials; put a bearer token in TRITONOPS_PROMETHEUS_TOKEN or a file "
                "named by TRITONOPS_PROMETHEUS_TOKEN_FILE instead"
            )
        if not self.timeout > 0:
            raise ConfigurationError(f"--prometheus-timeout: expected seconds > 0, got {self.timeout}")
        if "{" in self.selector or "}" in self.selector:
            raise ConfigurationError(
                f'--prometheus-selector {self.selector!r}: expected label matchers without braces, e.g. job="triton"'
            )


# -- answers ----------------------------------------------------------------------------------------------------


def parse_answer(url: str, what: str, status_code: int, text: str) -> object:
    """The ``data`` of a Prometheus API answer; ``PrometheusError`` naming ``what`` for anything else."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict) or "status" not in body:
        raise PrometheusError(url, f"{what}: HTTP {status_code}, expected a JSON API answer, got {text[:200]!r}")
    if body["status"] != "success":
        kind = body.get("errorType", "error")
        raise PrometheusError(url, f"{what}: {kind}: {body.get('error', 'no reason given')} (HTTP {status_code})")
    return body.get("data")


def parse_vector(url: str, expr: str, data: object) -> list[Row]:
    """The samples of an instant-vector ``data``; an empty list is no data, not an error."""
    if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        got = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise PrometheusError(url, f"query {expr!r}: expected an instant vector, got {got!r}")
    rows: list[Row] = []
    for item in data["result"]:
        try:
            labels = {str(k): str(v) for k, v in item["metric"].items()}
            rows.append((labels, float(item["value"][1])))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise PrometheusError(url, f"query {expr!r}: malformed sample {str(item)[:200]}") from exc
    return rows


def parse_metadata(url: str, data: object) -> dict[str, str]:
    """Family name -> type (``counter``, ``gauge``, ``histogram``, ``summary``, ...) from ``/api/v1/metadata``."""
    if not isinstance(data, dict):
        raise PrometheusError(url, f"metadata: expected a mapping of families, got {type(data).__name__}")
    types = {}
    for name, entries in data.items():
        if isinstance(entries, list) and entries and isinstance(entries[0], dict):
            types[str(name)] = str(entries[0].get("type", "unknown"))
    return types


def sample_names(types: Mapping[str, str], prefixes: Sequence[str] = KEPT_PREFIXES) -> dict[str, tuple[str, bool]]:
    """Prometheus series name -> (the name ``parse_metrics`` gives that sample, whether it is a counter)."""
    names: dict[str, tuple[str, bool]] = {}
    for family, kind in types.items():
        if not family.startswith(tuple(prefixes)):
            continue
        if kind == "counter":
            names[family] = (family if family.endswith("_total") else family + "_total", True)
        elif kind in ("histogram", "summary"):
            names[family] = (family, False)  # a summary's quantiles
            for suffix in ("_bucket", "_count", "_sum") if kind == "histogram" else ("_count", "_sum"):
                names[family + suffix] = (family + suffix, True)
        else:
            names[family] = (family, False)
    return names


def _split(labels: Mapping[str, str]) -> tuple[str, Labels]:
    """(the target, the series' own labels): what a scrape of that target would have shown."""
    own = {k: v for k, v in labels.items() if k not in _TARGET_LABELS and k != "__name__"}
    return labels.get("instance", ""), tuple(sorted(own.items()))


def build_fleet_window(
    latest: Sequence[Row],
    increases: Mapping[str, Sequence[Row]] | None,
    names: Mapping[str, tuple[str, bool]],
    at: float,
    lookback_seconds: float | None,
    down: Mapping[str, str] | None = None,
) -> FleetWindow:
    """Per target: ``latest`` (rows with ``__name__``) as its newest snapshot and ``increases`` (series name ->
    rows of ``increase(...)``) as its window; ``increases=None`` (or ``lookback_seconds=None``): since load."""
    down = down or {}
    series: dict[str, dict[str, dict[Labels, float]]] = {}
    counters: dict[str, set[str]] = {}
    for labels, value in latest:
        prom_name = labels.get("__name__", "")
        name, is_counter = names.get(prom_name, (prom_name, False))
        target, own = _split(labels)
        if not prom_name or target in down:
            continue
        series.setdefault(target, {}).setdefault(name, {})[own] = value
        if is_counter:
            counters.setdefault(target, set()).add(name)
    windows: dict[str, Window] = {}
    for target, kept in series.items():
        newest = Snapshot(at, kept, frozenset(counters.get(target, ())))
        if increases is None or lookback_seconds is None:
            windows[target] = window(None, newest)
            continue
        delta: dict[str, dict[Labels, float]] = {}
        for prom_name, rows in increases.items():
            name = names.get(prom_name, (prom_name, True))[0]
            target_rows = delta.setdefault(name, {})
            for labels, value in rows:
                where, own = _split(labels)
                if where == target and not math.isnan(value):
                    target_rows[own] = value
        windows[target] = Window(at - lookback_seconds, Snapshot(at, delta, frozenset(delta)), newest)
    return FleetWindow(windows, dict(down))


# -- the client and the window source ---------------------------------------------------------------------------


class PrometheusClient:
    """Instant queries and metadata over Prometheus's HTTP API (httpx; bearer token when configured)."""

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        self._http = httpx.Client(base_url=config.url.rstrip("/"), headers=headers, timeout=config.timeout)

    def _get(self, path: str, params: dict[str, str], what: str) -> object:
        try:
            response = self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(self.config.url, f"{what}: {type(exc).__name__}: {exc}") from exc
        return parse_answer(self.config.url, what, response.status_code, response.text)

    def query(self, expr: str, at: float) -> list[Row]:
        """``expr`` evaluated at Unix time ``at`` (an instant vector)."""
        params = {"query": expr, "time": f"{at:.3f}", "timeout": f"{self.config.timeout:g}s"}
        return parse_vector(self.config.url, expr, self._get("/api/v1/query", params, f"query {expr!r}"))

    def metadata(self) -> dict[str, str]:
        return parse_metadata(self.config.url, self._get("/api/v1/metadata", {}, "metadata"))

    def close(self) -> None:
        self._http.close()


def _selected(name: str, selector: str) -> str:
    return f"{name}{{{selector}}}" if selector else name


def _duration(seconds: float) -> str:
    return f"{max(round(seconds * 1000), 1)}ms"  # PromQL durations are whole units


class PrometheusWindows:
    """A ``WindowSource`` over Prometheus (see the module docstring). Thread-safe; a window of one length is read
    at most every ``max_age`` seconds, so every model's guardrails share one set of queries."""

    def __init__(
        self,
        config: PrometheusConfig,
        *,
        exporter: ControlPlaneExporter | None = None,
        clock: Callable[[], float] = time.time,
        max_age: float = 0.5,
        metadata_max_age: float = 30.0,
    ) -> None:
        self.config = config
        self.exporter = exporter
        self.max_age = max_age
        self.metadata_max_age = metadata_max_age
        self._client = PrometheusClient(config)
        self._clock = clock
        self._lock = threading.Lock()
        self._names: dict[str, tuple[str, bool]] = {}
        self._names_at = -math.inf
        self._cache: dict[float | None, tuple[float, FleetWindow]] = {}
        self._failing = False

    def window(self, lookback_seconds: float | None) -> FleetWindow:
        with self._lock:
            now = time.monotonic()
            cached = self._cache.get(lookback_seconds)
            if cached is not None and now - cached[0] < self.max_age:
                return cached[1]
            try:
                fleet = self._read(lookback_seconds)
            except PrometheusError as exc:
                self._failed(exc)
                return FleetWindow({}, {self.config.url: str(exc)}, (NO_DATA,))
            if self._failing:
                _log.info("Prometheus %s answers again: windows have data", self.config.url)
                self._failing = False
            if len(self._cache) >= 64:  # lengths asked for over the API: stay bounded
                self._cache.clear()
            self._cache[lookback_seconds] = (now, fleet)
            return fleet

    def _failed(self, exc: PrometheusError) -> None:
        if self.exporter is not None:
            self.exporter.record_prometheus_failure()
        if not self._failing:
            _log.warning("windows from Prometheus failed: %s; the guardrails have no data until it answers", exc)
            self._failing = True
        else:
            _log.debug("windows from Prometheus still failing: %s", exc)

    def _sample_names(self, present: set[str]) -> dict[str, tuple[str, bool]]:
        age = time.monotonic() - self._names_at
        if age >= self.metadata_max_age or (age >= 2.0 and not present <= self._names.keys()):
            self._names = sample_names(self._client.metadata())
            self._names_at = time.monotonic()
        return self._names

    def _read(self, lookback_seconds: float | None) -> FleetWindow:
        at = self._clock()
        selector = self.config.selector
        families = "|".join(prefix.rstrip("_") for prefix in KEPT_PREFIXES)
        matchers = ",".join(m for m in (f'__name__=~"({families})_.+"', selector) if m)
        latest = self._client.query(f"{{{matchers}}}", at)
        down = {
            labels.get("instance", ""): "Prometheus could not scrape it (up == 0)"
            for labels, _ in self._client.query(f"{_selected('up', selector)} == 0", at)
        }
        present = {labels.get("__name__", "") for labels, _ in latest}
        names = self._sample_names(present)
        increases = None
        if lookback_seconds is not None:
            counters = sorted(p for p in present if names.get(p, ("", False))[1])
            span = _duration(lookback_seconds)
            increases = {p: self._client.query(f"increase({_selected(p, selector)}[{span}])", at) for p in counters}
        return build_fleet_window(latest, increases, names, at, lookback_seconds, down)

    def close(self) -> None:
        self._client.close()
