"""Fault injection over every region operation: failslab and fail_page_alloc, armed with
/proc/thread-self/fail-nth for one system call at a time (or one first touch of a page).

For each operation a small C helper (fail_nth_helper.c, built with the guest's gcc, which
is the host's) sweeps N = 1, 2, ... up to MAX_N: it writes N to fail-nth right before the
call, reads it back right after (0: the Nth injection point was reached and failed), and
stops at the first N that injected nothing.  Every outcome must be success or a clean
errno (a first touch: success or SIGBUS), a failed step must work when done again, and
Shmem and PageTables must come back to their level from before the sweep.  The suite
scans the kernel log of the phase for splats; ci/vm-run adds kmemleak.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import harness
import kapi
import pytest

pytestmark = [
    pytest.mark.serial,
    pytest.mark.needs_config("CONFIG_FAULT_INJECTION", "CONFIG_FAILSLAB",
                             "CONFIG_FAIL_PAGE_ALLOC", "CONFIG_FAULT_INJECTION_DEBUG_FS"),
]

HERE = Path(__file__).resolve().parent
DEBUGFS = Path("/sys/kernel/debug")
MAX_N = 200
OPS = ["create", "establish", "attach", "touch", "unlink", "umount"]
# The errnos an allocation failure may give a system call: nothing else is clean.
CLEAN = {"ENOMEM"}
SHMEM_SLACK_KB = 64
PAGETABLES_SLACK_KB = 32

# debugfs knobs set for the sweep (restored afterwards): GFP_KERNEL allocations are
# skipped by default (ignore-gfp-wait), as are order-0 and highmem page allocations.
KNOBS = {
    "failslab": {"ignore-gfp-wait": "N", "verbose": "0"},
    "fail_page_alloc": {"ignore-gfp-wait": "N", "ignore-gfp-highmem": "N",
                        "min-order": "0", "verbose": "0"},
}


@dataclass
class Sweep:
    op: str
    lines: list[tuple[int, str, int, str]] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)

    @property
    def injected(self) -> list[tuple[int, str, int, str]]:
        return [ln for ln in self.lines if ln[2] == 0]


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("fail-nth") / "fail_nth_helper"
    subprocess.run(["gcc", "-O1", "-Wall", "-o", str(exe), str(HERE / "fail_nth_helper.c")],
                   check=True, timeout=harness.scaled(180))
    return exe


@pytest.fixture(scope="module")
def fault_injection() -> Iterator[None]:
    """failslab and fail_page_alloc set up for fail-nth (debugfs mounted if needed);
    every knob restored afterwards."""
    if not (DEBUGFS / "failslab").is_dir():
        kapi.mount("debugfs", str(DEBUGFS), "debugfs")
    old: dict[Path, str] = {}
    try:
        for attr, knobs in KNOBS.items():
            for knob, value in knobs.items():
                p = DEBUGFS / attr / knob
                old[p] = p.read_text().strip()
                p.write_text(value)
        yield
    finally:
        for p, value in old.items():
            p.write_text(value)


def _baseline() -> dict[str, int]:
    m = kapi.meminfo()
    return {"Shmem": m["Shmem"], "PageTables": m["PageTables"]}


def _settled(before: dict[str, int]) -> dict[str, int]:
    """meminfo once Shmem and PageTables are back within the slack (or after 10 s)."""
    def back() -> bool:
        now = _baseline()
        return now["Shmem"] - before["Shmem"] <= SHMEM_SLACK_KB and \
            now["PageTables"] - before["PageTables"] <= PAGETABLES_SLACK_KB
    harness.wait_until(back, 10, 0.1)
    return _baseline()


def _run(helper: Path, op: str, path: str, arg: int = 0) -> Sweep:
    cmd = [str(helper), op, str(MAX_N), path] + ([f"{arg:x}"] if arg else [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=harness.scaled(240),
                         check=False)
    assert res.returncode == 0, f"{op} helper exit {res.returncode}: {res.stderr}"
    sweep = Sweep(op)
    for ln in res.stdout.splitlines():
        words = ln.split()
        if words[0] == "check":
            sweep.checks.append(ln)
        elif words[0] != "start":
            sweep.lines.append((int(words[0]), words[1], int(words[2]), words[3]))
    return sweep


@pytest.fixture(scope="module", params=OPS)
def sweep(request: pytest.FixtureRequest, helper: Path, fault_injection: None,
          msharefs: str, tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    op: str = request.param
    rs = harness.Regions()
    before = _baseline()
    try:
        if op in ("create", "establish", "unlink"):
            result = _run(helper, op, rs.path(f"fi-{op}"), harness.take_window())
        elif op in ("attach", "touch"):
            r = rs.create()
            r.poke(0, b"fi")
            result = _run(helper, op, r.path)
            assert r.peek(0, 2) == b"fi"
        else:
            target = tmp_path_factory.mktemp("fi-mnt")
            result = _run(helper, op, str(target))
            assert str(target) not in harness.mounts_of_type()
    finally:
        rs.cleanup()
    result.before = before
    result.after = _settled(before)
    return result


def test_fail_nth_sweep_injects_a_failure(sweep: Sweep) -> None:
    """The set-up works: N = 1 reaches an injection point in every operation."""
    assert sweep.lines and sweep.lines[0][2] == 0, \
        f"{sweep.op}: fail-nth 1 injected nothing: {sweep.lines[:3]}"


def test_fail_nth_sweep_ends_before_the_cap(sweep: Sweep) -> None:
    assert sweep.lines[-1][2] != 0, f"{sweep.op}: still injecting at N={MAX_N}"


def test_injected_failure_gives_success_or_clean_error(sweep: Sweep) -> None:
    allowed = {"ok", "sig:BUS"} if sweep.op == "touch" else {"ok"} | CLEAN
    bad = [ln for ln in sweep.injected if ln[1] not in allowed]
    assert not bad, f"{sweep.op}: outcomes other than {sorted(allowed)}: {bad}"


def test_failed_step_works_when_retried(sweep: Sweep) -> None:
    bad = [ln for ln in sweep.lines if ln[3] not in ("-", "ok")]
    assert not bad, f"{sweep.op}: a retry after an injected failure failed: {bad}"


def test_failed_step_leaves_nothing_half_done(sweep: Sweep) -> None:
    assert not sweep.checks, sweep.checks


def test_shmem_back_to_baseline_after_sweep(sweep: Sweep) -> None:
    grew = sweep.after["Shmem"] - sweep.before["Shmem"]
    assert grew <= SHMEM_SLACK_KB, f"{sweep.op}: Shmem {grew} kB above its baseline"


def test_pagetables_back_to_baseline_after_sweep(sweep: Sweep) -> None:
    grew = sweep.after["PageTables"] - sweep.before["PageTables"]
    assert grew <= PAGETABLES_SLACK_KB, f"{sweep.op}: PageTables {grew} kB above its baseline"

