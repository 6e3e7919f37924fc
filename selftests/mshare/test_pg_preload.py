"""The preload library of ``mshare run`` (libmshare/preload/mshare_preload.c), on its own.

Child interpreters run with the library in LD_PRELOAD and map memory the way PostgreSQL
does: Python's ``mmap.mmap(-1, size)`` is ``mmap(NULL, size, PROT_READ|PROT_WRITE,
MAP_SHARED|MAP_ANONYMOUS, -1, 0)``, and its ``close()`` is ``munmap(base, size)``.  What
must hold: a large mapping becomes a region at an aligned window, its name is gone at
once (nothing to leak), forked children share it and their munmap only detaches, the
creator's munmap frees it, MAP_HUGETLB gets ENOMEM, small and private mappings are left
alone, failures are clear, and ``mshare run`` works for a user who is not root.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import harness
import kapi
import pytest

from libmshare import run_cmd

pytestmark = pytest.mark.timeout(300)

SIZE = 48 << 20
USER = "postgres"
MOVED = "moved to msharefs region"

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


def test_hugetlb_request_gets_enomem(msharefs: str, region_dir: str) -> None:
    """What huge_pages=try and =on ask for first: answered ENOMEM with one clear line
    (try then maps without MAP_HUGETLB and gets a region; on refuses to start)."""
    import mmap

    flags = str(mmap.MAP_SHARED | 0x40000)  # MAP_HUGETLB
    out, err = run_child(env_for(region_dir, msharefs), str(SIZE), msharefs, flags)
    assert out == {"errno": 12}
    assert "answered ENOMEM" in err and "huge_pages=on cannot start" in err


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
