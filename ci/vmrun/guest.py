"""The shell script the guest runs: CMD, then the evidence vm-run checks afterwards.

The guest cannot hand back anything but its console, so the script leaves files in the
scratch directory (the only writable host path it has): CMD's exit status, the whole
dmesg, and the kmemleak report.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

STATUS_FILE = "status"
# /proc/uptime at three points: CMD starts (boot took that long), CMD ended, all done.
UPTIME_FILE = "uptime"
DMESG_FILE = "dmesg.txt"
KMEMLEAK_FILE = "kmemleak.txt"
SCRIPT_FILE = "guest.sh"

# kmemleak reports only objects older than 5 s (MSECS_MIN_AGE) at the time of a scan, so
# an object leaked by the last test needs a scan after that much time has passed.
KMEMLEAK_MIN_AGE_S = 5


@dataclass
class GuestSpec:
    cmd: list[str]
    cwd: Path
    scratch: Path
    repo: Path
    python: str
    env: dict[str, str] = field(default_factory=dict)


def guest_env(spec: GuestSpec) -> dict[str, str]:
    env = {
        # "This is our kernel": the suite turns a missing msharefs into a failure.
        "LIBMSHARE_GUEST": "1",
        "LIBMSHARE_SCRATCH": str(spec.scratch),
        # The guest's PATH finds Debian's /bin/python3, which lacks our packages.
        "LIBMSHARE_PYTHON": spec.python,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPYCACHEPREFIX": str(spec.scratch / "pycache"),
        # The checkout is read-only in the guest: no .pytest_cache there.
        "PYTEST_ADDOPTS": "-p no:cacheprovider",
        "TMPDIR": str(spec.scratch / "tmp"),
    }
    env.update(spec.env)
    return env


def render(spec: GuestSpec) -> str:
    q = shlex.quote
    scratch = spec.scratch
    exports = "\n".join(f"export {k}={q(v)}" for k, v in guest_env(spec).items())
    pybin = str(Path(spec.python).parent)
    return f"""#!/bin/sh
# Written by ci/vm-run; runs inside the guest.
{exports}
export PYTHONPATH={q(str(spec.repo))}${{PYTHONPATH:+:$PYTHONPATH}}
export PATH={q(pybin)}:$PATH
mkdir -p "$TMPDIR"
read up _ < /proc/uptime; echo "cmd_start $up" > {q(str(scratch / UPTIME_FILE))}
cd {q(str(spec.cwd))} || {{ echo "vm-run guest: cannot cd to {spec.cwd}" >&2; exit 126; }}
{" ".join(q(a) for a in spec.cmd)} </dev/null
status=$?
echo "$status" > {q(str(scratch / STATUS_FILE))}
read up _ < /proc/uptime; echo "cmd_end $up" >> {q(str(scratch / UPTIME_FILE))}
# kmemleak (debug flavors) reports only after a scan.
if [ ! -e /sys/kernel/debug/kmemleak ] && grep -qw debugfs /proc/filesystems; then
    mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
fi
if [ -w /sys/kernel/debug/kmemleak ]; then
    echo scan > /sys/kernel/debug/kmemleak
    sleep {KMEMLEAK_MIN_AGE_S}
    echo scan > /sys/kernel/debug/kmemleak
    cat /sys/kernel/debug/kmemleak > {q(str(scratch / KMEMLEAK_FILE))}
fi
# -x (--decode): each line starts with its facility, so the scanner can tell the
# kernel's records from what user space wrote to /dev/kmsg; plain dmesg (busybox) if not.
dmesg -x > {q(str(scratch / DMESG_FILE))} 2>&1 || dmesg > {q(str(scratch / DMESG_FILE))} 2>&1
read up _ < /proc/uptime; echo "done $up" >> {q(str(scratch / UPTIME_FILE))}
sync
exit "$status"
"""


def write(spec: GuestSpec) -> Path:
    path = spec.scratch / SCRIPT_FILE
    path.write_text(render(spec))
    path.chmod(0o755)
    return path


def read_uptimes(text: str) -> dict[str, float]:
    """The guest's /proc/uptime stamps ("cmd_start 33.9" lines) by name."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def timing_line(stamps: dict[str, float]) -> str | None:
    """"boot to CMD 33.9 s, CMD 2.0 s, after CMD (kmemleak scans, dmesg) 25.1 s"."""
    if "cmd_start" not in stamps:
        return None
    parts = [f"boot to CMD {stamps['cmd_start']:.1f} s"]
    if "cmd_end" in stamps:
        parts.append(f"CMD {stamps['cmd_end'] - stamps['cmd_start']:.1f} s")
        if "done" in stamps:
            parts.append(f"after CMD (kmemleak scans, dmesg) {stamps['done'] - stamps['cmd_end']:.1f} s")
    return ", ".join(parts)
