"""The fake vng the VM runner's host tests boot with.

The fake stands in for QEMU only: the guest script, status file, dmesg scan and exit
status logic are the real ones. `dmesg` and `mount` are stubbed so the host's own kernel
log and debugfs stay out of it.
"""
from collections.abc import Callable
from pathlib import Path

import pytest

from vmrun import vng

FAKE_VNG = """#!/bin/sh
# Fake vng: run the --exec command with stub dmesg/mount first on PATH.
mode={mode}
while [ $# -gt 0 ]; do
    case "$1" in --exec) shift; exec_cmd="$1";; esac
    shift
done
case "$mode" in
    crash) echo "[   3.000000] Kernel panic - not syncing: Attempted to kill init!" >&2
           exit 1;;
    hang) sleep 300;;
esac
PATH={bin}:$PATH sh -c "$exec_cmd"
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mount").write_text("#!/bin/sh\nexit 0\n")
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"")
    monkeypatch.setenv("LIBMSHARE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)

    def setup(mode: str = "run", dmesg: str = "[    0.000000] Linux version 6.12.117\n") -> Path:
        (bin_dir / "dmesg.txt").write_text(dmesg)
        (bin_dir / "dmesg").write_text(f"#!/bin/sh\ncat {bin_dir / 'dmesg.txt'}\n")
        fake_vng = bin_dir / "vng"
        fake_vng.write_text(FAKE_VNG.format(mode=mode, bin=bin_dir))
        for f in bin_dir.iterdir():
            f.chmod(0o755)
        monkeypatch.setattr(vng, "find_vng", lambda: str(fake_vng))
        return kernel
    return setup
