"""kernel-build/build: Debian's 6.12 source + our series + our fragments -> a cached bzImage.

stdout carries exactly one line, the absolute bzImage path, so `$(kernel-build/build)`
works (with --json: the build as one JSON object: image, key, flavor, config, meta);
progress and diagnostics go to stderr.  From Python: ``build(flavor)`` returns a Build.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from mshare_lab import env
from mshare_lab.gitrev import git_revision

from . import cachekey, flavors, kconfig, kmake, patches, payload, source
from .artifact import Build

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "kernel-build" / "config"
PATCH_DIR = REPO / "kernel-build" / "patches"
BZIMAGE_REL = Path("arch/x86/boot/bzImage")


class BuildError(RuntimeError):
    @classmethod
    def from_make(cls, err: kmake.MakeError, log_path: Path) -> BuildError:
        """A failed make step, with the tail of its output and where the full log is."""
        return cls(f"{err}\n" + "\n".join(err.tail) + f"\nfull log: {log_path}")


def say(msg: str) -> None:
    print(f"kernel-build: {msg}", file=sys.stderr, flush=True)


# Set by ci/fresh-machine for a warm run: a cache miss is an error, not a build.
CACHED_ONLY_ENV = env.BUILD_CACHED_ONLY
cache_root = env.cache_root


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """One build per tree at a time (parallel vm-runs may ask for the same flavor)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another build holding {path}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def configure(tree: Path, fragments: list[Path], env: dict[str, str], log: TextIO) -> None:
    """tinyconfig + fragments + olddefconfig, then fail if any request was dropped."""
    say("configuring: tinyconfig + " + " + ".join(f.name for f in fragments))
    kmake.run_logged(kmake.make_cmd(1, "tinyconfig"), tree, env, log)
    merge = [str(tree / "scripts/kconfig/merge_config.sh"), "-m", ".config",
             *map(str, fragments)]
    kmake.run_logged(merge, tree, env, log)
    kmake.run_logged(kmake.make_cmd(1, "olddefconfig"), tree, env, log)
    dropped = kconfig.find_dropped(kconfig.merge_requests(fragments),
                                   kconfig.parse_config_file(tree / ".config"))
    if dropped:
        raise BuildError("olddefconfig dropped options the fragments ask for:\n  "
                         + "\n  ".join(map(str, dropped)))


def compile_kernel(tree: Path, jobs: int, env: dict[str, str], log: TextIO, label: str) -> Path:
    say(f"make -j{jobs} bzImage ({label})")
    with kmake.Progress(label) as progress:
        kmake.run_logged(kmake.make_cmd(jobs, "vmlinux"), tree, env, log, progress)
        # The image around vmlinux without ccache: see kbuild.payload.
        kmake.run_logged(kmake.make_cmd(jobs, "bzImage"), tree, env | payload.NO_CCACHE,
                         log, progress)
    image = tree / BZIMAGE_REL
    if not image.is_file():
        raise BuildError(f"make succeeded but {image} is missing")
    try:
        payload.check(tree, image)
    except payload.CannotCheck as err:  # a machine without the decompressor: say so
        say(f"WARNING: payload not checked: {err}")
    except (OSError, payload.PayloadError) as err:
        raise BuildError(str(err)) from err
    return image


def choose_fragments(tree: Path, flavor: str, mshare: bool) -> tuple[list[Path], bool]:
    applied = mshare and kconfig.tree_defines(tree, "CONFIG_MSHARE")
    if mshare and not applied:
        say("this tree's Kconfig has no MSHARE (series not applied yet): "
            "building without the mshare fragment")
    return flavors.fragment_paths(CONFIG_DIR, flavor, applied), applied


def prepare_tree(work: Path, src: source.Source, series: list[patches.Patch]) -> Path:
    """A tree of this source with exactly this series applied, reusing the last one."""
    tree = work / source.TOP_DIR
    stamp = work / "source.json"
    try:
        current = json.loads(stamp.read_text()).get("ident")
    except (OSError, ValueError):
        current = None
    if current != src.ident or not tree.is_dir():
        say(f"unpacking {src.tarball} ({src.version}) into {tree}")
        stamp.unlink(missing_ok=True)
        source.unpack(src, tree)
        stamp.write_text(json.dumps({"ident": src.ident}))
    try:
        patches.sync(tree, series, say)
    except patches.ReverseError as err:
        say(f"{err}; starting again from a fresh unpack")
        source.unpack(src, tree)
        patches.sync(tree, series, say)
    return tree


