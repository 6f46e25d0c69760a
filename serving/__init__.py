"""serving: the embedded ``tritonserver`` (start, readiness, stop) and the typed model config of our Triton backend.

>>> from tritonops.serving import ServerOptions, TritonServer
>>> with TritonServer(ServerOptions(model_repository=Path("model_repository"))) as server:
...     server.grpc_url

``ServingOptions`` (batching, instances, cache) goes into ``tritonops.converters.ConversionOptions``. The backend itself
(``serving/backend/tritonops/model.py``) runs inside Triton, not in user code.
"""

import importlib as _importlib
import typing as _typing

from tritonops.serving.errors import (
    AllocatorNotFoundError,
    BinaryNotFoundError,
    ModelConfigError,
    PortInUseError,
    RepositoryNotFoundError,
    ServerStartError,
    ServingError,
)

if _typing.TYPE_CHECKING:
    from tritonops.model_config import ServingOptions
    from tritonops.serving.install import TritonInstallation, locate_tritonserver
    from tritonops.serving.triton import ServerOptions, TritonServer

# Every model instance's backend stub imports serving.* modules (and so this file): the server launcher pulls in
# the HTTP client stack and the model config protobuf, so their names load on first use and a model load does not
# pay for them.
_LAZY = {
    "ServingOptions": "tritonops.model_config",
    "ServerOptions": "tritonops.serving.triton",
    "TritonServer": "tritonops.serving.triton",
    "TritonInstallation": "tritonops.serving.install",
    "locate_tritonserver": "tritonops.serving.install",
}

__all__ = [
    "AllocatorNotFoundError",
    "BinaryNotFoundError",
    "ModelConfigError",
    "PortInUseError",
    "RepositoryNotFoundError",
    "ServerOptions",
    "ServerStartError",
    "ServingError",
    "ServingOptions",
    "TritonInstallation",
    "TritonServer",
    "locate_tritonserver",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
