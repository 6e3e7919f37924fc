"""What one run is asked to do, and what it measured (JSON-ready)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["CacheStats", "Milestone", "RunConfig", "RunResult"]


@dataclass
class RunConfig:
    backend: str
    servers: int = 100
    size: int = 1 << 30
    duration: float = 10.0
    update_share: float = 0.02
    stripes: int = 64
    seed: int = 1
    # Attacher counts after which PageTables is read (the growth curve); N is added.
    milestones: list[int] = field(default_factory=list)
    reserve_hugepages: bool = False
    tag: str | None = None


@dataclass
class Milestone:
    attached: int
    pt_rise_kib: int


@dataclass
class CacheStats:
    """What buffer-cache operations counted: one server's, or a run's sum."""

    reads: int = 0
    updates: int = 0
    checksum_errors: int = 0
    retries: int = 0
    busy: int = 0
    misses: int = 0

    @property
    def ops(self) -> int:
        return self.reads + self.updates

    def add(self, counts: dict[str, Any]) -> None:
        """Add another's counts (a server's report, by field name)."""
        for f in fields(CacheStats):
            setattr(self, f.name, getattr(self, f.name) + int(counts[f.name]))


@dataclass(kw_only=True)
class RunResult(CacheStats):
    backend: str
    label: str
    servers: int
    size: int
    skipped: str | None = None
    nblocks: int = 0
    pt_baseline_kib: int = 0
    pt_after_kib: int = 0
    milestones: list[Milestone] = field(default_factory=list)
    vmpte_before_kib: list[int] = field(default_factory=list)
    startup_faults: list[int] = field(default_factory=list)
    vmpte_after_kib: list[int] = field(default_factory=list)
    attach_s: list[float] = field(default_factory=list)
    touch_s: list[float] = field(default_factory=list)
    touch_faults: list[int] = field(default_factory=list)
    attach_faults: list[int] = field(default_factory=list)
    duration_s: float = 0.0
    verify_bad_blocks: int = 0
    verify_torn_blocks: int = 0
    counted_updates: int = 0
    spawn_s: float = 0.0  # the instance's fork() loop
    fork_s: float = 0.0   # from the first fork until every server was ready
    format_s: float = 0.0
    wall_s: float = 0.0

    # -- derived ------------------------------------------------------------------------

    @property
    def pt_rise_kib(self) -> int:
        return self.pt_after_kib - self.pt_baseline_kib

    @property
    def throughput(self) -> float:
        return self.ops / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def lock_ok(self) -> bool:
        """Every update a server made is in the stripe counters (no lost increments)."""
        return self.counted_updates == self.updates

    @property
    def correct(self) -> bool:
        return (self.skipped is None and self.checksum_errors == 0
                and self.verify_bad_blocks == 0 and self.verify_torn_blocks == 0
                and self.lock_ok)

    def mean(self, values: list[int] | list[float]) -> float:
        return statistics.fmean(values) if values else 0.0

    def kth(self, k: int | None = None) -> int:
        """Index (1-based) of the k-th attacher, default the last."""
        n = len(self.touch_s)
        return n if k is None else max(1, min(k, n))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(pt_rise_kib=self.pt_rise_kib, ops=self.ops, throughput=self.throughput,
                    lock_ok=self.lock_ok, correct=self.correct)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        known = {f for f in cls.__dataclass_fields__}
        given = {k: v for k, v in data.items() if k in known}
        given["milestones"] = [Milestone(**m) for m in given.get("milestones", [])]
        return cls(**given)
