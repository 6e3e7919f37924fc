"""The suite's raw system calls, under the name its cases import: mshare_lab.kapi itself
(the fuzzer makes the same calls), so monkeypatching either name patches both."""
import sys

from mshare_lab import kapi

sys.modules[__name__] = kapi
