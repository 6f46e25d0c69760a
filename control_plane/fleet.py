"""The fleet: Triton endpoints driven over gRPC, and ``reconcile`` (make each one serve the desired state).

Per model the desired state on every endpoint is (see docs/contracts.md, "Aliases"):

- ``<model>`` loaded with ``version_policy: specific [live]``, plus the ``tritonops.canary`` parameter while a
  candidate or canary exists, so unversioned requests always reach live;
- ``<model>__canary`` loaded from the candidate version's bytes while a candidate/canary exists, absent otherwise.

Triton keeps neither override on disk, so after a server restart ``reconcile`` applies them again. Every version it
loads is warmed up with the manifest's reference sample, and the answers must match the manifest's expected outputs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from tritonops.control_plane.errors import (
    AdminAuthError,
    ControlPlaneError,
    EndpointUnreachableError,
    GateError,
    ModelLoadError,
    RolloutInProgressError,
    UnknownVersionError,
)
from tritonops.control_plane.state import AuditEntry, ModelState, StateStore
from tritonops.converters.errors import ManifestError, RepositoryError
from tritonops.converters.manifest import Manifest, load_manifest
from tritonops.converters.repository import publish_live
from tritonops.serving.errors import ModelConfigError
from tritonops.serving.install import BACKEND_NAME
from tritonops.serving.model_config import read_pbtxt, to_json, with_specific_versions
from tritonops.serving.routing import CANARY_PARAMETER, VERSION_OUTPUT, CanaryRoute

CANARY_SUFFIX = "__canary"
GRPC_RESTRICTED_PREFIX = "triton-grpc-protocol-"
"""Triton checks restricted gRPC protocols against metadata named ``triton-grpc-protocol-<header>``."""

CANARY_DRAIN_SECONDS = 2.5
"""Wait between un-publishing a canary split and unloading its alias: SDK clients re-read the split every 2 s
(``tritonops.clients.ClientOptions.refresh_interval``), so none still sends to an alias that is gone."""

_T = TypeVar("_T")


def canary_alias(model: str) -> str:
    return f"{model}{CANARY_SUFFIX}"


def grpc_admin_headers(admin_headers: Mapping[str, str]) -> dict[str, str]:
    """The HTTP-style admin headers (``Settings.admin_headers()``) as the gRPC metadata Triton expects."""
    return {f"{GRPC_RESTRICTED_PREFIX}{key}": value for key, value in admin_headers.items()}


def canary_parameter(model: str, version: int, weight: float) -> str:
    """The compact JSON published on the live model's config: the backend splits by it (and opt-in SDK routing)."""
    return CanaryRoute(canary_alias(model), version, weight).to_parameter()


# -- what to load: configs and files from the repository --------------------------------------------
def version_dir(repository: Path, model: str, version: int) -> Path:
    path = repository / model / str(version)
    if not path.is_dir():
        raise UnknownVersionError(model, version, f"no directory {path} in the model repository")
    return path


def version_config(repository: Path, model: str, version: int) -> mc.ModelConfig:
    """The embedded config written for this version (``<repo>/<model>/<v>/config.pbtxt``)."""
    path = version_dir(repository, model, version) / "config.pbtxt"
    if not path.is_file():
        raise UnknownVersionError(model, version, f"missing {path} (the converter writes one per version)")
    try:
        return read_pbtxt(path)
    except ModelConfigError as exc:
        raise UnknownVersionError(model, version, str(exc)) from exc


def version_manifest(repository: Path, model: str, version: int) -> Manifest:
    try:
        manifest = load_manifest(version_dir(repository, model, version))
    except ManifestError as exc:
        raise UnknownVersionError(model, version, str(exc)) from exc
    if manifest.name != model or manifest.version != version:
        raise UnknownVersionError(
            model, version, f"manifest.json names {manifest.name!r} version {manifest.version}, not this version"
        )
    return manifest


