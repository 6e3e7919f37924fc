from __future__ import annotations

import pytest

from libmshare._names import region_path, validate_name
from libmshare.errors import RegionNameError

M = "/sys/fs/mshare"


@pytest.mark.parametrize(
    ("name", "rel"),
    [("db", "db"), ("app/db", "app/db"), ("/sys/fs/mshare/app/db", "app/db"),
     ("x.y", "x.y"), ("..a", "..a"), ("mshare_info2", "mshare_info2"),
     ("dir/mshare_info", "dir/mshare_info")],
)
def test_valid_names(name: str, rel: str) -> None:
    assert validate_name(name, M) == rel
    assert region_path(name, M) == f"{M}/{rel}"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", ["empty"]),
        ("a\0b", ["NUL", "'a\\x00b'"]),
        ("..", ["'..'", "component"]),
        ("a/../b", ["'a/../b'"]),
        ("./a", ["'./a'"]),
        ("a//b", ["'a//b'", "empty"]),
        ("a/", ["'a/'"]),
        ("/etc/passwd", ["'/etc/passwd'", "outside", M]),
        ("/sys/fs/msharefoo/x", ["outside"]),
        ("/sys/fs/mshare/", ["'/sys/fs/mshare/'"]),
        ("mshare_info", ["reserved"]),
        ("/sys/fs/mshare/mshare_info", ["reserved"]),
    ],
)
def test_bad_names_say_why(name: str, words: list[str]) -> None:
    with pytest.raises(RegionNameError) as exc:
        validate_name(name, M)
    assert isinstance(exc.value, ValueError)
    for word in words:
        assert word in str(exc.value)


def test_non_string_name() -> None:
    with pytest.raises(TypeError, match="bytes"):
        validate_name(b"db", M)  # type: ignore[arg-type]
