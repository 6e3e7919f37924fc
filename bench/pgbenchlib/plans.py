"""What bench/run-pgbench measures: a plan is shared_buffers, a pgbench scale, the client
counts N and the pgbench run lengths.

Sizing (TCG, 2 vCPUs): every session of the touch pass reads the whole pgbench_accounts
table (get_raw_page over every block: 8 KiB through the buffer manager each), so a pass
costs about N x table size of copying; stock and huge pages add the faults.  The
segment's page tables (segment size / 512: 1 MiB for 512 MiB) must clearly exceed an idle
backend's own (about 150-250 KiB), which sets shared_buffers; the table fills most of it.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["PLANS", "Plan", "positive"]

MiB = 1 << 20


@dataclass
class Plan:
    name: str
    shared_buffers_mb: int
    scale: int
    clients: list[int]
    reps: int = 3
    transactions: int = 20  # select-only, per client
    connect_transactions: int = 4  # select-only with -C, per client
    memory: str = "4G"  # guest RAM
    configs: list[str] = field(default_factory=lambda: ["stock", "huge", "msharefs"])

    @property
    def max_connections(self) -> int:
        return max(self.clients) + 10

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        return cls(**d)


PLANS: dict[str, Plan] = {
    # A few minutes under TCG: 128 MiB of buffers holding scale 5 (64 MiB of accounts).
    "quick": Plan("quick", 128, 5, [1, 10, 40], reps=3, transactions=20,
                  connect_transactions=3, memory="3G"),
    # The README's table: 512 MiB of buffers, scale 20 (256 MiB of accounts), N to 200.
    # 200 transactions a client, 5 times: with 20, a run is mostly backend start-up and
    # its medians moved by 2x between repetitions (pgbench-quick-n200 against -n50-r7).
    "default": Plan("default", 512, 20, [1, 10, 50, 100, 200], reps=5, transactions=200,
                    connect_transactions=3, memory="8G"),
    # The same and 300 clients.
    "sweep": Plan("sweep", 512, 20, [1, 10, 50, 100, 200, 300], reps=5, transactions=200,
                  connect_transactions=3, memory="10G"),
}


def positive(text: str) -> int:
    """argparse type of --repeat and --transactions."""
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n