def build(flavor: str, mshare: bool = True, jobs: int | None = None) -> Build:
    """The cached build of this flavor (with the mshare fragment, or without), built
    first if it is not in the cache yet."""
    root = cache_root()
    src = source.locate(root)
    series = patches.read_series(PATCH_DIR)
    series_file = PATCH_DIR / "series"
    material = cachekey.key_material(
        source_ident=src.ident, series=series,
        series_text=series_file.read_text() if series_file.is_file() else "",
        fragments=flavors.fragment_paths(CONFIG_DIR, flavor, mshare),
        flavor=flavor, mshare=mshare, toolchain=cachekey.toolchain_versions(),
        recipe=cachekey.recipe_digest(),
    )
    key = cachekey.digest(material)
    out = root / "builds" / key
    if (out / "meta.json").is_file():
        say(f"cached: {flavor} key {key}")
        return Build.from_dir(out)
    if env.build_cached_only():
        # ci/fresh-machine's warm run: sharing the host's builds must mean building none.
        raise BuildError(
            f"{flavor} (mshare {'on' if mshare else 'off'}) key {key} is not in {root / 'builds'} and "
            f"{CACHED_ONLY_ENV}=1 forbids building it; this key's inputs:\n"
            + json.dumps(cachekey.summary(material), indent=1))
    name = flavor + ("" if mshare else "-nomshare")
    work = root / "trees" / name
    with locked(root / "trees" / f"{name}.lock"):
        if (out / "meta.json").is_file():  # built while we waited for the lock
            return Build.from_dir(out)
        started = time.monotonic()
        tree = prepare_tree(work, src, series)
        fragments, applied = choose_fragments(tree, flavor, mshare)
        make_env = kmake.make_env(tree, build_user=name, build_host=f"libmshare-{key[:12]}",
                                  timestamp=source.timestamp(src))
        log_path = work / "build.log"
        say(f"log: {log_path}")
        with log_path.open("w") as log:
            try:
                configure(tree, fragments, make_env, log)
                image = compile_kernel(tree, jobs or os.cpu_count() or 2, make_env, log, name)
            except kmake.MakeError as err:
                raise BuildError.from_make(err, log_path) from err
        seconds = round(time.monotonic() - started)
        staging = out.with_name(key + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copy2(image, staging / "bzImage")
        shutil.copy2(tree / ".config", staging / "config")
        shutil.copy2(log_path, staging / "build.log")
        meta = {
            "key": key, "flavor": flavor, "mshare_requested": mshare,
            "mshare_applied": applied, "source": src.ident,
            "patches": [p.name for p in series], "fragments": [f.name for f in fragments],
            "build_seconds": seconds, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "git_revision": git_revision(paths=("kernel-build",), untracked=True),
            "key_inputs": cachekey.summary(material),
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
        say(f"built {name} in {seconds // 60}m{seconds % 60:02d}s")
        return Build.from_dir(out)


def build_tree(tree: Path, flavor: str, mshare: bool = True, jobs: int | None = None) -> Build:
    """--tree: the user's own tree (already patched), our fragments, built in place."""
    tree = tree.resolve()
    if not (tree / "Makefile").is_file() or not (tree / "mm").is_dir():
        raise BuildError(f"{tree} does not look like a kernel tree")
    fragments, applied = choose_fragments(tree, flavor, mshare)
    make_env = kmake.make_env(tree, build_user=flavor, build_host="libmshare-tree")
    log_path = tree / "libmshare-build.log"
    say(f"log: {log_path}")
    started = time.monotonic()
    with log_path.open("w") as log:
        try:
            configure(tree, fragments, make_env, log)
            image = compile_kernel(tree, jobs or os.cpu_count() or 2, make_env, log,
                                   f"{tree.name}/{flavor}")
        except kmake.MakeError as err:
            raise BuildError.from_make(err, log_path) from err
    seconds = round(time.monotonic() - started)
    say(f"built {tree} in {seconds // 60}m{seconds % 60:02d}s")
    return Build(image, None, flavor, applied, tree / ".config", {})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kernel-build/build", description=__doc__)
    p.add_argument("--flavor", choices=flavors.FLAVORS, default="release")
    p.add_argument("--mshare", choices=("on", "off"), default="on",
                   help="on: apply the mshare fragment when the tree's Kconfig has MSHARE; "
                        "off: build without it (the CONFIG_MSHARE=n comparison)")
    p.add_argument("--tree", help="build this kernel tree in place instead of the cache")
    p.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 2)
    p.add_argument("--json", action="store_true",
                   help="print the build (image, key, flavor, config, meta) as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        mshare = args.mshare == "on"
        result = (build_tree(Path(args.tree), args.flavor, mshare, args.jobs) if args.tree
                  else build(args.flavor, mshare, args.jobs))
    except (BuildError, patches.PatchError, FileNotFoundError) as err:
        say(f"FAILED: {err}")
        return 1
    print(json.dumps(result.record(), sort_keys=True) if args.json else result.image.resolve())
    return 0
