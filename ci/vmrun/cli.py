"""ci/vm-run [--kernel BZIMAGE | --flavor F] [options] -- CMD [ARGS...]

Boots the kernel with virtme-ng (host filesystem visible read-only, the checkout at the
same path, a writable scratch directory), runs CMD as root in the guest, and exits with
CMD's status, or: 124 timeout, 125 kernel splat in dmesg/kmemleak, 126 no result
(kernel build failed, vng failed, the guest crashed or never ran CMD).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "kernel-build" / "build"
# The flavor list and the cache root live with the build (kernel-build/kbuild).
sys.path.insert(0, str(BUILD.parent))

from kbuild.cli import cache_root
from kbuild.flavors import FLAVORS

from . import dmesg, guest, provenance, status, vng

# ci/mmselftests takes the flavor list and the cache root from here too.
__all__ = ["FLAVORS", "cache_root", "main"]

KEEP_RUNS = 20


def say(msg: str) -> None:
    print(f"vm-run: {msg}", file=sys.stderr, flush=True)


def build_kernel(flavor: str, mshare: str) -> Path | None:
    """kernel-build/build's last stdout line is the bzImage path; its stderr passes through."""
    proc = subprocess.run([sys.executable, str(BUILD), "--flavor", flavor, "--mshare", mshare],
                          stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                          check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        say(f"kernel build failed (status {proc.returncode})")
        return None
    return Path(lines[-1])


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


def use_kvm(flag: bool) -> bool:
    # Nested KVM on these machines accepts -accel kvm and then hangs at "Decompressing
    # Linux...", so KVM is opt-in: --kvm or LIBMSHARE_KVM=1.
    return flag or os.environ.get("LIBMSHARE_KVM") == "1"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ci/vm-run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--kernel", type=Path, help="bzImage to boot")
    which.add_argument("--flavor", choices=FLAVORS, default="debug",
                       help="build (or take from the cache) this flavor (default: debug)")
    p.add_argument("--mshare", choices=("on", "off"), default="on",
                   help="with --flavor: off boots the CONFIG_MSHARE=n comparison kernel")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--memory", default="4G")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds (default 1800)")
    p.add_argument("--rwdir", type=Path, action="append", default=[],
                   help="extra host directory the guest may write (repeatable)")
    p.add_argument("--kvm", action="store_true", help="use KVM instead of TCG")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    args = p.parse_args(argv)
    if args.cmd and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    if not args.cmd:
        p.error("no command: use ci/vm-run [options] -- CMD [ARGS...]")
    return args


def report_splats(findings: list[dmesg.Finding], files: list[Path]) -> None:
    say(f"KERNEL PROBLEM: {len(findings)} line(s) in the guest's logs:")
    for f in findings[:50]:
        print(f"  {f}", file=sys.stderr)
    first = findings[0]
    src = next(p for p in files if p.name == first.source)
    print(f"--- first report ({first.source}:{first.line_no}) ---", file=sys.stderr)
    for line in dmesg.context(src.read_text(errors="replace"), first):
        print(f"  {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kernel = args.kernel.resolve() if args.kernel else build_kernel(args.flavor, args.mshare)
    if kernel is None:
        return status.INFRA
    if not kernel.is_file():
        say(f"no such kernel image: {kernel}")
        return status.INFRA
    vng_path = vng.find_vng()
    if vng_path is None:
        say("vng (virtme-ng) not found: run ci/setup")
        return status.INFRA

    scratch = new_scratch(cache_root())
    env: dict[str, str] = {"LIBMSHARE_KERNEL_IMAGE": str(kernel)}
    if (kernel.parent / "config").is_file():  # kernel-build/build saves it there
        env["LIBMSHARE_KERNEL_CONFIG"] = str(kernel.parent / "config")
    cwd = Path.cwd()
    script = guest.write(guest.GuestSpec(cmd=args.cmd, cwd=cwd, scratch=scratch, repo=REPO,
                                         python=sys.executable, env=env))
    kvm = use_kvm(args.kvm)
    spec = vng.VngSpec(kernel=kernel, script=script, cwd=cwd, cpus=args.cpus,
                       memory=args.memory, rwdirs=[scratch, *map(Path.resolve, args.rwdir)],
                       kvm=kvm, extra_append=[])
    say(f"booting {kernel} with {'KVM' if kvm else 'TCG (no KVM; opt in with --kvm)'}, "
        f"{args.cpus} vCPUs, {args.memory}; scratch {scratch}")
    record = provenance.collect(kernel, cpus=args.cpus, memory=args.memory,
                                accelerator="KVM" if kvm else "TCG",
                                builds=cache_root() / "builds")
    (scratch / provenance.FILE).write_text(json.dumps(record, indent=1) + "\n")
    print(provenance.line(record), file=sys.stderr, flush=True)
    console_log = scratch / "console.log"
    result = vng.run(vng.vng_command(spec, vng_path), args.timeout,
                     scratch / "vng-stdout.log", scratch / "vng-stderr.log", console_log)

    if result.timed_out:
        say(f"TIMEOUT: the guest did not finish within {args.timeout:.0f} s; "
            "QEMU and its process group were killed")
    try:
        cmd_status = status.parse_status_file((scratch / guest.STATUS_FILE).read_text())
    except OSError:
        cmd_status = None
    if (scratch / guest.DMESG_FILE).is_file():
        logs = [scratch / guest.DMESG_FILE, scratch / guest.KMEMLEAK_FILE]
        say(f"guest dmesg: {scratch / guest.DMESG_FILE}")
    else:
        # A panic or a hang leaves no dmesg file; the serial console has what was printed.
        logs = [console_log]
        say(f"no dmesg came back (vng status {result.returncode}); "
            f"guest console: {console_log}")
    findings = dmesg.scan_files(logs)
    if (scratch / guest.DMESG_FILE).is_file():
        user_lines = dmesg.user_space_warnings((scratch / guest.DMESG_FILE).read_text(
            errors="replace"))
        if user_lines:
            say(f"{len(user_lines)} user-space warning(s) in the guest's log "
                "(not kernel problems; a missing tool in the guest shows here):")
            for line in user_lines[:20]:
                print(f"  {line}", file=sys.stderr)
    if findings:
        report_splats(findings, logs)
    try:
        timing = guest.timing_line(guest.read_uptimes((scratch / guest.UPTIME_FILE).read_text()))
    except OSError:
        timing = None
    if timing:
        say(f"guest timing (its uptime): {timing}")
    if cmd_status is None and not result.timed_out:
        say(f"the guest never recorded CMD's status (vng status {result.returncode}): "
            "boot failure or guest crash")
    code = status.exit_status(status.Outcome(result.timed_out, cmd_status, len(findings)))
    say(f"CMD status {cmd_status}, {result.seconds:.0f} s in the VM, exit {code}")
    return code
