"""Find kernel problem reports ("splats") in a guest's dmesg and kmemleak output.

Patterns match the headers the kernel prints when something went wrong; the allow-list
drops boot banners that merely contain the same words. Both are tested on real boot logs
of every flavor (ci/tests/data/) and on real-looking splats.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# category -> patterns; case-sensitive, since the kernel's own casing tells "BUG:" headers
# from words like "debug" and "kasan: KernelAddressSanitizer initialized".
SPLAT_PATTERNS: dict[str, tuple[str, ...]] = {
    # Specific reports first: "BUG: KASAN: ..." is kasan and "WARNING: possible circular
    # locking ..." is lockdep, not the generic bug/warning they also match.
    "kasan": (r"\bKASAN: ",),
    "ubsan": (r"\bUBSAN: ",),
    "lockdep": (r"possible circular locking dependency", r"possible recursive locking",
                r"suspicious RCU usage", r"inconsistent lock state",
                r"possible irq lock inversion", r"bad unlock balance",
                r"held lock freed", r"lock held when returning to user space",
                r"DEBUG_LOCKS_WARN_ON", r"\bleaked lock\b"),
    "hung_task": (r"blocked for more than \d+ seconds",),
    "lockup": (r"\bsoft lockup\b", r"\bhard LOCKUP\b", r"\bself-detected stall\b",
               r"\bdetected stalls? on CPUs?", r"\bworkqueue lockup\b"),
    "kmemleak": (r"unreferenced object 0x", r"suspected memory leaks?\b"),
    "bug": (r"\bBUG: ", r"kernel BUG at ", r"\bBad page (state|map)\b",
            r"\b(list_add|list_del) corruption\b", r"\brefcount_t: "),
    "oops": (r"\bOops\b", r"\bgeneral protection fault\b", r"\bUnable to handle kernel\b",
             r"\bKernel panic\b", r"\bkernel stack overflow\b"),
    "warning": (r"\bWARNING: ", r"------------\[ cut here \]------------"),
}

# Lines that contain a pattern's words but report no problem. Keep each one narrow.
BENIGN_PATTERNS: tuple[str, ...] = (
    r"kmemleak: Kernel memory leak detector initialized",
    r"kmemleak: Automatic memory scanning thread",
    # CPU vulnerability notices, e.g. "RETBleed: WARNING: Spectre v2 mitigation leaves
    # CPU vulnerable to RETBleed attacks, data leaks possible!"; they depend on the host
    # CPU model, not on our kernel.
    (r"\b(Spectre V[12]|RETBleed|MDS|MMIO Stale Data|TAA|SRBDS|GDS|ITS|VMSCAPE"
     r"|Speculative Store Bypass|Speculative Return Stack Overflow|Register File Data "
     r"Sampling|x86/bugs)\s*: "),
    r"Spectre V2 : WARNING: Unprivileged eBPF",
)

_SPLAT_RES = [(cat, re.compile(p)) for cat, pats in SPLAT_PATTERNS.items() for p in pats]
_BENIGN_RES = [re.compile(p) for p in BENIGN_PATTERNS]


@dataclass(frozen=True)
class Finding:
    source: str  # file name the line came from
    line_no: int  # 1-based
    category: str
    line: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line_no}: [{self.category}] {self.line}"


def classify(line: str) -> str | None:
    """The splat category of one log line, or None for a harmless line."""
    for category, regex in _SPLAT_RES:
        if regex.search(line):
            if any(b.search(line) for b in _BENIGN_RES):
                return None
            return category
    return None


def scan_text(text: str, source: str = "dmesg") -> list[Finding]:
    findings: list[Finding] = []
    for no, line in enumerate(text.splitlines(), start=1):
        category = classify(line)
        if category is not None:
            findings.append(Finding(source, no, category, line.rstrip()))
    return findings


def scan_files(paths: list[Path]) -> list[Finding]:
    findings: list[Finding] = []
    for path in paths:
        if path.is_file():
            findings.extend(scan_text(path.read_text(errors="replace"), path.name))
    return findings


def context(text: str, finding: Finding, after: int = 25) -> list[str]:
    """The finding's line and the report that follows it (call trace etc.)."""
    lines = text.splitlines()
    start = finding.line_no - 1
    return lines[start:start + 1 + after]
