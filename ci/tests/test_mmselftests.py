"""ci/run-mm-selftests on the host: reading run_vmtests.sh's TAP and comparing two runs."""
from pathlib import Path

import pytest

from mmselftests import cli, compare, tap

# Shaped like run_vmtests.sh -t CATEGORY output (TAP_PREFIX "# " on everything but results).
LOG = """TAP version 13
# -----------------------
# running ./map_fixed_noreplace
# -----------------------
# ok 1 first mmap
# [PASS]
ok 1 map_fixed_noreplace
# --------------------
# running ./map_populate
# --------------------
# [SKIP]
ok 2 map_populate # SKIP
# ----------------------
# running ./khugepaged
# ----------------------
# ./run_vmtests.sh: line 1: ./khugepaged: No such file or directory
# [FAIL]
not ok 3 khugepaged # exit=127
# ------------------------
# running bash ./va_high_addr_switch.sh
# ------------------------
# [PASS]
ok 4 va_high_addr_switch.sh
# SUMMARY: PASS=2 SKIP=1 FAIL=1
1..4
"""


def test_result_lines_become_cases_with_their_status() -> None:
    cases = tap.parse_log("mmap", LOG, 1)
    assert [(c.name, c.status) for c in cases] == [
        ("map_fixed_noreplace", tap.PASS), ("map_populate", tap.SKIP),
        ("khugepaged", tap.FAIL), ("va_high_addr_switch.sh", tap.PASS)]
    assert cases[2].detail == "exit=127"


def test_inner_prefixed_ok_lines_are_not_cases() -> None:
    """'# ok 1 first mmap' is the test's own KTAP, nested under the runner's prefix."""
    assert "first mmap" not in [c.name for c in tap.parse_log("mmap", LOG, 0)]


def test_case_running_at_timeout_is_reported_as_timeout() -> None:
    log = LOG.split("ok 4")[0]  # killed while va_high_addr_switch.sh was running
    cases = tap.parse_log("hugevm", log, tap.TIMED_OUT)
    assert cases[-1].name == "va_high_addr_switch.sh" and cases[-1].status == tap.TIMEOUT


def test_unfinished_case_without_timeout_is_not_invented() -> None:
    log = LOG.split("ok 4")[0]
    assert len(tap.parse_log("hugevm", log, 1)) == 3


def test_repeated_names_are_numbered() -> None:
    log = "ok 1 gup_test -u\nok 2 gup_test -u\nnot ok 3 gup_test -u # exit=1\n"
    assert [c.name for c in tap.parse_log("gup_test", log, 1)] == [
        "gup_test -u", "gup_test -u#2", "gup_test -u#3"]


def test_read_run_follows_the_category_index(tmp_path: Path) -> None:
    (tmp_path / "categories.tsv").write_text("mmap\t1\t12\nthp\t124\t900\n")
    (tmp_path / "mmap.log").write_text(LOG)
    (tmp_path / "thp.log").write_text("# running ./khugepaged -s 2\n")
    cats, cases = tap.read_run(tmp_path)
    assert [(c.name, c.exit_status, c.seconds) for c in cats] == [
        ("mmap", 1, 12), ("thp", 124, 900)]
    assert cases[-1] == tap.Case("thp", "khugepaged -s 2", tap.TIMEOUT,
                                 "killed at the category's limit")


def test_read_run_of_a_guest_that_never_started_is_empty(tmp_path: Path) -> None:
    assert tap.read_run(tmp_path) == ([], [])


def _case(name: str, status: str) -> tap.Case:
    return tap.Case("mmap", name, status)


def test_regression_is_pass_without_and_anything_else_with() -> None:
    with_series = [_case("a", tap.PASS), _case("b", tap.FAIL), _case("c", tap.SKIP),
                   _case("d", tap.FAIL)]
    without = [_case("a", tap.PASS), _case("b", tap.PASS), _case("c", tap.PASS),
               _case("d", tap.FAIL), _case("e", tap.PASS)]
    rows = compare.join(with_series, without)
    assert [r.name for r in compare.regressions(rows)] == ["b", "c", "e"]
    assert rows[-1].with_series == tap.NOT_RUN


def test_fail_with_the_series_only_where_stock_fails_too_is_not_a_regression() -> None:
    rows = compare.join([_case("d", tap.FAIL)], [_case("d", tap.FAIL)])
    assert compare.regressions(rows) == []


def test_markdown_marks_regressions_and_totals() -> None:
    rows = compare.join([_case("a", tap.PASS), _case("b", tap.FAIL)],
                        [_case("a", tap.PASS), _case("b", tap.PASS)])
    text = compare.render_markdown(rows, [tap.Category("mmap", 1, 3)],
                                   [tap.Category("mmap", 0, 2)], "# title")
    assert "| mmap | `b` | fail **REGRESSION** | pass |" in text
    assert "Regressions (pass without the series, not with it): 1." in text
    assert "| mmap | 3 | 1 | 2 | 0 |" in text


def test_unknown_flavor_is_refused_before_any_build(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--flavor", "nosuch"])
    assert exc.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err
