"""The host side: run bench/pgbench-guest in one guest boot, bring its JSON back."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from vmrun import guestdoc

__all__ = ["run_guest"]

GUEST_SCRIPT = "bench/pgbench-guest"


def run_guest(guest_args: list[str], *, memory: str, cpus: int, timeout: float,
              kernel: str | None, kvm: bool) -> tuple[int, dict[str, Any] | None]:
    """One boot (the release flavor unless kernel is given); the guest writes its JSON
    into a --rwdir."""
    with tempfile.TemporaryDirectory(prefix="pgbench-bench-") as tmp:
        out = Path(tmp) / "pgbench.json"
        result, doc = guestdoc.run_script(GUEST_SCRIPT, [*guest_args, "--out", str(out)], out,
                                          kernel, label="run-pgbench", cpus=cpus,
                                          memory=memory, timeout=timeout,
                                          kvm=True if kvm else None)
        if doc is not None and result.provenance:
            # The guest copied the record before the boot ended; this one has the
            # host's load after it too.
            doc["provenance"] = result.provenance
        return result.status, doc
