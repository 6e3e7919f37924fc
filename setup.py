"""Builds the C parts of libmshare: the LD_PRELOAD library behind ``mshare run``, and
the cffi extension ``libmshare._atomic_c`` behind ``libmshare.atomic``
(``cffi_modules``: API mode, compiled against this Python).

Everything else is declared in pyproject.toml.  The library is not a Python extension
module (nothing imports it): it is compiled with the system C compiler and its own flags
(no Python include or rpath), as ``libmshare/preload/libmshare_preload.so``, which
``libmshare.run_cmd`` finds.  An editable install (``ci/setup``) builds it in place.
"""

from __future__ import annotations

import os
import shlex
import subprocess

# No type stubs for setuptools here (types-setuptools is not a test dependency).
from setuptools import Extension, setup  # type: ignore[import-untyped,unused-ignore]
from setuptools.command.build_ext import (  # type: ignore[import-untyped,unused-ignore]
    build_ext,
)

PRELOAD = "libmshare.preload.libmshare_preload"
CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-Wformat=2", "-Wshadow", "-fPIC", "-shared"]


class BuildPreload(build_ext):  # type: ignore[misc,unused-ignore]
    def get_ext_filename(self, fullname: str) -> str:
        # Called with the dotted name or only its last part: a plain .so either way.
        if fullname in (PRELOAD, PRELOAD.rpartition(".")[2]):
            return os.path.join(*fullname.split(".")) + ".so"
        return str(super().get_ext_filename(fullname))

    def build_extension(self, ext: Extension) -> None:
        if ext.name != PRELOAD:
            super().build_extension(ext)
            return
        out = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        cc = shlex.split(os.environ.get("CC", "cc"))
        subprocess.run([*cc, *CFLAGS, "-o", out, *ext.sources, "-lpthread"], check=True)


setup(
    ext_modules=[Extension(PRELOAD, sources=["libmshare/preload/mshare_preload.c"])],
    cmdclass={"build_ext": BuildPreload},
    cffi_modules=["libmshare/_atomic_build.py:ffibuilder"],
)
