"""The ``mshare`` command: inspect msharefs and manage regions from the shell.

Exit status: 0 on success, 1 when the operation failed (one line on stderr, no
traceback), 2 for a usage error, 141 when stdout was closed early (``| head``).
``top`` refreshes until Ctrl-C, which ends it with status 0.
``--json``, before or after the subcommand, prints one JSON document on stdout: the
result, or on failure an object ``{"error": ..., "errno": ..., "type": ...}``.  The
shapes are listed in the package README.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import grp
import json
import os
import pwd
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from . import __version__, fs
from .region import DEFAULT_TIMEOUT, RegionInfo, list_regions, stat, unlink
from .region import create as create_region
from .sizes import format_bytes, format_size, parse_address, parse_size
from .stats import RegionStats

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], Any]

_CLEAR_SCREEN = "\033[H\033[2J"  # cursor home, erase the screen (ANSI)


def _mode(text: str) -> int:
    # The range is checked by libmshare itself, like every other value.
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"mode {text!r} is not octal, e.g. 0600") from None


def _argtype(parse: Callable[[str], int]) -> Callable[[str], int]:
    # argparse turns ArgumentTypeError into a usage error naming the option.
    def convert(text: str) -> int:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


def _octal(mode: int) -> str:
    return f"{mode:04o}"


@dataclass(frozen=True)
class TopSample:
    """One refresh of ``top``: the mount's regions, sorted by ``sort``, at ``time``."""

    mount: str
    sort: str
    time: float
    regions: list[RegionInfo]


def _jsonable(data: Any) -> Any:
    if isinstance(data, RegionInfo):
        return {**dataclasses.asdict(data), "mode": _octal(data.mode)}
    if isinstance(data, TopSample):
        return {**dataclasses.asdict(data), "regions": _jsonable(data.regions)}
    if isinstance(data, list):
        return [_jsonable(d) for d in data]
    return data


def _owner(uid: int, gid: int) -> str:
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return f"{user}:{group}"


def _geometry(info: RegionInfo) -> tuple[str, str]:
    if info.start is None or info.size is None:
        return "-", "-"
    return f"{info.start:#x}", format_size(info.size)


def cmd_info(args: argparse.Namespace) -> dict[str, Any]:
    """Kernel support, the mount point and the alignment."""
    found = args.mount or fs.find_mount()
    m = fs.resolve_mount(found) if found else None
    return {
        "kernel_supports": fs.kernel_supports(),
        "mount": m.path if m else None,
        "emulated": m.emulated if m else False,
        "alignment": fs.read_alignment(m.path) if m else None,
    }


def show_info(data: dict[str, Any]) -> None:
    """Print ``info`` for people."""
    support = "yes" if data["kernel_supports"] else f"no (no {fs.FSTYPE} in /proc/filesystems)"
    print(f"kernel support: {support}")
    emulated = f" (emulated, {fs.FAKE_MOUNT_ENV} is set)" if data["emulated"] else ""
    print(f"mount: {data['mount'] or 'not mounted'}{emulated}")
    align = data["alignment"]
    print(f"alignment: {f'{align} ({format_size(align)})' if align else 'unknown'}")


def cmd_mount(args: argparse.Namespace) -> dict[str, Any]:
    """Mount msharefs at the given path."""
    return {"mount": fs.mount(args.path)}


def cmd_ls(args: argparse.Namespace) -> list[RegionInfo]:
    """Every region, as RegionInfo."""
    return list_regions(mount=args.mount)


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def show_ls(infos: list[RegionInfo]) -> None:
    """Print ``ls`` as a table."""
    rows = [("NAME", "START", "SIZE", "MODE", "OWNER")]
    for i in infos:
        rows.append((i.name, *_geometry(i), _octal(i.mode), _owner(i.uid, i.gid)))
    _print_table(rows)


def cmd_create(args: argparse.Namespace) -> RegionInfo:
    """Create a region, close it (it stays) and describe it."""
    region = create_region(
        args.name, args.size, start=args.addr, round_up=args.round_up, mode=args.mode,
        exist_ok=args.exist_ok, timeout=args.timeout, huge=args.huge, mount=args.mount,
    )
    # The region outlives this process: msharefs keeps it, with its data, until rm.
    region.close()
    return stat(region.name, mount=region.mount)


def _huge(info: RegionInfo, unknown: str = "-") -> str:
    return unknown if info.huge is None else "yes" if info.huge else "no"


