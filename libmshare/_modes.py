"""File modes of regions and directories: checked, and shown in octal everywhere."""

from __future__ import annotations

import operator

from .errors import MshareValueError

__all__ = ["FileMode", "check_mode"]


class FileMode(int):
    """An ``int`` whose repr is octal (``0o600``), so signatures and reprs read as modes."""

    def __repr__(self) -> str:
        return f"0o{int(self):03o}"

    __str__ = __repr__


def check_mode(mode: int) -> FileMode:
    """``mode`` as a :class:`FileMode`; permission bits only (0 to 0o777).

    setuid, setgid and sticky mean nothing for a region or its directory, and asking
    for them is more likely a decimal typed for octal (``600`` is ``0o1130``).
    """
    if isinstance(mode, bool):
        raise TypeError("mode must be an int such as 0o600, not bool")
    mode = operator.index(mode)
    if not 0 <= mode <= 0o777:
        shown = f"{mode:#o}" if mode >= 0 else str(mode)
        raise MshareValueError(
            f"mode {shown} ({mode}) is outside 0o000..0o777: only permission bits are "
            "allowed (write modes in octal, e.g. 0o640)"
        )
    return FileMode(mode)
