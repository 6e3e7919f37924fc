"""Finding, mounting and reading msharefs, against fake /proc files and a fake mount."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _hosthelp import FAKE_ALIGN

from libmshare import fs
from libmshare.errors import (
    MshareInfoError,
    MsharePermissionError,
    NotMountedError,
    NotSupportedError,
    RegionNotFoundError,
)


@pytest.fixture
def proc_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    filesystems, mounts = tmp_path / "filesystems", tmp_path / "mounts"
    monkeypatch.setattr(fs, "_PROC_FILESYSTEMS", str(filesystems))
    monkeypatch.setattr(fs, "_PROC_MOUNTS", str(mounts))
    monkeypatch.delenv(fs.FAKE_MOUNT_ENV, raising=False)
    monkeypatch.setattr(fs, "_verified", {})
    monkeypatch.setattr(fs, "_alignments", {})
    return filesystems, mounts


def test_kernel_supports_reads_proc_filesystems(proc_files: tuple[Path, Path]) -> None:
    filesystems, _ = proc_files
    assert fs.kernel_supports() is False  # file missing: never raises
    filesystems.write_text("nodev\tsysfs\nnodev\ttmpfs\n\text4\n")
    assert fs.kernel_supports() is False
    filesystems.write_text("nodev\tsysfs\nnodev\tmsharefs\n\text4\n")
    assert fs.kernel_supports() is True
    filesystems.write_text("nodev\tmsharefsx\n")
    assert fs.kernel_supports() is False


def test_kernel_supports_on_this_host_never_raises() -> None:
    with open("/proc/filesystems") as f:
        listed = "msharefs" in f.read().split()
    assert fs.kernel_supports() is listed


def test_mount_table_unescapes_and_splits_options(proc_files: tuple[Path, Path]) -> None:
    _, mounts = proc_files
    assert fs.mount_table() == []  # file missing: never raises
    mounts.write_text("tmp\\040fs /mnt/a\\011b tmpfs rw,size=4k,mode=1777 0 0\n")
    assert fs.mount_table() == [
        fs.MountEntry("tmp fs", "/mnt/a\tb", "tmpfs", ("rw", "size=4k", "mode=1777"))]


def test_find_mounts_parses_escapes_and_prefers_default(proc_files: tuple[Path, Path]) -> None:
    _, mounts = proc_files
    assert fs.find_mounts() == [] and fs.find_mount() is None
    mounts.write_text(
        "proc /proc proc rw 0 0\n"
        "msharefs /mnt/a\\040b msharefs rw,relatime 0 0\n"
        "msharefs /sys/fs/mshare msharefs rw,relatime 0 0\n"
    )
    assert fs.find_mounts() == ["/mnt/a b", "/sys/fs/mshare"]
    assert fs.find_mount() == "/sys/fs/mshare"
    mounts.write_text("msharefs /mnt/a\\040b msharefs rw 0 0\n")
    assert fs.find_mount() == "/mnt/a b"


def test_fake_mount_env_wins(fake_mount: Path) -> None:
    assert fs.find_mount() == str(fake_mount)
    assert fs.ensure_mounted() == str(fake_mount)
    assert fs.resolve_mount() == fs.Mount(str(fake_mount), emulated=True)
    assert fs.alignment() == FAKE_ALIGN


@pytest.mark.parametrize(
    ("text", "value"),
    [("549755813888\n", 1 << 39), (b"4096\n", 4096), ("2097152\n", 2 << 20)],
)
def test_parse_mshare_info(text: str | bytes, value: int) -> None:
    assert fs.parse_mshare_info(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "\n", "549755813888", "549755813888\n\n", " 4096\n", "4096 \n", "+4096\n", "0\n",
     "04096\n", "3000\n", "2048\n", "0x1000\n", "4096\r\n", "１２\n", b"\xff\n",
     str(1 << 64) + "\n"],
)
def test_parse_mshare_info_rejects_and_quotes(text: str | bytes) -> None:
    with pytest.raises(MshareInfoError, match="mshare_info") as exc:
        fs.parse_mshare_info(text)
    assert isinstance(exc.value, ValueError)
    if text.strip():
        shown = text.encode("ascii", "replace") if isinstance(text, str) else text
        assert repr(shown.rstrip(b"\n"))[2:-1] in str(exc.value)


def test_alignment_errors(fake_mount: Path) -> None:
    (fake_mount / "mshare_info").write_text("12345\n")
    with pytest.raises(MshareInfoError, match="12345"):
        fs.alignment()
    (fake_mount / "mshare_info").unlink()
    with pytest.raises(RegionNotFoundError, match="mshare_info"):
        fs.alignment()


def test_resolve_mount_refuses_non_msharefs(
    proc_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(NotSupportedError, match=os.uname().release) as exc:
        fs.resolve_mount(str(tmp_path))
    assert "CONFIG_MSHARE" in str(exc.value)
    monkeypatch.setattr(fs, "kernel_supports", lambda: True)
    with pytest.raises(NotMountedError, match="mshare mount") as nm:
        fs.resolve_mount(str(tmp_path))
    assert nm.value.filename == str(tmp_path)
    with pytest.raises(NotMountedError):
        fs.resolve_mount()  # nothing mounted anywhere
    _, mounts = proc_files
    mounts.write_text(f"msharefs {tmp_path} msharefs rw 0 0\n")
    assert fs.resolve_mount(str(tmp_path)) == fs.Mount(str(tmp_path))


def test_mount_without_kernel_support(proc_files: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(NotSupportedError, match="no msharefs"):
        fs.mount(str(tmp_path))


def test_mount_already_mounted_is_a_no_op(proc_files: tuple[Path, Path], tmp_path: Path) -> None:
    _, mounts = proc_files
    mounts.write_text(f"msharefs {tmp_path} msharefs rw 0 0\n")
    assert fs.mount(str(tmp_path)) == str(tmp_path)


def test_mount_reaches_the_kernel(
    proc_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Pretend the kernel lists msharefs: the real mount(2) then answers.
    if os.geteuid() != 0:
        pytest.skip("as non-root the kernel answers EPERM; see the next test")
    if fs.kernel_supports():
        # The mount would succeed and outlive the test (msharefs has one superblock).
        pytest.skip("this kernel has msharefs")
    monkeypatch.setattr(fs, "kernel_supports", lambda: True)
    with pytest.raises(NotSupportedError) as exc:  # ENODEV: unknown file system type
        fs.mount(str(tmp_path))
    assert exc.value.errno == 19


def test_mount_without_cap_sys_admin_says_so(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "from libmshare import fs\n"
        "from libmshare.errors import MsharePermissionError\n"
        "fs.kernel_supports = lambda: True\n"
        "if os.geteuid() == 0:\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        "    fs.mount(sys.argv[1])\n"
        "except MsharePermissionError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, check=True)
    assert "needs CAP_SYS_ADMIN" in out.stdout, out.stderr
    assert str(tmp_path) in out.stdout
    assert issubclass(MsharePermissionError, PermissionError)


@pytest.fixture
def listed_point(
    proc_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[Path, Path]:
    """A directory the (fake) mount table lists as msharefs: (the point, the table)."""
    _, mounts = proc_files
    monkeypatch.setattr(fs, "kernel_supports", lambda: True)
    point = tmp_path / "m"
    point.mkdir()
    mounts.write_text(f"msharefs {point} msharefs rw 0 0\n")
    return point, mounts


def test_verified_mount_is_rechecked_when_its_device_changes(
    listed_point: tuple[Path, Path],
) -> None:
    point, mounts = listed_point
    assert fs.resolve_mount() == fs.Mount(str(point))
    mounts.write_text("")
    # Same device: still the verified mount, no table read needed.
    assert fs.resolve_mount() == fs.Mount(str(point))
    assert fs.resolve_mount(str(point)) == fs.Mount(str(point))
    # "Unmounted": the path now leads to another device; the table is read again.
    point.rmdir()
    point.symlink_to("/proc")
    with pytest.raises(NotMountedError):
        fs.resolve_mount()
    with pytest.raises(NotMountedError):
        fs.resolve_mount(str(point))


def test_alignment_is_read_once_per_verified_mount(
    listed_point: tuple[Path, Path], tmp_path: Path
) -> None:
    point, _ = listed_point
    (point / "mshare_info").write_text(f"{1 << 39}\n")
    assert fs.alignment() == 1 << 39
    (point / "mshare_info").write_text(f"{1 << 30}\n")
    # The same mount (same st_dev): the value read first stands.
    assert fs.alignment() == 1 << 39
    # An unverified path is read every time.
    other = tmp_path / "o"
    other.mkdir()
    (other / "mshare_info").write_text(f"{1 << 30}\n")
    assert fs.read_alignment(str(other)) == 1 << 30
