"""ci/run-mm-selftests: the kernel's own mm selftests (tools/testing/selftests/mm from the
same 6.12 source) on our kernel with the series (CONFIG_MSHARE=y) and on the same config
with CONFIG_MSHARE=n, then a comparison table.  On demand, not in CI: it needs two more
kernels (the `mmtests` flavor: release plus what the mm selftests ask for).

Writes selftests/results/mm-selftests.md and .json; exits 1 when a case that passes
without the series does not pass with it, or when only the series' kernel logged a splat.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kbuild import cli as kbuild_cli
from kbuild import kselftest
from kbuild.flavors import FLAVORS
from mshare_lab.dmesg import scan_files
from mshare_lab.env import cache_root
from mshare_lab.paths import portable
from vmrun import provenance, run
from vmrun.guest import KMEMLEAK_FILE

from . import compare, tap

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "selftests" / "results"
DEFAULT_FLAVOR = "mmtests"
# Categories that fit a 2-vCPU TCG guest.  Left out: vmalloc and hmm (their test drivers
# are modules, and our guests load none), ksm_numa and migration (need 2 NUMA nodes),
# pkey (no protection keys under TCG), and destructive tests (-d).
DEFAULT_CATEGORIES = (
    "mmap", "gup_test", "userfaultfd", "compaction", "mlock", "process_mrelease",
    "mremap", "hugevm", "madv_populate", "memfd_secret", "ksm", "soft_dirty", "pagemap",
    "cow", "thp", "hugetlb", "mkdirty", "mdwe",
)
SPLAT = 125
# Build dependencies of the mm selftests (ksm_tests and migration link libnuma,
# mlock-random-test and memfd_secret libcap), and sudo, which run_vmtests.sh uses to run
# on-fault-limit as nobody.
APT_PACKAGES = ("libnuma-dev", "libcap-dev", "sudo")


def say(msg: str) -> None:
    print(f"run-mm-selftests: {msg}", file=sys.stderr, flush=True)


def ensure_packages() -> None:
    missing = [p for p in APT_PACKAGES if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True,
        check=False).stdout != "install ok installed"]
    if missing:
        say("apt-get install " + " ".join(missing))
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env,
                       stdout=sys.stderr)


@dataclass
class Run:
    kernel: str
    vm_run_status: int
    seconds: int
    provenance: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    categories: list[tap.Category] = field(default_factory=list)
    cases: list[tap.Case] = field(default_factory=list)

    @property
    def splat(self) -> bool:
        return self.vm_run_status == SPLAT

    def record(self) -> dict[str, object]:
        return {"kernel": self.kernel, "provenance": self.provenance,
                "vm_run_status": self.vm_run_status,
                "seconds": self.seconds, "splat": self.splat, "problems": self.problems,
                "categories": [asdict(c) for c in self.categories]}


def run_variant(flavor: str, mshare: str, categories: list[str], limit: int,
                work: Path) -> Run:
    with_series = mshare == "on"
    build = kbuild_cli.build(flavor, with_series)
    runner = kselftest.build(flavor, with_series, target="mm")
    scratch = work / f"mshare-{mshare}"
    shutil.copytree(runner.parent, scratch / "mm", symlinks=True)
    out = scratch / "out"
    say(f"CONFIG_MSHARE={'y' if with_series else 'n'}: {build.image}")
    result = run.run(["bash", str(REPO / "ci" / "guest-mm-selftests"), str(scratch / "mm"),
                      str(out), str(limit), *categories], build, rwdirs=[scratch],
                     timeout=limit * len(categories) + 600, cwd=REPO)
    # vm-run's own scanner decided the status; keep its findings (dmesg and kmemleak
    # report, both in vm-run's scratch directory) for the record.
    problems: list[str] = []
    if result.dmesg is not None:
        shutil.copy2(result.dmesg, scratch / "dmesg.txt")
        problems = [str(f) for f in scan_files([result.dmesg,
                                                 result.dmesg.with_name(KMEMLEAK_FILE)])]
    cats, cases = tap.read_run(out)
    return Run(portable(build.image), result.status, round(result.seconds), result.provenance,
               problems, cats, cases)


def _describe(run: Run) -> str:
    return provenance.describe(run.provenance) if run.provenance else (
        f"not recorded (the guest never booted); kernel {run.kernel}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ci/run-mm-selftests", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--categories", default=" ".join(DEFAULT_CATEGORIES),
                   help="run_vmtests.sh categories, space separated")
    p.add_argument("--flavor", default=DEFAULT_FLAVOR, choices=FLAVORS,
                   help="kernel flavor for both runs (default mmtests: release plus "
                        "kernel-build/config/mm-selftests; release lacks some options "
                        "and those cases skip)")
    p.add_argument("--limit", type=int, default=900, help="seconds per category (900)")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help="where mm-selftests.md/.json go (default selftests/results)")
    args = p.parse_args(argv)
    categories = args.categories.split()
    work = cache_root() / "mm-selftests" / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True)
    say(f"work directory: {work}")
    try:
        ensure_packages()
        on = run_variant(args.flavor, "on", categories, args.limit, work)
        off = run_variant(args.flavor, "off", categories, args.limit, work)
    except (RuntimeError, FileNotFoundError, subprocess.CalledProcessError) as err:
        say(f"FAILED: {err}")
        return 1
    rows = compare.join(on.cases, off.cases)
    bad = compare.regressions(rows)
    header = (
        "# mm selftests with and without the series\n\n"
        f"`ci/run-mm-selftests` on {time.strftime('%Y-%m-%d')}: tools/testing/selftests/mm "
        "of the same 6.12 source, `run_vmtests.sh -t CATEGORY` per category, in a "
        f"2-vCPU, 4 GiB QEMU/TCG guest; kernels of the `{args.flavor}` flavor, the series "
        "applied in both, CONFIG_MSHARE=y in one and =n in the other.\n\n"
        f"Guest run: {on.seconds} s with the series, {off.seconds} s without; "
        f"dmesg splat: {'yes' if on.splat else 'no'} with, "
        f"{'yes' if off.splat else 'no'} without.\n\n"
        f"Provenance, with the series: {_describe(on)}.\n"
        f"Without: {_describe(off)}.")
    text = compare.render_markdown(rows, on.categories, off.categories, header)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "mm-selftests.md").write_text(text)
    record = {
        "flavor": args.flavor, "categories": categories, "limit_s": args.limit,
        "runs": {"mshare_y": on.record(), "mshare_n": off.record()},
        "cases": [asdict(r) for r in rows],
        "regressions": [r.name for r in bad],
    }
    (args.results / "mm-selftests.json").write_text(json.dumps(record, indent=1) + "\n")
    print(text)
    say(f"table: {args.results / 'mm-selftests.md'}; logs: {work}")
    if bad:
        say("REGRESSIONS: " + ", ".join(r.name for r in bad))
    if on.splat and not off.splat:
        say("the series' kernel logged a splat the other did not: " + " | ".join(on.problems))
    return 1 if bad or (on.splat and not off.splat) else 0
