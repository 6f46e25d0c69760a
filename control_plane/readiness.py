"""Readiness that means "serves the desired models": does one Triton endpoint serve what the control plane wants?

Triton's own ``/v2/health/ready`` says the server is up; after a restart it is up and empty (load overrides are not
persisted), so a pod probed that way joins its Service and answers "unknown model" until the next reconcile.
``not_serving`` compares the endpoint with the desired state instead (the same comparison ``reconcile`` makes), and
``tritonops fleet ready HOST:PORT`` exits non-zero until it matches: an exec readiness probe for a Triton pod.
"""

from __future__ import annotations

from tritonops.control_plane.desired import desired
from tritonops.control_plane.endpoint import GrpcEndpoint
from tritonops.control_plane.errors import ControlPlaneError
from tritonops.control_plane.plan import differences
from tritonops.control_plane.state import StateStore
from tritonops.settings import Settings


def not_serving(settings: Settings, endpoint: str, timeout: float = 5.0) -> list[str]:
    """Why ``endpoint`` does not serve the desired state yet, one line each (empty: it does)."""
    with StateStore.open(settings.state) as store:
        states = [state for state in store.models() if state.live is not None]
    server = GrpcEndpoint(endpoint, settings.admin_headers(), timeout=timeout)
    try:
        return [
            line
            for state in states
            for line in differences(desired(settings.repository, state), server.observe(state.name))
        ]
    except ControlPlaneError as exc:
        return [str(exc)]
    finally:
        server.close()
