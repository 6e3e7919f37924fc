"""The preload library of ``mshare run`` (libmshare/preload/mshare_preload.c), on its own.

Child interpreters run with the library in LD_PRELOAD and map memory the way PostgreSQL
does: Python's ``mmap.mmap(-1, size)`` is ``mmap(NULL, size, PROT_READ|PROT_WRITE,
MAP_SHARED|MAP_ANONYMOUS, -1, 0)``, and its ``close()`` is ``munmap(base, size)``.  What
must hold: a large mapping becomes a region at an aligned window, its name is gone at
once (nothing to leak), forked children share it and their munmap only detaches, the
creator's munmap frees it, MAP_HUGETLB gets a region of 2 MiB pages (ENOMEM with
MSHARE_PRELOAD_HUGETLB=refuse, or where the kernel has no huge regions), small and
private mappings are left alone, failures are clear, and ``mshare run`` works for a
user who is not root.  Then PostgreSQL 15 itself with huge_pages=on and =try: its
segment is a huge region.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import harness
import kapi
import pytest

from libmshare import _libc, run_cmd
from libmshare.stats import read_stats
from pgbenchlib.cluster import BIN, Cluster, mount_tmpfs, region_fd

pytestmark = pytest.mark.timeout(300)

SIZE = 48 << 20
USER = "postgres"
MOVED = "moved to msharefs region"
MAP_HUGETLB = 0x40000
HUGE_PAGE = 2 << 20

# Runs in the child: map, report where, share with a forked child, unmap.
CHILD = textwrap.dedent("""
    import ctypes, json, mmap, os, sys
    size, mount = int(sys.argv[1]), sys.argv[2]
    flags = int(sys.argv[3]) if len(sys.argv) > 3 else mmap.MAP_SHARED
    def regions():
        with open("/proc/self/maps") as f:
            return [ln.split() for ln in f if " " + mount + "/" in ln]
    try:
        m = mmap.mmap(-1, size, flags=flags)
    except OSError as e:
        print(json.dumps({"errno": e.errno}))
        sys.exit(0)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    m[0:4] = b"abcd"
    out = {"addr": addr, "maps": regions()}
    pid = os.fork()
    if pid == 0:
        ok = m[0:4] == b"abcd"
        m[4:8] = b"efgh"
        m.close()  # a child's munmap: detach only
        os._exit(0 if ok and not regions() else 1)
    _, status = os.waitpid(pid, 0)
    out["child_ok"] = status == 0
    out["after_child"] = m[0:8].decode()
    out["maps_after_child"] = regions()
    m.close()
    out["maps_after_close"] = regions()
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def region_dir(msharefs: str) -> Iterator[str]:
    """<mount>/postgres, made by root the way the docs say (mshare run --user --prepare)."""
    path = run_cmd.prepare_dir(USER, msharefs)
    yield path
    assert os.listdir(path) == [], "a region name was left behind"


def run_child(env: dict[str, str], *args: str, user: str | None = None,
              timeout: float = 120) -> tuple[dict[str, object], str]:
    kw: dict[str, object] = {}
    exe = sys.executable
    if user:
        pw = pwd.getpwnam(user)
        kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        exe = "/usr/bin/python3"  # root's interpreter lives under /root (mode 0700)
    p = subprocess.run([exe, "-c", CHILD, *args], env=env, cwd="/", capture_output=True,
                       text=True, timeout=harness.scaled(timeout), check=False,
                       **kw)  # type: ignore[call-overload]
    assert p.returncode == 0, f"child exit {p.returncode}: {p.stderr}"
    return json.loads(p.stdout), p.stderr


def env_for(region_dir: str, mount: str, user: str | None = None,
            **extra: str) -> dict[str, str]:
    env = run_cmd.preload_env(region_dir, mount=mount, threshold=32 << 20,
                              base={"PATH": "/usr/bin:/bin", "HOME": "/tmp"}, user=user)
    env.update(extra)
    return env


