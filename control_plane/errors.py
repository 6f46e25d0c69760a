"""Errors raised by the control plane (state, fleet, rollout).

ControlPlaneError
 ├── StateError                 the state database is unusable (newer schema, corrupt, unwritable)
 │    └── NoStateError          there is no state file where a command needs one (none is created)
 ├── RolloutInProgressError     another rollout of the same model holds the lock
 ├── UnknownModelError          the model is not in the state or not in the repository
 ├── UnknownVersionError        the version directory or its files are missing
 ├── FleetError                 a bad endpoint address, a duplicate, an empty fleet
 │    └── DiscoveryError        the DNS server or the Kubernetes API did not say where the servers are
 ├── EndpointUnreachableError   a Triton endpoint did not answer
 ├── AdminAuthError             a Triton endpoint refused the admin key (missing or wrong)
 ├── VersionLoadError           Triton could not load a version, or it never became ready
 ├── GateError                  a promotion gate refused the version (parity, smoke, latency)
 ├── InvalidRolloutError        a request that makes no sense in the current state (bad weight, nothing
 │    │                         to roll back to, a canary of another version running)
 │    └── RolloutSpecError      a progressive rollout's steps, interval or version are malformed
 ├── FleetApplyError            some endpoints could not be brought to the desired state
 ├── NotServingError            an endpoint does not serve the desired state yet (readiness probe)
 ├── DriftInputError            drift statistics got data that does not fit the reference bins
 ├── MetricsError               a /metrics endpoint could not be scraped or its text parsed
 │    └── PrometheusError       Prometheus's query API did not answer, or answered an error
 ├── PolicyError                a guardrail policy file is missing or malformed
 ├── GuardrailActedError        `watch --exit-on-action` stopped after an automatic rollback / canary abort
 ├── FeedbackError              ground truth for an unknown request id, or a bad label
 ├── CaptureError               captured rows asked for that don't exist, or a bad capture setting
 ├── WebhookError               a webhooks file that is missing or malformed, or a secret file that can't be read
 ├── TokenError                 an API token can't be created or revoked (duplicate or unknown name, bad role)
 ├── ControllerUnreachableError  the CLI in remote mode (or an API client) got no answer from the controller
 └── AccessError                the controller API refused a caller
      ├── AuthenticationError   no token, an unknown, revoked or expired token (HTTP 401)
      └── PermissionDeniedError the token's role is below what the route needs (HTTP 403)
"""

from __future__ import annotations

from tritonops.errors import ExitCode, TritonOpsError


class ControlPlaneError(TritonOpsError):
    """Something in desired state, the fleet or a rollout went wrong."""

    exit_code = ExitCode.CONTROL_PLANE


class StateError(ControlPlaneError):
    """The state database can't be used as it is."""


class NoStateError(StateError):
    """A command that reads the state (or needs a fleet) found no state file; it creates none."""

    def __init__(self, location: str) -> None:
        self.location = location
        super().__init__(
            f"no control plane state at {location}: point --state or TRITONOPS_STATE at the state database, or "
            "start one here with `tritonops fleet add HOST:PORT`"
        )


class RolloutInProgressError(ControlPlaneError):
    """Another process is changing the same model right now."""

    exit_code = ExitCode.BUSY

    def __init__(self, model: str, holder: str) -> None:
        self.model = model
        self.holder = holder
        super().__init__(
            f"model {model!r}: another rollout is in progress ({holder or 'holder unknown'}); "
            "wait for it to finish, then run the command again"
        )


class UnknownModelError(ControlPlaneError):
    def __init__(self, model: str, where: str) -> None:
        self.model = model
        super().__init__(f"model {model!r} is not known to {where}")


class UnknownVersionError(ControlPlaneError):
    def __init__(self, model: str, version: int, detail: str) -> None:
        self.model = model
        self.version = version
        super().__init__(f"model {model!r} version {version}: {detail}")


class FleetError(ControlPlaneError):
    """The fleet definition is wrong (bad address, duplicate, empty)."""


class DiscoveryError(FleetError):
    """The fleet source (a DNS name, a Service's EndpointSlices) could not be read."""

    def __init__(self, source: str, detail: str) -> None:
        self.source = source
        super().__init__(f"fleet {source}: {detail}")


class EndpointUnreachableError(ControlPlaneError):
    def __init__(self, endpoint: str, detail: str) -> None:
        self.endpoint = endpoint
        super().__init__(f"endpoint {endpoint} is unreachable: {detail}")