def with_version_output(config: mc.ModelConfig) -> mc.ModelConfig:
    """``config`` declaring the ``served_version`` output, so every answer names the version that scored it."""
    if config.backend == BACKEND_NAME and all(output.name != VERSION_OUTPUT for output in config.output):
        config.output.append(mc.ModelOutput(name=VERSION_OUTPUT, data_type=mc.TYPE_INT64, dims=[1]))
    return config


def live_config(repository: Path, state: ModelState) -> mc.ModelConfig:
    """``<model>`` serving exactly the live version, with the canary split when one exists.

    The backend reads the split when the config loads: a weight change reloads the live model (Triton keeps the
    old instances serving until the new ones are ready, so no request fails).
    """
    assert state.live is not None
    config = with_version_output(
        with_specific_versions(version_config(repository, state.name, state.live), [state.live])
    )
    config.name = state.name
    if state.canary is not None:
        config.parameters[CANARY_PARAMETER].string_value = canary_parameter(
            state.name, state.canary, state.canary_weight
        )
    return config


def canary_config(repository: Path, model: str, version: int) -> mc.ModelConfig:
    config = with_version_output(with_specific_versions(version_config(repository, model, version), [version]))
    config.name = canary_alias(model)
    return config


def canary_files(repository: Path, model: str, version: int) -> dict[str, bytes]:
    """Every file of the version except its config, keyed the way ``load_model(files=...)`` wants."""
    root = version_dir(repository, model, version)
    return {
        f"file:{version}/{path.relative_to(root).as_posix()}": path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "config.pbtxt"
    }


# -- one endpoint --------------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionStats:
    success: int
    failure: int


