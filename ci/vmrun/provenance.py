"""Where a result came from: the git revision, the kernel (build key, flavor) and the guest.

Every result file the project commits carries this record, so a number can be traced to
the commit, the exact kernel build (kernel-build/build's cache key, whose meta.json names
the series, the fragments and the revision it was built from) and the guest it ran in.
It is made from the Build the guest was booted from; vmrun.run returns it in its result
(ci/vm-run --json writes it), saves it in the scratch directory and prints it as a log
line (`vm-run: provenance: {...}`) for the console log.  The writers of result files
(ci/run-suite, ci/run-mm-selftests, the benches) put it into what they write.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kbuild.artifact import Build
from mshare_lab import env, proc
from mshare_lab.gitrev import git_revision
from mshare_lab.paths import portable

__all__ = ["FILE", "collect", "current", "describe", "file_sha256", "finish", "git_revision",
           "kernel_info", "line", "on_host", "parse_line"]

PREFIX = "vm-run: provenance: "
FILE = "provenance.json"


def file_sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks (bzImages, guest console logs)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_build(kernel: Path, builds: Path) -> Path | None:
    """The cache entry holding a byte-identical bzImage (for a copy of an image made
    elsewhere, which has no meta.json beside it)."""
    try:
        size = kernel.stat().st_size
        digest = None
        for image in sorted(builds.glob("*/bzImage")):
            if image.stat().st_size == size:
                digest = digest or file_sha256(kernel)
                if file_sha256(image) == digest and (image.parent / "meta.json").is_file():
                    return image.parent
    except OSError:
        return None
    return None


def build_info(build: Build) -> dict[str, Any]:
    """What the build's meta.json says about it."""
    return {"image": portable(build.image), "key": build.key, "flavor": build.flavor,
            "mshare": build.mshare, "built_from": build.meta.get("git_revision"),
            "patches": len(build.meta.get("patches", []))}


def kernel_info(kernel: Build | Path, builds: Path | None = None) -> dict[str, Any]:
    """The kernel's part of the record: from the build itself, or, for a bare image,
    from kernel-build/build's meta.json beside it or beside an identical image in the
    cache's builds/."""
    if isinstance(kernel, Build):
        return build_info(kernel)
    build = Build.from_image(kernel)
    if build is not None:
        return build_info(build)
    found = find_build(kernel, builds) if builds is not None else None
    if found is None:
        return {"image": portable(kernel), "key": None,
                "note": "no meta.json for this image: not a kernel-build/build image"}
    return {**build_info(Build.from_dir(found)), "image": portable(kernel),
            "same_bytes_as": portable(found / "bzImage")}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def collect(kernel: Build | Path, *, cpus: int, memory: str, accelerator: str,
            builds: Path | None = None, kernel_args: Sequence[str] = ()) -> dict[str, Any]:
    """The record as a guest boots: the host's load average before it (a busy host
    slows a TCG guest), finish() adds the one after; boot arguments beyond vng's own,
    if any."""
    guest: dict[str, Any] = {"cpus": cpus, "memory": memory, "accelerator": accelerator}
    if kernel_args:
        guest["kernel_args"] = list(kernel_args)
    return {
        "git_revision": git_revision(),
        "kernel": kernel_info(kernel, builds),
        "guest": guest,
        "host": {"cpus": os.cpu_count(), "load_before": _load()},
    }


def on_host() -> dict[str, Any]:
    """The same record for a run on this host's own kernel, no guest (the host benches,
    tooling checks on a kernel without msharefs): the running kernel in place of a
    build, the host's load before it."""
    return {
        "git_revision": git_revision(),
        "kernel": {"image": None, "key": None, "flavor": f"host {os.uname().release}",
                   "mshare": None},
        "guest": {"cpus": os.cpu_count(), "memory": f"{proc.meminfo_kib('MemTotal') // 1024} MiB",
                  "accelerator": "none (host run, no guest)"},
        "host": {"cpus": os.cpu_count(), "load_before": _load()},
    }


def current() -> dict[str, Any]:
    """The record of the run this process is part of: in a guest, the one the host wrote
    into its scratch directory before the boot; elsewhere on_host()."""
    scratch = env.scratch()
    if scratch is not None:
        try:
            doc = json.loads((scratch / FILE).read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}
    return on_host()


def finish(record: dict[str, Any]) -> dict[str, Any]:
    """The record once the guest is gone: the host's load average after it."""
    record.setdefault("host", {})["load_after"] = _load()
    return record


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
            f"{g.get('cpus', '?')} vCPUs, {g.get('memory', '?')}, {g.get('accelerator', '?')}"
            + (f", booted with {' '.join(g['kernel_args'])}" if g.get("kernel_args") else "")
            + _describe_host(record.get("host")))


def _describe_host(host: dict[str, Any] | None) -> str:
    if not host or "load_before" not in host:
        return ""  # records from before the host's load was kept
    after = host.get("load_after")
    return (f"; host {host.get('cpus', '?')} CPUs, load {host['load_before']:.1f} before"
            + (f", {after:.1f} after" if after is not None else ""))
