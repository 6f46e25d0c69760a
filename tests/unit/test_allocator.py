"""Choosing the server's malloc: tcmalloc where installed, the system's otherwise, a clear error when demanded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonops.serving.allocator import TCMALLOC_LIBRARIES, find_tcmalloc, resolve_allocator, with_preload
from tritonops.serving.errors import AllocatorNotFoundError


def _install(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    library = directory / name
    library.write_bytes(b"\x7fELF")
    return library


def test_the_first_directory_holding_tcmalloc_wins_and_minimal_is_preferred(tmp_path: Path) -> None:
    first, second = tmp_path / "multiarch", tmp_path / "lib64"
    full = _install(first, "libtcmalloc.so.4")
    minimal = _install(first, "libtcmalloc_minimal.so.4")
    _install(second, "libtcmalloc_minimal.so.4")
    assert find_tcmalloc([first, second]) == minimal
    minimal.unlink()
    assert find_tcmalloc([first, second]) == full
    assert find_tcmalloc([tmp_path / "empty"]) is None


def test_auto_falls_back_to_the_system_allocator_and_tcmalloc_demands_it(tmp_path: Path) -> None:
    empty = [tmp_path / "nothing-here"]
    assert resolve_allocator("auto", empty) is None
    assert resolve_allocator("system", empty) is None
    with pytest.raises(AllocatorNotFoundError) as info:
        resolve_allocator("tcmalloc", empty)
    message = str(info.value)
    assert all(name in message for name in TCMALLOC_LIBRARIES)
    assert str(empty[0]) in message and "libtcmalloc-minimal4" in message and "--allocator system" in message


def test_system_ignores_an_installed_tcmalloc(tmp_path: Path) -> None:
    library = _install(tmp_path, "libtcmalloc_minimal.so.4")
    assert resolve_allocator("auto", [tmp_path]) == library
    assert resolve_allocator("tcmalloc", [tmp_path]) == library
    assert resolve_allocator("system", [tmp_path]) is None


def test_an_unknown_allocator_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"expected one of \['auto', 'tcmalloc', 'system'\], got 'jemalloc'"):
        resolve_allocator("jemalloc", [tmp_path])  # type: ignore[arg-type]


def test_preload_goes_first_and_keeps_what_was_preloaded() -> None:
    library = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
    assert with_preload({"PATH": "/bin"}, library) == {"PATH": "/bin", "LD_PRELOAD": str(library)}
    mixed = with_preload({"LD_PRELOAD": "/opt/a.so:/opt/b.so"}, library)
    assert mixed["LD_PRELOAD"] == f"{library} /opt/a.so /opt/b.so"
    again = with_preload(mixed, library)  # not listed twice
    assert again["LD_PRELOAD"] == mixed["LD_PRELOAD"]
    assert with_preload({"LD_PRELOAD": "/opt/a.so"}, None) == {"LD_PRELOAD": "/opt/a.so"}