class Endpoint:
    """One Triton server's gRPC API, with its errors turned into ours."""

    def __init__(
        self, url: str, admin_headers: Mapping[str, str], timeout: float = 10.0, load_timeout: float = 180.0
    ) -> None:
        self.url = url
        self._headers = grpc_admin_headers(admin_headers)
        self._timeout = timeout
        self._load_timeout = load_timeout
        self._client = grpcclient.InferenceServerClient(url)

    def close(self) -> None:
        self._client.close()

    def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        try:
            return fn(*args, **kwargs)
        except InferenceServerException as exc:
            message = exc.message() or str(exc)
            if "restricted" in message and "admin-key" in message:
                raise AdminAuthError(self.url, token_set=bool(self._headers)) from None
            if exc.status() in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"):
                raise EndpointUnreachableError(self.url, message) from None
            raise

    def check(self) -> None:
        """Reachable, live, and our admin key accepted; raise otherwise.

        Liveness, not readiness: with ``--strict-readiness`` a server reports "not ready" as soon as any version
        it once served is unloaded, which every version switch does.
        """
        if not self._call(self._client.is_server_live, client_timeout=self._timeout):
            raise EndpointUnreachableError(self.url, "the server answers but is not live")
        self.repository_index()

    def repository_index(self) -> list[dict[str, str]]:
        index = self._call(
            self._client.get_model_repository_index, headers=self._headers, as_json=True, client_timeout=self._timeout
        )
        return list(index.get("models", []))

    def wait_settled(self, name: str, timeout: float = 120.0) -> bool:
        """Wait until no version of ``name`` is LOADING or UNLOADING (a load whose caller died still finishes
        inside Triton); True when it settled in time."""
        deadline = time.monotonic() + timeout
        while any(
            e.get("name") == name and e.get("state") in ("LOADING", "UNLOADING") for e in self.repository_index()
        ):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def load(self, config: mc.ModelConfig, files: Mapping[str, bytes] | None = None) -> None:
        """Load ``config.name`` with this config; its old versions serve until the new ones are ready."""
        versions = list(config.version_policy.specific.versions)
        try:
            self._call(
                self._client.load_model,
                config.name,
                headers=self._headers,
                config=to_json(config),
                files=dict(files) if files else None,
                client_timeout=self._load_timeout,
            )
        except InferenceServerException as exc:
            raise ModelLoadError(self.url, config.name, versions[0] if versions else None, exc.message()) from None
        for version in versions:
            if not self.is_ready(config.name, version):
                raise ModelLoadError(self.url, config.name, version, "loaded but not ready")

    def unload(self, name: str) -> None:
        try:
            self._call(self._client.unload_model, name, headers=self._headers, client_timeout=self._load_timeout)
        except InferenceServerException as exc:
            raise ModelLoadError(self.url, name, None, f"unload failed: {exc.message()}") from None

    def is_ready(self, name: str, version: int | None = None) -> bool:
        try:
            return bool(
                self._call(
                    self._client.is_model_ready,
                    name,
                    "" if version is None else str(version),
                    client_timeout=self._timeout,
                )
            )
        except InferenceServerException:
            return False

    def loaded_config(self, name: str) -> mc.ModelConfig | None:
        """The config ``name`` is loaded with, or None when it is not loaded."""
        if not self.is_ready(name):
            return None
        try:
            response = self._call(self._client.get_model_config, name, client_timeout=self._timeout)
        except InferenceServerException:
            return None
        config = mc.ModelConfig()
        config.CopyFrom(response.config)
        return config

    def ready_versions(self, name: str) -> list[int]:
        """Versions of ``name`` that are ready (aliases are not in the index: ask their loaded config)."""
        listed = [entry for entry in self.repository_index() if entry.get("name") == name]
        if listed:
            return sorted(int(e["version"]) for e in listed if e.get("state") == "READY" and e.get("version"))
        config = self.loaded_config(name)
        if config is None:
            return []
        return [v for v in config.version_policy.specific.versions if self.is_ready(name, v)]

    def statistics(self, name: str) -> dict[int, VersionStats]:
        """Successful and failed inference counts per loaded version of ``name``."""
        try:
            response = self._call(
                self._client.get_inference_statistics, name, as_json=True, client_timeout=self._timeout
            )
        except InferenceServerException:
            return {}
        stats: dict[int, VersionStats] = {}
        for entry in response.get("model_stats", []):
            inference = entry.get("inference_stats", {})
            stats[int(entry["version"])] = VersionStats(
                success=int(inference.get("success", {}).get("count", 0)),
                failure=int(inference.get("fail", {}).get("count", 0)),
            )
        return stats

    def infer(
        self, name: str, version: int, inputs: list[grpcclient.InferInput]
    ) -> tuple[list[Any], np.ndarray[Any, Any]]:
        """Labels and probabilities for one request to ``name`` version ``version``."""
        result = self._call(
            self._client.infer,
            name,
            inputs,
            model_version=str(version),
            outputs=[grpcclient.InferRequestedOutput("label"), grpcclient.InferRequestedOutput("probabilities")],
            client_timeout=self._timeout,
        )
        labels = result.as_numpy("label")
        probabilities = result.as_numpy("probabilities")
        if labels is None or probabilities is None:
            raise ControlPlaneError(f"endpoint {self.url}: {name} v{version} answered without label/probabilities")
        decoded = [v.decode("utf-8") if isinstance(v, bytes) else v.item() for v in labels.reshape(-1)]
        return decoded, probabilities.astype(np.float64)


# -- smoke / warm-up --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SmokeResult:
    """One model version answered the reference sample on one endpoint."""

    endpoint: str
    name: str
    version: int
    rows: int
    label_mismatches: int
    max_prob_diff: float
    latencies_ms: tuple[float, ...]

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def sample_inputs(manifest: Manifest) -> list[grpcclient.InferInput]:
    """The reference sample as Triton input tensors, columns in the manifest's feature order."""
    features = {f.name: f for f in manifest.features}
    rows = len(manifest.reference.expected.labels)
    tensors = []
    for spec in manifest.inputs:
        columns = sorted(spec.features, key=lambda name: features[name].column)
        if spec.datatype == "FP32":
            data: np.ndarray[Any, Any] = np.array(
                [[math.nan if v is None else float(v) for v in manifest.reference.sample[c]] for c in columns],
                dtype=np.float32,
            ).T.reshape(rows, len(columns))
        else:
            data = np.array(
                [[str(v).encode("utf-8") for v in manifest.reference.sample[c]] for c in columns], dtype=np.object_
            ).T.reshape(rows, len(columns))
        tensor = grpcclient.InferInput(spec.name, list(data.shape), spec.datatype)
        tensor.set_data_from_numpy(data)
        tensors.append(tensor)
    return tensors


