"""``tritonops.control_plane.prometheus``: answers parsed (errors, empty vectors = no data), windows built from
PromQL rows the way a scrape would have shown them, the config's checks, and an unreachable Prometheus counted.

The end-to-end comparison with a real Prometheus is tests/e2e/test_prometheus_windows.py; here the answers are
JSON bodies in Prometheus's documented format, and the HTTP parts talk to real local sockets."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from tritonops.control_plane.errors import MetricsError, PrometheusError
from tritonops.control_plane.exporter import ControlPlaneExporter
from tritonops.control_plane.prometheus import (
    NO_DATA,
    PrometheusClient,
    PrometheusConfig,
    PrometheusWindows,
    build_fleet_window,
    parse_answer,
    parse_metadata,
    parse_vector,
    sample_names,
)
from tritonops.errors import ConfigurationError

URL = "http://prometheus:9090"
TYPES = {
    "nv_inference_request_success": "counter",
    "nv_inference_request_failure": "counter",
    "nv_inference_pending_request_count": "gauge",
    "nv_inference_request_summary_us": "summary",
    "tritonops_invalid_requests_total": "counter",
    "tritonops_request_duration_seconds": "histogram",
    "up": "gauge",  # not a family the control plane reads
}


def _vector(*samples: tuple[dict[str, str], str]) -> dict[str, object]:
    return {"resultType": "vector", "result": [{"metric": m, "value": [1700000000.0, v]} for m, v in samples]}


def test_an_error_status_names_its_type_and_reason() -> None:
    body = json.dumps({"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "}"'})
    with pytest.raises(PrometheusError, match=r'query \'up{\': bad_data: parse error: unexpected "}" \(HTTP 400\)'):
        parse_answer(URL, "query 'up{'", 400, body)


def test_a_non_json_answer_is_an_error_with_its_status() -> None:
    with pytest.raises(PrometheusError, match=r"metadata: HTTP 502, expected a JSON API answer, got '<html>bad"):
        parse_answer(URL, "metadata", 502, "<html>bad gateway</html>")


def test_the_error_is_a_metrics_error_naming_prometheus() -> None:
    with pytest.raises(MetricsError, match=rf"^metrics {URL}: Prometheus: query 'x': expected an instant vector"):
        parse_vector(URL, "x", {"resultType": "matrix", "result": []})


def test_an_empty_vector_is_no_data_not_an_error() -> None:
    data = parse_answer(URL, "q", 200, json.dumps({"status": "success", "data": _vector()}))
    assert parse_vector(URL, "q", data) == []
    fleet = build_fleet_window([], {}, sample_names(TYPES), 100.0, 60.0)
    assert fleet.windows == {} and fleet.failures == {} and fleet.stats == {}


def test_a_malformed_sample_is_an_error() -> None:
    data = {"resultType": "vector", "result": [{"metric": {"a": "b"}, "value": [1.0, "not a number"]}]}
    with pytest.raises(PrometheusError, match="malformed sample"):
        parse_vector(URL, "q", data)


def test_metadata_types_and_sample_names_follow_the_text_parser() -> None:
    data = {name: [{"type": kind, "help": "", "unit": ""}] for name, kind in TYPES.items()}
    assert parse_metadata(URL, data) == TYPES
    names = sample_names(TYPES)
    assert names["nv_inference_request_success"] == ("nv_inference_request_success_total", True)
    assert names["tritonops_invalid_requests_total"] == ("tritonops_invalid_requests_total", True)
    assert names["tritonops_request_duration_seconds_bucket"] == ("tritonops_request_duration_seconds_bucket", True)
    assert names["nv_inference_request_summary_us"] == ("nv_inference_request_summary_us", False)
    assert names["nv_inference_request_summary_us_count"] == ("nv_inference_request_summary_us_count", True)
    assert names["nv_inference_pending_request_count"] == ("nv_inference_pending_request_count", False)
    assert "up" not in names
    with pytest.raises(PrometheusError, match="expected a mapping of families, got list"):
        parse_metadata(URL, [])


def _rows(data: dict[str, object]) -> list[tuple[dict[str, str], float]]:
    return parse_vector(URL, "q", data)


def test_windows_per_target_give_the_stats_a_scrape_would() -> None:
    target = {"job": "triton", "instance": "triton-0:8002"}
    other = {"job": "triton", "instance": "triton-1:8002"}
    mv = {"model": "rf", "version": "2"}
    latest = _rows(
        _vector(
            ({"__name__": "nv_inference_request_success", **target, **mv}, "1000"),
            ({"__name__": "nv_inference_request_failure", **target, **mv}, "10"),
            ({"__name__": "nv_inference_request_success", **other, **mv}, "500"),
            ({"__name__": "nv_inference_pending_request_count", **target, **mv}, "3"),
        )
    )
    increases = {
        "nv_inference_request_success": _rows(
            _vector(({**target, **mv}, "190"), ({**other, **mv}, "20.5"))  # extrapolated: not a whole number
        ),
        "nv_inference_request_failure": _rows(_vector(({**target, **mv}, "10"))),
        "tritonops_invalid_requests_total": _rows(_vector(({**target, **mv, "reason": "non_finite"}, "40"))),
    }
    fleet = build_fleet_window(latest, increases, sample_names(TYPES), 1000.0, 300.0)
    assert set(fleet.windows) == {"triton-0:8002", "triton-1:8002"}
    assert fleet.seconds == 300.0
    stats = fleet.stats[("rf", "2")]
    assert (stats.success, stats.failure, stats.invalid) == (210.5, 10.0, 40.0)
    assert stats.error_rate == pytest.approx(50 / 220.5)
    newest = fleet.windows["triton-0:8002"].latest
    assert newest.total("nv_inference_pending_request_count", model="rf") == 3.0
    assert dict(next(iter(newest.series["nv_inference_request_success_total"]))) == mv  # no target labels

    since_load = build_fleet_window(latest, None, sample_names(TYPES), 1000.0, None)
    assert since_load.seconds is None
    assert since_load.stats[("rf", "2")].requests == 1510.0


def test_a_target_prometheus_could_not_scrape_is_a_failure_not_a_window() -> None:
    latest = _rows(
        _vector(({"__name__": "nv_inference_request_success", "instance": "a:8002", "model": "m", "version": "1"}, "5"))
    )
    fleet = build_fleet_window(latest, {}, sample_names(TYPES), 10.0, 5.0, {"a:8002": "up == 0"})
    assert fleet.windows == {} and fleet.failures == {"a:8002": "up == 0"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"url": "prometheus:9090"}, "expected http"),
        ({"url": "http://user:pw@prometheus:9090"}, "holds credentials; put a bearer token"),
        ({"url": URL, "timeout": 0.0}, "--prometheus-timeout: expected seconds > 0, got 0.0"),
        ({"url": URL, "selector": '{job="triton"}'}, "without braces"),
    ],
)
def test_bad_configuration_is_refused_clearly(config: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PrometheusConfig(**config)  # type: ignore[arg-type]


def test_the_token_never_shows_in_the_config() -> None:
    config = PrometheusConfig(URL, token="s3cret-token")
    assert "s3cret" not in repr(config) and "s3cret" not in str(config)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_prometheus_is_no_data_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    exporter = ControlPlaneExporter()
    url = f"http://127.0.0.1:{_closed_port()}"
    source = PrometheusWindows(PrometheusConfig(url, timeout=2.0), exporter=exporter, max_age=0.0)
    try:
        with caplog.at_level(logging.WARNING, logger="tritonops.controller.prometheus"):
            first = source.window(300.0)
            second = source.window(None)
    finally:
        source.close()
    for fleet in (first, second):
        assert fleet.windows == {} and fleet.notes == (NO_DATA,)
        (why,) = fleet.failures.values()
        assert why.startswith(f"metrics {url}: Prometheus: query ") and "ConnectError" in why
    assert exporter.prometheus_failures._value.get() == 2
    assert b"tritonops_prometheus_failures_total 2.0" in exporter.render()
    assert len([r for r in caplog.records if "the guardrails have no data" in r.getMessage()]) == 1


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        self.send_response(401)
        self.end_headers()
        self.wfile.write(b"unauthorized")

    def log_message(self, *args: object) -> None:
        pass  # http.server writes every request to stderr otherwise


@pytest.fixture
def recorder() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_bearer_token_is_sent_and_a_refusal_never_echoes_it(recorder: str) -> None:
    _Recorder.seen.clear()
    client = PrometheusClient(PrometheusConfig(recorder, token="s3cret-token"))
    try:
        with pytest.raises(PrometheusError, match="HTTP 401, expected a JSON API answer") as caught:
            client.query("up", 1.0)
    finally:
        client.close()
    assert _Recorder.seen == ["Bearer s3cret-token"]
    assert "s3cret" not in str(caught.value)
