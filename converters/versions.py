"""Versions of the tools recorded in every manifest."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version(name: str) -> str:
    """The installed version of ``name``, or ``"unknown"``."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"
