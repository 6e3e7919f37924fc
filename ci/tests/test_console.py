import io

from vmrun.console import ConsoleSplitter


def test_kernel_lines_go_to_the_console_log() -> None:
    con, err = io.BytesIO(), io.BytesIO()
    s = ConsoleSplitter(con, [err])
    # Chunk boundaries fall inside lines, as they do when reading a pipe.
    for chunk in [b"[    0.000000] Linux version 6.12", b".117\r\nTraceback (most",
                  b" recent call last):\n[   12.5] WARN", b"ING: CPU: 0\r\nno newline"]:
        s.write(chunk)
        s.flush()
    assert err.getvalue() == b"Traceback (most recent call last):\n"
    s.close()
    assert con.getvalue() == (b"[    0.000000] Linux version 6.12.117\n"
                              b"[   12.5] WARNING: CPU: 0\n")
    assert err.getvalue() == b"Traceback (most recent call last):\nno newline"
