"""Real guest boots through ci/vm-run. Slow (one TCG boot each), so they run only when
LIBMSHARE_VM_KERNEL names a bzImage; ci/run-tests sets it to the debug kernel it built."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from vmrun import status

VM_RUN = Path(__file__).resolve().parents[1] / "vm-run"
KERNEL = os.environ.get("LIBMSHARE_VM_KERNEL")
pytestmark = pytest.mark.skipif(not KERNEL, reason="set LIBMSHARE_VM_KERNEL=bzImage to boot")


def vm_run(*cmd: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(VM_RUN), "--kernel", str(KERNEL),
                           "--timeout", str(timeout), "--", *cmd],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
                          timeout=timeout + 120)


def test_exit_status_comes_back() -> None:
    proc = vm_run("sh", "-c", "echo hello from $(uname -r); exit 3")
    assert proc.returncode == 3, proc.stderr
    assert "hello from 6.12" in proc.stdout
    assert "guest dmesg: " in proc.stderr


def test_splat_in_dmesg_fails_the_run() -> None:
    # /dev/kmsg lets us plant a report in the guest's own dmesg without breaking the kernel.
    proc = vm_run("sh", "-c", "echo 'WARNING: CPU: 0 PID: 1 at mm/fake.c:1 planted+0x0/0x1'"
                              " > /dev/kmsg; exit 0")
    assert proc.returncode == status.SPLAT, proc.stderr
    assert "planted" in proc.stderr


def test_hung_guest_is_killed_at_timeout() -> None:
    proc = vm_run("sleep", "3600", timeout=30)
    assert proc.returncode == status.TIMEOUT, proc.stderr
    assert "TIMEOUT" in proc.stderr
