"""One Triton server as the control plane drives it: the ``Endpoint`` protocol and its gRPC implementation.

Rollout and reconcile only ever talk to an ``Endpoint``; ``GrpcEndpoint`` is the real one. A ``Connector`` makes
one from a ``host:port`` and the admin headers, so tests hand in an endpoint of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from tritonops.contract.names import (
    LABEL_OUTPUT,
    LIVE_ONLY_PARAMETER,
    PROBABILITIES_OUTPUT,
    SMOKE_REQUEST_ID,
    canary_alias,
)
from tritonops.control_plane.errors import (
    AdminAuthError,
    ControlPlaneError,
    EndpointUnreachableError,
    VersionLoadError,
)
from tritonops.control_plane.plan import ModelObservation
from tritonops.model_config import to_json

GRPC_RESTRICTED_PREFIX = "triton-grpc-protocol-"
"""Triton checks restricted gRPC protocols against metadata named ``triton-grpc-protocol-<header>``."""

_T = TypeVar("_T")


def grpc_admin_headers(admin_headers: Mapping[str, str]) -> dict[str, str]:
    """The HTTP-style admin headers (``Settings.admin_headers()``) as the gRPC metadata Triton expects."""
    return {f"{GRPC_RESTRICTED_PREFIX}{key}": value for key, value in admin_headers.items()}


@dataclass(frozen=True)
class InferenceCounts:
    """Triton's own success / failure counts of one loaded version (its inference statistics API)."""

    success: int
    failure: int


class Endpoint(Protocol):
    """What rollout and reconcile need from one Triton server; errors are ours (``ControlPlaneError``)."""

    @property
    def url(self) -> str: ...

    def check(self) -> None:
        """Reachable, live, and our admin key accepted; raise otherwise."""

    def observe(self, model: str) -> ModelObservation:
        """What the server serves for ``model`` and its canary alias, now."""

    def wait_settled(self, name: str, timeout: float = 120.0) -> bool:
        """Wait until no version of ``name`` is loading or unloading; True when it settled in time."""

    def load(self, config: mc.ModelConfig, files: Mapping[str, bytes] | None = None) -> None:
        """Load ``config.name`` with this config (its old versions serve until the new ones are ready)."""

    def unload(self, name: str) -> None: ...

    def infer(
        self, name: str, version: int, inputs: Sequence[grpcclient.InferInput]
    ) -> tuple[list[Any], np.ndarray[Any, Any]]:
        """Labels and probabilities for one request to ``name`` version ``version``."""

    def statistics(self, name: str) -> dict[int, InferenceCounts]:
        """Successful and failed inference counts per loaded version of ``name``."""

    def close(self) -> None: ...


Connector = Callable[[str, Mapping[str, str]], Endpoint]
"""``(host:port, admin headers) -> Endpoint``."""


