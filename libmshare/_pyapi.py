"""The binding layer to CPython's own C API: a memoryview over raw memory.

``PyMemoryView_FromMemory`` is part of the stable ABI (3.3+).  The view it returns has
no exporting object (``obj`` is None) and honours the flag it is given, so a read-only
view offers nothing through which the memory could be written, unlike a ctypes array
laid over it (which is always writable and would crash on a PROT_READ page).
"""

from __future__ import annotations

import ctypes

__all__ = ["memory_view"]

# <Include/pybuffer.h>
_PyBUF_READ = 0x100
_PyBUF_WRITE = 0x200

_from_memory = ctypes.pythonapi.PyMemoryView_FromMemory
_from_memory.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int]
_from_memory.restype = ctypes.py_object


def memory_view(addr: int, size: int, *, readonly: bool) -> memoryview:
    """A format ``B`` memoryview of ``size`` bytes at ``addr``, owning nothing.

    The caller keeps the memory mapped for as long as the view or anything derived
    from it is alive (see :mod:`libmshare._view`).
    """
    view = _from_memory(addr, size, _PyBUF_READ if readonly else _PyBUF_WRITE)
    assert isinstance(view, memoryview)
    return view
