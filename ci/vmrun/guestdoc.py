"""Run one of the checkout's scripts in a guest that writes a JSON document into a
writable host directory, and bring the document back: the host side the benches share."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kbuild import cli as kbuild_cli
from kbuild import patches
from kbuild.artifact import Build
from mshare_lab import benchloop, env, hostload

from . import provenance, rawfiles, status
from .run import REPO, GuestResult, run

__all__ = ["RESULTS", "GuestResult", "add_boot_options", "conclude", "kernel", "load",
           "resumable", "resume_arg", "run_bench", "run_script", "save_report"]

Doc = dict[str, Any]
RESULTS = REPO / "bench" / "results"


def load(path: Path) -> dict[str, Any] | None:
    """The document at ``path``, or None if the guest wrote none or died mid-write."""
    try:
        with path.open() as f:
            doc: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    return doc


def kernel(path: str | Path | None, flavor: str = "release", *,
           mshare: bool = True) -> Build | Path | None:
    """The image asked for, else the flavor's build (from the cache, or built now; with
    ``mshare`` False, the same tree with CONFIG_MSHARE=n); None when that build failed
    (its reason is on stderr)."""
    if path:
        return Path(path)
    try:
        return kbuild_cli.build(flavor, mshare=mshare)
    except (kbuild_cli.BuildError, patches.PatchError, FileNotFoundError) as err:
        kbuild_cli.say(f"FAILED: {err}")
        return None


def run_script(script: str, args: Sequence[str], out: Path,
               image: Build | str | Path | None, *, label: str, cpus: int, memory: str,
               timeout: float, kvm: bool | None = None, seed: dict[str, Any] | None = None,
               kernel_args: Sequence[str] = ()) -> tuple[GuestResult, dict[str, Any] | None]:
    """Run ``script`` (a path in the checkout) with the guest's Python and ``args``;
    ``out`` is where it writes its document, in a directory the guest may write, and
    where ``seed`` (a saved document the script is to resume) is put first.
    ``image`` None (or "") boots the release build; ``kernel_args`` go on its command
    line."""
    kernel_ = image if isinstance(image, Build) else kernel(image)
    if kernel_ is None:
        print(f"{label}: the release kernel did not build", file=sys.stderr)
        return GuestResult(status.INFRA), None
    out.unlink(missing_ok=True)  # what comes back is this boot's, never a stale one
    if seed is not None:
        benchloop.save(seed, str(out))
    # The guest's own Python is LIBMSHARE_PYTHON (expanded in the guest).
    cmd = ["sh", "-c", 'exec "$LIBMSHARE_PYTHON" "$0" "$@"', script, *args]
    print(f"{label}: in the guest: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    with hostload.Sampler(out.parent):  # the guest's runs record the host's load
        result = run(cmd, kernel_, cpus=cpus, memory=memory, timeout=timeout,
                     rwdirs=[out.parent], kvm=kvm, cwd=REPO, kernel_args=kernel_args)
    return result, load(out)


def run_bench(script: str, args: Sequence[str], image: Build | str | Path | None, *,
              label: str, cpus: int, memory: str, timeout: float, kvm: bool | None = None,
              out: Path | None = None, resume: dict[str, Any] | None = None,
              raw_name: str | None = None) -> tuple[int, dict[str, Any] | None]:
    """One boot running a bench's guest script, which writes its document where its
    ``--out`` says: ``out`` (the guest saves there after every run, so the host keeps
    what finished even if it dies too), by default a temporary file.  With ``resume``
    (a saved document, see resumable()) the script gets ``--resume`` and continues it.
    Returns the status and the document, whose provenance is the finished record (the
    host's load after the boot too, where the guest could copy only the one from
    before), and whose ``raw_files`` lists every boot's raw files, kept outside git
    (rawfiles.keep) under ``raw_name`` (by default the name of ``out``, else ``label``)."""
    extra = ["--resume"] if resume is not None else []
    with tempfile.TemporaryDirectory(prefix=f"{label}-") as tmp:
        path = out.resolve() if out is not None else Path(tmp) / "doc.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        result, doc = run_script(script, [*args, *extra, "--out", str(path)], path, image,
                                 label=label, cpus=cpus, memory=memory, timeout=timeout,
                                 kvm=kvm, seed=resume)
        kept = None
        if result.scratch is not None:
            kept = rawfiles.keep(result.scratch, path if doc is not None else None,
                                 raw_name or (out.stem if out is not None else label))
    if doc is not None and result.provenance:
        doc["provenance"] = result.provenance
    if doc is not None:
        earlier = (resume or {}).get("raw_files", [])
        doc["raw_files"] = [*earlier, kept] if kept else earlier
    return result.status, doc


def resumable(path: Path, plan: Any, image: Build | Path | None) -> dict[str, Any]:
    """The document saved at ``path``, once checked to be a run of ``plan`` on this kernel
    (None: this host's own, for runs without a guest) and git revision, before a boot is
    spent on it: benchloop.ResumeError otherwise."""
    doc = benchloop.load(str(path))
    record = provenance.on_host() if image is None else {
        "git_revision": provenance.git_revision(),
        "kernel": provenance.kernel_info(image, env.cache_root() / "builds")}
    benchloop.check_resume(doc, benchloop.identity(plan, record), str(path))
    return doc


def resume_arg(label: str, path: str | None, plan: Any, image: Build | Path | None) -> Doc | None:
    """What a bench's --resume gives its boot: None without one, else resumable(); a
    refused document is reported under ``label`` and ends the bench with status 2."""
    try:
        return resumable(Path(path), plan, image) if path else None
    except benchloop.ResumeError as e:
        print(f"{label}: {e}", file=sys.stderr)
        raise SystemExit(2) from e


def add_boot_options(p: argparse.ArgumentParser, default_json: str) -> None:
    """The options of a bench that boots a guest (run-sga, run-pgbench): where its
    document goes, the saved run to resume, and the boot's memory, CPUs and kernel."""
    p.add_argument("--json", metavar="FILE", help=f"where to save the JSON (default "
                   f"{default_json}; the PNG goes beside it); the guest saves it after "
                   "every run")
    p.add_argument("--resume", metavar="FILE", help="continue the run saved in FILE (a "
                   "result JSON, finished or not) with the same command: its runs are "
                   "kept and not run again; refused if the plan, kernel or git revision "
                   "differ")
    p.add_argument("--memory", help="guest RAM (default: what the plan needs)")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--timeout", type=float, help="guest timeout in seconds")
    p.add_argument("--kernel", help="boot this bzImage instead of the release flavor")
    p.add_argument("--kvm", action="store_true", help="boot with KVM instead of TCG")


def save_report(doc: Doc, json_path: Path, text: str,
                plot: Callable[[Doc, str], bool]) -> None:
    """Print a bench's report and save the document with it (as lines) at json_path,
    and its plot as a PNG beside it."""
    print(text)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**doc, "report": text.splitlines()}
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    png = json_path.with_suffix(".png")
    drawn = plot(doc, str(png))
    print(f"\nsaved {json_path}" + (f" and {png}" if drawn else " (nothing to plot)"))


def conclude(label: str, status: int, doc: Doc | None, finish: Callable[[Doc], int]) -> int:
    """A bench's exit status once its boot is over: finish(doc) reports what came back,
    all of it or (after a failed boot) what finished."""
    if doc is None:
        print(f"{label}: no results came back (status {status})", file=sys.stderr)
        return status or 1
    if status != 0:
        print(f"{label}: the run ended with status {status}; reporting what finished",
              file=sys.stderr)
    code = finish(doc)
    return status or code
