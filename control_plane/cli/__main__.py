"""``python -m control_plane.cli`` runs the ``tritonops`` CLI."""

import sys

from control_plane.cli import main

sys.exit(main())
