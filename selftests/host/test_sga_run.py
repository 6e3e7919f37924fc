"""examples.sga.run: whole runs on the backends this host has, and their cleanup."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from examples.sga import RunConfig, RunResult, run
from examples.sga.backends import make_backend
from examples.sga.backends.hugetlb import HugetlbBackend
from examples.sga.locks import lock_dir

SIZE = 4 << 20
PAGES = SIZE // 4096


def _leftovers(tag: str) -> list[str]:
    return glob.glob(f"/dev/shm/libmshare-sga-{tag}*") + glob.glob(
        os.path.join(lock_dir(), f"libmshare-sga-{tag}*"))


def _run(backend: str, tag: str, **kw: object) -> RunResult:
    config = RunConfig(backend=backend, servers=3, size=SIZE, duration=0.5,
                       milestones=[1, 2], tag=tag, **kw)  # type: ignore[arg-type]
    return run(config)


def _check_measured(r: RunResult) -> None:
    assert r.skipped is None
    assert r.correct, r.to_json()
    assert r.reads > 0 and r.updates > 0 and r.counted_updates == r.updates
    assert [m.attached for m in r.milestones] == [1, 2, 3]
    assert len(r.touch_faults) == len(r.touch_s) == len(r.vmpte_after_kib) == 3
    assert all(v > 0 for v in r.vmpte_before_kib)
    assert r.pt_after_kib - r.pt_baseline_kib == r.pt_rise_kib


@pytest.mark.parametrize("backend", ["shm", "fork"])
def test_shared_backends_run_correctly_and_fault_on_every_attach(backend: str) -> None:
    tag = f"t{os.getpid()}{backend}"
    r = _run(backend, tag)
    _check_measured(r)
    # Without shared page tables each attacher faults the SGA in again: read faults
    # map up to 16 pages each (fault-around), so at least PAGES/16 faults.
    assert all(f >= PAGES // 16 for f in r.touch_faults)
    assert _leftovers(tag) == []


def test_emulated_mshare_runs_through_libmshare(fake_mount: Path) -> None:
    tag = f"t{os.getpid()}m"
    r = _run("mshare", tag)
    _check_measured(r)
    assert "EMULATED" in r.label
    assert [p.name for p in fake_mount.iterdir()] == ["mshare_info"]


def test_hugetlb_without_free_pages_is_skipped_with_a_reason() -> None:
    backend = HugetlbBackend("probe")
    reason = backend.unavailable(SIZE)
    if reason is None:
        pytest.skip("this host has free huge pages")
    r = _run("hugetlb", f"t{os.getpid()}h")
    assert r.skipped == reason and "huge pages" in reason


def test_mshare_on_a_kernel_without_msharefs_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    import libmshare

    if libmshare.kernel_supports():
        pytest.skip("this kernel has msharefs")
    monkeypatch.delenv("LIBMSHARE_FAKE_MOUNT", raising=False)
    r = _run("mshare", f"t{os.getpid()}n")
    assert r.skipped is not None and "msharefs" in r.skipped


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("sysv", "x")


def test_a_failed_run_stops_its_servers_and_removes_its_names(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.sga import instance

    pids: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            pids.append(pid)
        return pid

    def boom() -> int:
        # By now the servers run and the SGA exists: the worst moment to fail.
        assert glob.glob(f"/dev/shm/libmshare-sga-{tag}")
        raise RuntimeError("reading PageTables failed")

    monkeypatch.setattr(instance.os, "fork", fork)
    monkeypatch.setattr(instance, "page_tables_kib", boom)
    tag = f"t{os.getpid()}f"
    with pytest.raises(RuntimeError, match="PageTables failed"):
        _run("shm", tag)
    assert _leftovers(tag) == []
    assert len(pids) == 3
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped already


def test_result_json_round_trip() -> None:
    r = _run("fork", f"t{os.getpid()}j")
    data = r.to_json()
    assert data["correct"] is True and data["ops"] == r.ops
    again = RunResult.from_json(data)
    assert again.milestones == r.milestones and again.pt_rise_kib == r.pt_rise_kib
