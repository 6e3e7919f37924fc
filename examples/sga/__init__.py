"""A database-style SGA (Oracle's System Global Area) on a choice of shared memory.

The instance lays out a header, a block directory and a buffer cache of 8 KiB blocks,
each with its id and a CRC-32 of its payload; N server processes attach it as new
connections would and serve a read-mostly workload.  The backends (``backends``)
differ only in how the memory is shared: msharefs via libmshare, POSIX shm, memory
inherited over fork, and 2 MiB hugetlb pages.

Modules: ``layout`` (where things are), ``cache`` (format, lookup, checked read,
locked update), ``locks`` (stripe locks), ``server`` (a server process), ``instance``
(one measured run), ``cli`` (the program).
"""

from .instance import run
from .result import RunConfig, RunResult

__all__ = ["RunConfig", "RunResult", "run"]
