"""``mshare run``: run a command with its large anonymous shared mapping in msharefs.

The command runs with the preload library (``libmshare/preload/mshare_preload.c``, built
by the pip install) in ``LD_PRELOAD``: a ``mmap(NULL, size, PROT_READ|PROT_WRITE,
MAP_SHARED|MAP_ANONYMOUS, -1, 0)`` of at least the threshold becomes an msharefs region,
so every process that inherits it by fork shares its page tables.  Written for
PostgreSQL's main segment (``docs/postgresql.md``); works for any program mapping its
shared memory that way.

Regions are created in a directory of msharefs that the user may write:

- root, once (or on every boot): ``mshare run --user postgres --prepare`` makes
  ``/sys/fs/mshare/postgres``, owned by that user, mode 0700 (mounting msharefs first if
  needed); ``mshare run --user postgres -- COMMAND`` does the same, then runs COMMAND as
  that user;
- any user: ``mshare run [--dir DIR] -- COMMAND`` (DIR relative to the mount; default
  ``<mount>/<user name>`` when it exists, else the mount itself).

``--print-env`` prints the environment instead of running anything, for service managers
(systemd ``Environment=``, Debian's ``/etc/postgresql/15/main/environment``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import fs
from .sizes import parse_size

__all__ = [
    "HUGETLB_MODES",
    "PRELOAD_SOURCE",
    "build_preload",
    "preload_env",
    "preload_library",
    "prepare_dir",
    "readable_by",
    "register",
]

PRELOAD_DIR = Path(__file__).resolve().parent / "preload"
PRELOAD_SOURCE = PRELOAD_DIR / "mshare_preload.c"
PRELOAD_LIBRARY = PRELOAD_DIR / "libmshare_preload.so"
LIBRARY_ENV = "MSHARE_PRELOAD_LIB"
DEFAULT_THRESHOLD = 32 << 20
# MSHARE_PRELOAD_HUGETLB: a huge region (4 KiB pages' refusal on kernels before series
# v6), ENOMEM, or the kernel's hugetlb pages.  The C library's header says more.
HUGETLB_MODES = ("huge", "refuse", "pass")
CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-Wformat=2", "-Wshadow", "-fPIC", "-shared"]

HELP = "run COMMAND with its large MAP_SHARED|MAP_ANONYMOUS mapping in an msharefs region"


def _say(msg: str) -> None:
    print(f"mshare run: {msg}", file=sys.stderr, flush=True)


def build_preload(dest_dir: str | os.PathLike[str]) -> Path:
    """Compile the preload library from its source into dest_dir; returns its path."""
    cc = os.environ.get("CC", "cc").split()
    out = Path(dest_dir) / PRELOAD_LIBRARY.name
    tmp = out.with_suffix(f".so.{os.getpid()}")
    subprocess.run([*cc, *CFLAGS, "-o", str(tmp), str(PRELOAD_SOURCE), "-lpthread"],
                   check=True, stdout=subprocess.DEVNULL)
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)
    return out


def _fresh(lib: Path) -> bool:
    try:
        built = lib.stat().st_mtime
    except OSError:
        return False
    try:
        return built >= PRELOAD_SOURCE.stat().st_mtime
    except OSError:  # an installed copy without its source
        return True


def _own_dir(digest: str) -> Path:
    """<tmp>/libmshare-preload-<uid>-<digest>: made by this user, mode 0755."""
    dest = Path(tempfile.gettempdir()) / f"libmshare-preload-{os.getuid()}-{digest}"
    dest.mkdir(mode=0o755, exist_ok=True)
    st = dest.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise PermissionError(f"refusing to use {dest}: not this user's, or writable by "
                              "others")
    return dest


def readable_by(user: str, path: Path) -> bool:
    """Whether ``user`` may read ``path``: asked of the kernel in a child that becomes
    that user (groups, modes of every directory on the way, ACLs: all counted)."""
    pw = pwd.getpwnam(user)
    if pw.pw_uid == os.geteuid():
        return os.access(path, os.R_OK)
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            _become(pw)
            code = 0 if os.access(path, os.R_OK) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def preload_library(user: str | None = None) -> Path:
    """The preload library: $MSHARE_PRELOAD_LIB, else the one the pip install built.

    If that one is missing or older than its source (the checkout changed since the
    install), the source is compiled into a temporary directory anyone may read, keyed
    by the source's hash so it is built once.  With ``user`` (whom the command will run
    as), a library that user cannot read (a checkout under root's mode-0700 home, say:
    the dynamic loader would skip it without failing) is copied to such a directory.
    """
    override = os.environ.get(LIBRARY_ENV)
    if override:
        lib = Path(override)
    elif _fresh(PRELOAD_LIBRARY):
        lib = PRELOAD_LIBRARY
    else:
        digest = hashlib.sha256(PRELOAD_SOURCE.read_bytes()).hexdigest()[:16]
        dest = _own_dir(digest)
        lib = dest / PRELOAD_LIBRARY.name
        if not lib.exists():
            _say(f"{PRELOAD_LIBRARY} is missing or older than its source; building {lib} "
                 "(reinstall with ci/setup or pip install -e . to refresh it)")
            build_preload(dest)
    if user is None or readable_by(user, lib):
        return lib
    try:
        data = lib.read_bytes()
    except OSError:
        raise PermissionError(
            f"{user} cannot read the preload library {lib}: install libmshare where "
            f"{user} can read it, or set {LIBRARY_ENV} to a copy it can read") from None
    copy = _own_dir(hashlib.sha256(data).hexdigest()[:16]) / PRELOAD_LIBRARY.name
    if not copy.exists():
        tmp = copy.with_suffix(f".so.{os.getpid()}")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, copy)
    _say(f"{user} cannot read {lib}; preloading a copy, {copy}")
    return copy


def preload_env(directory: str, *, mount: str, threshold: int = DEFAULT_THRESHOLD,
                hugetlb: str = "huge", fallback: bool = False,
                base: Mapping[str, str] | None = None,
                user: str | None = None) -> dict[str, str]:
    """The environment that puts a command's big shared mapping in msharefs (base: the
    environment to extend, default this process's; user: whom the command runs as,
    default this process's user; hugetlb: what a MAP_HUGETLB request gets, one of
    ``HUGETLB_MODES``)."""
    env = dict(os.environ if base is None else base)
    lib = str(preload_library(user))
    old = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if p != lib]
    env["LD_PRELOAD"] = " ".join([lib, *old])
    env["MSHARE_PRELOAD_MOUNT"] = mount
    env["MSHARE_PRELOAD_DIR"] = directory
    env["MSHARE_PRELOAD_THRESHOLD"] = str(threshold)
    env["MSHARE_PRELOAD_HUGETLB"] = hugetlb
    env["MSHARE_PRELOAD_FALLBACK"] = "1" if fallback else "0"
    return env


def _mount_point(explicit: str | None) -> str:
    """The msharefs mount: the given one, the one found, or (root) a new one."""
    if explicit:
        return fs.resolve_mount(explicit).path
    found = fs.find_mount()
    if found:
        return fs.resolve_mount(found).path
    if os.geteuid() == 0:
        return fs.mount(fs.DEFAULT_MOUNT)
    return fs.resolve_mount(None).path  # raises, saying how to mount it


def _in_mount(mount: str, directory: str) -> str:
    path = os.path.normpath(directory if os.path.isabs(directory) else
                            os.path.join(mount, directory))
    if path != mount and not path.startswith(mount.rstrip("/") + "/"):
        raise ValueError(f"--dir {directory}: not inside the msharefs mount {mount}")
    return path


def prepare_dir(user: str, mount: str, directory: str | None = None) -> str:
    """(root) Make the msharefs directory `user` creates regions in: owned by the user and
    their group, mode 0700.  Idempotent; returns its path."""
    pw = pwd.getpwnam(user)
    path = _in_mount(mount, directory or user)
    if not os.path.isdir(path):
        os.mkdir(path, 0o700)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o700)
    return path


def _default_dir(mount: str, user: str) -> str:
    own = os.path.join(mount, user)
    return own if os.path.isdir(own) else mount


def _become(pw: pwd.struct_passwd) -> None:
    """Take on the user's groups, gid and uid, for good."""
    os.initgroups(pw.pw_name, pw.pw_gid)
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


