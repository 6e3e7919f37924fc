"""bench/flushcost/mapper.c, the n1000 plan's sharer: built and run here against an
ordinary file whose first 16 bytes play struct mshare_info."""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "bench" / "flushcost" / "mapper.c"
START = 0x7E0000000000  # far above anything this process maps
SIZE = 1 << 20

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def mapper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("mapper") / "mapper"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(exe), str(SRC)], check=True)
    return exe


def _region(tmp_path: Path, size: int = SIZE) -> Path:
    """The header, then a 1 at the start of every page after the first."""
    data = bytearray(SIZE)
    data[:16] = struct.pack("QQ", START, size)
    data[4096::4096] = bytes([1]) * (SIZE // 4096 - 1)
    f = tmp_path / "region"
    f.write_bytes(data)
    return f


def test_mapper_reads_every_page_after_its_go_line_and_exits_when_stdin_closes(
        mapper: Path, tmp_path: Path) -> None:
    p = subprocess.Popen([str(mapper), str(_region(tmp_path)), str(SIZE), "-1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate("go\n", timeout=30)
    faults, ns, total = (int(x) for x in out.split())
    assert total == SIZE // 4096 - 1  # every page's first byte (page 0's is START's, 0)
    assert 1 <= faults <= SIZE // 4096 and ns > 0
    assert p.returncode == 0


def test_mapper_refuses_a_region_smaller_than_nbytes(mapper: Path, tmp_path: Path) -> None:
    p = subprocess.run([str(mapper), str(_region(tmp_path, SIZE // 2)), str(SIZE), "-1"],
                       input="go\n", capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 1
    assert f"region is {SIZE // 2} bytes" in p.stderr


def test_mapper_that_never_gets_its_go_line_exits_0_without_mapping(
        mapper: Path, tmp_path: Path) -> None:
    p = subprocess.run([str(mapper), str(tmp_path / "absent"), str(SIZE), "-1"],
                       input="", capture_output=True, text=True, timeout=30, check=False)
    assert (p.returncode, p.stdout) == (0, "")
