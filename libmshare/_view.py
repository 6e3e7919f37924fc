"""A handle's window on a mapping: a memoryview that can never outlive the memory.

Python 3.11 has no pure-Python hook for buffer release (PEP 688 came in 3.12), and
slices of a memoryview outlive ``release()`` of their parent.  So, like ``mmap.mmap``,
:meth:`MappedView.close` refuses with ``BufferError`` while anything could still reach
the memory.  How it knows, with documented interfaces only:

* ``buf`` comes from ``PyMemoryView_FromMemory`` (:mod:`libmshare._pyapi`): it has no
  exporting object, so every view of the memory derives from ``buf`` (slices, ``cast``,
  ``toreadonly``, ``memoryview(buf)``) and holds a reference to ``buf``'s one
  ``managedbuffer`` (``gc.get_referents(buf)``).
* That object's reference count (``sys.getrefcount``) therefore counts the derived
  views.  Released views still hold their reference until they are dropped; they are
  found with ``gc.get_referrers`` and not counted.  A view the collector cannot see
  (after ``gc.freeze()``) still counts: the answer errs only towards refusing.
* Consumers of ``buf``'s own buffer (``numpy.frombuffer(buf)``, ctypes ``from_buffer``)
  make ``buf.release()`` raise ``BufferError``.

A handle dropped without ``close()`` while views of it are alive is kept aside, and
its mapping stays, until a sweep finds them gone; sweeps run after every garbage
collection and on every close.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from . import _mapping
from ._pyapi import memory_view
from .errors import RegionClosedError

__all__ = ["MappedView", "sweep"]


def _released(view: memoryview) -> bool:
    try:
        view.nbytes  # noqa: B018
    except ValueError:
        return True
    return False


def other_views(view: memoryview) -> int:
    """Live memoryviews that share ``view``'s managedbuffer, ``view`` itself excluded."""
    (mbuf,) = gc.get_referents(view)
    # getrefcount's argument, the name mbuf and view itself hold one reference each.
    n = sys.getrefcount(mbuf) - 3
    if n > 0:
        n -= sum(
            1 for r in gc.get_referrers(mbuf)
            if r is not view and isinstance(r, memoryview) and _released(r)
        )
    return n


class MappedView:
    """One handle on a :class:`~libmshare._mapping.FixedMapping`, with its own ``buf``."""

    def __init__(self, mapping: _mapping.FixedMapping, *, readonly: bool) -> None:
        self.mapping = mapping
        self.start = mapping.start
        self.size = mapping.size
        self.readonly = readonly or mapping.readonly
        self._view: memoryview | None = memory_view(
            mapping.start, mapping.size, readonly=self.readonly)

    @property
    def closed(self) -> bool:
        return self._view is None

    @property
    def buf(self) -> memoryview:
        if self._view is None:
            raise RegionClosedError(
                f"region at {self.start:#x} is closed; its memory is no longer mapped here"
            )
        return self._view

    def exports(self) -> int:
        """How many views other than ``buf`` itself can reach the memory."""
        return 0 if self._view is None else other_views(self._view)

    def close(self) -> None:
        """Let go of the mapping.  ``BufferError`` (nothing changed) while views live."""
        view = self._view
        if view is None:
            return
        n = other_views(view)
        if n:
            raise BufferError(
                f"cannot close the region at {self.start:#x}: {n} exported view(s) or "
                "slice(s) of its memory still exist; release or delete them first"
            )
        try:
            view.release()
        except BufferError:
            raise BufferError(
                f"cannot close the region at {self.start:#x}: a consumer (numpy, ctypes "
                "from_buffer, PickleBuffer, ...) holds its buf; drop that first"
            ) from None
        self._view = None
        if other_views(view):
            # Another thread sliced buf between the count and the release.
            _orphans.append((view, self.mapping))
        else:
            _mapping.release(self.mapping)
        sweep()

    def __del__(self) -> None:
        self.abandon()

    def abandon(self) -> None:
        """The handle was dropped unclosed: let go now, or once its views are gone."""
        view, self._view = getattr(self, "_view", None), None
        if view is None or sys.is_finalizing():
            return  # at exit the process unmaps everything itself
        _orphans.append((view, self.mapping))
        sweep()


_orphans: list[tuple[memoryview, _mapping.FixedMapping]] = []
_sweeping = False


def sweep() -> None:
    """Let go of the mappings of dropped handles whose views are all gone."""
    global _sweeping
    if _sweeping or not _orphans:
        return
    _sweeping = True
    try:
        for item in list(_orphans):
            view, mapping = item
            # Held by the item, the name view and getrefcount's argument: anything
            # more is a caller still holding buf itself.
            if sys.getrefcount(view) > 3 or other_views(view):
                continue
            try:
                view.release()
            except BufferError:
                continue  # a consumer still holds buf's own buffer
            _orphans.remove(item)
            _mapping.release(mapping)
    finally:
        _sweeping = False


def _after_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop":
        sweep()


gc.callbacks.append(_after_collection)
