"""The preload library's answer to MAP_HUGETLB, on the emulated mount (no msharefs).

A child interpreter maps the way PostgreSQL's huge_pages=on/try does:
``mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB, -1, 0)``.
On the emulated mount a huge region is accepted and keeps the file's 4 KiB pages (as
the SDK's ``create(huge=True)`` there); the kernel's side (MSHARE_SET_FLAGS, ENOTTY
before series v6, PMD leaves) is the guest suite's (selftests/mshare/test_pg_preload.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from libmshare import run_cmd

MAP_HUGETLB = 0x40000
SIZE = 4 << 20

CHILD = textwrap.dedent("""
    import json, mmap, sys
    try:
        m = mmap.mmap(-1, int(sys.argv[1]), flags=mmap.MAP_SHARED | int(sys.argv[2]))
    except OSError as e:
        print(json.dumps({"errno": e.errno}))
        sys.exit(0)
    m[0:4] = b"abcd"
    with open("/proc/self/maps") as f:
        maps = [ln.split() for ln in f if " " + sys.argv[3] + "/" in ln]
    print(json.dumps({"maps": maps, "data": m[0:4].decode()}))
""")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's preload, compiled from its source (not an installed copy)."""
    return run_cmd.build_preload(tmp_path_factory.mktemp("preload"))


def map_hugetlb(library: Path, mount: Path, mode: str | None) -> tuple[dict[str, object], str]:
    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(library),
           "LIBMSHARE_FAKE_MOUNT": str(mount), "MSHARE_PRELOAD_THRESHOLD": "1M"}
    if mode is not None:
        env["MSHARE_PRELOAD_HUGETLB"] = mode
    p = subprocess.run([sys.executable, "-c", CHILD, str(SIZE), str(MAP_HUGETLB), str(mount)],
                       env=env, capture_output=True, text=True, check=False, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout), p.stderr


def test_default_moves_a_hugetlb_mapping_to_a_huge_region(library: Path,
                                                           fake_mount: Path) -> None:
    out, err = map_hugetlb(library, fake_mount, None)
    maps = out["maps"]
    assert isinstance(maps, list) and len(maps) == 1, out
    assert maps[0][5].startswith(f"{fake_mount}/anon-") and maps[0][-1] == "(deleted)"
    assert out["data"] == "abcd"
    assert f"mmap({SIZE}, MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB) moved to msharefs region" \
        in err and "huge: 2 MiB pages" in err, err


def test_huge_mode_by_name_moves_it_too(library: Path, fake_mount: Path) -> None:
    out, err = map_hugetlb(library, fake_mount, "huge")
    assert len(out["maps"]) == 1 and "huge: 2 MiB pages" in err  # type: ignore[arg-type]


def test_refuse_answers_enomem(library: Path, fake_mount: Path) -> None:
    out, err = map_hugetlb(library, fake_mount, "refuse")
    assert out == {"errno": 12}
    assert "answered ENOMEM: MSHARE_PRELOAD_HUGETLB=refuse" in err, err
    assert list(fake_mount.iterdir()) == [fake_mount / "mshare_info"]


def test_unknown_mode_is_refuse_with_a_line(library: Path, fake_mount: Path) -> None:
    out, err = map_hugetlb(library, fake_mount, "yes")
    assert out == {"errno": 12}
    assert "MSHARE_PRELOAD_HUGETLB=yes is not huge, refuse or pass: refusing" in err, err


def test_pass_leaves_the_request_to_the_kernel(library: Path, fake_mount: Path) -> None:
    """Whatever the host's hugetlb pool gives (pages, or ENOMEM), no region and no line."""
    out, err = map_hugetlb(library, fake_mount, "pass")
    assert out.get("maps", []) == [] and "mshare-preload" not in err, (out, err)


def test_mshare_run_defaults_to_huge() -> None:
    env = run_cmd.preload_env("/sys/fs/mshare/x", mount="/sys/fs/mshare", base={})
    assert env["MSHARE_PRELOAD_HUGETLB"] == "huge" == run_cmd.HUGETLB_MODES[0]
