"""Remote mode: with ``--url`` or ``TRITONOPS_URL`` (and a token in ``TRITONOPS_TOKEN`` or the file named by
``TRITONOPS_TOKEN_FILE``), the rollout, status, history, drift, policy, fleet, feedback, token and shadow commands
go through the controller's API (``tritonops.control_plane.remote.ControllerClient``) and print what they print
locally, ``--json`` included; the controller records the token's name as the actor. Without a URL they work on
the local state as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tritonops.errors import ConfigurationError

if TYPE_CHECKING:
    from tritonops.control_plane.remote import ControllerClient

_url: list[str] = []
"""``--url`` of this invocation (the root option), when given."""


def set_url(url: str | None) -> None:
    _url.clear()
    if url:
        _url.append(url)


def controller() -> ControllerClient | None:
    """The controller to call, or None in local mode."""
    from tritonops.settings import controller_url, read_api_token

    url = _url[0] if _url else controller_url()
    if url is None:
        return None
    from tritonops.control_plane.remote import ControllerClient

    return ControllerClient(url, read_api_token() or "")


def refuse_actor(actor: str | None) -> None:
    """Over the API the actor is the token's name, never self-declared."""
    if actor is not None:
        raise ConfigurationError(
            "--actor: not taken in remote mode; the controller records the name of the token in TRITONOPS_TOKEN"
        )
