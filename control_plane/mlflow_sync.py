"""``tritonops mlflow sync``: serve what an MLflow registry alias points to, through the normal promotion gates.

The alias is resolved once; the version it names is converted unless a repository version already came from it
(the manifest records the registered model and version), then promoted with ``rollout.promote``, whose audit
event names the MLflow model version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tritonops.control_plane.rollout import RolloutResult, promote
from tritonops.control_plane.state import StateStore
from tritonops.converters.convert import ConversionOptions
from tritonops.converters.mlflow_source import convert_mlflow, resolve, tracking_uri
from tritonops.converters.repository import ModelVersion, list_models, list_versions
from tritonops.settings import Settings

log = logging.getLogger("tritonops.control_plane.mlflow")


@dataclass(frozen=True)
class SyncResult:
    registered_model: str
    alias: str
    registered_version: int
    version: ModelVersion
    converted: bool
    promoted: RolloutResult | None
    """None when that version was live already."""


def converted_version(settings: Settings, model: str, registered: str, registered_version: int) -> ModelVersion | None:
    """The newest version of ``model`` converted from MLflow model ``registered`` version ``registered_version``."""
    if model not in list_models(settings.repository):
        return None
    matches = [
        v
        for v in list_versions(settings.repository, model)
        if v.manifest.source.mlflow is not None
        and v.manifest.source.mlflow.registered_model == registered
        and v.manifest.source.mlflow.registered_version == registered_version
    ]
    return matches[-1] if matches else None


def sync(
    settings: Settings,
    registered: str,
    alias: str,
    *,
    actor: str,
    model: str | None = None,
    classes: Sequence[str] | Sequence[int] | None = None,
    options: ConversionOptions | None = None,
    allow_version_skew: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> SyncResult:
    """Make the version ``registered@alias`` points to live as ``model`` (default: the registered name)."""
    tracking = tracking_uri()
    uri = f"models:/{registered}@{alias}"
    resolved = resolve(uri, tracking)
    assert resolved.registered_version is not None
    target = model or registered
    progress(f"{uri} points to version {resolved.registered_version} (run {resolved.run_id})")
    version = converted_version(settings, target, registered, resolved.registered_version)
    converted = version is None
    if version is None:
        version = convert_mlflow(
            uri,
            name=target,
            repository=settings.repository,
            classes=classes,
            options=options,
            progress=progress,
            allow_version_skew=allow_version_skew,
            tracking=tracking,
            resolved=resolved,
        )
    else:
        progress(f"already converted as {target} version {version.version}")
    with StateStore.open(settings.state) as store:
        state = store.model(target)
    if state is not None and state.live == version.version:
        progress(f"{target} version {version.version} is live already: nothing to promote")
        return SyncResult(registered, alias, resolved.registered_version, version, converted, None)
    reason = f"mlflow sync {uri} -> MLflow version {resolved.registered_version}"
    log.info("promoting %s version %s (%s)", target, version.version, reason)
    result = promote(settings, target, version.version, actor=actor, reason=reason)
    return SyncResult(registered, alias, resolved.registered_version, version, converted, result)