def test_large_mapping_becomes_a_region(msharefs: str, region_dir: str) -> None:
    out, err = run_child(env_for(region_dir, msharefs), str(SIZE), msharefs)
    align = harness.alignment()
    addr = out["addr"]
    assert isinstance(addr, int) and addr % align == 0
    maps = out["maps"]
    assert isinstance(maps, list) and len(maps) == 1, maps
    lo, hi = (int(x, 16) for x in maps[0][0].split("-"))
    assert (lo, hi - lo) == (addr, align), "not the whole aligned window"
    assert maps[0][1] == "rw-s"
    assert maps[0][5].startswith(f"{region_dir}/anon-") and maps[0][-1] == "(deleted)"
    assert out["child_ok"] and out["after_child"] == "abcdefgh"
    assert len(out["maps_after_child"]) == 1  # type: ignore[arg-type]
    assert out["maps_after_close"] == []
    lines = [ln for ln in err.splitlines() if ln.startswith("mshare-preload[")]
    assert sum(MOVED in ln for ln in lines) == 1, err
    assert os.listdir(region_dir) == [], "the name must be gone right after mapping"


@pytest.mark.parametrize("case", ["small", "private"])
def test_other_mappings_left_alone(msharefs: str, region_dir: str, case: str) -> None:
    import mmap

    size = str(1 << 20) if case == "small" else str(SIZE)
    flags = [] if case == "small" else [str(mmap.MAP_PRIVATE)]
    out, err = run_child(env_for(region_dir, msharefs), size, msharefs, *flags)
    assert out["maps"] == [] and "mshare-preload" not in err
    assert out["after_child"] == ("abcdefgh" if case == "small" else "abcd\0\0\0\0")


def test_hugetlb_refuse_gets_enomem(msharefs: str, region_dir: str) -> None:
    """MSHARE_PRELOAD_HUGETLB=refuse, the behaviour before huge regions: ENOMEM with one
    clear line (huge_pages=try then maps without MAP_HUGETLB and gets a region; on
    refuses to start)."""
    import mmap

    flags = str(mmap.MAP_SHARED | MAP_HUGETLB)
    out, err = run_child(env_for(region_dir, msharefs, MSHARE_PRELOAD_HUGETLB="refuse"),
                         str(SIZE), msharefs, flags)
    assert out == {"errno": 12}
    assert "answered ENOMEM: MSHARE_PRELOAD_HUGETLB=refuse" in err, err
    assert "huge_pages=on cannot start" in err


# Maps the way huge_pages=on does, writes every page, says its pid and holds the mapping
# until its stdin closes.
HUGE_HOLDER = textwrap.dedent("""
    import mmap, os, sys
    m = mmap.mmap(-1, int(sys.argv[1]), flags=mmap.MAP_SHARED | int(sys.argv[2]))
    for off in range(0, len(m), 4096):
        m[off] = 1
    print(os.getpid(), flush=True)
    sys.stdin.read()
""")


