"""Guardrail policies kept in the control plane state: one per model, and an optional default for every other
promoted model (stored under the name ``*``). The controller runs the guardrails of every model that has one."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from tritonops.control_plane.errors import PolicyError, UnknownModelError
from tritonops.control_plane.guardrails import Policy
from tritonops.control_plane.rollout import check_model_name
from tritonops.control_plane.state import DEFAULT_POLICY, AuditEntry, AuditEvent, StateStore

__all__ = ["DEFAULT_POLICY", "effective_policy", "remove_policy", "store_policy", "stored_policies", "stored_policy"]


def _subject(model: str, repository: Path) -> str:
    if model == DEFAULT_POLICY:
        return model
    check_model_name(model)
    if not (repository / model).is_dir():
        raise UnknownModelError(model, f"the model repository ({repository})")
    return model


def _decode(model: str, body: str) -> Policy:
    try:
        return Policy.model_validate_json(body)
    except ValidationError as exc:
        raise PolicyError(f"stored policy of {model!r}", f"unreadable ({exc.errors()[0]['msg']})") from exc


def store_policy(store: StateStore, model: str, policy: Policy, *, actor: str, repository: Path) -> AuditEvent:
    """Keep ``policy`` for ``model`` (``*``: the default for every promoted model); audited with its JSON."""
    subject = _subject(model, repository)
    body = policy.model_dump_json()
    entry = AuditEntry(actor, "policy-set", None if subject == DEFAULT_POLICY else subject, None, None, "", "ok", body)
    return store.set_policy(subject, body, entry)


def remove_policy(store: StateStore, model: str, *, actor: str) -> AuditEvent:
    entry = AuditEntry(actor, "policy-delete", None if model == DEFAULT_POLICY else model, None, None, "", "ok", model)
    return store.delete_policy(model, entry)


def stored_policy(store: StateStore, model: str) -> Policy | None:
    """``model``'s own policy (``*``: the default), or None."""
    row = store.policy(model)
    return _decode(model, row.body) if row is not None else None


def stored_policies(store: StateStore) -> dict[str, Policy]:
    return {row.model: _decode(row.model, row.body) for row in store.policies()}


def effective_policy(store: StateStore, model: str) -> tuple[Policy, str] | None:
    """The policy the guardrails apply to ``model`` and where it comes from (``model`` or ``default``)."""
    own = stored_policy(store, model)
    if own is not None:
        return own, "model"
    default = stored_policy(store, DEFAULT_POLICY)
    return (default, "default") if default is not None else None
