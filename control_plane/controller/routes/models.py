"""``/v1/models``: the repository's models and versions with their desired state, drift, accuracy, policies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import HTMLResponse

from tritonops.control_plane.controller.auth import require
from tritonops.control_plane.controller.context import ApiContext, context
from tritonops.control_plane.controller.schemas import AccuracyAnswer, ModelInfo, PolicyAnswer, VersionInfo
from tritonops.control_plane.desired import version_manifest
from tritonops.control_plane.discovery import discover
from tritonops.control_plane.drift import DriftReport, parse_duration, report_to_dict
from tritonops.control_plane.drift_html import render_html
from tritonops.control_plane.drift_rows import captured_drifted_rows
from tritonops.control_plane.errors import PolicyError, UnknownModelError
from tritonops.control_plane.feedback import FeedbackStore
from tritonops.control_plane.guardrails import Policy, drift_for_version, measure_drift, parse_policy_data
from tritonops.control_plane.metrics import metrics_urls
from tritonops.control_plane.policies import DEFAULT_POLICY, effective_policy, remove_policy, store_policy
from tritonops.control_plane.rollout import check_model_name
from tritonops.control_plane.state import StateStore, now_iso
from tritonops.control_plane.tokens import Identity, Role
from tritonops.converters.errors import RepositoryError
from tritonops.converters.repository import list_models, list_versions

router = APIRouter(prefix="/v1", tags=["models"])
Ctx = Annotated[ApiContext, Depends(context)]


def _known(ctx: ApiContext, model: str) -> str:
    check_model_name(model)
    if not (ctx.settings.repository / model).is_dir():
        raise UnknownModelError(model, f"the model repository ({ctx.settings.repository})")
    return model


@router.get("/models", response_model=list[ModelInfo])
def get_models(ctx: Ctx, who: Annotated[Identity, Depends(require(Role.VIEWER, "models"))]) -> list[ModelInfo]:
    """Every model of the repository (and of the desired state) with its versions, live, canary and policy."""
    try:
        names = set(list_models(ctx.settings.repository))
    except RepositoryError:
        names = set()
    answer = []
    with StateStore.open(ctx.settings.state) as store:
        states = {s.name: s for s in store.models()}
        for name in sorted(names | set(states)):
            state = states.get(name)
            policy = effective_policy(store, name) if state is not None and state.live is not None else None
            numbers = [v.version for v in _versions(ctx, name)]
            answer.append(
                ModelInfo(
                    name=name,
                    versions=numbers,
                    live=state.live if state else None,
                    canary=state.canary if state else None,
                    canary_weight=state.canary_weight if state else 0.0,
                    policy=policy[1] if policy is not None else None,  # type: ignore[arg-type]
                )
            )
    return answer


def _versions(ctx: ApiContext, model: str) -> list[Any]:
    try:
        return list_versions(ctx.settings.repository, model)
    except RepositoryError:
        return []


@router.get("/models/{model}/versions", response_model=list[VersionInfo])
def get_versions(
    model: str, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.VIEWER, "versions"))]
) -> list[VersionInfo]:
    """The model's versions in the repository, oldest first, with their parity verdict and role."""
    _known(ctx, model)
    with StateStore.open(ctx.settings.state) as store:
        state = store.model(model)
    return [
        VersionInfo(
            version=v.version,
            created_at=v.manifest.created_at.isoformat(),
            framework=v.manifest.source.framework,
            estimator=v.manifest.source.estimator,
            parity_passed=v.manifest.parity.passed,
            live=state is not None and state.live == v.version,
            canary=state is not None and state.canary == v.version,
        )
        for v in list_versions(ctx.settings.repository, model)
    ]


def _drift(ctx: ApiContext, model: str, window: str, version: int | None) -> DriftReport:
    """The drift report of the live version (or ``version``) over ``window`` (``load``: since load)."""
    _known(ctx, model)
    seconds = None if window == "load" else parse_duration(window, "window")
    if ctx.window is None:
        with StateStore.open(ctx.settings.state) as store:
            urls = metrics_urls([], discover(ctx.settings.fleet, store))
        return measure_drift(ctx.settings, model, urls, version=version, window_seconds=seconds)
    if version is None:
        with StateStore.open(ctx.settings.state) as store:
            state = store.model(model)
        if state is None or state.live is None:
            raise UnknownModelError(model, "the control plane state as a live model")
        version = state.live
    policy = _policy_or_default(ctx, model)
    config = policy.drift.thresholds if policy.drift is not None else Policy().drift.thresholds  # type: ignore[union-attr]
    return drift_for_version(version_manifest(ctx.settings.repository, model, version), ctx.window(seconds), config)


WindowQuery = Annotated[str, Query(max_length=20, description="30s, 15m, 2h, or 'load' (since load)")]


@router.get("/models/{model}/drift")
def get_drift(
    model: str,
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.VIEWER, "drift"))],
    window: WindowQuery = "15m",
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, object]:
    """Drift of every input feature and of the class mix of the live version (or ``version``) over ``window``."""
    return report_to_dict(_drift(ctx, model, window, version))


