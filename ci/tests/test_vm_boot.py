"""Real guest boots through ci/vm-run. Slow (one TCG boot each), so they run only when
LIBMSHARE_VM_KERNEL names a bzImage; ci/run-tests sets it to the debug kernel it built."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vmrun import status

VM_RUN = Path(__file__).resolve().parents[1] / "vm-run"
KERNEL = os.environ.get("LIBMSHARE_VM_KERNEL")
pytestmark = pytest.mark.skipif(not KERNEL, reason="set LIBMSHARE_VM_KERNEL=bzImage to boot")

# A fresh machine's PATH: not the interpreter's bin directory (a venv's, pyenv's), where
# pip put vng and virtme-run; vng starts virtme-run through the shell (issue 14).
MINIMAL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# virtme-ng-init's message on a root file system without iproute2 (issue 14), which the
# scanner used to take for a kernel warning.
VIRTME_INIT_WARNING = ('virtme-ng-init: WARNING: failed to run: "ip" link set dev lo up '
                       '(error: No such file or directory (os error 2))')


# Generous: a debug guest boots in about 35 s on an idle 2-core host under TCG, but took
# 285 s to reach its command with three other guests beside it.
BOOT_TIMEOUT = 900


def vm_run(*cmd: str, timeout: int = BOOT_TIMEOUT,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(VM_RUN), "--kernel", str(KERNEL),
                           "--timeout", str(timeout), "--", *cmd],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
                          timeout=timeout + 120, env=env)


def findings(stderr: str) -> list[str]:
    """The scanner's findings as vm-run lists them ("  dmesg.txt:12: [bug] ...")."""
    return [ln.strip() for ln in stderr.splitlines()
            if re.match(r"^  (dmesg|kmemleak|console)\.(txt|log):\d+: \[", ln)]


def test_exit_status_comes_back_with_a_minimal_path() -> None:
    proc = vm_run("sh", "-c", "echo hello from $(uname -r); exit 3",
                  env={**os.environ, "PATH": MINIMAL_PATH})
    assert proc.returncode == 3, proc.stderr
    assert "hello from 6.12" in proc.stdout
    assert "guest dmesg: " in proc.stderr
    assert "not found" not in proc.stderr


def test_kernel_report_fails_the_run_user_space_lines_do_not() -> None:
    # User space writes two WARNING lines to /dev/kmsg (facility user); then the kernel
    # prints a line of its own that says "BUG: ": drop_caches logs the writer's comm,
    # which the shell first sets to "BUG: planted". Only the kernel's line is a finding.
    script = (
        "echo 'WARNING: CPU: 0 PID: 1 at mm/fake.c:1 user_planted+0x0/0x1' > /dev/kmsg; "
        f"echo '<4>{VIRTME_INIT_WARNING}' > /dev/kmsg; "
        "printf 'BUG: planted' > /proc/self/comm; "
        "echo 1 > /proc/sys/vm/drop_caches; exit 0")
    proc = vm_run("sh", "-c", script)
    assert proc.returncode == status.SPLAT, proc.stderr
    found = findings(proc.stderr)
    assert len(found) == 1 and "[bug]" in found[0], proc.stderr
    assert "BUG: planted (" in found[0] and "drop_caches" in found[0]
    assert VIRTME_INIT_WARNING in proc.stderr  # listed among the user-space warnings
    assert not any("user_planted" in f or "virtme-ng-init" in f for f in found)


def test_hung_guest_is_killed_at_timeout() -> None:
    proc = vm_run("sleep", "3600", timeout=30)
    assert proc.returncode == status.TIMEOUT, proc.stderr
    assert "TIMEOUT" in proc.stderr
