"""Debian's linux-source-6.12 package: where it is, what version, and unpacking it."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "linux-source-6.12"
TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
TOP_DIR = "linux-source-6.12"  # the tarball's single top-level directory


@dataclass(frozen=True)
class Source:
    tarball: Path
    version: str  # Debian package version, e.g. 6.12.117-1~deb12u1
    sha256: str

    @property
    def ident(self) -> str:
        return f"{PACKAGE}={self.version} sha256={self.sha256}"


def package_version(package: str = PACKAGE) -> str | None:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True, text=True, check=False,
        )
    except FileNotFoundError:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def ensure_installed(tarball: Path = TARBALL) -> None:
    """Install the source package when missing (the issue asks the build to do it itself)."""
    if tarball.is_file():
        return
    if os.geteuid() != 0:
        raise SystemExit(f"{tarball} is missing: install {PACKAGE} (apt-get install {PACKAGE})")
    print(f"kernel-build: installing {PACKAGE}", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-q"], check=True, stdout=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-q", PACKAGE], check=True, stdout=sys.stderr,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def file_sha256(path: Path, memo: Path) -> str:
    """sha256 of a large file, remembered in `memo` by (size, mtime) so warm calls are fast."""
    st = path.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    entry = known.get(str(path))
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
        return str(entry["sha256"])
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    known[str(path)] = {**stamp, "sha256": digest.hexdigest()}
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=1))
    tmp.replace(memo)
    return digest.hexdigest()


def locate(cache_root: Path, tarball: Path = TARBALL) -> Source:
    ensure_installed(tarball)
    version = package_version() or "unknown"
    return Source(tarball, version, file_sha256(tarball, cache_root / "source-sha256.json"))


def timestamp(source: Source) -> str:
    """The tarball's mtime, which dpkg takes from the package: the same on every machine
    with this version, so it can stand in for the build date."""
    mtime = source.tarball.stat().st_mtime
    return time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(mtime))


def unpack(source: Source, dest: Path) -> None:
    """Unpack the pristine tarball so that `dest` is the kernel tree's top directory."""
    if dest.exists():
        shutil.rmtree(dest)
    staging = dest.parent / (dest.name + ".unpacking")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    # tar(1) with xz is much faster than Python's lzma for 150 MB; tarfile is the fallback.
    if shutil.which("tar") and shutil.which("xz"):
        subprocess.run(["tar", "-xJf", str(source.tarball), "-C", str(staging)], check=True)
    else:
        with tarfile.open(source.tarball) as tf:
            tf.extractall(staging, filter="data")
    (staging / TOP_DIR).rename(dest)
    staging.rmdir()
