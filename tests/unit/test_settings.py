"""Settings from TRITONOPS_* variables; the admin token never leaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonops.errors import ConfigurationError
from tritonops.settings import ADMIN_HEADER, load_settings, read_admin_token


def test_defaults_are_relative_to_the_working_directory() -> None:
    settings = load_settings({})
    assert settings.repository == Path("model_repository")
    assert settings.state_path == Path(".tritonops/state.db")
    assert settings.admin_token is None
    assert settings.admin_headers() == {}


def test_token_from_environment_becomes_the_admin_header() -> None:
    settings = load_settings({"TRITONOPS_ADMIN_TOKEN": " s3cret \n", "TRITONOPS_REPOSITORY": "/srv/models"})
    assert settings.admin_headers() == {ADMIN_HEADER: "s3cret"}
    assert settings.repository == Path("/srv/models")


def test_token_from_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert read_admin_token({"TRITONOPS_ADMIN_TOKEN_FILE": str(token_file)}) == "from-file"


def test_environment_token_wins_over_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file")
    env = {"TRITONOPS_ADMIN_TOKEN": "from-env", "TRITONOPS_ADMIN_TOKEN_FILE": str(token_file)}
    assert read_admin_token(env) == "from-env"


@pytest.mark.parametrize("content", [None, ""])
def test_unreadable_or_empty_token_file_is_named(tmp_path: Path, content: str | None) -> None:
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    with pytest.raises(ConfigurationError) as info:
        read_admin_token({"TRITONOPS_ADMIN_TOKEN_FILE": str(token_file)})
    assert str(token_file) in str(info.value)


def test_repr_hides_the_token() -> None:
    settings = load_settings({"TRITONOPS_ADMIN_TOKEN": "hunter2"})
    assert "hunter2" not in repr(settings)
    assert "admin_token=set" in repr(settings)
