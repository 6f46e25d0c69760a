"""The controller's API from Python: ``ControllerClient``, what the CLI uses in remote mode (``TRITONOPS_URL``).

Each method calls one ``/v1`` route with the caller's token and returns the library's own result type (the API
answers with it), so a remote result renders exactly like a local one. A problem answer
(``application/problem+json``) becomes our error family again by its ``code``, from the same table the API maps
errors with (``tritonops.control_plane.problem_codes.PROBLEMS``), so the CLI exits with the same code either way.
The token travels in the ``Authorization`` header only and never appears in ``repr`` or error messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from pydantic import TypeAdapter

from tritonops.control_plane.errors import ControllerUnreachableError, PolicyError
from tritonops.control_plane.feedback import AccuracyComparison, VersionAccuracy
from tritonops.control_plane.fleet import ReconcileReport
from tritonops.control_plane.policies import DEFAULT_POLICY
from tritonops.control_plane.problem_codes import family_of
from tritonops.control_plane.progressive_runs import Rollout
from tritonops.control_plane.rollout import EndpointStatus, RolloutResult
from tritonops.control_plane.state import AuditEvent, TokenRecord
from tritonops.errors import ConfigurationError, TritonOpsError

_T = TypeVar("_T")

ACTION_TIMEOUT = 600.0
"""Seconds a rollout action may take (loads, warm-ups and the canary drain on every endpoint)."""


def _error(status: int, body: Mapping[str, Any]) -> TritonOpsError:
    """The problem answer as the error family its ``code`` names, with the controller's ``detail`` as message."""
    code = str(body.get("code", f"http_{status}"))
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    family = family_of(code)
    error = family.__new__(family)
    TritonOpsError.__init__(error, detail)
    error.add_note(f"controller answered {status} {code}")
    return error


