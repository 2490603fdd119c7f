"""Small JSON files (journals, sidecars) written atomically: temporary name, fsync, rename."""
from __future__ import annotations

import json
import os


def write_json_atomic(path, payload):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path):
    """The JSON value in ``path``, or None when it is missing or unreadable (a journal that a
    kill cut short counts as no journal)."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
