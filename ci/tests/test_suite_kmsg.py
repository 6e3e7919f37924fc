"""selftests/run's per-phase kernel-log scan keeps each record's facility."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from mshare_lab import dmesg

RUN = Path(__file__).resolve().parents[2] / "selftests" / "run"


def load_run() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("selftests_run", str(RUN))
    spec = importlib.util.spec_from_loader("selftests_run", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    loader.exec_module(mod)
    return mod


def test_record_line_keeps_the_prefix_and_drops_dictionary_lines() -> None:
    rec = "4,812,26172322,-;WARNING: CPU: 0 PID: 1 at mm/x.c:1\n SUBSYSTEM=mm\n"
    assert load_run().record_line(rec) == "4,812,26172322,-;WARNING: CPU: 0 PID: 1 at mm/x.c:1"


def test_user_space_record_is_not_a_splat() -> None:
    # virtme-ng-init writes this through /dev/kmsg: facility user (PRI 12 = 1 * 8 + 4)
    rec = ('12,328,26172322,-;virtme-ng-init: WARNING: failed to run: "ip" link set dev lo'
           ' up (error: No such file or directory (os error 2))')
    assert dmesg.scan_text(load_run().record_line(rec)) == []


def test_kernel_record_is_a_splat() -> None:
    rec = "4,329,26172400,-;WARNING: CPU: 1 PID: 77 at mm/memory.c:1234 zap_pte_range+0x1/0x2"
    findings = dmesg.scan_text(load_run().record_line(rec))
    assert [f.category for f in findings] == ["warning"]
