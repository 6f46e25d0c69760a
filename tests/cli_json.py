"""Check a command's ``--json`` output against the documented schema (``docs/cli-schema.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "cli-schema.json"


def check_json_output(command: str, stdout: str) -> Any:
    """Parse ``stdout`` (one JSON object) and validate it against ``command``'s schema; return the data."""
    data = json.loads(stdout)
    schemas = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.validate(data, schemas[command])
    return data
