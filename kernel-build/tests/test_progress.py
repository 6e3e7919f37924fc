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


def test_ticker_reports_without_output() -> None:
    out = io.StringIO()
    with Progress("x", out=out, every=0.05):
        import time
        time.sleep(0.3)
    assert out.getvalue().count("objects compiled") >= 3
