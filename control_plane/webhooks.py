"""Outbound webhooks: a retraining job (or anything else) told that a model drifted, lost accuracy or alerted.

Configured in one YAML file (``TRITONOPS_WEBHOOKS``)::

    webhooks:
      - name: retrain
        url: https://airflow.example.com
        preset: airflow                 # POST {url}/api/v1/dags/{dag_id}/dagRuns, the trigger as `conf`
        dag_id: retrain_churn
        username: tritonops             # basic auth; or token_file for a Bearer token
        password_file: /run/secrets/airflow-password
        events: [drift, accuracy, alert, manual]
        models: [churn]                 # default: every model
      - name: audit-sink
        url: https://hooks.example.com/tritonops
        secret_file: /run/secrets/webhook-secret   # HMAC-SHA256 of the body in X-Tritonops-Signature

Every delivery is signed when a secret is set, retried with exponential backoff on connection errors, 429 and 5xx,
and written to the delivery log (``tritonops webhooks log``). A trigger carries a dedup key: a key already
delivered to a hook is not sent again (one drift episode, one retraining run), and a hook that delivered for a
model waits out its cooldown before the next one. A failed delivery is logged and raised to nobody: it never stops
the guardrails that triggered it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import requests
import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator

from tritonops.control_plane.errors import WebhookError
from tritonops.control_plane.migrations import open_state_database
from tritonops.settings import Settings, StateLocation

log = logging.getLogger("tritonops.webhooks")

SIGNATURE_HEADER = "X-Tritonops-Signature"
EVENT_HEADER = "X-Tritonops-Event"
DELIVERY_HEADER = "X-Tritonops-Delivery"

Event = Literal["drift", "accuracy", "alert", "manual"]
Outcome = Literal["ok", "failed", "skipped"]


class WebhookConfig(BaseModel):
    """One receiver of triggers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    url: HttpUrl
    preset: Literal["generic", "airflow"] = "generic"
    events: tuple[Event, ...] = ("drift", "accuracy", "alert", "manual")
    models: tuple[str, ...] = ()
    """Only these models (empty: every model)."""
    secret_file: Path | None = None
    dag_id: str | None = None
    username: str | None = None
    password_file: Path | None = None
    token_file: Path | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_seconds: float = Field(default=1.0, ge=0)
    cooldown_seconds: float = Field(default=3600.0, ge=0)

    @model_validator(mode="after")
    def _preset_fields(self) -> WebhookConfig:
        if self.preset == "airflow" and not self.dag_id:
            raise ValueError("preset airflow needs dag_id (the DAG whose run to trigger)")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs username (basic auth)")
        if self.token_file is not None and self.username is not None:
            raise ValueError("choose basic auth (username + password_file) or token_file, not both")
        return self

    def wants(self, trigger: Trigger) -> bool:
        return trigger.event in self.events and (not self.models or trigger.model in self.models)


class WebhookFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhooks: list[WebhookConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> WebhookFile:
        names = [hook.name for hook in self.webhooks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"webhook names must be unique, repeated: {duplicates}")
        return self


def load_webhooks(path: Path) -> list[WebhookConfig]:
    """The webhooks of a YAML file; every problem names the field, what was expected and what came."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise WebhookError(f"webhooks file {path}: cannot read it ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise WebhookError(f"webhooks file {path}: not valid YAML ({exc})") from exc
    try:
        return WebhookFile.model_validate(raw).webhooks
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'file'}: {error['msg']} (got {error.get('input')!r})"
            for error in exc.errors()
        )
        raise WebhookError(f"webhooks file {path}: {problems}") from exc


@dataclass(frozen=True)
class Trigger:
    """Why the controller calls out: which model, which live version, what happened, and the evidence."""

    model: str
    live_version: int | None
    event: Event
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    dedup_key: str = ""
    """Deliveries with the same key are sent once per hook (default: a fresh key, so always sent)."""

    def body(self, delivery_id: str) -> dict[str, Any]:
        return {
            "delivery_id": delivery_id,
            "model": self.model,
            "live_version": self.live_version,
            "trigger": self.event,
            "reason": self.reason,
            "evidence": self.evidence,
            "links": self.links,
            "dedup_key": self.dedup_key,
            "sent_at": time.time(),
        }


@dataclass(frozen=True)
class Delivery:
    """One line of the delivery log."""

    id: int
    at: float
    hook: str
    model: str
    event: str
    dedup_key: str
    attempts: int
    status_code: int | None
    outcome: Outcome
    detail: str


class DeliveryLog:
    """The delivery log in the state database (SQLite or PostgreSQL)."""

    def __init__(self, location: StateLocation | Path) -> None:
        self._db = open_state_database(location)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> DeliveryLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(
        self, hook: str, trigger: Trigger, attempts: int, status: int | None, outcome: Outcome, detail: str
    ) -> None:
        with self._db.write() as db:
            db.execute(
                "INSERT INTO webhook_deliveries (at, hook, model, event, dedup_key, attempts, status_code, outcome, "
                "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), hook, trigger.model, trigger.event, trigger.dedup_key, attempts, status, outcome, detail),
            )

    def delivered(self, hook: str, dedup_key: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM webhook_deliveries WHERE hook = ? AND dedup_key = ? AND outcome = 'ok'", (hook, dedup_key)
        ).fetchone()
        return row is not None

    def last_ok(self, hook: str, model: str) -> float | None:
        row = self._db.execute(
            "SELECT MAX(at) FROM webhook_deliveries WHERE hook = ? AND model = ? AND outcome = 'ok'", (hook, model)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def entries(self, model: str | None = None, limit: int = 50) -> list[Delivery]:
        where, params = ("WHERE model = ?", (model,)) if model else ("", ())
        rows = self._db.execute(
            "SELECT id, at, hook, model, event, dedup_key, attempts, status_code, outcome, detail "
            f"FROM webhook_deliveries {where} ORDER BY id DESC LIMIT {int(limit)}",
            params,
        ).fetchall()
        return [_delivery(row) for row in rows]


def _delivery(row: Sequence[Any]) -> Delivery:
    status = None if row[7] is None else int(row[7])
    return Delivery(int(row[0]), float(row[1]), row[2], row[3], row[4], row[5], int(row[6]), status, row[8], row[9])


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise WebhookError(f"{what} {path}: cannot read it ({exc.strerror})") from exc


def signature(secret: str, body: bytes) -> str:
    """The value of ``X-Tritonops-Signature``: ``sha256=`` + hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Request:
    """What is sent for one trigger to one hook (built once, sent on every attempt)."""

    url: str
    body: bytes
    headers: dict[str, str]
    auth: tuple[str, str] | None


def build_request(hook: WebhookConfig, trigger: Trigger, delivery_id: str) -> Request:
    """The HTTP request of ``hook``'s preset; secrets are read from their files here, never logged."""
    payload = trigger.body(delivery_id)
    url = str(hook.url)
    if hook.preset == "airflow":  # Airflow's stable REST API: trigger a DAG run with the evidence as conf
        url = f"{url.rstrip('/')}/api/v1/dags/{hook.dag_id}/dagRuns"
        payload = {"dag_run_id": f"tritonops-{trigger.model}-{delivery_id}", "conf": payload}
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: trigger.event,
        DELIVERY_HEADER: delivery_id,
        "User-Agent": "tritonops-webhooks",
    }
    if hook.secret_file is not None:
        headers[SIGNATURE_HEADER] = signature(_read_secret(hook.secret_file, f"webhook {hook.name}: secret_file"), body)
    if hook.token_file is not None:
        headers["Authorization"] = "Bearer " + _read_secret(hook.token_file, f"webhook {hook.name}: token_file")
    auth = None
    if hook.username is not None:
        password = _read_secret(hook.password_file, f"webhook {hook.name}: password_file") if hook.password_file else ""
        auth = (hook.username, password)
    return Request(url, body, headers, auth)


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


@dataclass(frozen=True)
class DeliveryResult:
    hook: str
    outcome: Outcome
    attempts: int
    status_code: int | None
    detail: str


