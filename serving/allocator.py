"""Which ``malloc`` the server runs with: tcmalloc where it is installed, glibc's otherwise.

Triton's HTTP front end, its dynamic batcher and the Python backend's shared-memory IPC allocate and free small
blocks for every request from many threads; glibc's allocator spends a measurable share of the CPU on that
(``docs/benchmarks.md``: glibc's costs 13-18% of the single-row request rate on 2 cores). tcmalloc comes from Debian's
``libtcmalloc-minimal4`` (``make setup`` installs it) and is preloaded into ``tritonserver``, whose children (the
Python backend stubs) inherit it.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from tritonops.serving.errors import AllocatorNotFoundError

Allocator = Literal["auto", "tcmalloc", "system"]
"""``auto``: tcmalloc when installed, else the system's; ``tcmalloc``: tcmalloc or an error; ``system``: glibc."""
ALLOCATORS: tuple[Allocator, ...] = ("auto", "tcmalloc", "system")

TCMALLOC_LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")


def library_dirs() -> tuple[Path, ...]:
    """Where distributions put shared libraries, the multiarch directory first."""
    multiarch = sysconfig.get_config_var("MULTIARCH")
    dirs = [Path("/usr/lib") / multiarch] if multiarch else []
    dirs += [Path("/usr/lib64"), Path("/usr/lib"), Path("/usr/local/lib")]
    return tuple(dirs)


def find_tcmalloc(search: Sequence[Path] | None = None) -> Path | None:
    """The first tcmalloc shared library found in ``search`` (default: ``library_dirs()``), or None."""
    for directory in library_dirs() if search is None else search:
        for name in TCMALLOC_LIBRARIES:
            candidate = directory / name
            if candidate.is_file():
                return candidate
    return None


def resolve_allocator(allocator: Allocator, search: Sequence[Path] | None = None) -> Path | None:
    """The library to preload for ``allocator`` (None = the system allocator)."""
    if allocator not in ALLOCATORS:
        raise ValueError(f"allocator: expected one of {list(ALLOCATORS)}, got {allocator!r}")
    if allocator == "system":
        return None
    found = find_tcmalloc(search)
    if found is None and allocator == "tcmalloc":
        dirs = [str(d) for d in (library_dirs() if search is None else search)]
        raise AllocatorNotFoundError(list(TCMALLOC_LIBRARIES), dirs)
    return found


def with_preload(env: Mapping[str, str], library: Path | None) -> dict[str, str]:
    """``env`` with ``library`` first on ``LD_PRELOAD`` (anything preloaded already stays, after it)."""
    result = dict(env)
    if library is None:
        return result
    existing = [entry for entry in result.get("LD_PRELOAD", "").replace(":", " ").split() if entry != str(library)]
    result["LD_PRELOAD"] = " ".join([str(library), *existing])
    return result
