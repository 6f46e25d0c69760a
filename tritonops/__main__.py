"""The ``tritonops`` command (console script and ``python -m tritonops``).

The command line is the ``cli`` extra; when it (or another part a command needs) is not installed, this says which
extra to install instead of showing a traceback.
"""

import importlib.util
import sys

from tritonops.extras import MissingExtraError, missing_extra


def main() -> int:
    try:
        for module in ("typer", "rich"):  # the command line itself first: it is what every command needs
            if importlib.util.find_spec(module) is None:
                raise MissingExtraError(module, "cli")
        from tritonops.control_plane.cli import main as run
    except (ModuleNotFoundError, MissingExtraError) as exc:
        missing = exc if isinstance(exc, MissingExtraError) else missing_extra(exc)
        if missing is None:
            raise
        print(f"error: {missing}", file=sys.stderr)
        return missing.exit_code
    return run()


if __name__ == "__main__":
    sys.exit(main())
