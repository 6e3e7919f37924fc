"""Human-readable sizes and addresses: ``512G``, ``64M``, ``0x7e8000000000``.

Units are binary (K = 1024), because region sizes are multiples of powers of two
and ``512G`` should mean the 549755813888-byte alignment unit, not 512e9.
"""

from __future__ import annotations

import re

from .errors import SizeSyntaxError

__all__ = ["format_address", "format_bytes", "format_size", "parse_address", "parse_size"]

_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50, "E": 60}
_SIZE_RE = re.compile(r"(?P<num>[0-9]+)(?P<unit>[KMGTPE]?)(?:I?B)?", re.IGNORECASE)
_U64_MAX = (1 << 64) - 1


def _parse_int(text: str) -> int | None:
    """Parse ``0x``-hex or plain decimal, or return None if it is neither."""
    t = text.strip().replace("_", "")
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", t):
        return int(t, 16)
    if re.fullmatch(r"[0-9]+", t):
        return int(t, 10)
    return None


def _check_range(value: int, text: str, what: str) -> int:
    if value > _U64_MAX:
        raise SizeSyntaxError(f"{what} {text!r} does not fit in 64 bits")
    return value


def parse_size(text: str) -> int:
    """Parse ``"512G"``, ``"64MiB"``, ``"1t"``, ``"4096"`` or ``"0x1000"`` into bytes."""
    value = _parse_int(text)
    if value is None:
        m = _SIZE_RE.fullmatch(text.strip().replace("_", ""))
        if m is None:
            raise SizeSyntaxError(
                f"size {text!r} is not a number with an optional unit K, M, G, T, P or E "
                "(binary: 1K = 1024), e.g. 512G"
            )
        value = int(m["num"]) << _UNITS[m["unit"].upper()]
    return _check_range(value, text, "size")


def parse_address(text: str) -> int:
    """Parse an address given as ``0x``-prefixed hex or as decimal."""
    value = _parse_int(text)
    if value is None:
        raise SizeSyntaxError(f"address {text!r} is neither 0x-prefixed hex nor decimal")
    return _check_range(value, text, "address")


def format_size(n: int) -> str:
    """Shortest exact form: ``549755813888`` -> ``"512G"``, ``1000`` -> ``"1000"``."""
    if n < 0:
        raise ValueError(f"size {n} is negative")
    for unit, shift in sorted(_UNITS.items(), key=lambda kv: -kv[1]):
        if shift and n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def format_bytes(n: int) -> str:
    """An amount rounded for people, as ``ls -h`` shows it: ``1.5M``, ``16M``, ``512``.

    One decimal below 10 units, none above; :func:`format_size` is the exact form.
    """
    if n < 0:
        raise ValueError(f"size {n} is negative")
    for unit, shift in sorted(_UNITS.items(), key=lambda kv: -kv[1]):
        if shift and n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.1f}{unit}" if round(value, 1) < 10 else f"{value:.0f}{unit}"
    return str(n)


def format_address(addr: int) -> str:
    """An address as the hexadecimal text that ``parse_address`` reads back (``0x7e00...``)."""
    return f"{addr:#x}"