def smoke_check(endpoint: Endpoint, name: str, version: int, manifest: Manifest, repeats: int = 1) -> SmokeResult:
    """Send the reference sample ``repeats`` times; raise ``GateError`` when the answers differ from the manifest."""
    expected_labels = list(manifest.reference.expected.labels)
    expected_probs = np.array(manifest.reference.expected.probabilities, dtype=np.float64)
    tolerance = max(manifest.parity.thresholds.max_prob_diff, 1e-5)
    latencies: list[float] = []
    labels: list[Any] = []
    probs = expected_probs
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        labels, probs = endpoint.infer(name, version, sample_inputs(manifest))
        latencies.append((time.perf_counter() - started) * 1000.0)
    mismatches = sum(1 for got, want in zip(labels, expected_labels, strict=False) if got != want)
    mismatches += abs(len(labels) - len(expected_labels))
    diff = float(np.max(np.abs(probs - expected_probs))) if probs.shape == expected_probs.shape else math.inf
    result = SmokeResult(endpoint.url, name, version, len(expected_labels), mismatches, diff, tuple(latencies))
    if mismatches or diff > tolerance:
        raise GateError(
            manifest.name,
            version,
            "smoke",
            f"endpoint {endpoint.url} ({name}): {mismatches} of {len(expected_labels)} labels differ from the "
            f"manifest's expected outputs, max probability difference {diff:.3g} (allowed {tolerance:.3g})",
        )
    return result


# -- reconcile ------------------------------------------------------------------------------------
def observe(endpoint: Endpoint, repository: Path, state: ModelState) -> list[str]:
    """How ``endpoint`` differs from ``state`` for one model (empty list: it matches)."""
    drift: list[str] = []
    if state.live is not None:
        wanted = live_config(repository, state)
        loaded = endpoint.loaded_config(state.name)
        if loaded is None:
            drift.append(f"{state.name}: not loaded (want version {state.live})")
        else:
            versions = list(loaded.version_policy.specific.versions)
            if versions != [state.live]:
                drift.append(
                    f"{state.name}: loaded with versions {versions or 'policy ' + str(loaded.version_policy)}"
                    f", want [{state.live}]"
                )
            if not endpoint.is_ready(state.name, state.live):
                drift.append(f"{state.name}: version {state.live} not ready")
            have = loaded.parameters[CANARY_PARAMETER].string_value if CANARY_PARAMETER in loaded.parameters else None
            want = wanted.parameters[CANARY_PARAMETER].string_value if CANARY_PARAMETER in wanted.parameters else None
            if have != want:
                drift.append(f"{state.name}: {CANARY_PARAMETER} is {have!r}, want {want!r}")
            extra = [v for v in endpoint.ready_versions(state.name) if v != state.live]
            if extra:
                drift.append(f"{state.name}: versions {extra} also ready, want only {state.live}")
    alias = canary_alias(state.name)
    alias_versions = endpoint.ready_versions(alias)
    if state.canary is not None and alias_versions != [state.canary]:
        drift.append(f"{alias}: ready versions {alias_versions}, want [{state.canary}]")
    if state.canary is None and alias_versions:
        drift.append(f"{alias}: loaded (versions {alias_versions}) but no candidate is wanted")
    return drift


