"""The one reader of each LIBMSHARE_* variable the tooling interprets.

Guest-side variables (LIBMSHARE_GUEST, LIBMSHARE_PYTHON, LIBMSHARE_SCRATCH, ...) are set
by ci/vmrun's guest script; the ones here are read on the host or by both sides.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

CACHE = "LIBMSHARE_CACHE"
KVM = "LIBMSHARE_KVM"
BUILD_CACHED_ONLY = "LIBMSHARE_BUILD_CACHED_ONLY"
TIME_SCALE = "LIBMSHARE_TIME_SCALE"
GUEST = "LIBMSHARE_GUEST"
KERNEL_CONFIG = "LIBMSHARE_KERNEL_CONFIG"
KERNEL_IMAGE = "LIBMSHARE_KERNEL_IMAGE"
SCRATCH = "LIBMSHARE_SCRATCH"
PYTHON = "LIBMSHARE_PYTHON"


def cache_root() -> Path:
    """Where builds, trees and VM scratch directories live (default ~/.cache/libmshare)."""
    env = os.environ.get(CACHE)
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "libmshare"


def kvm() -> bool:
    """KVM is opt-in: nested KVM on these machines accepts -accel kvm and then hangs at
    "Decompressing Linux...", so TCG unless LIBMSHARE_KVM=1."""
    return os.environ.get(KVM) == "1"


def build_cached_only() -> bool:
    """Set by ci/fresh-machine's warm run: a cache miss is an error, not a build."""
    return os.environ.get(BUILD_CACHED_ONLY) == "1"


def time_scale() -> float:
    """The factor every guest-side watchdog is stretched by (KASAN under TCG is slow)."""
    return float(os.environ.get(TIME_SCALE) or 1)


def in_guest() -> bool:
    return os.environ.get(GUEST) == "1"


def scratch() -> Path | None:
    """The guest's writable directory on the host (set by ci/vm-run); None elsewhere."""
    value = os.environ.get(SCRATCH)
    return Path(value) if value else None


def scratch_or_tmp() -> Path:
    """Where the guest suite writes: the scratch directory, or one under $TMPDIR."""
    return scratch() or Path(tempfile.gettempdir()) / "libmshare-selftests"


def python() -> str:
    """The interpreter that has our packages (the guest's PATH finds Debian's python3)."""
    return os.environ.get(PYTHON) or sys.executable


def kernel_image() -> str | None:
    """The host path of the bzImage the guest booted (set by ci/vm-run)."""
    return os.environ.get(KERNEL_IMAGE)


def kernel_config() -> Path | None:
    """The running kernel's .config as the host saved it (set by ci/vm-run)."""
    value = os.environ.get(KERNEL_CONFIG)
    return Path(value) if value else None