def _drop_to(pw: pwd.struct_passwd, env: dict[str, str]) -> None:
    _become(pw)
    env.update(USER=pw.pw_name, LOGNAME=pw.pw_name, HOME=pw.pw_dir)


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command and not (args.prepare or args.print_env):
        raise ValueError("no COMMAND given (mshare run [options] -- COMMAND...)")
    mount = _mount_point(args.mount)
    pw = pwd.getpwnam(args.user) if args.user else pwd.getpwuid(os.getuid())
    if args.user and pw.pw_uid != os.geteuid():
        if os.geteuid() != 0:
            raise PermissionError(f"--user {args.user}: only root can run as another user")
        directory = prepare_dir(pw.pw_name, mount, args.dir)
    else:
        directory = _in_mount(mount, args.dir) if args.dir else _default_dir(mount,
                                                                               pw.pw_name)
    if args.prepare:
        return {"directory": directory, "owner": pw.pw_name}
    env = preload_env(directory, mount=mount, threshold=args.threshold,
                      hugetlb=args.hugetlb, fallback=args.fallback, user=pw.pw_name)
    if args.print_env:
        keys = ["LD_PRELOAD", *sorted(k for k in env if k.startswith("MSHARE_PRELOAD_"))]
        return {"env": {k: env[k] for k in keys}}
    if args.user and pw.pw_uid != os.geteuid():
        _drop_to(pw, env)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{pw.pw_name} may not create regions in {directory} (as root: mshare run "
            f"--user {pw.pw_name} --prepare, or --dir a directory this user may write)")
    exe = shutil.which(command[0], path=env.get("PATH")) or command[0]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(exe, command, env)


