"""The checkout's git revision, for every record that says where a result came from."""
from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def git_revision(repo: Path = REPO, paths: tuple[str, ...] = (), *,
                 untracked: bool = False) -> str:
    """HEAD's commit, "+dirty" when the working tree (or only ``paths`` in it) has
    uncommitted changes (to tracked files, or to any with ``untracked``); "unknown"
    outside git."""
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                             capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                *([] if untracked else ["--untracked-files=no"]), "--", *paths],
                               capture_output=True, text=True, check=False).stdout.strip()
    except FileNotFoundError:
        return "unknown"
    return (rev + ("+dirty" if dirty else "")) if rev else "unknown"
