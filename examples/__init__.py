"""Example programs built on libmshare (run from the repository root)."""