def show_region(info: RegionInfo) -> None:
    """Print one region's RegionInfo for people."""
    start, size = _geometry(info)
    print(f"name: {info.name}")
    print(f"path: {info.path}")
    print(f"start: {start}")
    print(f"size: {size}{f' ({info.size} bytes)' if info.size is not None else ''}")
    print(f"mode: {_octal(info.mode)}")
    print(f"owner: {_owner(info.uid, info.gid)}")
    # What the region asked for; "pmd mapped" below is what it got.
    print(f"huge: {_huge(info, 'unknown')}")
    if info.stats is None:
        print("stats: not available (no permission to open the region, an emulated "
              "mount, or a kernel without MSHARE_GET_STATS)")
    else:
        _show_stats(info.stats)


def _amount(n: int) -> str:
    return f"{format_bytes(n)} ({n} bytes)" if n >= 1024 else str(n)


def _show_stats(s: RegionStats) -> None:
    print(f"resident: {_amount(s.resident)}")
    print(f"swapped: {_amount(s.swapped)}")
    print(f"pmd mapped: {_amount(s.pmd_mapped)}")
    print(f"page tables: {_amount(s.page_tables)}")
    print(f"mappers: {s.mappers}")
    where = s.cgroup or ("none" if s.memcg_id == 0 else "not found")
    print(f"memory cgroup: {where} (id {s.memcg_id})")


def cmd_stat(args: argparse.Namespace) -> RegionInfo:
    """Describe one region."""
    return stat(args.name, mount=args.mount)


# top --sort KEY: what each key ranks by, largest first.
_TOP_KEYS: dict[str, Callable[[RegionStats], int]] = {
    "resident": lambda s: s.resident,
    "tables": lambda s: s.page_tables,
    "mappers": lambda s: s.mappers,
}


def cmd_top(args: argparse.Namespace) -> TopSample:
    """Every region, largest first by the --sort key; regions without stats last."""
    rank = _TOP_KEYS[args.sort]
    infos = list_regions(mount=args.mount)
    infos.sort(key=lambda i: (i.stats is None, -rank(i.stats) if i.stats else 0, i.name))
    mount = fs.resolve_mount(args.mount).path
    return TopSample(mount=mount, sort=args.sort, time=time.time(), regions=infos)


def show_top(sample: TopSample) -> None:
    """Print one ``top`` refresh: a summary line and a table."""
    n = len(sample.regions)
    summary = f"{n} region{'' if n == 1 else 's'}"
    known = [i.stats for i in sample.regions if i.stats is not None]
    if known:  # no totals made of nothing where no region has stats
        summary += (f", {format_bytes(sum(s.resident for s in known))} resident, "
                    f"{format_bytes(sum(s.page_tables for s in known))} page tables")
    clock = time.strftime("%H:%M:%S", time.localtime(sample.time))
    print(f"{sample.mount}: {summary}, by {sample.sort} at {clock}")
    rows = [("NAME", "SIZE", "HUGE", "RESIDENT", "SWAP", "PMD", "TABLES", "MAPPERS",
             "CGROUP")]
    for i in sample.regions:
        size = _geometry(i)[1]
        s = i.stats
        if s is None:
            rows.append((i.name, size, _huge(i), *("-",) * 6))
            continue
        rows.append((i.name, size, _huge(i), format_bytes(s.resident), format_bytes(s.swapped),
                     format_bytes(s.pmd_mapped), format_bytes(s.page_tables), str(s.mappers),
                     s.cgroup or "-"))
    _print_table(rows)


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number above 0")
        return value

    return convert


def cmd_rm(args: argparse.Namespace) -> dict[str, Any]:
    """Unlink one region."""
    unlink(args.name, mount=args.mount)
    return {"removed": args.name}


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as JSON too when ``--json`` was given."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if self.json_errors:
            _print_json({"error": f"{self.prog}: {message}", "errno": None, "type": "usage"})
        super().error(message)