def deliver(
    trigger: Trigger,
    hooks: Sequence[WebhookConfig],
    deliveries: DeliveryLog,
    *,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
) -> list[DeliveryResult]:
    """Send ``trigger`` to every hook that wants it; each result is also in the delivery log. Never raises."""
    http = session or requests.Session()
    results = []
    for hook in hooks:
        if not hook.wants(trigger):
            continue
        result = _deliver_one(hook, trigger, deliveries, http, sleep, now)
        results.append(result)
        try:
            deliveries.add(hook.name, trigger, result.attempts, result.status_code, result.outcome, result.detail)
        except Exception:  # the log is best effort: a state database hiccup must not hide the delivery itself
            log.exception("webhook %s: could not log the delivery for %s", hook.name, trigger.model)
        log.info(
            "webhook %s: %s for model %s (%s): %s after %d attempt(s) %s",
            hook.name,
            trigger.event,
            trigger.model,
            trigger.reason,
            result.outcome,
            result.attempts,
            result.detail,
        )
    return results


def _deliver_one(
    hook: WebhookConfig,
    trigger: Trigger,
    deliveries: DeliveryLog,
    http: requests.Session,
    sleep: Callable[[float], None],
    now: Callable[[], float],
) -> DeliveryResult:
    if trigger.dedup_key and deliveries.delivered(hook.name, trigger.dedup_key):
        return DeliveryResult(hook.name, "skipped", 0, None, f"already delivered for dedup key {trigger.dedup_key}")
    last = deliveries.last_ok(hook.name, trigger.model) if trigger.event != "manual" else None  # asked for: no wait
    if last is not None and now() - last < hook.cooldown_seconds:
        wait = hook.cooldown_seconds - (now() - last)
        return DeliveryResult(
            hook.name, "skipped", 0, None, f"cooldown: {wait:.0f} s left of {hook.cooldown_seconds:g}"
        )
    try:
        request = build_request(hook, trigger, uuid.uuid4().hex)
    except WebhookError as exc:
        return DeliveryResult(hook.name, "failed", 0, None, str(exc))
    status: int | None = None
    detail = ""
    for attempt in range(1, hook.max_attempts + 1):
        try:
            response = http.post(
                request.url, data=request.body, headers=request.headers, auth=request.auth, timeout=hook.timeout_seconds
            )
            status = response.status_code
            if status < 300:
                return DeliveryResult(hook.name, "ok", attempt, status, f"HTTP {status}")
            detail = f"HTTP {status}: {response.text[:200]}"
            if not _retryable(status):
                return DeliveryResult(hook.name, "failed", attempt, status, detail)
        except requests.RequestException as exc:
            status, detail = None, f"{type(exc).__name__}: {exc}"
        if attempt < hook.max_attempts:
            sleep(hook.backoff_seconds * 2 ** (attempt - 1))
    return DeliveryResult(hook.name, "failed", hook.max_attempts, status, detail)


def configured_webhooks(settings: Settings) -> list[WebhookConfig]:
    """The hooks of ``TRITONOPS_WEBHOOKS``; an error that says how to configure them when it is not set."""
    if settings.webhooks_path is None:
        raise WebhookError(
            "no webhooks configured: set TRITONOPS_WEBHOOKS to a YAML file listing them (docs/operations.md, "
            "'Retraining and other webhooks')"
        )
    return load_webhooks(settings.webhooks_path)


def request_retrain(settings: Settings, model: str, *, actor: str, reason: str) -> list[DeliveryResult]:
    """``tritonops retrain``: send a ``manual`` trigger for ``model`` to every hook that takes it, audited."""
    from tritonops.control_plane.state import AuditEntry, StateStore

    hooks = configured_webhooks(settings)
    with StateStore.open(settings.state) as store:
        state = store.model(model)
        live = state.live if state is not None else None
        trigger = Trigger(model, live, "manual", reason, {"requested_by": actor})
        with DeliveryLog(settings.state) as deliveries:
            results = deliver(trigger, hooks, deliveries)
        summary = ", ".join(f"{r.hook}: {r.outcome} ({r.detail})" for r in results) or "no webhook takes it"
        ok = bool(results) and all(r.outcome == "ok" for r in results)
        store.record(AuditEntry(actor, "retrain", model, live, None, reason, "ok" if ok else "failed", summary))
    return results
