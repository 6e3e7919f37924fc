"""The public API is consistent: keyword-only mount=, modes in octal and checked, the
umask treated alike by create and mkdir, and help() saying what each name does."""

from __future__ import annotations

import inspect
import os
import stat as _stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _hosthelp import FAKE_ALIGN

import libmshare
from libmshare import Region, addrspace, atomic, cli, errors, fs, region, sizes, stats
from libmshare.errors import MshareValueError

WITH_MOUNT: list[Callable[..., Any]] = [
    libmshare.create, libmshare.attach, libmshare.unlink, libmshare.stat,
    libmshare.list_regions, libmshare.mkdir, libmshare.rmdir, libmshare.alignment,
    Region.create, Region.attach,
]


@pytest.mark.parametrize("func", WITH_MOUNT, ids=lambda f: f.__qualname__)
def test_mount_is_keyword_only(func: Callable[..., Any]) -> None:
    assert inspect.signature(func).parameters["mount"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("func", [libmshare.create, Region.create, libmshare.mkdir],
                         ids=lambda f: f.__qualname__)
def test_mode_default_reads_in_octal(func: Callable[..., Any]) -> None:
    assert repr(inspect.signature(func).parameters["mode"].default) in ("0o600", "0o700")


def test_region_info_shows_mode_in_octal(fake_mount: Path) -> None:
    libmshare.create("m", FAKE_ALIGN, mode=0o640).close()
    info = libmshare.stat("m")
    assert info.mode == 0o640 and "mode=0o640" in repr(info)


@pytest.mark.parametrize("mode", [0o1777, 0o4755, 0o2700, -1, 600, 0o10000])
def test_modes_outside_0o777_are_refused(fake_mount: Path, mode: int) -> None:
    with pytest.raises(MshareValueError, match="outside 0o000..0o777"):
        libmshare.create("m", FAKE_ALIGN, mode=mode)
    with pytest.raises(MshareValueError, match="outside 0o000..0o777"):
        libmshare.mkdir("d", mode)
    assert sorted(p.name for p in fake_mount.iterdir()) == ["mshare_info"]


def test_create_and_mkdir_both_ignore_the_umask(fake_mount: Path) -> None:
    old = os.umask(0o077)
    try:
        libmshare.mkdir("d", 0o755)
        libmshare.create("d/r", FAKE_ALIGN, mode=0o644).close()
    finally:
        os.umask(old)
    assert _stat.S_IMODE(os.stat(fake_mount / "d").st_mode) == 0o755
    assert _stat.S_IMODE(os.stat(fake_mount / "d" / "r").st_mode) == 0o644


def _public(module: Any) -> list[tuple[str, Any]]:
    return [(f"{module.__name__}.{n}", getattr(module, n)) for n in module.__all__]


def _members(cls: type) -> list[tuple[str, Any]]:
    # dir(), not vars(): what a class inherits (AtomicWord.release) is public too.
    members = [(n, inspect.getattr_static(cls, n)) for n in dir(cls)]
    return [(f"{cls.__name__}.{n}", v) for n, v in members
            if not n.startswith("_") and (callable(v) or isinstance(v, property | classmethod))]


PUBLIC = (
    _public(libmshare) + _public(region) + _public(fs) + _public(errors) + _public(sizes)
    + _public(addrspace) + _public(atomic) + _public(stats) + _members(Region)
    + _members(atomic.AtomicWord)
    + _members(atomic.AtomicBuffer) + [("cli.main", cli.main)]
)


@pytest.mark.parametrize("item", PUBLIC, ids=[n for n, _ in PUBLIC])
def test_every_public_name_says_what_it_does(item: tuple[str, Any]) -> None:
    name, obj = item
    if isinstance(obj, str | int | float | tuple):
        return  # constants: documented where they are defined
    doc = inspect.getdoc(obj.fget if isinstance(obj, property) else obj) or ""
    assert len(doc) >= 20, f"{name} has no docstring"
    assert not doc.lower().startswith("same as"), f"{name}: {doc!r}"


def test_package_readme_stands_alone() -> None:
    # It is the PyPI description: no paths outside the package's repository, no links
    # that only resolve in a checkout.
    root = Path(__file__).resolve().parents[2]
    text = (root / "libmshare" / "README.md").read_text()
    assert "../" not in text and "](" not in text
    assert (root / "docs" / "mshare-api.md").is_file()  # where the contract lives instead