def _parser(json_errors: bool = False) -> argparse.ArgumentParser:
    # --json and --mount are accepted before and after the subcommand.  On the
    # subcommands their default is SUPPRESS, so that a subcommand without them keeps
    # what the main parser found instead of resetting it.
    def options(parser: argparse.ArgumentParser, default: Any) -> None:
        parser.add_argument("--json", action="store_true", default=default,
                            help="print JSON on stdout (errors too)")
        parser.add_argument("--mount", metavar="DIR", default=default,
                            help="msharefs mount point (default: found)")

    common = _Parser(add_help=False)
    options(common, argparse.SUPPRESS)
    p = _Parser(prog="mshare", description="Inspect msharefs and manage its regions.")
    p.json_errors = json_errors
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    options(p, None)
    # Commands other than top show their result once.
    p.set_defaults(interval=None, count=1)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser)

    def add(name: str, help_: str, handler: Handler, show: Callable[[Any], None]) -> Any:
        sp = sub.add_parser(name, parents=[common], help=help_, description=help_)
        sp.json_errors = json_errors
        sp.set_defaults(handler=handler, show=show)
        return sp

    add("info", "kernel support, mount point and alignment", cmd_info, show_info)
    sp = add("mount", "mount msharefs (needs CAP_SYS_ADMIN)", cmd_mount,
             lambda d: print(d["mount"]))
    sp.add_argument("path", nargs="?", default=fs.DEFAULT_MOUNT)
    add("ls", "list regions", cmd_ls, show_ls)
    sp = add("create", "create a region; it stays until 'mshare rm'", cmd_create, show_region)
    sp.add_argument("name")
    sp.add_argument("--size", required=True, type=_argtype(parse_size),
                    help="bytes, or with a binary unit: 512G, 1T")
    sp.add_argument("--addr", type=_argtype(parse_address), help="start address (hex or decimal)")
    sp.add_argument("--mode", type=_mode, default=0o600,
                    help="octal permission bits, 0000 to 0777 (default 0600), applied "
                         "exactly (no umask)")
    sp.add_argument("--round-up", action="store_true",
                    help="round --size up to a multiple of the alignment")
    sp.add_argument("--huge", action="store_true",
                    help="ask for 2 MiB pages; where there are none (THP off, memory "
                         "fragmented) the kernel uses 4 KiB pages silently: 'mshare "
                         "stat' shows how much is pmd mapped (needs a kernel with "
                         "MSHARE_SET_FLAGS, series v6)")
    sp.add_argument("--exist-ok", action="store_true",
                    help="succeed if a region of this name and size exists")
    sp.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                    help="with --exist-ok: how long to wait for the region's creator to "
                         f"map it (default {DEFAULT_TIMEOUT:g})")
    sp = add("stat", "show one region without mapping it", cmd_stat, show_region)
    sp.add_argument("name")
    sp = add("rm", "unlink a region", cmd_rm, lambda d: None)
    sp.add_argument("name")
    sp = add("top", "regions by memory use, refreshed until Ctrl-C (--json: one sample)",
             cmd_top, show_top)
    sp.add_argument("--sort", choices=sorted(_TOP_KEYS), default="resident",
                    help="rank by resident memory (default), page tables or mappers")
    sp.add_argument("--interval", type=_positive(float), default=2.0, metavar="SECONDS",
                    help="seconds between refreshes (default 2)")
    sp.add_argument("--count", type=_positive(int), metavar="N",
                    help="stop after N refreshes (default: until Ctrl-C)")
    from . import run_cmd  # `mshare run` (issue 12) lives in its own module

    run_cmd.register(add)
    return p


def _error_line(command: str, e: BaseException) -> str:
    # libmshare's OSErrors already start with the operation ("unlink: ...").
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return f"{command}: {e}"


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _error_json(command: str, e: BaseException) -> dict[str, Any]:
    err = e.errno if isinstance(e, OSError) else None
    return {"error": _error_line(command, e), "errno": err, "type": type(e).__name__}


def _run(argv: Sequence[str] | None) -> int:
    raw = sys.argv[1:] if argv is None else list(argv)
    # Before parsing, so that usage errors can come out as JSON too.
    wants_json = "--json" in raw[:raw.index("--")] if "--" in raw else "--json" in raw
    args = _parser(json_errors=wants_json).parse_args(raw)
    if args.interval is None or args.json:
        return _once(args)  # JSON is one document: one sample
    return _refresh(args)


def _refresh(args: argparse.Namespace) -> int:
    """Run the command every ``args.interval`` seconds, ``args.count`` times (None: until
    Ctrl-C, which is how a live view is left, so it exits 0 without a word)."""
    shown = 0
    try:
        while True:
            if shown:
                time.sleep(args.interval)
            # A terminal shows the newest sample in place of the last; a pipe or a file
            # keeps them all, a blank line apart.
            if sys.stdout.isatty():
                print(_CLEAR_SCREEN, end="")
            elif shown:
                print()
            status = _once(args)
            sys.stdout.flush()
            shown += 1
            if status or shown == args.count:
                return status
    except KeyboardInterrupt:
        return 0


def _once(args: argparse.Namespace) -> int:
    try:
        data = args.handler(args)
    except (OSError, ValueError, BufferError) as e:
        if args.json:
            _print_json(_error_json(args.command, e))
        print(f"mshare: {_error_line(args.command, e)}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(_jsonable(data))
    else:
        args.show(data)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mshare`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    try:
        status = _run(argv)
        sys.stdout.flush()
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``mshare ls | head``): no traceback, and none again
        # when the interpreter flushes stdout at exit.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13  # as a command killed by SIGPIPE
    return status


if __name__ == "__main__":
    sys.exit(main())
