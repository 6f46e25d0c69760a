"""API tokens for the controller: one per person or service, with a role; only their sha256 is stored.

A token is ``tops_`` + 43 URL-safe random characters (256 bits), so a plain sha256 is a safe verifier (no salt or
slow hash needed for a high-entropy secret). Its first 13 characters are its public *prefix*: it names the token in
listings and finds the stored row; the full hash is then compared in constant time. Roles are ordered:
``viewer`` (reads) < ``operator`` (rollout actions, feedback) < ``admin`` (tokens, fleet, policies).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from tritonops.control_plane.errors import AuthenticationError, TokenError
from tritonops.control_plane.state import AuditEntry, StateStore, TokenRecord, now_iso

TOKEN_PREFIX = "tops_"
PREFIX_LENGTH = 13
BOOTSTRAP_NAME = "bootstrap"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True)
class Identity:
    """Who calls: the token's name and role. ``name`` is the actor in every audit event it causes."""

    name: str
    role: Role


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise TokenError(f"role: expected one of {', '.join(r.value for r in Role)}, got {text!r}") from None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise TokenError(
            f"token name {name!r}: expected 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    return name


def create_token(
    store: StateStore,
    name: str,
    role: Role | str,
    *,
    actor: str,
    expires_in_seconds: float | None = None,
    token: str | None = None,
) -> tuple[str, TokenRecord]:
    """A new token for ``name`` with ``role``; returns the token (shown once, never stored) and its record."""
    role = parse_role(role) if isinstance(role, str) else role
    _check_name(name)
    if expires_in_seconds is not None and expires_in_seconds <= 0:
        raise TokenError(f"expiry: expected a positive duration, got {expires_in_seconds} s")
    secret = token if token is not None else TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = (
        (datetime.now(UTC) + timedelta(seconds=expires_in_seconds)).isoformat(timespec="milliseconds")
        if expires_in_seconds is not None
        else None
    )
    record = TokenRecord(name, secret[:PREFIX_LENGTH], role.value, now_iso(), actor, expires_at, None)
    detail = f"role {role.value}, prefix {record.prefix}" + (f", expires {expires_at}" if expires_at else "")
    store.add_token(record, token_hash(secret), AuditEntry(actor, "token-create", None, None, None, "", "ok", detail))
    return secret, record


def revoke_token(store: StateStore, name: str, *, actor: str, reason: str = "") -> None:
    store.revoke_token(name, AuditEntry(actor, "token-revoke", None, None, None, reason, "ok", name))


def authenticate(store: StateStore, token: str, now: datetime | None = None) -> Identity:
    """The identity a token stands for; ``AuthenticationError`` saying why not (unknown, revoked, expired)."""
    if not token:
        raise AuthenticationError("no API token: send the header 'Authorization: Bearer <token>'")
    digest = token_hash(token)
    for record, stored in store.tokens_with_prefix(token[:PREFIX_LENGTH]):
        if not hmac.compare_digest(digest, stored):
            continue
        if record.revoked_at is not None:
            raise AuthenticationError(f"token {record.prefix}... ({record.name}) was revoked at {record.revoked_at}")
        moment = now or datetime.now(UTC)
        if record.expires_at is not None and datetime.fromisoformat(record.expires_at) <= moment:
            raise AuthenticationError(f"token {record.prefix}... ({record.name}) expired at {record.expires_at}")
        return Identity(record.name, Role(record.role))
    raise AuthenticationError("the API token is not known to this controller (wrong, or from another controller)")


def ensure_bootstrap(store: StateStore, token: str) -> bool:
    """At first start, store the bootstrap admin token (from settings); True when it was added now."""
    existing = [r for r in store.tokens() if r.name == BOOTSTRAP_NAME]
    if existing:
        return False
    if len(token) < 16:
        raise TokenError("bootstrap token: expected at least 16 characters (use `openssl rand -hex 32`)")
    create_token(store, BOOTSTRAP_NAME, Role.ADMIN, actor="controller", token=token)
    return True
