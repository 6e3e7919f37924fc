"""Run a checkout's scripts on that checkout's code.

The scripts import the project's packages as installed (ci/setup installs this checkout
editable into the Python it prints).  A Python that has another checkout installed would
run that checkout's code under this one's script names, silently; same_checkout() stops
that with a message saying which Python to use.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _checkout_of(script: Path) -> Path | None:
    for d in script.resolve().parents:
        if (d / "pyproject.toml").is_file():
            return d
    return None


def same_checkout(script: str) -> None:
    """Exit with a message unless the installed packages come from script's checkout."""
    root = _checkout_of(Path(script))
    if root is not None and root != REPO:
        sys.exit(f"{script}: this Python ({sys.executable}) has the packages of {REPO} "
                 f"installed, not those of {root}: use the Python `{root}/ci/setup` prints")
