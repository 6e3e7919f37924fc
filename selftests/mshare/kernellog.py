"""The suite's name for mshare_lab.kmsg.KmsgTail (shared with the fuzzer)."""
from mshare_lab.kmsg import KmsgTail as KernelLog

__all__ = ["KernelLog"]