class ControllerClient:
    """One controller (``url``: ``http(s)://host:port``) as one caller (``token``)."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0, verify: bool | str = True) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"TRITONOPS_URL / --url: expected http(s)://host:port, got {url!r}")
        if not token:
            raise ConfigurationError(
                "TRITONOPS_TOKEN: no API token for the controller; set TRITONOPS_TOKEN or TRITONOPS_TOKEN_FILE "
                "(a token is never taken on the command line)"
            )
        self.url = url.rstrip("/")
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._session.verify = verify
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"ControllerClient({self.url!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ControllerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | int | float | None] | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        """One request; the response unless it is a problem answer (then our error)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._session.request(
                method, self.url + path, json=body, params=query, timeout=timeout or self._timeout
            )
        except requests.RequestException as exc:
            raise ControllerUnreachableError(self.url, f"{type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            problem = answer if isinstance(answer, dict) else {"detail": response.text[:300]}
            raise _error(response.status_code, problem)
        return response

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | int | float | None] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """One request; the decoded JSON answer (None for 204), or our error for a problem answer."""
        response = self._send(method, path, body=body, params=params, timeout=timeout)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            raise ControllerUnreachableError(self.url, f"{method} {path}: the answer is not JSON") from None

    def _typed(self, kind: type[_T] | Any, data: Any) -> _T:
        return TypeAdapter(kind).validate_python(data)  # type: ignore[no-any-return]

    # -- reads ------------------------------------------------------------------------------------------------
    def whoami(self) -> dict[str, str]:
        return dict(self.call("GET", "/v1/whoami"))

    def status(self, model: str | None = None) -> list[EndpointStatus]:
        return self._typed(list[EndpointStatus], self.call("GET", "/v1/status", params={"model": model}))

    def history(self, model: str | None, limit: int | None = None) -> list[AuditEvent]:
        page = self.call("GET", "/v1/history", params={"model": model, "limit": limit})
        return self._typed(list[AuditEvent], page["events"])

    def drift(self, model: str, window: str, version: int | None = None) -> dict[str, Any]:
        params = {"window": window, "version": version}
        return dict(self.call("GET", f"/v1/models/{_seg(model)}/drift", params=params))

    def drift_report(self, model: str, window: str, version: int | None = None, rows: int = 10) -> str:
        """The drift report page (HTML) the controller renders, with its most drifted captured rows."""
        params = {"window": window, "version": version, "rows": rows}
        response = self._send("GET", f"/v1/models/{_seg(model)}/drift/report", params=params)
        if not response.headers.get("content-type", "").startswith("text/html"):
            raise ControllerUnreachableError(self.url, f"GET /v1/models/{model}/drift/report: the answer is not HTML")
        return response.text

    def accuracy(self, model: str, min_labels: int) -> tuple[list[VersionAccuracy], AccuracyComparison | None]:
        answer = self.call("GET", f"/v1/models/{_seg(model)}/accuracy", params={"min_labels": min_labels})
        comparison = answer.get("comparison")
        return (
            self._typed(list[VersionAccuracy], answer["versions"]),
            self._typed(AccuracyComparison, comparison) if comparison is not None else None,
        )

    def stored_policies(self, model: str | None = None) -> dict[str, dict[str, Any]]:
        """The stored policies by model (``*``: the default), as ``tritonops policy show`` prints them."""
        names = [model] if model is not None else [m["name"] for m in self.call("GET", "/v1/models")]
        shown: dict[str, dict[str, Any]] = {}
        for name in names:
            if name == DEFAULT_POLICY:
                continue
            answer = self._stored(f"/v1/models/{_seg(name)}/policy")
            if answer is not None and answer["source"] == "model":
                shown[name] = answer["policy"]
        if model in (None, DEFAULT_POLICY):
            default = self._stored("/v1/policies/default")
            if default is not None:
                shown[DEFAULT_POLICY] = default["policy"]
        return dict(sorted(shown.items()))

    def _stored(self, path: str) -> dict[str, Any] | None:
        try:
            return dict(self.call("GET", path))
        except PolicyError:  # nothing stored there (and no default behind it)
            return None

    def fleet_list(self) -> list[str]:
        return list(self.call("GET", "/v1/fleet")["endpoints"])

    def tokens(self) -> list[TokenRecord]:
        return self._typed(list[TokenRecord], self.call("GET", "/v1/tokens"))

    # -- rollout actions ------------------------------------------------------------------------------------
    def _action(self, model: str, action: str, body: dict[str, object]) -> RolloutResult:
        answer = self.call("POST", f"/v1/models/{_seg(model)}/{action}", body=body, timeout=ACTION_TIMEOUT)
        return self._typed(RolloutResult, answer)

    def promote(
        self, model: str, version: int, *, reason: str = "", dry_run: bool = False, max_latency_ms: float | None = None
    ) -> RolloutResult:
        body: dict[str, object] = {"version": version, "reason": reason, "dry_run": dry_run}
        if max_latency_ms is not None:
            body["max_latency_ms"] = max_latency_ms
        return self._action(model, "promote", body)

    def deploy(self, model: str, version: int, *, reason: str = "") -> RolloutResult:
        return self._action(model, "deploy", {"version": version, "reason": reason})

    def canary(self, model: str, version: int, weight: float, *, reason: str = "") -> RolloutResult:
        return self._action(model, "canary", {"version": version, "weight": weight, "reason": reason})

    def abort_canary(self, model: str, *, reason: str = "") -> RolloutResult:
        return self._action(model, "abort", {"reason": reason})

    def rollback(self, model: str, *, to: int | None = None, reason: str = "") -> RolloutResult:
        return self._action(model, "rollback", {"to": to, "reason": reason})

    def shadow_start(self, model: str, version: int, share: float, *, reason: str = "") -> RolloutResult:
        return self._action(model, "shadow", {"version": version, "share": share, "reason": reason})

    def shadow_stop(self, model: str, *, reason: str = "") -> RolloutResult:
        return self._action(model, "shadow/stop", {"reason": reason})

    def shadow_report(self, model: str) -> list[dict[str, Any]]:
        """Per (live, shadow) version pair over the controller's fleet: ``ShadowReport.to_dict()`` each."""
        return [dict(report) for report in self.call("GET", f"/v1/models/{_seg(model)}/shadow")]

    # -- progressive rollouts (driven by the controller) -----------------------------------------------------
    def rollout_start(
        self,
        model: str,
        version: int,
        steps: str | list[float],
        interval: str | float,
        analysis: Mapping[str, Any] | None = None,
        *,
        reason: str = "",
    ) -> Rollout:
        """Start a progressive rollout (its first step applied, gates included, before this returns)."""
        body = {"version": version, "steps": steps, "interval": interval, "analysis": analysis, "reason": reason}
        answer = self.call("POST", f"/v1/models/{_seg(model)}/rollouts", body=body, timeout=ACTION_TIMEOUT)
        return self._typed(Rollout, answer)

    def rollout_status(self, model: str) -> Rollout:
        return self._typed(Rollout, self.call("GET", f"/v1/models/{_seg(model)}/rollouts/current"))

    def rollouts(self, model: str, limit: int = 20) -> list[Rollout]:
        return self._typed(
            list[Rollout], self.call("GET", f"/v1/models/{_seg(model)}/rollouts", params={"limit": limit})
        )

    def rollout_control(self, model: str, verb: str, *, reason: str = "") -> Rollout:
        """``verb``: pause, resume or abort the model's unfinished rollout."""
        path = f"/v1/models/{_seg(model)}/rollouts/current/{_seg(verb)}"
        return self._typed(Rollout, self.call("POST", path, body={"reason": reason}, timeout=ACTION_TIMEOUT))

    def reconcile(self, *, dry_run: bool = False) -> ReconcileReport:
        answer = self.call("POST", "/v1/reconcile", body={"dry_run": dry_run}, timeout=ACTION_TIMEOUT)
        return self._typed(ReconcileReport, answer)

    # -- changes (admin) and feedback ------------------------------------------------------------------------
    def _policy_path(self, model: str) -> str:
        return "/v1/policies/default" if model == DEFAULT_POLICY else f"/v1/models/{_seg(model)}/policy"

    def policy_set(self, model: str, policy: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.call("PUT", self._policy_path(model), body=dict(policy)))

    def policy_delete(self, model: str) -> None:
        self.call("DELETE", self._policy_path(model))

    def fleet_add(self, endpoint: str) -> list[str]:
        return list(self.call("POST", "/v1/fleet", body={"endpoint": endpoint})["endpoints"])

    def fleet_remove(self, endpoint: str) -> list[str]:
        return list(self.call("DELETE", f"/v1/fleet/{_seg(endpoint)}")["endpoints"])

    def token_create(self, name: str, role: str, expires_in_seconds: float | None = None) -> tuple[str, TokenRecord]:
        body = {"name": name, "role": role, "expires_in_seconds": expires_in_seconds}
        answer = self.call("POST", "/v1/tokens", body=body)
        return str(answer["token"]), self._typed(TokenRecord, answer["record"])

    def token_revoke(self, name: str) -> None:
        self.call("DELETE", f"/v1/tokens/{_seg(name)}")

    def feedback(
        self, predictions: list[dict[str, object]] | None = None, labels: list[dict[str, object]] | None = None
    ) -> tuple[int, int]:
        answer = self.call("POST", "/v1/feedback", body={"predictions": predictions or [], "labels": labels or []})
        return int(answer["predictions"]), int(answer["labels"])


def _seg(text: str) -> str:
    """One path segment, escaped (``host:port`` and names stay readable)."""
    return quote(text, safe=":")
