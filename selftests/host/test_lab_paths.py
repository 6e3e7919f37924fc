"""Result files record portable paths (mshare_lab.paths)."""
from __future__ import annotations

from pathlib import Path

import pytest

from mshare_lab import paths


def test_cache_checkout_and_home_paths_are_portable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBMSHARE_CACHE", raising=False)
    cache = Path.home() / ".cache" / "libmshare"
    assert paths.portable(cache / "builds" / "k" / "bzImage") == "~/.cache/libmshare/builds/k/bzImage"
    assert paths.portable(paths.REPO / "bench" / "results") == "./bench/results"
    assert paths.portable(Path.home() / "kernels" / "bzImage") == "~/kernels/bzImage"
    assert paths.portable("/tmp/elsewhere") == "/tmp/elsewhere"


def test_a_cache_set_by_environment_is_named_so(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("LIBMSHARE_CACHE", str(tmp_path))
    assert paths.portable(tmp_path / "builds" / "k") == "$LIBMSHARE_CACHE/builds/k"
    monkeypatch.setenv("LIBMSHARE_KERNEL_IMAGE", str(tmp_path / "builds" / "k" / "bzImage"))
    assert paths.kernel_image() == "$LIBMSHARE_CACHE/builds/k/bzImage"
    monkeypatch.delenv("LIBMSHARE_KERNEL_IMAGE")
    assert paths.kernel_image() is None


def test_scripts_refuse_another_checkouts_packages(tmp_path: Path) -> None:
    from mshare_lab import checkout

    checkout.same_checkout(str(checkout.REPO / "kernel-build" / "build"))  # this one: fine
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "ci").mkdir()
    with pytest.raises(SystemExit) as e:
        checkout.same_checkout(str(tmp_path / "ci" / "vm-run"))
    assert f"not those of {tmp_path}" in str(e.value)