def _show(data: dict[str, Any]) -> None:
    if "env" in data:
        for k, v in data["env"].items():
            print(f"{k}={v}")
    else:
        print(data["directory"])


def register(add: Callable[..., Any]) -> None:
    """Add the ``run`` subcommand through the CLI's ``add(name, help, handler, show)``."""
    sp = add("run", HELP, cmd_run, _show)
    sp.add_argument("--dir", help="msharefs directory for the regions, relative to the "
                    "mount or absolute (default: <mount>/<user> if it exists, else the mount)")
    sp.add_argument("--user", help="(root) run as this user, after giving it its directory "
                    "in msharefs (<mount>/<user>, mode 0700, or --dir)")
    sp.add_argument("--prepare", action="store_true",
                    help="only make the directory (with --user) and print it")
    sp.add_argument("--threshold", type=parse_size, default=DEFAULT_THRESHOLD,
                    help="smallest mapping moved (default 32M)")
    sp.add_argument("--hugetlb", choices=HUGETLB_MODES, default=HUGETLB_MODES[0],
                    help="MAP_HUGETLB requests (huge_pages=on/try): huge gives a region of "
                    "2 MiB pages (default; refuse on kernels without huge regions); refuse "
                    "answers ENOMEM, so huge_pages=try falls back to a 4 KiB region; pass "
                    "leaves them to the kernel")
    sp.add_argument("--fallback", action="store_true",
                    help="map normally (with a log line) when no region can be created, "
                    "instead of failing the mmap")
    sp.add_argument("--print-env", action="store_true",
                    help="print the environment (KEY=VALUE lines) instead of running")
    sp.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
