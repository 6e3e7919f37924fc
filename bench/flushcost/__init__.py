"""bench/flushcost: what the region's flush_tlb_all() per host invalidation costs.

Compaction-driven migration of memory shared by N processes, msharefs region against
a /dev/shm file and an inherited MAP_SHARED|MAP_ANONYMOUS mapping; see README.md.
"""
