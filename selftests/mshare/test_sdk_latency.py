"""Create + attach + detach latency: libmshare against the same system calls from C.

Guest only (LIBMSHARE_GUEST=1). What is asserted is a ratio, not a time, so the bound does
not depend on how fast the machine is: ROUNDS rounds, each timing C, the SDK with the
start given and the SDK with the start picked (C and the SDK each in a fresh process),
back to back in an order that alternates; each round's SDK/C ratio cancels the host's
load of that moment, and the median over the rounds is held to a bound. The
issue's goal is the SDK within 2x of C; the first measurement (debug kernel, TCG, a host
at load 11) gave 1.42, 1.96 and 2.09 per round, so the goal sits inside the noise there and
SDK_BOUND is 2.5x: a real regression (an extra pass of system calls, a slower path) still
misses it. The numbers go to stdout and to $LIBMSHARE_SCRATCH/sdk-latency.json, which
ci/run-suite --save keeps, so the 2x goal is judged on recorded runs.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import harness
import pytest
import sdkgate

import libmshare
from libmshare import addrspace
from mshare_lab import env, paths

ITERATIONS = 60
# 9, not 5: with 5 the median of the per-round ratios (most runs 2.0-2.4x) read 2.59x once
# at the end of a CI serial phase (2026-12-07; rounds 2.76, 2.74, 2.59, 2.44, 1.75), where
# two boots of this test alone read 2.37x and 1.97x.  With 9 it read 2.63x in the next CI
# run (rounds 1.98-3.25x) with the SDK timed inside the pytest process: the SDK side now
# runs in a fresh process like the C side (sdk_cycle.py), and the order of the three sides
# alternates round by round.  The bound stays.
ROUNDS = 9
SDK_CYCLE = Path(__file__).with_name("sdk_cycle.py")
# See the module docstring. Picking the start (reading /proc/self/maps for a free window)
# is work C does not do: measured 2.8-5.1x C per round, bound 8x.
GOAL = 2.0
SDK_BOUND = 2.5
PICKED_BOUND = 8.0

# Timings mean something only without parallel tests: selftests/run's alone-phase.
pytestmark = pytest.mark.serial

# One cycle, exactly the calls libmshare makes: create (open O_EXCL, fchmod, mmap
# NOREPLACE, close), touch, detach (munmap), attach (open, pread struct, mmap, close),
# read, detach, unlink.
C_SOURCE = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

struct mshare_info { unsigned long start, size; };

static void die(const char *what) { perror(what); exit(1); }

static void cycle(const char *path, unsigned long start, unsigned long size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) die("create");
	if (fchmod(fd, 0600)) die("fchmod");
	char *p = mmap((void *)start, size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	if (p == MAP_FAILED) die("mmap create");
	close(fd);
	p[0] = 1;
	if (munmap(p, size)) die("munmap");

	struct mshare_info info;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) die("attach");
	if (pread(fd, &info, sizeof(info), 0) != sizeof(info)) die("pread");
	p = mmap((void *)info.start, info.size, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	if (p == MAP_FAILED) die("mmap attach");
	close(fd);
	if (p[0] != 1) { fprintf(stderr, "data lost\n"); exit(1); }
	if (munmap(p, info.size)) die("munmap");
	if (unlink(path)) die("unlink");
}

int main(int argc, char **argv)
{
	const char *path = argv[1];
	unsigned long start = strtoul(argv[2], NULL, 0), size = strtoul(argv[3], NULL, 0);
	long n = atol(argv[4]);
	struct timespec t0, t1;

	cycle(path, start, size);	/* untimed, as sdk_cycle.py's first */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++)
		cycle(path, start, size);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.0f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n);
	return 0;
}
"""


@pytest.fixture
def mount() -> str:
    return sdkgate.sdk_mount()


def _compile_c(d: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler in the guest for the C side of the comparison")
    src, exe = d / "cycle.c", d / "cycle"
    src.write_text(C_SOURCE)
    subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True, timeout=harness.scaled(120))
    return exe


def _c_cycle_ns(exe: Path, path: str, start: int, size: int) -> float:
    out = subprocess.run([str(exe), path, hex(start), str(size), str(ITERATIONS)],
                         capture_output=True, text=True, timeout=harness.scaled(600), check=False)
    assert out.returncode == 0, out.stderr
    return float(out.stdout)


