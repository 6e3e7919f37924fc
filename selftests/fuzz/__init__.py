"""regionfuzz: a system-call fuzzer aimed at msharefs region windows.

Processes create and attach regions (read-write and read-only), fork, exit and get
SIGKILLed while they throw random calls at the windows and their edges.  Every call has
the one outcome the contract (docs/mshare-api.md) and our series give, so an unexpected
errno is a finding, not noise.  After each batch the region data is checked against what
the fuzzer wrote, and the kernel log is scanned for splats.  Everything follows from the
seed: the same seed throws the same calls in the same order (timing can still differ).

Run `python3 -m selftests.fuzz --help` (in the guest, as root); installed, it is the
package `regionfuzz`.
"""
