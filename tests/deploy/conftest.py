"""Paths shared by the deployment tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="session")
def promtool() -> str:
    """The promtool binary (Debian package `prometheus`, installed by `make setup`)."""
    path = shutil.which("promtool")
    assert path, "promtool not found: run `make setup` (Debian package prometheus)"
    return path
