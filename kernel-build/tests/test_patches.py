import subprocess
from pathlib import Path

import pytest

from kbuild import patches


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    """A git repo standing in for the kernel, to make real `git format-patch` files."""
    repo = tmp_path / "upstream"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    (repo / "mm").mkdir()
    (repo / "mm" / "memory.c").write_text("int a;\nint b;\nint c;\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    return repo


def commit_patch(repo: Path, out: Path, files: dict[str, str], msg: str) -> Path:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", msg)
    out.mkdir(exist_ok=True)
    name = git(repo, "format-patch", "-1", "-o", str(out)).strip()
    return Path(name)


def pristine(upstream: Path, dest: Path) -> Path:
    dest.mkdir()
    (dest / "mm").mkdir()
    (dest / "mm" / "memory.c").write_text("int a;\nint b;\nint c;\n")
    return dest


def write_series(pdir: Path, names: list[str]) -> None:
    (pdir / "series").write_text("# our series\n" + "\n".join(names) + "\n")


def test_empty_series(tmp_path: Path) -> None:
    assert patches.read_series(tmp_path) == []


def test_series_names_missing_file(tmp_path: Path) -> None:
    (tmp_path / "series").write_text("0001-nope.patch\n")
    with pytest.raises(patches.PatchError, match="0001-nope.patch"):
        patches.read_series(tmp_path)


def test_apply_change_and_reverse(upstream: Path, tmp_path: Path) -> None:
    pdir = tmp_path / "patches"
    p1 = commit_patch(upstream, pdir, {"mm/memory.c": "int a;\nint B;\nint c;\n"}, "one")
    p2 = commit_patch(upstream, pdir, {"mm/mshare.c": "new file\n"}, "two")
    write_series(pdir, [p1.name, p2.name])
    tree = pristine(upstream, tmp_path / "tree")
    log: list[str] = []
    patches.sync(tree, patches.read_series(pdir), log.append)
    assert (tree / "mm/memory.c").read_text() == "int a;\nint B;\nint c;\n"
    assert (tree / "mm/mshare.c").read_text() == "new file\n"

    # Replace only the second patch: the first stays applied, untouched.
    git(upstream, "reset", "-q", "--hard", "HEAD~1")
    p2.unlink()
    p2b = commit_patch(upstream, pdir, {"mm/mshare.c": "new file v2\n"}, "two")
    write_series(pdir, [p1.name, p2b.name])
    mtime_before = (tree / "mm/memory.c").stat().st_mtime_ns
    log.clear()
    patches.sync(tree, patches.read_series(pdir), log.append)
    assert log == [f"reversing {p2.name}", f"applying {p2b.name}"]
    assert (tree / "mm/mshare.c").read_text() == "new file v2\n"
    assert (tree / "mm/memory.c").stat().st_mtime_ns == mtime_before

    # An empty series restores the pristine tree, including removing added files.
    write_series(pdir, [])
    patches.sync(tree, patches.read_series(pdir), log.append)
    assert (tree / "mm/memory.c").read_text() == "int a;\nint b;\nint c;\n"
    assert not (tree / "mm/mshare.c").exists()


def test_failing_patch_is_named(upstream: Path, tmp_path: Path) -> None:
    pdir = tmp_path / "patches"
    p1 = commit_patch(upstream, pdir, {"mm/memory.c": "int a;\nint B;\nint c;\n"}, "one")
    write_series(pdir, [p1.name])
    tree = pristine(upstream, tmp_path / "tree")
    (tree / "mm/memory.c").write_text("something else entirely\n")
    with pytest.raises(patches.PatchError, match=p1.name):
        patches.sync(tree, patches.read_series(pdir), lambda _: None)
    assert patches.applied_shas(tree) == []


def test_tree_edited_behind_our_back(upstream: Path, tmp_path: Path) -> None:
    pdir = tmp_path / "patches"
    p1 = commit_patch(upstream, pdir, {"mm/memory.c": "int a;\nint B;\nint c;\n"}, "one")
    write_series(pdir, [p1.name])
    tree = pristine(upstream, tmp_path / "tree")
    patches.sync(tree, patches.read_series(pdir), lambda _: None)
    (tree / "mm/memory.c").write_text("hand edit\n")
    write_series(pdir, [])
    with pytest.raises(patches.ReverseError):
        patches.sync(tree, patches.read_series(pdir), lambda _: None)


def test_common_prefix() -> None:
    assert patches.common_prefix(["a", "b", "c"], ["a", "b", "x"]) == 2
    assert patches.common_prefix([], ["a"]) == 0
    assert patches.common_prefix(["a"], ["a"]) == 1