class AdminAuthError(ControlPlaneError):
    def __init__(self, endpoint: str, token_set: bool) -> None:
        self.endpoint = endpoint
        expected = (
            "the admin key sent was refused (wrong key)" if token_set else "no admin key was sent (none configured)"
        )
        super().__init__(
            f"endpoint {endpoint} refused the model-repository call: {expected}; set the server's key in "
            "TRITONOPS_ADMIN_TOKEN or TRITONOPS_ADMIN_TOKEN_FILE"
        )


class VersionLoadError(ControlPlaneError):
    def __init__(self, endpoint: str, model: str, version: int | None, detail: str) -> None:
        self.endpoint = endpoint
        self.model = model
        self.version = version
        which = f"{model!r} version {version}" if version is not None else repr(model)
        super().__init__(f"endpoint {endpoint}: loading {which} failed: {detail}")


class GateError(ControlPlaneError):
    def __init__(self, model: str, version: int, gate: str, detail: str) -> None:
        self.model = model
        self.version = version
        self.gate = gate
        super().__init__(f"model {model!r} version {version}: {gate} gate refused it: {detail}")


class InvalidRolloutError(ControlPlaneError):
    """The request does not fit the current desired state."""


class RolloutSpecError(InvalidRolloutError):
    """A progressive rollout asked for with a malformed field (steps, interval, version)."""

    def __init__(self, field: str, expected: str, got: str) -> None:
        self.field = field
        super().__init__(f"rollout {field}: expected {expected}, got {got}")


class FleetApplyError(ControlPlaneError):
    def __init__(self, summary: str, failures: dict[str, str]) -> None:
        self.failures = failures
        lines = "; ".join(f"{endpoint}: {why}" for endpoint, why in failures.items())
        super().__init__(f"{summary} ({lines})")


class NotServingError(ControlPlaneError):
    """A Triton endpoint does not serve the desired state yet (readiness)."""

    def __init__(self, endpoint: str, missing: list[str]) -> None:
        self.endpoint = endpoint
        self.missing = missing
        super().__init__(f"{endpoint} does not serve the desired state yet: {'; '.join(missing)}")


class DriftInputError(ControlPlaneError):
    def __init__(self, field: str, expected: str, got: str) -> None:
        self.field = field
        super().__init__(f"drift: {field}: expected {expected}, got {got}")


class MetricsError(ControlPlaneError):
    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        super().__init__(f"metrics {url}: {detail}")


class PrometheusError(MetricsError):
    """A PromQL query failed: Prometheus unreachable, an HTTP error, an ``error`` status, an unexpected answer."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(url, f"Prometheus: {detail}")


class PolicyError(ControlPlaneError):
    """A guardrail policy file is missing or malformed: configuration, so it exits like one."""

    exit_code = ExitCode.CONFIGURATION

    def __init__(self, source: str, detail: str) -> None:
        self.source = source
        super().__init__(f"guardrail policy {source}: {detail}")


class FeedbackError(ControlPlaneError):
    """Ground truth that can't be recorded (unknown request id, bad label, bad arguments)."""


class CaptureError(ControlPlaneError):
    """Captured rows that aren't there, or a capture setting that makes no sense."""


class WebhookError(ControlPlaneError):
    """The webhooks configuration can't be used as it is."""


class GuardrailActedError(ControlPlaneError):
    """Not a failure of ours: ``watch --exit-on-action`` ends with this status after acting."""

    exit_code = ExitCode.GUARDRAIL_ACTED

    def __init__(self, model: str, action: str, detail: str) -> None:
        self.model = model
        self.action = action
        super().__init__(f"watch {model!r}: stopped after an automatic {action}: {detail}")


class TokenError(ControlPlaneError):
    """An API token can't be created, found or revoked."""


class AccessError(ControlPlaneError):
    """The controller refused the caller (see the subclasses)."""

    exit_code = ExitCode.ACCESS


class AuthenticationError(AccessError):
    """No token, or one that is unknown, revoked or expired."""


class PermissionDeniedError(AccessError):
    def __init__(self, who: str, role: str, needed: str, what: str) -> None:
        self.who = who
        self.role = role
        self.needed = needed
        super().__init__(f"{who} (role {role}) may not {what}: it needs the {needed} role or higher")


class ControllerUnreachableError(ControlPlaneError):
    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        super().__init__(f"controller {url} did not answer: {detail}; is it running, and is TRITONOPS_URL right?")
