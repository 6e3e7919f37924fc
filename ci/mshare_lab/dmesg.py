"""Find kernel problem reports ("splats") in a guest's dmesg and kmemleak output.

Only the kernel's own records count. The kernel log also holds what user space writes to
/dev/kmsg (virtme-ng-init's "WARNING: failed to run: ..." on a machine without `ip`, a
test planting a line); the kernel gives every record a facility, and user space cannot
write facility 0 (kern): /dev/kmsg turns a "<4>" prefix into user.warn. So a line whose
facility is known and is not kern is never a splat, whatever it says. The facility comes
with each line in the two formats the guest's log is read in:

- `dmesg -x` (what ci/vm-run's guest script saves): "kern  :warn  : [   1.0] text";
- /dev/kmsg records: "4,123,1000000,-;text" (PRI = facility * 8 + level).

A line without either prefix (the serial console after a crash, older logs, kmemleak's
report) has no facility and is read as the kernel's, so nothing is missed.

Patterns match the headers the kernel prints when something went wrong; the short list
of benign kernel lines drops boot banners that merely contain the same words. Both are
tested on real boot logs of every flavor (ci/tests/data/) and on real-looking splats.
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

# syslog(3) facility and level names, as dmesg -x prints them ("%-6s:%-6s: ").
FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp",
              "cron", "authpriv", "ftp", "res0", "res1", "res2", "res3", "local0",
              "local1", "local2", "local3", "local4", "local5", "local6", "local7")
LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
KERNEL = "kern"
_DECODED_RE = re.compile(r"^(?P<fac>[a-z0-9]+)\s*:(?P<lvl>[a-z]+)\s*: ?(?P<msg>.*)$")
_KMSG_RE = re.compile(r"^(?P<pri>\d+),\d+,\d+,[^;]*;(?P<msg>.*)$")


@dataclass(frozen=True)
class Record:
    facility: str | None  # None: the line carries no facility (read as the kernel's)
    level: str | None
    message: str


def parse_line(line: str) -> Record:
    """Split a log line into facility, level and message (see the module docstring)."""
    m = _DECODED_RE.match(line)
    if m and m.group("fac") in FACILITIES and m.group("lvl") in LEVELS:
        return Record(m.group("fac"), m.group("lvl"), m.group("msg"))
    m = _KMSG_RE.match(line)
    if m:
        pri = int(m.group("pri"))
        fac = FACILITIES[pri >> 3] if pri >> 3 < len(FACILITIES) else f"fac{pri >> 3}"
        return Record(fac, LEVELS[pri & 7], m.group("msg"))
    return Record(None, None, line)


def from_kernel(record: Record) -> bool:
    return record.facility in (None, KERNEL)


@dataclass(frozen=True)
class Finding:
    source: str  # file name the line came from
    line_no: int  # 1-based
    category: str
    line: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line_no}: [{self.category}] {self.line}"


def classify(line: str) -> str | None:
    """The splat category of one log line, or None for a harmless or user-space line."""
    record = parse_line(line)
    if not from_kernel(record):
        return None
    text = record.message
    for category, regex in _SPLAT_RES:
        if regex.search(text):
            if any(b.search(text) for b in _BENIGN_RES):
                return None
            return category
    return None


def user_space_warnings(text: str) -> list[str]:
    """Lines user space logged at warn or worse (e.g. virtme-ng-init's failures): not
    kernel problems, but worth showing, since they explain a guest that misbehaves."""
    bad = set(LEVELS[:LEVELS.index("warn") + 1])
    out = []
    for line in text.splitlines():
        r = parse_line(line)
        if not from_kernel(r) and r.level in bad:
            out.append(line.rstrip())
    return out


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
