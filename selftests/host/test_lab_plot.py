"""The benches' plot helper (mshare_lab.plot): a PNG, spread as a band, linear y from 0."""
from __future__ import annotations

from pathlib import Path

import pytest

from mshare_lab import plot


def test_panels_write_a_png_with_a_band_and_a_linear_axis_from_zero(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.png"
    with plot.panels(str(out), 2, (8, 3), "title") as (linear, log):
        plot.line(linear, [1, 10, 100], [900, 1000, 950], ("tab:red", "s"), "stock",
                  ([800, 900, 900], [1000, 1100, 990]))
        plot.against_n(linear, [1, 10, 100], "N", "tps", log_y=False)
        plot.line(log, [1, 10, 100], [1, 10, 100], ("tab:green", "o"), "msharefs")
        plot.against_n(log, [1, 10, 100], "N", "kB", log_y=True)
        assert linear.get_ylim()[0] == 0 and log.get_yscale() == "log"
        assert len(linear.collections) == 1  # the band
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