class GrpcEndpoint:
    """One Triton server's gRPC API, with its errors turned into ours."""

    def __init__(
        self, url: str, admin_headers: Mapping[str, str], timeout: float = 10.0, load_timeout: float = 180.0
    ) -> None:
        self._url = url
        self._headers = grpc_admin_headers(admin_headers)
        self._timeout = timeout
        self._load_timeout = load_timeout
        self._client = grpcclient.InferenceServerClient(url)

    @property
    def url(self) -> str:
        return self._url

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
        """Liveness, not readiness: with ``--strict-readiness`` a server reports "not ready" as soon as any version
        it once served is unloaded, which every version switch does."""
        if not self._call(self._client.is_server_live, client_timeout=self._timeout):
            raise EndpointUnreachableError(self.url, "the server answers but is not live")
        self._repository_index()

    def _repository_index(self) -> list[dict[str, str]]:
        index = self._call(
            self._client.get_model_repository_index, headers=self._headers, as_json=True, client_timeout=self._timeout
        )
        return list(index.get("models", []))

    def ready_index(self) -> dict[str, set[int]]:
        """READY versions of every model in the repository index, in one call (the controller's cheap probe;
        aliases such as ``<model>__canary`` are not in the index: ``observe`` them)."""
        ready: dict[str, set[int]] = {}
        for entry in self._repository_index():
            if entry.get("state") == "READY" and entry.get("version"):
                ready.setdefault(str(entry["name"]), set()).add(int(entry["version"]))
        return ready

    def observe(self, model: str) -> ModelObservation:
        index = self._repository_index()
        return ModelObservation(
            model=model,
            config=self._loaded_config(model),
            ready=tuple(self._ready_versions(model, index)),
            canary_ready=tuple(self._ready_versions(canary_alias(model), index)),
        )

    def wait_settled(self, name: str, timeout: float = 120.0) -> bool:
        """A load whose caller died still finishes inside Triton: wait for it rather than race it."""
        deadline = time.monotonic() + timeout
        while any(
            e.get("name") == name and e.get("state") in ("LOADING", "UNLOADING") for e in self._repository_index()
        ):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def load(self, config: mc.ModelConfig, files: Mapping[str, bytes] | None = None) -> None:
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
            raise VersionLoadError(self.url, config.name, versions[0] if versions else None, exc.message()) from None
        for version in versions:
            if not self._is_ready(config.name, version):
                raise VersionLoadError(self.url, config.name, version, "loaded but not ready")

    def unload(self, name: str) -> None:
        try:
            self._call(self._client.unload_model, name, headers=self._headers, client_timeout=self._load_timeout)
        except InferenceServerException as exc:
            raise VersionLoadError(self.url, name, None, f"unload failed: {exc.message()}") from None

    def _is_ready(self, name: str, version: int | None = None) -> bool:
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

    def _loaded_config(self, name: str) -> mc.ModelConfig | None:
        if not self._is_ready(name):
            return None
        try:
            response = self._call(self._client.get_model_config, name, client_timeout=self._timeout)
        except InferenceServerException:
            return None
        config = mc.ModelConfig()
        config.CopyFrom(response.config)
        return config

    def _ready_versions(self, name: str, index: list[dict[str, str]]) -> list[int]:
        """Aliases are not in the repository index: ask their loaded config."""
        listed = [entry for entry in index if entry.get("name") == name]
        if listed:
            return sorted(int(e["version"]) for e in listed if e.get("state") == "READY" and e.get("version"))
        config = self._loaded_config(name)
        if config is None:
            return []
        return [v for v in config.version_policy.specific.versions if self._is_ready(name, v)]

    def statistics(self, name: str) -> dict[int, InferenceCounts]:
        try:
            response = self._call(
                self._client.get_inference_statistics, name, as_json=True, client_timeout=self._timeout
            )
        except InferenceServerException:
            return {}
        stats: dict[int, InferenceCounts] = {}
        for entry in response.get("model_stats", []):
            inference = entry.get("inference_stats", {})
            stats[int(entry["version"])] = InferenceCounts(
                success=int(inference.get("success", {}).get("count", 0)),
                failure=int(inference.get("fail", {}).get("count", 0)),
            )
        return stats

    def infer(
        self, name: str, version: int, inputs: Sequence[grpcclient.InferInput]
    ) -> tuple[list[Any], np.ndarray[Any, Any]]:
        result = self._call(
            self._client.infer,
            name,
            list(inputs),
            model_version=str(version),
            outputs=[grpcclient.InferRequestedOutput(name) for name in (LABEL_OUTPUT, PROBABILITIES_OUTPUT)],
            request_id=SMOKE_REQUEST_ID,
            client_timeout=self._timeout,
            parameters={LIVE_ONLY_PARAMETER: True},  # a smoke check of live is answered by live, whatever the split
        )
        labels = result.as_numpy(LABEL_OUTPUT)
        probabilities = result.as_numpy(PROBABILITIES_OUTPUT)
        if labels is None or probabilities is None:
            raise ControlPlaneError(f"endpoint {self.url}: {name} v{version} answered without label/probabilities")
        decoded = [v.decode("utf-8") if isinstance(v, bytes) else v.item() for v in labels.reshape(-1)]
        return decoded, probabilities.astype(np.float64)
