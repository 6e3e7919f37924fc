"""Exit statuses of ci/vm-run, and how a run's outcome maps onto them.

Anything not listed here is the guest command's own exit status. A command that itself
exits 124-126 is passed through unchanged; vm-run's stderr says which case it was.
"""
from __future__ import annotations

from dataclasses import dataclass

TIMEOUT = 124  # the guest did not finish within --timeout; QEMU was killed
SPLAT = 125  # the guest's dmesg (or kmemleak) reported a kernel problem
INFRA = 126  # no result: kernel build failed, vng failed, guest crashed or never ran CMD


@dataclass(frozen=True)
class Outcome:
    timed_out: bool
    cmd_status: int | None  # None when the guest never recorded one
    splats: int  # findings of the dmesg scanner


def exit_status(outcome: Outcome) -> int:
    """A timeout beats everything (nothing after it is trustworthy); then a splat, since a
    kernel warning makes a passing command meaningless; then a missing status."""
    if outcome.timed_out:
        return TIMEOUT
    if outcome.splats:
        return SPLAT
    if outcome.cmd_status is None:
        return INFRA
    return outcome.cmd_status


def parse_status_file(text: str) -> int | None:
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if 0 <= value <= 255 else None
