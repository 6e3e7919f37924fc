"""The quilt-style series in kernel-build/patches and applying it to a tree.

The tree keeps copies of the patches it has applied, so that when the series changes we
can reverse just the patches after the common prefix and apply the new ones: only the
files those patches touch get new mtimes, and make recompiles only those.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STATE_DIR = ".libmshare-applied"
STATE_FILE = "state.json"


class PatchError(RuntimeError):
    pass


class ReverseError(PatchError):
    """An applied patch no longer reverses: the tree was changed behind our back."""


@dataclass(frozen=True)
class Patch:
    name: str
    sha256: str
    path: Path


def read_series(patch_dir: Path) -> list[Patch]:
    """Patches named in `series`, in order. No series file means an empty series."""
    series = patch_dir / "series"
    if not series.is_file():
        return []
    patches: list[Patch] = []
    for raw in series.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name = line.split()[0]  # quilt allows options such as -p1 after the name
        path = patch_dir / name
        if not path.is_file():
            raise PatchError(f"series names {name}, but {path} does not exist")
        patches.append(Patch(name, hashlib.sha256(path.read_bytes()).hexdigest(), path))
    return patches


def _git_apply(tree: Path, patch: Path, reverse: bool) -> subprocess.CompletedProcess[str]:
    # A ceiling at the tree's parent stops git from finding an enclosing repository, in
    # which case `git apply` would silently skip paths outside the current directory.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tree.parent)}
    cmd = ["git", "apply", "-p1", "--whitespace=nowarn"]
    if reverse:
        cmd.append("-R")
    return subprocess.run(cmd + [str(patch)], cwd=tree, env=env,
                          capture_output=True, text=True, check=False)


class AppliedState:
    """Which patches a tree has applied, with copies so they can be reversed later."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.dir = tree / STATE_DIR
        self.entries: list[dict[str, str]] = []
        try:
            self.entries = json.loads((self.dir / STATE_FILE).read_text())["applied"]
        except (OSError, ValueError, KeyError):
            self.entries = []

    def _save(self) -> None:
        self.dir.mkdir(exist_ok=True)
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps({"applied": self.entries}, indent=1))
        tmp.replace(self.dir / STATE_FILE)

    def shas(self) -> list[str]:
        return [e["sha256"] for e in self.entries]

    def apply(self, patch: Patch) -> None:
        res = _git_apply(self.tree, patch.path, reverse=False)
        if res.returncode != 0:
            raise PatchError(f"patch {patch.name} does not apply:\n{res.stderr.strip()}")
        self.dir.mkdir(exist_ok=True)
        copy = self.dir / f"{len(self.entries):04d}-{patch.sha256[:16]}.patch"
        copy.write_bytes(patch.path.read_bytes())
        self.entries.append({"name": patch.name, "sha256": patch.sha256, "copy": copy.name})
        self._save()

    def unapply_last(self) -> None:
        entry = self.entries[-1]
        res = _git_apply(self.tree, self.dir / entry["copy"], reverse=True)
        if res.returncode != 0:
            raise ReverseError(f"cannot reverse {entry['name']}:\n{res.stderr.strip()}")
        (self.dir / entry["copy"]).unlink(missing_ok=True)
        self.entries.pop()
        self._save()


def common_prefix(applied: list[str], wanted: list[str]) -> int:
    n = 0
    while n < min(len(applied), len(wanted)) and applied[n] == wanted[n]:
        n += 1
    return n


def sync(tree: Path, series: list[Patch], log: Callable[[str], None]) -> None:
    """Make the tree carry exactly `series`. Raises PatchError naming the failing patch.

    A failure to reverse an old patch (the tree was edited by hand) raises ReverseError;
    the caller then starts over from a fresh unpack.
    """
    state = AppliedState(tree)
    keep = common_prefix(state.shas(), [p.sha256 for p in series])
    while len(state.entries) > keep:
        log(f"reversing {state.entries[-1]['name']}")
        state.unapply_last()
    for patch in series[keep:]:
        log(f"applying {patch.name}")
        state.apply(patch)


def applied_shas(tree: Path) -> list[str]:
    return AppliedState(tree).shas()
