"""kernel-build/kselftest: build the series' own C kselftest against a flavor's tree.

The series adds tools/testing/selftests/mshare (kselftest_harness.h, no Python), so kernel
reviewers can check a kernel without this project.  We build it from the same patched tree
as the flavor's bzImage, with that tree's exported uapi headers, and print the absolute
path of the test binary as the only line on stdout.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import cli, flavors, kmake, patches, source

TEST_DIR = Path("tools/testing/selftests/mshare")
BINARY = TEST_DIR / "mshare_test"


def build(flavor: str, mshare: bool) -> Path:
    cli.build_cached(argparse.Namespace(flavor=flavor, mshare="on" if mshare else "off",
                                        jobs=os.cpu_count() or 2, tree=None))
    root = cli.cache_root()
    name = flavor + ("" if mshare else "-nomshare")
    work = root / "trees" / name
    with cli.locked(root / "trees" / f"{name}.lock"):
        tree = cli.prepare_tree(work, source.locate(root), patches.read_series(cli.PATCH_DIR))
        if not (tree / TEST_DIR).is_dir():
            raise cli.BuildError(f"{tree / TEST_DIR} does not exist: the series has no kselftest")
        env = kmake.make_env(tree, build_user=name, build_host="libmshare-kselftest")
        log_path = work / "kselftest.log"
        cli.say(f"building {TEST_DIR} (log: {log_path})")
        with log_path.open("w") as log:
            try:
                kmake.run_logged(kmake.make_cmd(2, "headers"), tree, env, log)
                kmake.run_logged(["make", "-C", str(TEST_DIR.parent), "TARGETS=mshare"],
                                 tree, env, log)
            except kmake.MakeError as err:
                raise cli.BuildError.from_make(err, log_path) from err
    binary = tree / BINARY
    if not binary.is_file():
        raise cli.BuildError(f"make succeeded but {binary} is missing")
    return binary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kernel-build/kselftest", description=__doc__)
    p.add_argument("--flavor", choices=flavors.FLAVORS, default="debug")
    args = p.parse_args(argv)
    try:
        binary = build(args.flavor, mshare=True)
    except (cli.BuildError, patches.PatchError, FileNotFoundError) as err:
        cli.say(f"FAILED: {err}")
        return 1
    print(binary)
    return 0
