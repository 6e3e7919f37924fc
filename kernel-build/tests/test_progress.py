import io

from kbuild.kmake import Progress


def test_counts_compile_steps_and_reports() -> None:
    out = io.StringIO()
    prog = Progress("debug", out=out, every=3600)
    for line in ["  CC      mm/memory.o\n", "  AS      arch/x86/entry/entry_64.o\n",
                 "  CC      mm/mmap.o\n", "make[2]: Nothing to be done\n"]:
        prog.feed(line)
    prog.report(now=prog.start + 95)
    assert prog.compiled == 2
    assert out.getvalue() == ("kernel-build: debug 1m35s: 2 objects compiled, "
                              "last: CC mm/mmap.o\n")


def test_elapsed_time_is_rounded_not_truncated() -> None:
    # For these monotonic() starts (start + 95) - start is 94.99999999998545 and the like
    # in floating point, which int() made "1m34s"; any start must give 1m35s.
    for start in (131046.34173694662, 4035.8609645647634, 524284.40313244896, 0.1):
        out = io.StringIO()
        prog = Progress("x", out=out, every=3600)
        prog.start = start
        prog.report(now=start + 95)
        prog.report(now=start + 94.6)
        prog.report(now=start + 59.7)
        assert [line.split()[2] for line in out.getvalue().splitlines()] == [
            "1m35s:", "1m35s:", "1m00s:"], start


def test_ticker_reports_without_output() -> None:
    out = io.StringIO()
    with Progress("x", out=out, every=0.05):
        import time
        time.sleep(0.3)
    assert out.getvalue().count("objects compiled") >= 3
