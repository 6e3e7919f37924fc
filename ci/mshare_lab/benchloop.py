"""The guest-side loop every benchmark shares: a balanced order of the things compared,
and the result document saved after every run (a boot that dies keeps what finished)."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, TypeVar

__all__ = ["rotation", "save"]

T = TypeVar("T")


def rotation(items: Sequence[T], rep: int) -> list[T]:
    """Repetition rep's order: the list rotated by rep, so that over len(items)
    repetitions every item runs once in every position (a slow spell of a shared host
    falls on every item alike, not on whichever always ran first)."""
    k = rep % len(items) if items else 0
    return [*items[k:], *items[:k]]


def save(doc: dict[str, Any], path: str) -> None:
    """Write the document whole or not at all (a rename over the last checkpoint)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)
