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
import copy
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CONFIGS", "PLANS", "Plan", "cell_s", "config_list", "positive", "resolve",
           "timeout_s"]

MiB = 1 << 20
# The server configurations: pgbenchlib.cluster's docstring says what each one is.
CONFIGS = ("stock", "huge", "msharefs", "msharefs-huge")


@dataclass
class Plan:
    name: str
    shared_buffers_mb: int
    scale: int
    clients: list[int]
    reps: int = 3
    transactions: int = 20  # select-only, per client, when seconds is 0
    connect_transactions: int = 4  # select-only with -C, per client
    memory: str = "4G"  # guest RAM
    configs: list[str] = field(default_factory=lambda: list(CONFIGS))
    # Time-based select-only runs (pgbench -T) after a warm-up run of
    # warmup_transactions per client whose numbers are dropped; 0 seconds: a fixed
    # number of transactions (older plans).  A count, not a time: pgbench's -T clock runs
    # while its clients connect, and a 3 s warm-up of 200 clients under TCG ended before
    # any transaction (the measured run gets the warm-up's connection time on top).
    seconds: float = 0.0
    warmup_transactions: int = 0
    # The TPC-B-like script (read-write) at these N, as long as select-only.
    rw_clients: list[int] = field(default_factory=list)
    # Connection storm: N sessions connect at once and each reads the first storm_mib
    # MiB of pgbench_accounts through shared buffers (0: no storm).
    storm_mib: int = 0

    @property
    def max_connections(self) -> int:
        return max(self.clients) + 10

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


PLANS: dict[str, Plan] = {
    # A few minutes under TCG: 128 MiB of buffers holding scale 5 (64 MiB of accounts).
    # 3 repetitions: its counts are exact, and its tps goal is reported as inconclusive
    # (a ratio goal needs mshare_lab.stats.MIN_PAIRS paired repetitions).
    "quick": Plan("quick", 128, 5, [1, 10, 40], reps=3, transactions=20,
                  connect_transactions=3, memory="3G", seconds=4.0, warmup_transactions=20,
                  rw_clients=[10], storm_mib=16),
    # The README's table: 512 MiB of buffers, scale 20 (256 MiB of accounts), N to 200.
    # 200 transactions a client (with 20, a run is mostly backend start-up and its medians
    # moved by 2x between repetitions: pgbench-quick-n200 against -n50-r7), 10 times: the
    # tps goal's decision rule needs 10 pairs.  Hours under TCG: run it with --resume.
    "default": Plan("default", 512, 20, [1, 10, 50, 100, 200], reps=10, transactions=200,
                    connect_transactions=3, memory="8G", seconds=10.0, warmup_transactions=20,
                    rw_clients=[10, 100], storm_mib=64),
    # The same and 300 clients.
    "sweep": Plan("sweep", 512, 20, [1, 10, 50, 100, 200, 300], reps=10, transactions=200,
                  connect_transactions=3, memory="10G"),
    # Where sharing should matter: up to 1,000 connections on 1 GiB of buffers (scale 40:
    # 512 MiB of accounts, all of it touched), time-based runs, a storm reading 64 MiB
    # each, read-write at two N.  A 16 GiB guest (about 5-10 MiB a stock backend once it
    # has touched the table, plus the buffers).  Many hours under TCG: --resume.
    "scale": Plan("scale", 1024, 40, [1, 100, 500, 1000], reps=10, connect_transactions=2,
                  memory="16G", seconds=20.0, warmup_transactions=20, rw_clients=[10, 100],
                  storm_mib=64),
}

# Guest seconds one configuration's runs in a repetition of each plan may take under TCG.
_SECONDS_PER_CONFIG_REP = {"quick": 200.0, "default": 480.0, "sweep": 720.0,
                           "scale": 3600.0}


def cell_s(plan: Plan) -> float:
    """What one configuration's runs in one repetition (a cell) may take."""
    return _SECONDS_PER_CONFIG_REP[plan.name]


def timeout_s(plan: Plan) -> float:
    """The boot's timeout for a plan: every configuration of every repetition."""
    return cell_s(plan) * plan.reps * len(plan.configs)


def resolve(name: str, *, clients: str | None = None, configs: str | None = None,
            reps: int | None = None, transactions: int | None = None) -> Plan:
    """A plan with the command line's overrides (comma-separated lists as given), the
    same on the host (to check a resume) and in the guest (to run it)."""
    plan = copy.deepcopy(PLANS[name])
    if clients:
        plan.clients = [int(x) for x in clients.split(",") if x]
    if configs:
        plan.configs = config_list(configs)
    if reps:
        plan.reps = reps
    if transactions:
        plan.transactions = transactions
    return plan


def config_list(text: str) -> list[str]:
    """argparse type of --configs: known configuration names, comma-separated."""
    names = [c for c in text.split(",") if c]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: choose from {', '.join(CONFIGS)} (comma-separated)")
    return names


def positive(text: str) -> int:
    """argparse type of --repeat and --transactions."""
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n