def apply(
    endpoint: Endpoint,
    repository: Path,
    state: ModelState,
    drain_seconds: float = CANARY_DRAIN_SECONDS,
    actions: list[str] | None = None,
) -> list[str]:
    """Bring one endpoint to ``state`` for one model, loading only what differs; returns the actions taken.

    Order keeps clients safe: the canary alias is loaded before the live config points at it, and unloaded only
    ``drain_seconds`` after the live config stopped sending traffic to it. Each version loaded is warmed up and
    checked with the reference sample. Actions are appended to ``actions`` as they finish, so a caller that
    passes a list still knows what was done when a later step raises.
    """
    actions = [] if actions is None else actions
    alias = canary_alias(state.name)
    if state.canary is not None and endpoint.ready_versions(alias) != [state.canary]:
        endpoint.load(
            canary_config(repository, state.name, state.canary), canary_files(repository, state.name, state.canary)
        )
        smoke_check(endpoint, alias, state.canary, version_manifest(repository, state.name, state.canary))
        actions.append(f"loaded {alias} version {state.canary} (warmed up)")
    routed_before = False
    if state.live is not None:
        wanted = live_config(repository, state)
        loaded = endpoint.loaded_config(state.name)
        routed_before = loaded is not None and _canary_weight(loaded) > 0
        if loaded is None or _differs(loaded, wanted) or endpoint.ready_versions(state.name) != [state.live]:
            endpoint.load(wanted)
            smoke_check(endpoint, state.name, state.live, version_manifest(repository, state.name, state.live))
            actions.append(f"loaded {state.name} version {state.live} (warmed up)")
    if state.canary is None and endpoint.ready_versions(alias):
        if routed_before:
            time.sleep(drain_seconds)
        endpoint.unload(alias)
        actions.append(f"unloaded {alias}")
    return actions


def _canary_weight(config: mc.ModelConfig) -> float:
    if CANARY_PARAMETER not in config.parameters:
        return 0.0
    try:
        return float(json.loads(config.parameters[CANARY_PARAMETER].string_value).get("weight", 0.0))
    except (ValueError, AttributeError):
        return 0.0


def _differs(loaded: mc.ModelConfig, wanted: mc.ModelConfig) -> bool:
    if list(loaded.version_policy.specific.versions) != list(wanted.version_policy.specific.versions):
        return True
    if {o.name for o in wanted.output} - {o.name for o in loaded.output}:
        return True
    have = dict(loaded.parameters)
    return any(key not in have or have[key] != value for key, value in wanted.parameters.items()) or (
        CANARY_PARAMETER in have and CANARY_PARAMETER not in wanted.parameters
    )


@dataclass(frozen=True)
class ReconcileChange:
    """One model on one endpoint that reconcile found different and acted on: one audit event."""

    endpoint: str
    model: str
    live: int | None
    drift: list[str]
    actions: list[str]
    error: str | None = None

    def audit_entry(self, actor: str) -> AuditEntry:
        detail = {"endpoint": self.endpoint, "differed": self.drift, "actions": self.actions, "error": self.error}
        return AuditEntry(
            actor=actor,
            action="reconcile-apply",
            model=self.model,
            from_version=None,
            to_version=self.live,
            reason="",
            result="failed" if self.error else "ok",
            detail=json.dumps(detail),
        )


@dataclass
class EndpointReport:
    """What reconcile found and did on one endpoint."""

    endpoint: str
    drift: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    changes: list[ReconcileChange] = field(default_factory=list)
    unusable: bool = False
    """Unreachable or refusing our admin key: the remaining models are not tried."""


@dataclass
class ReconcileReport:
    endpoints: list[EndpointReport]
    interrupted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    """Model-level configs rewritten because they did not name the live version."""
    not_published: list[str] = field(default_factory=list)
    """Model-level configs that are stale but could not be rewritten (read-only repository), and why."""

    @property
    def quiet(self) -> bool:
        """Nothing differed, nothing was done, nothing failed: such a run leaves no audit event."""
        return not (
            self.interrupted
            or self.skipped
            or self.published
            or any(r.drift or r.actions or r.errors for r in self.endpoints)
        )

    @property
    def ok(self) -> bool:
        return not any(report.errors for report in self.endpoints) and not self.skipped

    @property
    def drift_count(self) -> int:
        return sum(len(report.drift) for report in self.endpoints)


