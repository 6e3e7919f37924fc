"""The SGA page-table benchmark: bench/run-sga's host side (plans, report, plot) and
bench/sga-guest's guest side (examples.sga on every backend, saved as JSON).
"""
