"""Reading what ci/guest-mm-selftests brought back: run_vmtests.sh's TAP per category."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PASS, FAIL, SKIP, TIMEOUT, NOT_RUN = "pass", "fail", "skip", "timeout", "not run"
TIMED_OUT = 124  # timeout(1)'s status, also after its -k KILL

_RESULT = re.compile(r"^(?P<not>not )?ok \d+ (?P<name>.*?)(?: # (?P<directive>.*))?$")
_RUNNING = re.compile(r"^# running (?P<name>.*)$")


@dataclass(frozen=True)
class Case:
    category: str
    name: str
    status: str
    detail: str = ""


@dataclass(frozen=True)
class Category:
    name: str
    exit_status: int
    seconds: int


def parse_log(category: str, text: str, exit_status: int) -> list[Case]:
    """One Case per TAP result line; when the category timed out, the case that was
    running (announced by '# running ...' and never answered) is a TIMEOUT."""
    cases: list[Case] = []
    running: str | None = None
    for line in text.splitlines():
        if m := _RUNNING.match(line):
            running = _pretty(m["name"])
            continue
        m = _RESULT.match(line)
        if not m:
            continue
        directive = m["directive"] or ""
        if m["not"]:
            status = FAIL
        elif directive.upper().startswith("SKIP"):
            status = SKIP
        else:
            status = PASS
        cases.append(Case(category, m["name"], status, directive))
        running = None
    if exit_status == TIMED_OUT and running is not None:
        cases.append(Case(category, running, TIMEOUT, "killed at the category's limit"))
    return _unique(cases)


def _pretty(cmd: str) -> str:
    """The name run_vmtests.sh gives a case: its command without 'bash ' or './'."""
    return re.sub(r"^(bash )?\./", "", cmd.strip())


def _unique(cases: list[Case]) -> list[Case]:
    """Names are the join key of the comparison: number repeats as name#2, name#3."""
    seen: dict[str, int] = {}
    out = []
    for c in cases:
        seen[c.name] = seen.get(c.name, 0) + 1
        name = c.name if seen[c.name] == 1 else f"{c.name}#{seen[c.name]}"
        out.append(Case(c.category, name, c.status, c.detail))
    return out


def read_categories(path: Path) -> list[Category]:
    out = []
    for line in path.read_text().splitlines():
        name, rc, secs = line.split("\t")
        out.append(Category(name, int(rc), int(secs)))
    return out


def read_run(out_dir: Path) -> tuple[list[Category], list[Case]]:
    """All categories a guest run finished (or timed out) and their cases, in order."""
    index = out_dir / "categories.tsv"
    categories = read_categories(index) if index.is_file() else []
    cases: list[Case] = []
    for cat in categories:
        log = out_dir / f"{cat.name}.log"
        text = log.read_text(errors="replace") if log.is_file() else ""
        cases.extend(parse_log(cat.name, text, cat.exit_status))
    return categories, cases
