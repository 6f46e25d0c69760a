"""The API's routers, one per area; ``ROUTERS`` is what ``create_app`` mounts (other areas append theirs)."""

from fastapi import APIRouter

from tritonops.control_plane.controller.routes import (
    admin,
    feedback,
    health,
    hooks,
    models,
    progressive,
    rollout,
    shadow,
)

ROUTERS: list[APIRouter] = [
    health.router,
    rollout.router,
    progressive.router,
    models.router,
    shadow.router,
    feedback.router,
    admin.router,
    hooks.router,
]

__all__ = ["ROUTERS"]
