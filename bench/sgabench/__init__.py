"""The SGA page-table benchmark: plans, the guest-side runner, table, plot, extrapolation.

``bench/run-sga`` (host) boots the guest once and runs ``bench/sga-guest`` in it;
``sga-guest`` runs every backend at the same N and S with :mod:`examples.sga` and
writes JSON; the host prints the table and draws the plot from that JSON.
"""
