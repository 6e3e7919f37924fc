"""kernel-build/kselftest: build a kselftest collection against a flavor's tree.

`--target mshare` (the default) is the series' own C kselftest
(tools/testing/selftests/mshare, kselftest_harness.h, no Python), so kernel reviewers can
check a kernel without this project; `--target mm` is the kernel's own mm selftests from
the same source, for the with/without-series comparison.  Each is built from the same
patched tree as the flavor's bzImage, with that tree's exported uapi headers, and the
absolute path of what to run is the only line on stdout.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import cli, flavors, kmake, patches, source

SELFTESTS = Path("tools/testing/selftests")
# target -> the file a guest runs: the test binary, or the collection's runner script.
ENTRY = {
    "mshare": SELFTESTS / "mshare" / "mshare_test",
    "mm": SELFTESTS / "mm" / "run_vmtests.sh",
}
# Collections run as a whole even when some tests fail to compile; the runner then
# reports those tests as failed, on both kernels alike.
KEEP_GOING = frozenset({"mm"})


def extra_make_args(tree: Path, target: str) -> list[str]:
    """6.12.117's mm/khugepaged.c uses KSFT_SKIP without including kselftest.h; every
    other mm test includes it already, so force-including it changes nothing else."""
    if target == "mm":
        return [f"EXTRA_CFLAGS=-include {tree / SELFTESTS / 'kselftest.h'}"]
    return []


def build(flavor: str, mshare: bool, target: str = "mshare") -> Path:
    cli.build(flavor, mshare)
    root = cli.cache_root()
    name = flavor + ("" if mshare else "-nomshare")
    work = root / "trees" / name
    test_dir = SELFTESTS / target
    with cli.locked(root / "trees" / f"{name}.lock"):
        tree = cli.prepare_tree(work, source.locate(root), patches.read_series(cli.PATCH_DIR))
        if not (tree / test_dir).is_dir():
            raise cli.BuildError(f"{tree / test_dir} does not exist in this tree")
        env = kmake.make_env(tree, build_user=name, build_host="libmshare-kselftest")
        log_path = work / f"kselftest-{target}.log"
        cli.say(f"building {test_dir} (log: {log_path})")
        with log_path.open("w") as log:
            try:
                kmake.run_logged(kmake.make_cmd(2, "headers"), tree, env, log)
            except kmake.MakeError as err:
                raise cli.BuildError.from_make(err, log_path) from err
            try:
                kmake.run_logged(["make", "-k", "-j", str(os.cpu_count() or 2), "-C",
                                  str(SELFTESTS), f"TARGETS={target}",
                                  *extra_make_args(tree, target)], tree, env, log)
            except kmake.MakeError as err:
                if target not in KEEP_GOING:
                    raise cli.BuildError.from_make(err, log_path) from err
                # Say which ones here.
                log.flush()
                errors = [ln for ln in log_path.read_text().splitlines() if ": error:" in ln]
                cli.say(f"some of {test_dir} did not build (see {log_path}):\n  "
                        + "\n  ".join(errors))
    entry = tree / ENTRY[target]
    if not entry.is_file():
        raise cli.BuildError(f"make succeeded but {entry} is missing")
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kernel-build/kselftest", description=__doc__)
    p.add_argument("--flavor", choices=flavors.FLAVORS, default="debug")
    p.add_argument("--mshare", choices=("on", "off"), default="on")
    p.add_argument("--target", choices=tuple(ENTRY), default="mshare")
    args = p.parse_args(argv)
    try:
        entry = build(args.flavor, mshare=args.mshare == "on", target=args.target)
    except (cli.BuildError, patches.PatchError, FileNotFoundError) as err:
        cli.say(f"FAILED: {err}")
        return 1
    print(entry)
    return 0
