"""The JSON document a benchmark's guest side writes into vm-run's --rwdir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["load"]


def load(path: Path) -> dict[str, Any] | None:
    """The document at ``path``, or None if the guest wrote none or died mid-write."""
    try:
        with path.open() as f:
            doc: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    return doc
