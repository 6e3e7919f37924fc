"""prepare_tree on a tiny fake tarball: unpack once, re-patch in place, re-unpack when
the source changes or the tree was edited by hand."""
import subprocess
import tarfile
from pathlib import Path

import pytest

from kbuild import cli, patches, source


def make_tarball(path: Path, memory_c: str) -> source.Source:
    top = path.parent / "src" / source.TOP_DIR
    (top / "mm").mkdir(parents=True, exist_ok=True)
    (top / "mm" / "memory.c").write_text(memory_c)
    (top / "mm" / "Kconfig").write_text("config ZSWAP\n\tbool\n")
    with tarfile.open(path, "w:xz") as tf:
        tf.add(top, arcname=source.TOP_DIR)
    return source.Source(path, "test", memory_c)  # sha stands in for the real one


def patch_adding_mshare(pdir: Path) -> list[patches.Patch]:
    pdir.mkdir(exist_ok=True)
    (pdir / "0001-mm-add-MSHARE.patch").write_text(
        "--- a/mm/Kconfig\n+++ b/mm/Kconfig\n@@ -1,2 +1,5 @@\n config ZSWAP\n \tbool\n"
        "+\n+config MSHARE\n+\tbool \"msharefs\"\n")
    (pdir / "series").write_text("0001-mm-add-MSHARE.patch\n")
    return patches.read_series(pdir)


def test_prepare_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tarball(tmp_path / "a.tar.xz", "v1\n")
    work = tmp_path / "trees" / "debug"
    tree = cli.prepare_tree(work, src, [])
    assert (tree / "mm" / "memory.c").read_text() == "v1\n"
    assert not cli.choose_fragments(tree, "debug", True)[1]  # no MSHARE yet

    # The series arrives: applied in place, the build products (here: a marker) survive.
    (tree / "mm" / "memory.o").write_text("object")
    series = patch_adding_mshare(tmp_path / "patches")
    tree = cli.prepare_tree(work, src, series)
    assert (tree / "mm" / "memory.o").exists()
    frags, applied = cli.choose_fragments(tree, "debug", True)
    assert applied and [f.name for f in frags] == ["base", "mshare", "debug"]
    assert [f.name for f in cli.choose_fragments(tree, "debug", False)[0]] == ["base", "debug"]

    # A hand edit to a patched file: reversing fails, so the tree is unpacked afresh.
    (tree / "mm" / "Kconfig").write_text("hand edit\n")
    tree = cli.prepare_tree(work, src, [])
    assert (tree / "mm" / "Kconfig").read_text() == "config ZSWAP\n\tbool\n"

    # A new source version: a fresh unpack (the old objects go with the old source).
    (tree / "mm" / "memory.o").write_text("object")
    src2 = make_tarball(tmp_path / "b.tar.xz", "v2\n")
    tree = cli.prepare_tree(work, src2, series)
    assert (tree / "mm" / "memory.c").read_text() == "v2\n"
    assert not (tree / "mm" / "memory.o").exists()
    assert cli.kconfig.tree_defines(tree, "CONFIG_MSHARE")


def test_bad_patch_fails_naming_it(tmp_path: Path) -> None:
    src = make_tarball(tmp_path / "a.tar.xz", "v1\n")
    pdir = tmp_path / "patches"
    pdir.mkdir()
    (pdir / "0002-broken.patch").write_text(
        "--- a/mm/memory.c\n+++ b/mm/memory.c\n@@ -1 +1 @@\n-not there\n+x\n")
    (pdir / "series").write_text("0002-broken.patch\n")
    with pytest.raises(patches.PatchError, match="0002-broken.patch"):
        cli.prepare_tree(tmp_path / "w", src, patches.read_series(pdir))


def test_sha_is_remembered_by_mtime(tmp_path: Path) -> None:
    f = tmp_path / "t"
    f.write_bytes(b"abc")
    memo = tmp_path / "memo.json"
    want = subprocess.run(["sha256sum", str(f)], capture_output=True, text=True,
                          check=True).stdout.split()[0]
    assert source.file_sha256(f, memo) == want
    assert want in memo.read_text()
    f.write_bytes(b"abcd")  # new size: recomputed, not served from the memo
    assert source.file_sha256(f, memo) != want