def test_hugetlb_request_gets_a_huge_region(msharefs: str, region_dir: str) -> None:
    """The default: a region whose flags say MSHARE_F_HUGE, its written memory mapped by
    2 MiB leaves (no hugetlb pages reserved in the guest)."""
    p = subprocess.Popen([sys.executable, "-c", HUGE_HOLDER, str(SIZE), str(MAP_HUGETLB)],
                         env=env_for(region_dir, msharefs), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdin is not None and p.stdout is not None
    try:
        pid = int(p.stdout.readline() or 0)
        assert pid, p.communicate(timeout=harness.scaled(60))
        with region_fd(pid, region_dir) as (fd, path):
            flags, st = _libc.get_flags(fd, path), read_stats(fd, path)
    finally:
        _, err = p.communicate(timeout=harness.scaled(60))
    assert p.returncode == 0, err
    assert flags == _libc.MSHARE_F_HUGE
    assert st.resident == SIZE and st.pmd_mapped > 0 and st.pmd_mapped % HUGE_PAGE == 0, st
    assert f"mmap({SIZE}, MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB) {MOVED}" in err, err
    assert os.listdir(region_dir) == []


# Stands in for a kernel without huge regions (series v5): MSHARE_SET_FLAGS is ENOTTY.
# Preloaded before the library, so its ioctl is the one the library calls.
NO_SET_FLAGS = r"""
#include <errno.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <unistd.h>

int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (request == 0x4008B901UL) {
		errno = ENOTTY;
		return -1;
	}
	return (int)syscall(SYS_ioctl, fd, request, arg);
}
"""


def test_hugetlb_without_huge_regions_is_refused(msharefs: str, region_dir: str,
                                                  tmp_path: Path) -> None:
    """MSHARE_SET_FLAGS answering ENOTTY (a v5 kernel): ENOMEM as with refuse, the line
    saying why, and the file made for the region removed."""
    import mmap

    src, shim = tmp_path / "no_set_flags.c", tmp_path / "no_set_flags.so"
    src.write_text(NO_SET_FLAGS)
    subprocess.run(["cc", "-O2", "-fPIC", "-shared", "-o", str(shim), str(src)], check=True)
    env = env_for(region_dir, msharefs)
    env["LD_PRELOAD"] = f"{shim} {env['LD_PRELOAD']}"
    out, err = run_child(env, str(SIZE), msharefs, str(mmap.MAP_SHARED | MAP_HUGETLB))
    assert out == {"errno": 12}
    assert "answered ENOMEM: this kernel has no huge regions (MSHARE_SET_FLAGS: ENOTTY" \
        in err, err
    assert os.listdir(region_dir) == []


def test_unwritable_directory_fails_clearly(msharefs: str, region_dir: str) -> None:
    """nobody may not create regions in postgres's directory: the mmap fails with EACCES
    and a line naming the directory; with MSHARE_PRELOAD_FALLBACK=1 it maps normally."""
    env = env_for(region_dir, msharefs, user=pwd.getpwuid(harness.NOBODY).pw_name)
    nobody = {"user": harness.NOBODY, "group": harness.NOBODY, "extra_groups": []}
    # Debian's python3: root's interpreter lives under /root (mode 0700).
    p = subprocess.run(["/usr/bin/python3", "-c", CHILD, str(SIZE), msharefs], env=env,
                       cwd="/", capture_output=True, text=True, check=False,
                       timeout=harness.scaled(120), **nobody)  # type: ignore[call-overload]
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"errno": 13}
    assert f"MSHARE_PRELOAD_DIR={region_dir}" in p.stderr
    env["MSHARE_PRELOAD_FALLBACK"] = "1"
    p = subprocess.run(["/usr/bin/python3", "-c", CHILD, str(SIZE), msharefs], env=env,
                       cwd="/", capture_output=True, text=True, check=False,
                       timeout=harness.scaled(120), **nobody)  # type: ignore[call-overload]
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["maps"] == [] and out["after_child"] == "abcdefgh"
    assert "mapped without msharefs" in p.stderr


# `mshare run` as USER: imported as root (the checkout may sit under root's mode-0700
# home, as in ci/fresh-machine's clone), then the process becomes USER and runs the CLI.
AS_USER_CLI = textwrap.dedent("""
    import os, pwd, sys
    from libmshare import cli, run_cmd  # run_cmd: cli imports it only when parsing
    pw = pwd.getpwnam(sys.argv[1])
    os.initgroups(pw.pw_name, pw.pw_gid); os.setgid(pw.pw_gid); os.setuid(pw.pw_uid)
    sys.exit(cli.main(sys.argv[2:]))
""")


def test_mshare_run_as_postgres(msharefs: str, region_dir: str) -> None:
    """`mshare run` by a user who is not root: the default directory is <mount>/<user>,
    and the mapping is moved.  The library comes from MSHARE_PRELOAD_LIB, a copy the
    user can read, as an administrator would install it."""
    lib = run_cmd.preload_library(USER)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", run_cmd.LIBRARY_ENV: str(lib),
           "PYTHONPATH": str(harness.REPO)}
    p = subprocess.run([sys.executable, "-c", AS_USER_CLI, USER, "run", "--",
                        "/usr/bin/python3", "-c", CHILD, str(SIZE), msharefs], env=env,
                       cwd="/", capture_output=True, text=True, check=False,
                       timeout=harness.scaled(180))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert len(out["maps"]) == 1 and out["maps"][0][5].startswith(f"{region_dir}/anon-")
    assert out["child_ok"] and out["maps_after_close"] == []


def test_mshare_run_user_prepares_and_drops(msharefs: str, region_dir: str) -> None:
    """root: `mshare run --user postgres -- CMD` gives postgres its directory and runs CMD
    as postgres."""
    p = subprocess.run([sys.executable, "-m", "libmshare.cli", "run", "--user", USER, "--",
                        "/bin/sh", "-c", 'echo "$(id -u) $MSHARE_PRELOAD_DIR"'],
                       env={**os.environ, "PYTHONPATH": str(harness.REPO)},
                       capture_output=True, text=True, check=False,
                       timeout=harness.scaled(120))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(pwd.getpwnam(USER).pw_uid), region_dir]
    st = os.stat(region_dir)
    assert (st.st_uid, st.st_mode & 0o777) == (pwd.getpwnam(USER).pw_uid, 0o700)


