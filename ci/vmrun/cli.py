"""ci/vm-run [--kernel BZIMAGE | --flavor F] [options] [--json FILE] -- CMD [ARGS...]

Boots the kernel with virtme-ng (host filesystem visible read-only, the checkout at the
same path, a writable scratch directory), runs CMD as root in the guest, and exits with
CMD's status, or: 124 timeout, 125 kernel splat in dmesg/kmemleak, 126 no result
(kernel build failed, vng failed, the guest crashed or never ran CMD).  --json FILE
writes the result (status, findings, provenance, scratch directory, dmesg, timings).
From Python: vmrun.run.run(cmd, build_or_path).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from kbuild import cli as kbuild_cli
from kbuild import patches
from kbuild.artifact import Build
from kbuild.flavors import FLAVORS

from . import status
from .run import run, say


def build_kernel(flavor: str, mshare: bool) -> Build | None:
    """The flavor's build, from the cache or built now (its progress goes to stderr)."""
    try:
        return kbuild_cli.build(flavor, mshare)
    except (kbuild_cli.BuildError, patches.PatchError, FileNotFoundError) as err:
        kbuild_cli.say(f"FAILED: {err}")
        say("kernel build failed (status 1)")
        return None


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
    p.add_argument("--kernel-arg", action="append", default=[], metavar="ARG",
                   help="add ARG to the guest kernel's command line (repeatable)")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="write the result as JSON to FILE (machine-readable, for scripts)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    args = p.parse_args(argv)
    if args.cmd and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    if not args.cmd:
        p.error("no command: use ci/vm-run [options] -- CMD [ARGS...]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kernel = args.kernel or build_kernel(args.flavor, args.mshare == "on")
    if kernel is None:
        return status.INFRA
    # --kvm forces KVM; without it LIBMSHARE_KVM decides.
    result = run(args.cmd, kernel, cpus=args.cpus, memory=args.memory, timeout=args.timeout,
                 rwdirs=args.rwdir, kvm=True if args.kvm else None,
                 kernel_args=args.kernel_arg)
    if args.json:
        args.json.write_text(json.dumps(result.record(), indent=1) + "\n")
    return result.status
