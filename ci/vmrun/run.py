"""Run a command in a guest booted from a kernel build: the API behind ci/vm-run.

``run(cmd, kernel)`` boots the kernel with virtme-ng (host file system visible read-only,
the checkout at the same path, a writable scratch directory), runs CMD as root in the
guest and returns a GuestResult: the status vm-run exits with (CMD's, or 124 timeout,
125 kernel splat, 126 no result), the dmesg findings, the provenance record, the timings
and the scratch directory.  What it finds is also said on stderr, prefixed "vm-run: ".
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbuild.artifact import Build
from mshare_lab import dmesg, env

from . import guest, provenance, status, vng

REPO = Path(__file__).resolve().parents[2]
KEEP_RUNS = 20


def say(msg: str) -> None:
    print(f"vm-run: {msg}", file=sys.stderr, flush=True)


@dataclass
class GuestResult:
    status: int  # what ci/vm-run exits with: CMD's status, or 124/125/126
    cmd_status: int | None = None  # None: the guest never recorded it
    timed_out: bool = False
    findings: list[dmesg.Finding] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    scratch: Path | None = None
    dmesg: Path | None = None  # the guest's whole dmesg (None: none came back)
    seconds: float = 0.0  # wall time QEMU ran
    uptimes: dict[str, float] = field(default_factory=dict)  # the guest's own clock

    def record(self) -> dict[str, Any]:
        """The JSON form `ci/vm-run --json FILE` writes."""
        return {"status": self.status, "cmd_status": self.cmd_status,
                "timed_out": self.timed_out, "findings": [str(f) for f in self.findings],
                "provenance": self.provenance,
                "scratch": str(self.scratch) if self.scratch else None,
                "dmesg": str(self.dmesg) if self.dmesg else None,
                "seconds": round(self.seconds, 1), "uptimes": self.uptimes}


def new_scratch(root: Path) -> Path:
    """A fresh writable directory for this run; old runs beyond KEEP_RUNS are pruned."""
    runs = root / "vm-runs"
    runs.mkdir(parents=True, exist_ok=True)
    old = sorted(p for p in runs.iterdir() if p.is_dir())
    for p in old[:max(0, len(old) - KEEP_RUNS + 1)]:
        shutil.rmtree(p, ignore_errors=True)
    scratch = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    scratch.mkdir()
    return scratch


def _report_splats(findings: list[dmesg.Finding], files: list[Path]) -> None:
    say(f"KERNEL PROBLEM: {len(findings)} line(s) in the guest's logs:")
    for f in findings[:50]:
        print(f"  {f}", file=sys.stderr)
    first = findings[0]
    src = next(p for p in files if p.name == first.source)
    print(f"--- first report ({first.source}:{first.line_no}) ---", file=sys.stderr)
    for line in dmesg.context(src.read_text(errors="replace"), first):
        print(f"  {line}", file=sys.stderr)


def _scan(scratch: Path, vng_status: int | None) -> tuple[list[dmesg.Finding], Path | None]:
    """The splats in what came back: the guest's dmesg and kmemleak report, or (after a
    panic or a hang, which leave no dmesg file) what the serial console printed."""
    guest_dmesg = scratch / guest.DMESG_FILE
    if guest_dmesg.is_file():
        logs = [guest_dmesg, scratch / guest.KMEMLEAK_FILE]
        say(f"guest dmesg: {guest_dmesg}")
    else:
        logs = [scratch / "console.log"]
        say(f"no dmesg came back (vng status {vng_status}); guest console: {logs[0]}")
    findings = dmesg.scan_files(logs)
    if guest_dmesg.is_file():
        user_lines = dmesg.user_space_warnings(guest_dmesg.read_text(errors="replace"))
        if user_lines:
            say(f"{len(user_lines)} user-space warning(s) in the guest's log "
                "(not kernel problems; a missing tool in the guest shows here):")
            for line in user_lines[:20]:
                print(f"  {line}", file=sys.stderr)
    if findings:
        _report_splats(findings, logs)
    return findings, guest_dmesg if guest_dmesg.is_file() else None


def _read_uptimes(scratch: Path) -> dict[str, float]:
    try:
        return guest.read_uptimes((scratch / guest.UPTIME_FILE).read_text())
    except OSError:
        return {}


def run(cmd: Sequence[str], kernel: Build | Path, *, cpus: int = 2, memory: str = "4G",
        timeout: float = 1800.0, rwdirs: Sequence[Path] = (), kvm: bool | None = None,
        cwd: Path | None = None, kernel_args: Sequence[str] = ()) -> GuestResult:
    """Boot ``kernel`` (a build, or any bzImage) and run ``cmd`` in it as root.

    ``kvm`` None means LIBMSHARE_KVM's choice (TCG unless it is 1); ``kernel_args`` are
    added to the kernel's command line (and to the provenance record)."""
    if isinstance(kernel, Build):
        build: Build | None = kernel
        image = kernel.image
    else:
        image = kernel.resolve()
        build = Build.from_image(image)
    if not image.is_file():
        say(f"no such kernel image: {image}")
        return GuestResult(status.INFRA)
    vng_path = vng.find_vng()
    if vng_path is None:
        say("vng (virtme-ng) not found: run ci/setup")
        return GuestResult(status.INFRA)
    use_kvm = env.kvm() if kvm is None else kvm
    cwd = cwd or Path.cwd()

    scratch = new_scratch(env.cache_root())
    guest_env = {"LIBMSHARE_KERNEL_IMAGE": str(image)}
    config = build.config if build else image.parent / "config"
    if config is not None and config.is_file():  # kernel-build/build saves it there
        guest_env[env.KERNEL_CONFIG] = str(config)
    script = guest.write(guest.GuestSpec(cmd=list(cmd), cwd=cwd, scratch=scratch, repo=REPO,
                                         python=sys.executable, env=guest_env))
    spec = vng.VngSpec(kernel=image, script=script, cwd=cwd, cpus=cpus, memory=memory,
                       rwdirs=[scratch, *(Path(d).resolve() for d in rwdirs)], kvm=use_kvm,
                       extra_append=list(kernel_args))
    say(f"booting {image} with {'KVM' if use_kvm else 'TCG (no KVM; opt in with --kvm)'}, "
        f"{cpus} vCPUs, {memory}; scratch {scratch}")
    record = provenance.collect(build or image, cpus=cpus, memory=memory,
                                accelerator="KVM" if use_kvm else "TCG",
                                builds=env.cache_root() / "builds", kernel_args=kernel_args)
    (scratch / provenance.FILE).write_text(json.dumps(record, indent=1) + "\n")
    print(provenance.line(record), file=sys.stderr, flush=True)  # for the console log
    result = vng.run(vng.vng_command(spec, vng_path), timeout, scratch / "vng-stdout.log",
                     scratch / "vng-stderr.log", scratch / "console.log")
    (scratch / provenance.FILE).write_text(json.dumps(provenance.finish(record), indent=1) + "\n")

    if result.timed_out:
        say(f"TIMEOUT: the guest did not finish within {timeout:.0f} s; "
            "QEMU and its process group were killed")
    try:
        cmd_status = status.parse_status_file((scratch / guest.STATUS_FILE).read_text())
    except OSError:
        cmd_status = None
    findings, guest_dmesg = _scan(scratch, result.returncode)
    uptimes = _read_uptimes(scratch)
    timing = guest.timing_line(uptimes) if uptimes else None
    if timing:
        say(f"guest timing (its uptime): {timing}")
    if cmd_status is None and not result.timed_out:
        say(f"the guest never recorded CMD's status (vng status {result.returncode}): "
            "boot failure or guest crash")
    code = status.exit_status(status.Outcome(result.timed_out, cmd_status, len(findings)))
    say(f"CMD status {cmd_status}, {result.seconds:.0f} s in the VM, exit {code}")
    return GuestResult(code, cmd_status, result.timed_out, findings, record, scratch,
                       guest_dmesg, result.seconds, uptimes)
