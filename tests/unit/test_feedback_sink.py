"""``HttpFeedbackSink``: batches, bounded queue, retries, losses counted, the caller never waits.

The far side is a real HTTP server in a thread that answers like the controller's ``POST /v1/feedback`` and can be
told to fail (503, 422, hang): faults the real controller can't be made to produce on demand. The SDK against the
real controller is tested end to end in tests/e2e/test_controller_clients.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tritonops.clients import ClientOptions, HttpFeedbackSink
from tritonops.errors import ConfigurationError
from tritonops.serving.triton import free_port

TOKEN = "op-token-5c1e"


class Controller:
    """Records every body posted; answers from ``script`` (status codes, in order) then 200."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.script: list[int] = []
        self.delay = 0.0
        controller = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(controller.delay)
                status = controller.script.pop(0) if controller.script else 200
                controller.auth.append(self.headers.get("Authorization"))
                if status == 200:
                    controller.bodies.append(body)
                    answer: dict[str, Any] = {"predictions": len(body["predictions"]), "labels": len(body["labels"])}
                else:
                    answer = {"type": "about:blank", "title": "no", "status": status, "detail": f"scripted {status}"}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return None  # quiet test output

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def rows(self, kind: str) -> list[dict[str, Any]]:
        return [row for body in self.bodies for row in body[kind]]


@pytest.fixture
def controller() -> Iterator[Controller]:
    served = Controller()
    yield served
    served.server.shutdown()
    served.server.server_close()


def test_rows_arrive_in_batches_in_order_with_the_token(controller: Controller) -> None:
    with HttpFeedbackSink(controller.url, TOKEN, batch_size=500, flush_interval=0.05) as sink:
        for i in range(12):
            assert (
                sink.record_predictions("rf", 2, [(f"r{i}-{j}", "yes" if j % 2 else "no") for j in range(100)]) == 100
            )
        sink.record_feedback("r0-0", "no")
        sink.record_feedback("r0-1", 7)
        assert sink.flush(30)
        stats = sink.stats()
    assert (stats.queued, stats.sent, stats.lost, stats.last_error) == (0, 1202, 0, None)
    predictions = controller.rows("predictions")
    assert [p["request_id"] for p in predictions] == [f"r{i}-{j}" for i in range(12) for j in range(100)]
    assert predictions[1] == {"request_id": "r0-1", "model": "rf", "version": 2, "label": "yes"}
    assert controller.rows("labels") == [
        {"request_id": "r0-0", "true_label": "no"},
        {"request_id": "r0-1", "true_label": 7},
    ]
    assert all(len(b["predictions"]) + len(b["labels"]) <= 500 for b in controller.bodies)
    assert set(controller.auth) == {f"Bearer {TOKEN}"}


def test_unavailable_answers_are_retried(controller: Controller) -> None:
    controller.script = [503, 502]
    with HttpFeedbackSink(controller.url, TOKEN, flush_interval=0.05, max_backoff=0.2) as sink:
        sink.record_predictions("rf", 1, [("a", "x"), ("b", "y")])
        assert sink.flush(30)
        assert (sink.stats().sent, sink.stats().lost) == (2, 0)
    assert len(controller.auth) == 3 and controller.rows("predictions")[1]["request_id"] == "b"


def test_a_refused_batch_is_counted_lost_and_not_retried(controller: Controller) -> None:
    controller.script = [422]
    with HttpFeedbackSink(controller.url, TOKEN, flush_interval=0.05) as sink:
        sink.record_feedback("never-predicted", "x")
        assert sink.flush(30)
        stats = sink.stats()
    assert (stats.sent, stats.lost) == (0, 1) and stats.last_error == "HTTP 422: scripted 422"
    assert len(controller.auth) == 1


def test_a_slow_controller_never_holds_the_caller(controller: Controller) -> None:
    controller.delay = 2.0
    sink = HttpFeedbackSink(controller.url, TOKEN, batch_size=100, max_queue=1000, flush_interval=0.01)
    started = time.monotonic()
    taken = sum(sink.record_predictions("rf", 1, [(f"s{i}", "x")]) for i in range(3000))
    assert time.monotonic() - started < 1.5  # 3000 calls while every post takes 2 s
    stats = sink.stats()
    assert 0 < taken <= 1000  # never more than the queue holds
    assert stats.lost == 3000 - taken and "queue full (1000 rows)" in (stats.last_error or "")
    final = sink.close(timeout=0.5)
    assert final.sent + final.lost + final.queued == 3000  # queued: the batch still being posted


def test_a_controller_that_is_down_loses_rows_after_the_retry_window() -> None:
    sink = HttpFeedbackSink(f"http://127.0.0.1:{free_port()}", TOKEN, flush_interval=0.01, retry_for=0.5)
    sink.record_predictions("rf", 1, [("a", "x")])
    assert sink.flush(30)
    stats = sink.close()
    assert (stats.sent, stats.lost) == (0, 1) and "ConnectionError" in (stats.last_error or "")


def test_configuration_is_checked_and_the_token_stays_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITONOPS_TOKEN", raising=False)
    monkeypatch.delenv("TRITONOPS_TOKEN_FILE", raising=False)
    with pytest.raises(ConfigurationError, match=r"no API token; pass token= or set TRITONOPS_TOKEN"):
        HttpFeedbackSink("http://127.0.0.1:1")
    with pytest.raises(ConfigurationError, match=r"expected http\(s\)://host:port of the controller, got 'ctl:80'"):
        HttpFeedbackSink("ctl:80", TOKEN)
    monkeypatch.setenv("TRITONOPS_TOKEN", TOKEN)
    sink = HttpFeedbackSink("http://127.0.0.1:1")
    assert TOKEN not in repr(sink) and TOKEN not in repr(ClientOptions(feedback=sink))
    with pytest.raises(ConfigurationError, match=r"feedback label: expected a class name \(str\) or number \(int\)"):
        sink.record_feedback("a", 1.5)
    sink.close()
