from pathlib import Path

import pytest
from vmrun import dmesg

DATA = Path(__file__).parent / "data"


def splat_blocks() -> list[tuple[str, str]]:
    text = "\n".join(l for l in (DATA / "splats.txt").read_text().splitlines()
                     if not l.startswith("#"))
    blocks = []
    for raw in text.split("%%%%%\n"):
        lines = raw.strip("\n").splitlines()
        blocks.append((lines[0].strip(), "\n".join(lines[1:])))
    return blocks


@pytest.mark.parametrize("category,block", splat_blocks(),
                         ids=[f"{i}-{c}" for i, (c, _) in enumerate(splat_blocks())])
def test_splat_is_found(category: str, block: str) -> None:
    findings = dmesg.scan_text(block)
    assert findings, f"missed a {category} report"
    assert findings[0].category == category


def test_benign_lines_are_not_splats() -> None:
    assert dmesg.scan_text((DATA / "benign.txt").read_text()) == []


@pytest.mark.parametrize("log", sorted(DATA.glob("boot-*.txt")), ids=lambda p: p.name)
def test_real_clean_boot_logs(log: Path) -> None:
    """Whole dmesg of real guest boots of each flavor we build, which ran a clean command."""
    assert dmesg.scan_text(log.read_text()) == []


def test_real_boot_logs_exist() -> None:
    # Guard against the parametrized test above silently running on nothing.
    assert {p.name for p in DATA.glob("boot-*.txt")} >= {"boot-release.txt", "boot-debug.txt"}


def test_splat_inside_clean_boot_log_is_found() -> None:
    clean = (DATA / "boot-debug.txt").read_text().splitlines()
    injected = clean[:50] + ["[  99.0] WARNING: CPU: 0 PID: 1 at mm/mshare.c:10 f+0x1/0x2"] + clean[50:]
    findings = dmesg.scan_text("\n".join(injected))
    assert [(f.line_no, f.category) for f in findings] == [(51, "warning")]


def test_context_follows_the_report() -> None:
    text = "a\nWARNING: CPU: 0 PID: 1 at x\nRIP: y\nCall Trace:\nz\n"
    f = dmesg.scan_text(text)[0]
    assert dmesg.context(text, f, after=2) == ["WARNING: CPU: 0 PID: 1 at x", "RIP: y",
                                               "Call Trace:"]


def test_scan_files_names_source(tmp_path: Path) -> None:
    (tmp_path / "kmemleak.txt").write_text("unreferenced object 0xffff8881 (size 64):\n")
    (tmp_path / "dmesg.txt").write_text("[ 1.0] all fine\n")
    found = dmesg.scan_files([tmp_path / "dmesg.txt", tmp_path / "kmemleak.txt",
                              tmp_path / "missing.txt"])
    assert [str(f) for f in found] == [
        "kmemleak.txt:1: [kmemleak] unreferenced object 0xffff8881 (size 64):"]
