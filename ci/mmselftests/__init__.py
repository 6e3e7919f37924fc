"""The kernel's mm selftests on our kernel with and without CONFIG_MSHARE, compared."""
