"""Kconfig fragment parsing and verification.

A fragment is a list of `CONFIG_X=value` and `# CONFIG_X is not set` lines. Later fragments
override earlier ones, as with scripts/kconfig/merge_config.sh. After olddefconfig we check
that every request survived: Kconfig silently drops options whose dependencies are not met,
and a silently missing CONFIG_KASAN or CONFIG_MSHARE would make every later result a lie.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

NOT_SET = "n"

_SET_RE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET_RE = re.compile(r"^#\s*(CONFIG_[A-Za-z0-9_]+) is not set\s*$")


def parse_config_text(text: str) -> dict[str, str]:
    """Map option name -> value ('y', 'm', a number, a quoted string, or 'n' for unset)."""
    options: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if m := _SET_RE.match(line):
            options[m.group(1)] = m.group(2).strip()
        elif m := _UNSET_RE.match(line):
            options[m.group(1)] = NOT_SET
    return options


def parse_config_file(path: Path) -> dict[str, str]:
    return parse_config_text(path.read_text())


def merge_requests(fragments: list[Path]) -> dict[str, str]:
    """What the fragments ask for, in order: the last fragment naming an option wins."""
    merged: dict[str, str] = {}
    for frag in fragments:
        merged.update(parse_config_file(frag))
    return merged


@dataclass(frozen=True)
class Dropped:
    option: str
    wanted: str
    got: str  # 'n' when absent or "is not set"

    def __str__(self) -> str:
        return f"{self.option}: wanted {self.wanted}, got {self.got}"


def find_dropped(requested: dict[str, str], final: dict[str, str]) -> list[Dropped]:
    """Options whose final value differs from the request.

    An option absent from the final .config counts as unset: Kconfig omits options whose
    dependencies are not met at all, which for a request of 'n' is what was asked.
    """
    dropped: list[Dropped] = []
    for option, wanted in requested.items():
        got = final.get(option, NOT_SET)
        if got != wanted:
            dropped.append(Dropped(option, wanted, got))
    return dropped


_KCONFIG_SYMBOL_RE = re.compile(r"^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$", re.MULTILINE)


def tree_defines(tree: Path, symbol: str) -> bool:
    """Whether a kernel tree's Kconfig files under mm/ define `symbol`.

    Used to apply the mshare fragment only once the series adds CONFIG_MSHARE; looking
    under mm/ (where the series puts it) keeps this a few small reads, not a tree walk.
    """
    name = symbol.removeprefix("CONFIG_")
    for kconfig in sorted((tree / "mm").glob("**/Kconfig*")):
        try:
            text = kconfig.read_text(errors="replace")
        except OSError:
            continue
        if name in _KCONFIG_SYMBOL_RE.findall(text):
            return True
    return False
