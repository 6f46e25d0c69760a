"""``python -m tritonops.control_plane.cli`` runs the ``tritonops`` CLI."""

import sys

from tritonops.control_plane.cli import main

sys.exit(main())