def reconcile(
    store: StateStore,
    repository: Path,
    admin_headers: Mapping[str, str],
    *,
    actor: str,
    dry_run: bool = False,
    endpoints: Sequence[str] | None = None,
) -> ReconcileReport:
    """Make every endpoint serve exactly the desired state; idempotent, safe to run again after any crash.

    Each model is handled under its rollout lock (a model being rolled out right now is skipped and reported).
    Rollouts a killed process left unfinished are closed as 'interrupted' in the audit log. With ``dry_run`` it
    only reports drift. ``endpoints`` is the fleet as discovered (default: the state's static list). Audit, written
    once at the end of the run: one ``reconcile-apply`` event per model and endpoint acted on (endpoint, what
    differed, the loads/unloads, result) and a ``reconcile`` summary event; a run that found nothing to do adds
    none. It also rewrites a live model's model-level ``config.pbtxt`` if it is stale
    (``tritonops.converters.repository.publish_live``).
    """
    urls = store.fleet() if endpoints is None else list(endpoints)
    servers = [Endpoint(url, admin_headers) for url in urls]
    reports = {e.url: EndpointReport(e.url) for e in servers}
    report = ReconcileReport(list(reports.values()))
    try:
        for state in store.models():
            try:
                with store.rollout_lock(state.name, f"reconcile by {actor}"):
                    if not dry_run:
                        for event in store.close_interrupted(state.name, actor):
                            report.interrupted.append(f"{event.model}: {event.action} {event.reason}")
                    state = store.model(state.name) or state
                    if state.live is not None and not dry_run:
                        _publish(repository, state, report)
                    for server in servers:
                        _reconcile_one(server, repository, state, reports[server.url], dry_run)
            except RolloutInProgressError as exc:
                report.skipped.append(str(exc))
    finally:
        for server in servers:
            server.close()
    if not dry_run and not report.quiet:
        for change in (c for r in report.endpoints for c in r.changes):
            store.record(change.audit_entry(actor))
        errors = {r.endpoint: "; ".join(r.errors) for r in report.endpoints if r.errors}
        store.record(
            AuditEntry(
                actor=actor,
                action="reconcile",
                model=None,
                from_version=None,
                to_version=None,
                reason="",
                result="ok" if report.ok else "failed",
                detail=json.dumps(
                    {
                        "drift": report.drift_count,
                        "actions": sum(len(r.actions) for r in report.endpoints),
                        "errors": errors,
                        "skipped": report.skipped,
                        "interrupted": report.interrupted,
                        "published": report.published,
                        "endpoints": urls,
                    }
                ),
            )
        )
    return report


def _reconcile_one(
    endpoint: Endpoint, repository: Path, state: ModelState, report: EndpointReport, dry_run: bool
) -> None:
    if report.unusable:
        return
    try:
        if not endpoint.wait_settled(state.name):
            report.errors.append(f"{state.name}: a load or unload inside Triton did not finish in time")
            return
        drift = observe(endpoint, repository, state)
        report.drift.extend(drift)
    except (EndpointUnreachableError, AdminAuthError) as exc:
        report.unusable = True
        report.errors.append(str(exc))
        return
    except ControlPlaneError as exc:
        report.errors.append(f"{state.name}: {exc}")
        return
    if not drift or dry_run:
        return
    actions: list[str] = []
    error: str | None = None
    try:
        apply(endpoint, repository, state, actions=actions)
    except (EndpointUnreachableError, AdminAuthError) as exc:
        report.unusable = True
        error = str(exc)
        report.errors.append(error)
    except ControlPlaneError as exc:
        error = str(exc)
        report.errors.append(f"{state.name}: {exc}")
    report.actions.extend(actions)
    report.changes.append(ReconcileChange(endpoint.url, state.name, state.live, drift, actions, error))


def _publish(repository: Path, state: ModelState, report: ReconcileReport) -> None:
    """Rewrite the live model's model-level config if it is stale. A repository this process may not write (the
    deployments mount it read-only) is reported on every run but is not a change: it leaves no audit event."""
    assert state.live is not None
    try:
        written = publish_live(repository, state.name, state.live)
    except RepositoryError as exc:
        report.not_published.append(str(exc))
        return
    report.published += [f"{path} now serves version {state.live}" for path in written]
