from pathlib import Path

import pytest

from mshare_lab import dmesg

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


# What virtme-ng-init logged on a fresh Debian 12 root file system without iproute2
# (issue 14): a user-space line that says WARNING, which the scanner took for a kernel
# splat. Kept exactly as it appeared in the guest's plain dmesg.
VIRTME_INIT_LINE = ('[   26.172322] virtme-ng-init: WARNING: failed to run: "ip" link set dev lo'
                    ' up (error: No such file or directory (os error 2))')


def test_user_space_warning_is_not_a_splat_by_its_facility() -> None:
    # dmesg -x (the guest script's format) and /dev/kmsg's record (PRI 12 = user.warn)
    # both say where the line came from: user space, whatever the text.
    decoded = f"user  :warn  : {VIRTME_INIT_LINE}"
    kmsg = "12,1234,26172322,-;" + VIRTME_INIT_LINE.split("] ", 1)[1]
    assert dmesg.scan_text(f"{decoded}\n{kmsg}\n") == []
    assert dmesg.user_space_warnings(f"{decoded}\n{kmsg}\n") == [decoded, kmsg]


def test_same_text_from_the_kernel_is_a_splat() -> None:
    """The facility decides, not the words: the kernel's own record of the same text,
    or a line that carries no facility at all, is reported."""
    for line in (f"kern  :warn  : {VIRTME_INIT_LINE}",
                 "4,1234,26172322,-;" + VIRTME_INIT_LINE.split("] ", 1)[1],
                 VIRTME_INIT_LINE):
        assert [f.category for f in dmesg.scan_text(line)] == ["warning"], line


def test_parse_line_formats() -> None:
    assert dmesg.parse_line("kern  :err   : [    1.5] BUG: x") == dmesg.Record(
        "kern", "err", "[    1.5] BUG: x")
    assert dmesg.parse_line("daemon:info  : [    9.0] systemd-udevd[90]: x") == dmesg.Record(
        "daemon", "info", "[    9.0] systemd-udevd[90]: x")
    # PRI 14 = user (1) * 8 + info (6)
    assert dmesg.parse_line("14,7,100,-;hello") == dmesg.Record("user", "info", "hello")
    assert dmesg.parse_line("[    1.0] plain") == dmesg.Record(None, None, "[    1.0] plain")
    # Only real facility and level names count as a prefix.
    assert dmesg.parse_line("foo:bar: WARNING: x").facility is None


def test_every_splat_in_decoded_form_is_found() -> None:
    """The splat blocks, as dmesg -x shows a kernel record, are all still found."""
    for category, block in splat_blocks():
        decoded = "\n".join(f"kern  :warn  : {line}" for line in block.splitlines())
        findings = dmesg.scan_text(decoded)
        assert findings and findings[0].category == category, block


@pytest.mark.parametrize("log", sorted(DATA.glob("boot-*.txt")), ids=lambda p: p.name)
def test_clean_boot_in_decoded_form_is_clean(log: Path) -> None:
    decoded = "\n".join(f"kern  :info  : {line}" for line in log.read_text().splitlines())
    assert dmesg.scan_text(decoded) == []