def _sdk_cycle_ns(name: str, size: int, start: int, first: str) -> tuple[float, float]:
    """The same cycle through libmshare in a fresh interpreter (see sdk_cycle.py): ns per
    cycle with the start given, then with it picked."""
    out = subprocess.run([sys.executable, str(SDK_CYCLE), name, str(size), hex(start),
                          str(ITERATIONS), first],
                         capture_output=True, text=True, timeout=harness.scaled(600), check=False)
    assert out.returncode == 0, out.stderr
    given, picked = out.stdout.split()
    return float(given), float(picked)


def test_create_attach_detach_latency(mount: str, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"sdk-lat-{os.getpid()}"
    size = libmshare.alignment()
    start = addrspace.find_free_window(size, size)
    assert start is not None
    c_all: list[float] = []
    fixed_all: list[float] = []
    picked_all: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        exe = _compile_c(Path(d))
        # One round first, not kept: the first processes pay the guest's one-time costs
        # (the binaries and modules read into the page cache), and the first kept round
        # read 2.55x where the next two read 2.33x and 2.29x.
        _c_cycle_ns(exe, os.path.join(mount, name), start, size)
        _sdk_cycle_ns(name, size, start, "given")
        for i in range(ROUNDS):
            # The order alternates round by round (C, given, picked; then picked, given,
            # C): a drift of the host's load within a round favours no side.
            if i % 2 == 0:
                c_all.append(_c_cycle_ns(exe, os.path.join(mount, name), start, size))
                given_ns, picked_ns = _sdk_cycle_ns(name, size, start, "given")
            else:
                given_ns, picked_ns = _sdk_cycle_ns(name, size, start, "picked")
                c_all.append(_c_cycle_ns(exe, os.path.join(mount, name), start, size))
            fixed_all.append(given_ns)
            picked_all.append(picked_ns)
    assert min(c_all) > 0 and min(fixed_all) > 0 and min(picked_all) > 0
    given = statistics.median(f / c for f, c in zip(fixed_all, c_all, strict=True))
    picked = statistics.median(p / c for p, c in zip(picked_all, c_all, strict=True))
    record = {
        "cycle": f"create+attach+detach of {size} bytes", "iterations": ITERATIONS,
        "rounds": ROUNDS, "python": sys.version.split()[0],
        "kernel": os.uname().release, "kernel_image": paths.kernel_image(),
        "c_ns": c_all, "sdk_given_start_ns": fixed_all, "sdk_picked_start_ns": picked_all,
        "median_ratio_given": given, "median_ratio_picked": picked,
        "goal": GOAL, "bounds": {"given": SDK_BOUND, "picked": PICKED_BOUND},
    }
    scratch = env.scratch()
    if scratch:
        Path(scratch, "sdk-latency.json").write_text(json.dumps(record, indent=1) + "\n")
    with capsys.disabled():
        print(
            f"\nlibmshare latency, create+attach+detach of {libmshare.format_size(size)}, "
            f"{ROUNDS} rounds of {ITERATIONS} cycles ({sys.implementation.name} "
            f"{sys.version.split()[0]}), us/cycle per round:\n"
            f"  C                 {_us(c_all)}\n"
            f"  SDK, given start  {_us(fixed_all)}  median {given:.2f}x C "
            f"(goal {GOAL}x, bound {SDK_BOUND}x)\n"
            f"  SDK, picked start {_us(picked_all)}  median {picked:.2f}x C "
            f"(bound {PICKED_BOUND}x)"
        )
    assert given <= SDK_BOUND, (
        f"an SDK cycle costs {given:.2f}x the C cycle (median over {ROUNDS} rounds; bound "
        f"{SDK_BOUND}x, goal {GOAL}x): {record}")
    assert picked <= PICKED_BOUND, (
        f"an SDK cycle with a picked start costs {picked:.2f}x the C cycle (median over "
        f"{ROUNDS} rounds; bound {PICKED_BOUND}x): {record}")


def _us(values: list[float]) -> str:
    return "  ".join(f"{v / 1000:9.1f}" for v in values)