@router.get("/models/{model}/drift/report", response_class=HTMLResponse)
def get_drift_report(
    model: str,
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.VIEWER, "drift"))],
    window: WindowQuery = "15m",
    version: Annotated[int | None, Query(ge=1)] = None,
    rows: Annotated[int, Query(ge=0, le=1000, description="most drifted captured rows to list (0: none)")] = 10,
) -> HTMLResponse:
    """The drift report as one self-contained HTML page (``tritonops drift MODEL --report``), with the most
    drifted captured rows when rows are captured."""
    report = _drift(ctx, model, window, version)
    drifted = captured_drifted_rows(ctx.settings, report, rows) if rows else []
    return HTMLResponse(render_html(report, generated_at=now_iso(), drifted_rows=drifted))


def _policy_or_default(ctx: ApiContext, model: str) -> Policy:
    with StateStore.open(ctx.settings.state) as store:
        found = effective_policy(store, model)
    return found[0] if found is not None else Policy()


@router.get("/models/{model}/accuracy", response_model=AccuracyAnswer)
def get_accuracy(
    model: str,
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.VIEWER, "accuracy"))],
    min_labels: Annotated[int, Query(ge=1)] = 50,
) -> AccuracyAnswer:
    """Accuracy per version from recorded predictions and labels; canary against live while one runs."""
    check_model_name(model)
    with StateStore.open(ctx.settings.state) as store:
        state = store.model(model)
    with FeedbackStore(ctx.settings.state) as feedback:
        versions = feedback.accuracy_report(model)
        comparison = (
            feedback.compare_accuracy(model, state.live, state.canary, min_labels)
            if state is not None and state.live is not None and state.canary is not None
            else None
        )
    return AccuracyAnswer(model=model, versions=versions, comparison=comparison)


# -- policies ---------------------------------------------------------------------------------------------------


def _policy_answer(ctx: ApiContext, model: str) -> PolicyAnswer:
    with StateStore.open(ctx.settings.state) as store:
        found = effective_policy(store, model)
    if found is None:
        raise PolicyError(f"model {model!r}", "no policy is stored for it and there is no default policy")
    policy, source = found
    return PolicyAnswer(model=model, source=source, policy=policy.model_dump(mode="json"))  # type: ignore[arg-type]


@router.get("/models/{model}/policy", response_model=PolicyAnswer)
def get_policy(model: str, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.VIEWER, "policy"))]) -> PolicyAnswer:
    """The guardrail policy the controller applies to ``model`` (its own, else the default)."""
    return _policy_answer(ctx, _known(ctx, model))


@router.put("/models/{model}/policy", response_model=PolicyAnswer)
def put_policy(
    model: str,
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.ADMIN, "policy-set"))],
    body: Annotated[dict[str, Any], Body(description="A guardrail policy (the fields of a policy file) as JSON")],
) -> PolicyAnswer:
    """Store ``model``'s guardrail policy; a misspelt or out-of-range field is refused naming it."""
    policy = parse_policy_data(body, f"body for {model!r}")
    with StateStore.open(ctx.settings.state) as store:
        store_policy(store, model, policy, actor=who.name, repository=ctx.settings.repository)
    ctx.acted(who, "policy-set", model, None, "policy stored")
    return _policy_answer(ctx, model)


@router.delete("/models/{model}/policy", status_code=204)
def delete_policy(
    model: str, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.ADMIN, "policy-delete"))]
) -> None:
    """Forget ``model``'s own policy (the default, if any, applies again)."""
    with StateStore.open(ctx.settings.state) as store:
        remove_policy(store, _known(ctx, model), actor=who.name)
    ctx.acted(who, "policy-delete", model, None, "policy removed")


@router.get("/policies/default", response_model=PolicyAnswer)
def get_default_policy(ctx: Ctx, who: Annotated[Identity, Depends(require(Role.VIEWER, "policy"))]) -> PolicyAnswer:
    """The default policy for every promoted model without one of its own."""
    with StateStore.open(ctx.settings.state) as store:
        found = effective_policy(store, DEFAULT_POLICY)
    if found is None:
        raise PolicyError("default", "no default policy is stored")
    return PolicyAnswer(model=DEFAULT_POLICY, source="default", policy=found[0].model_dump(mode="json"))


@router.put("/policies/default", response_model=PolicyAnswer)
def put_default_policy(
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.ADMIN, "policy-set"))],
    body: Annotated[dict[str, Any], Body(description="A guardrail policy as JSON")],
) -> PolicyAnswer:
    """Store the default policy: from now on every promoted model without its own is guarded by it."""
    policy = parse_policy_data(body, "body for the default policy")
    with StateStore.open(ctx.settings.state) as store:
        store_policy(store, DEFAULT_POLICY, policy, actor=who.name, repository=ctx.settings.repository)
    ctx.acted(who, "policy-set", None, None, "default policy stored")
    return PolicyAnswer(model=DEFAULT_POLICY, source="default", policy=policy.model_dump(mode="json"))


@router.delete("/policies/default", status_code=204)
def delete_default_policy(ctx: Ctx, who: Annotated[Identity, Depends(require(Role.ADMIN, "policy-delete"))]) -> None:
    with StateStore.open(ctx.settings.state) as store:
        remove_policy(store, DEFAULT_POLICY, actor=who.name)
    ctx.acted(who, "policy-delete", None, None, "default policy removed")
