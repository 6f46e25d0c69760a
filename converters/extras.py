"""Which ``tritonops`` extra installs a library a model needs, for the error that says it is missing."""

from __future__ import annotations

from tritonops.converters.errors import MissingDependencyError
from tritonops.extras import EXTRA_OF_MODULE


def missing_dependency(exc: ModuleNotFoundError) -> MissingDependencyError | None:
    """The error naming the extra for ``No module named 'xgboost'`` and the like; None for other modules."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return MissingDependencyError(module, f"the model needs {module}; install it with pip install 'tritonops[{extra}]'")
