"""kbuild.payload: a bzImage whose payload is not the tree's vmlinux.bin is refused."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from kbuild import payload


def _tree(tmp_path: Path, vmlinux: bytes, decompressed: bytes | None) -> Path:
    """A tree whose scripts/extract-vmlinux prints `decompressed` (fails when None)."""
    (tmp_path / "arch/x86/boot/compressed").mkdir(parents=True)
    (tmp_path / payload.VMLINUX_BIN).write_bytes(vmlinux)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "payload").write_bytes(decompressed or b"")
    body = f'cat "{tmp_path / "payload"}"\n' if decompressed is not None else "exit 1\n"
    script = tmp_path / payload.EXTRACT
    script.write_text("#!/bin/sh\n" + body)
    os.chmod(script, 0o755)
    return tmp_path


def test_payload_equal_to_vmlinux_bin_passes(tmp_path: Path) -> None:
    tree = _tree(tmp_path, b"\x7fELF kernel", b"\x7fELF kernel")
    assert len(payload.check(tree, tmp_path / "bzImage")) == 64


def test_payload_with_relocations_after_vmlinux_bin_passes(tmp_path: Path) -> None:
    tree = _tree(tmp_path, b"\x7fELF kernel", b"\x7fELF kernel" + b"RELOCS")
    payload.check(tree, tmp_path / "bzImage")


def test_payload_of_another_kernel_is_refused(tmp_path: Path) -> None:
    tree = _tree(tmp_path, b"\x7fELF kernel B", b"\x7fELF kernel A")
    with pytest.raises(payload.PayloadError, match="stale piggy.o"):
        payload.check(tree, tmp_path / "bzImage")


def test_image_that_does_not_decompress_cannot_be_checked(tmp_path: Path) -> None:
    tree = _tree(tmp_path, b"\x7fELF kernel", None)
    with pytest.raises(payload.CannotCheck, match="could not decompress"):
        payload.check(tree, tmp_path / "bzImage")
