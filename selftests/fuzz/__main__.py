"""python3 -m selftests.fuzz [--seed N] [--seconds S] [--workers W] [--ops K] [--json FILE]
                            [--huge] [--beside stress-ng] [--beside trinity]

Short mode (CI): a few minutes with a fixed seed, 4 KiB regions.  Long mode: --seconds
3600 or more, with --huge (every other region of 2 MiB pages) and optionally stress-ng's
memory stressors and trinity's mm calls running beside.
Exits 0 when no finding and no kernel splat, 1 otherwise; the seed reproduces a run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys

from .beside import TOOLS, ToolMissing, check_installed
from .coordinator import fuzz


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m selftests.fuzz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--workers", type=int, default=6)
    p.add_argument("--ops", type=int, default=60, help="calls per worker and batch")
    p.add_argument("--json", help="write the result here")
    p.add_argument("--beside", action="append", default=[], choices=TOOLS,
                   help="also run this tool all along (repeatable)")
    p.add_argument("--huge", action="store_true",
                   help="make every other region one of 2 MiB pages (MSHARE_F_HUGE)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("run as root in a guest with msharefs mounted")
    try:
        check_installed(args.beside)
    except ToolMissing as e:
        p.error(str(e))
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    beside = f", beside: {' '.join(args.beside)}" if args.beside else ""
    print(f"regionfuzz: seed {seed}, {args.seconds:.0f} s, {args.workers} workers x "
          f"{args.ops} calls per batch{beside}", flush=True)
    res = fuzz(seed, args.seconds, args.workers, args.ops, beside=args.beside,
               huge=args.huge)
    print(f"regionfuzz: {res.batches} batches, {res.workers} workers ({res.killed} "
          f"SIGKILLed), {res.ops} calls, regions made {res.recreated} times "
          f"({res.huge_regions} of them with 2 MiB pages), "
          f"{res.seconds} s")
    for name in sorted(res.counts):
        print(f"  {name:18} {res.counts[name]}")
    for name, report in res.beside.items():
        assert isinstance(report, dict)
        print(f"  beside: {name} exit {report['exit']}: {report['tail']}")
    for finding in res.findings:
        print(f"FINDING: {finding}")
    for s in res.splats:
        print(f"SPLAT: {s}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(dataclasses.asdict(res) | {"ok": res.ok}, out, indent=1)
    print(f"regionfuzz: {'PASS' if res.ok else 'FAIL'} (seed {seed})")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
