"""Where a result came from: the git revision, the kernel (build key, flavor) and the guest.

Every result file the project commits carries this record, so a number can be traced to
the commit, the exact kernel build (kernel-build/build's cache key, whose meta.json names
the series, the fragments and the revision it was built from) and the guest it ran in.
ci/vm-run prints it as one line (`vm-run: provenance: {...}`) and saves it in the scratch
directory; the writers of result files (ci/run-suite, ci/run-mm-selftests, bench/run-sga)
put it into what they write.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PREFIX = "vm-run: provenance: "
FILE = "provenance.json"


def git_revision(repo: Path = REPO) -> str:
    """HEAD's commit, "+dirty" when the working tree has uncommitted changes."""
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                             capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, check=False).stdout.strip()
    except FileNotFoundError:
        return "unknown"
    return (rev + ("+dirty" if dirty else "")) if rev else "unknown"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def find_build(kernel: Path, builds: Path) -> Path | None:
    """The cache entry holding a byte-identical bzImage (for a copy such as
    /work/kernels/debug-bzImage, which has no meta.json beside it)."""
    try:
        size = kernel.stat().st_size
        digest = None
        for image in sorted(builds.glob("*/bzImage")):
            if image.stat().st_size == size:
                digest = digest or _sha256(kernel)
                if _sha256(image) == digest and (image.parent / "meta.json").is_file():
                    return image.parent
    except OSError:
        return None
    return None


def kernel_info(kernel: Path, builds: Path | None = None) -> dict[str, Any]:
    """What kernel-build/build's meta.json (beside the bzImage, or beside an identical
    image in the cache's builds/) says about this build."""
    info: dict[str, Any] = {"image": str(kernel)}
    meta_dir = kernel.parent
    if not (meta_dir / "meta.json").is_file() and builds is not None:
        found = find_build(kernel, builds)
        if found is not None:
            meta_dir = found
            info["same_bytes_as"] = str(found / "bzImage")
    try:
        meta = json.loads((meta_dir / "meta.json").read_text())
    except (OSError, ValueError):
        info["key"] = None
        info["note"] = "no meta.json for this image: not a kernel-build/build image"
        return info
    info["key"] = meta.get("key")
    info["flavor"] = meta.get("flavor")
    info["mshare"] = meta.get("mshare_applied")
    info["built_from"] = meta.get("git_revision")
    info["patches"] = len(meta.get("patches", []))
    return info


def collect(kernel: Path, *, cpus: int, memory: str, accelerator: str,
            builds: Path | None = None) -> dict[str, Any]:
    return {
        "git_revision": git_revision(),
        "kernel": kernel_info(kernel, builds),
        "guest": {"cpus": cpus, "memory": memory, "accelerator": accelerator},
    }


def line(record: dict[str, Any]) -> str:
    return PREFIX + json.dumps(record, sort_keys=True)


def parse_line(text: str) -> dict[str, Any] | None:
    """The record from vm-run's provenance line, if `text` is one."""
    if not text.startswith(PREFIX):
        return None
    try:
        value = json.loads(text[len(PREFIX):])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def describe(record: dict[str, Any]) -> str:
    """One line for a Markdown or text result file."""
    k, g = record.get("kernel", {}), record.get("guest", {})
    flavor = k.get("flavor") or "?"
    mshare = {True: "CONFIG_MSHARE=y", False: "CONFIG_MSHARE=n"}.get(k.get("mshare"), "")
    return (f"git revision {record.get('git_revision', '?')}; kernel {flavor}"
            f"{' ' + mshare if mshare else ''}, build key {k.get('key') or '?'}; guest "
            f"{g.get('cpus', '?')} vCPUs, {g.get('memory', '?')}, {g.get('accelerator', '?')}")
