"""Fixtures and policy for the guest suite (selftests/mshare).

- On a kernel without msharefs the suite skips with one reason, unless LIBMSHARE_GUEST=1
  (ci/vm-run: "this is our kernel"), where a missing msharefs fails every test.
- msharefs is mounted at /sys/fs/mshare if it is not (once, under a lock shared by the
  xdist workers).
- @pytest.mark.serial: the test reads or changes system-wide state (memory baselines,
  mounts, core_pattern, compaction); selftests/run runs those in a second phase alone.
- @pytest.mark.needs_config("CONFIG_X"): skipped with a "kernel config:" reason when the
  running kernel's /proc/config.gz has the option off (the only skip allowed in the guest).
- @pytest.mark.timeout(seconds): per-test watchdog (SIGALRM), 300 s by default; 0: none.
- Every case is marked with its audience, by module: ``sdk`` (test_sdk_*, the SDK's
  atomics, and any case named test_sdk_*), ``postgresql`` (test_pg_*, futexes), ``contract`` (the rest: what any kernel
  carrying msharefs must pass), so each runs alone (``-m sdk``, or selftests/run -k sdk).
  Every watchdog, here and in harness, is stretched by LIBMSHARE_TIME_SCALE.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from types import FrameType

import harness
import pytest
import sdkgate
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

HERE = Path(__file__).resolve().parent
AUDIENCES = {
    "contract": "the kernel contract: what any kernel carrying msharefs must pass",
    "sdk": "libmshare on the real msharefs",
    "postgresql": "PostgreSQL and its preload library on msharefs",
}
DEFAULT_TIMEOUT = 300
NO_MSHAREFS = ("msharefs is not available in this kernel (no 'msharefs' in "
               "/proc/filesystems): the suite runs in a guest booted from our kernel "
               "through ci/vm-run")

_db = DirectoryBasedExampleDatabase(str(harness.scratch().parent / "hypothesis"))
settings.register_profile(
    "ci", max_examples=20, stateful_step_count=20, deadline=None, database=_db,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True)
settings.register_profile(
    "long", max_examples=10_000, stateful_step_count=40, deadline=None, database=_db,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True)
settings.load_profile("ci")  # --hypothesis-profile=long overrides this


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "serial: system-wide state; runs alone in phase 2")
    config.addinivalue_line("markers", "needs_config(option): kernel config option needed")
    config.addinivalue_line("markers", "timeout(seconds): per-test watchdog")
    for name, what in AUDIENCES.items():
        config.addinivalue_line("markers", f"{name}: {what}")


def _ours(item: pytest.Item) -> bool:
    return HERE in Path(str(item.path)).resolve().parents


def audience(module: str, name: str) -> str:
    """The audience of a case, by its module's name (or its own: test_sdk_*)."""
    if module.startswith("test_sdk_") or module == "test_atomic_region" \
            or name.startswith("test_sdk_"):
        return "sdk"
    if module.startswith("test_pg_") or module == "test_futex":
        return "postgresql"
    return "contract"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _ours(item):
            item.add_marker(audience(Path(str(item.path)).stem, item.name))
    if harness.kernel_has_msharefs() or harness.GUEST:
        return
    skip = pytest.mark.skip(reason=NO_MSHAREFS)
    for item in items:
        if _ours(item):
            item.add_marker(skip)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs_config"):
        for option in mark.args:
            if harness.config_enabled(option) is False:
                pytest.skip(f"kernel config: {option} is not set")


class TestTimeout(Exception):
    pass


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    mark = item.get_closest_marker("timeout")
    seconds = round(harness.scaled(int(mark.args[0]) if mark else DEFAULT_TIMEOUT))
    main = threading.current_thread() is threading.main_thread()
    if main:
        def on_alarm(signum: int, frame: FrameType | None) -> None:
            raise TestTimeout(f"{item.nodeid} ran longer than {seconds} s")
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(seconds)
    try:
        return (yield)
    finally:
        if main:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def msharefs() -> str:
    """The msharefs mount point, mounted if needed; fails in the guest when missing."""
    if not harness.kernel_has_msharefs():
        if harness.GUEST:
            pytest.fail("LIBMSHARE_GUEST=1 but " + NO_MSHAREFS, pytrace=False)
        pytest.skip(NO_MSHAREFS)
    harness.ensure_mounted()
    return harness.MOUNT


@pytest.fixture(autouse=True)
def _needs_msharefs(request: pytest.FixtureRequest) -> None:
    if _ours(request.node):
        request.getfixturevalue("msharefs")


@pytest.fixture
def align(msharefs: str) -> int:
    return harness.alignment()


@pytest.fixture
def sdk_mount() -> str:
    """msharefs mounted through libmshare: the SDK guest tests' gate (sdkgate)."""
    return sdkgate.sdk_mount()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A region name for an SDK test, tagged with its module (test_sdk_cli: "cli")."""
    tag = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_sdk_")
    with sdkgate.region_name(tag) as n:
        yield n


@pytest.fixture
def memcg(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A cgroup v2 group with the memory controller, memory.max unlimited, named for the
    test's module (test_memcg_high: "memcg_high"); cgroup2 mounted if needed."""
    if not harness.memory_controller():
        pytest.skip("kernel config: no memory cgroup controller")
    tag = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with harness.memory_cgroup(tag) as group:
        yield group


@pytest.fixture
def regions(msharefs: str) -> Iterator[harness.Regions]:
    rs = harness.Regions()
    try:
        yield rs
    finally:
        rs.cleanup()


@pytest.fixture
def region(regions: harness.Regions) -> harness.Region:
    """One established single-unit region, created by this process."""
    return regions.create()


@pytest.fixture
def workdir() -> Path:
    d = harness.scratch() / f"t{os.getpid()}"
    d.mkdir(exist_ok=True)
    return d