# Touches 48 MiB, forks a holder, then SIGKILLs itself.
KILLED_CREATOR = textwrap.dedent("""
    import mmap, os, signal, sys, time
    m = mmap.mmap(-1, int(sys.argv[1]))
    for off in range(0, len(m), 4096):
        m[off] = 1
    if os.fork() == 0:
        print("holder", os.getpid(), flush=True)
        while True:
            time.sleep(1)
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def _shmem() -> int:
    return kapi.meminfo()["Shmem"]


def _maps_empty(pid: int) -> bool:
    """Whether pid maps nothing any more: gone, or exiting with its mm released (a
    read racing the exit fails with ESRCH)."""
    try:
        return not Path(f"/proc/{pid}/maps").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.serial
def test_sigkilled_creator_leaks_nothing(msharefs: str, region_dir: str) -> None:
    """The creator is SIGKILLed while a forked child still maps the region: the child
    keeps it (the memory stays), and when the child dies too the memory is freed: no name
    was ever left to leak."""
    base = _shmem()
    env = env_for(region_dir, msharefs)
    p = subprocess.Popen([sys.executable, "-c", KILLED_CREATOR, str(SIZE)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    _, pid = p.stdout.readline().split()
    holder = int(pid)
    try:
        p.wait(timeout=harness.scaled(60))
        assert p.returncode == -signal.SIGKILL
        held = _shmem() - base
        assert held >= (SIZE >> 10) * 9 // 10, f"Shmem +{held} kB while the child holds it"
        assert os.listdir(region_dir) == []
    finally:
        os.kill(holder, signal.SIGKILL)
    assert harness.wait_until(lambda: _maps_empty(holder), 30)
    assert harness.wait_until(lambda: _shmem() - base < 1024, 30), \
        f"Shmem +{_shmem() - base} kB after both died"
    p.communicate()


# PostgreSQL 15 itself, with the preload's default: huge_pages=on and =try map the
# segment with MAP_HUGETLB and get a huge region.  Serial: one server at a time, on the
# port pgbenchlib.cluster uses.

@pytest.fixture(scope="module")
def pg_cluster(msharefs: str, region_dir: str) -> Iterator[Cluster]:
    if not (BIN / "postgres").exists():
        pytest.skip("PostgreSQL 15 is not installed (ci/setup installs it)")
    root = Path(tempfile.mkdtemp(prefix="mshare-pghuge-", dir="/tmp"))
    os.chmod(root, 0o755)
    mount_tmpfs(root, "256m")
    cluster = Cluster(root, mount=msharefs, region_dir=region_dir)
    try:
        cluster.initdb()
        yield cluster
    finally:
        if cluster.proc is not None:
            cluster.kill()
        cluster.children_gone(120)
        subprocess.run(["umount", "-l", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.serial
@pytest.mark.timeout(900)
@pytest.mark.parametrize("huge_pages", ["on", "try"])
def test_pg_huge_pages_get_a_huge_region(pg_cluster: Cluster, region_dir: str,
                                         huge_pages: str) -> None:
    """The server starts; its one region asks for 2 MiB pages and, once pg_prewarm has
    read a table through shared buffers, 2 MiB leaves map some of it; shutdown leaves
    nothing."""
    c = pg_cluster
    postmaster = c.start("msharefs-huge", c.settings("msharefs-huge", "64MB", 20,
                                                     {"huge_pages": huge_pages}))
    try:
        with c.connect() as s:
            s.query("create extension if not exists pg_prewarm")
            s.query("create table if not exists fill as select g, repeat('x', 400) pad "
                    "from generate_series(1, 40000) g")
            blocks = int(s.value("select pg_prewarm('fill', 'buffer')") or 0)
        assert blocks > 1000  # 8 MiB and more of shared buffers read
        with region_fd(postmaster, region_dir) as (fd, path):
            flags, st = _libc.get_flags(fd, path), read_stats(fd, path)
        assert flags == _libc.MSHARE_F_HUGE
        assert st.pmd_mapped > 0 and st.pmd_mapped % HUGE_PAGE == 0, st
        mine = [ln for ln in c.log_text().splitlines()
                if f"mshare-preload[{postmaster}]: " in ln]
        assert len(mine) == 1 and f"MAP_HUGETLB) {MOVED}" in mine[0], mine
    finally:
        assert c.stop("fast") == 0
    assert c.children_gone(60) and os.listdir(region_dir) == []
