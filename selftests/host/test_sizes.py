from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libmshare.errors import SizeSyntaxError
from libmshare.sizes import (
    format_address,
    format_bytes,
    format_size,
    parse_address,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("512G", 549755813888), ("512g", 549755813888), ("512GiB", 549755813888),
        ("64M", 64 << 20), ("1T", 1 << 40), ("4k", 4096), ("4096", 4096),
        ("0x1000", 4096), ("1_024", 1024), (" 2M ", 2 << 20), ("1E", 1 << 60), ("8B", 8),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "G", "1.5G", "-1", "1Q", "12 G", "0x", "0xg", "20E"])
def test_parse_size_rejects_and_names_the_text(text: str) -> None:
    with pytest.raises(SizeSyntaxError, match="size"):
        parse_size(text)
    try:
        parse_size(text)
    except SizeSyntaxError as e:
        assert repr(text) in str(e)


def test_parse_address() -> None:
    assert parse_address("0x7e0000000000") == 0x7E0000000000
    assert parse_address("138538465099776") == 0x7E0000000000
    for bad in ("7e0000000000", "0x", "512G", "0x1" + "0" * 16):
        with pytest.raises(SizeSyntaxError, match="address"):
            parse_address(bad)


def test_format() -> None:
    assert format_size(549755813888) == "512G"
    assert format_size(1 << 40) == "1T"
    assert format_size(3 << 20) == "3M"
    assert format_size(1000) == "1000"
    assert format_size(0) == "0"
    assert format_address(0x7E0000000000) == "0x7e0000000000"
    with pytest.raises(ValueError, match="-1"):
        format_size(-1)


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_format_parse_round_trip(n: int) -> None:
    assert parse_size(format_size(n)) == n


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0"), (1023, "1023"), (1024, "1.0K"), (1536, "1.5K"), (12288, "12K"),
     (16 << 20, "16M"), ((16 << 20) + 5000, "16M"), (3 << 29, "1.5G"), (1 << 40, "1.0T")],
)
def test_format_bytes_rounds_for_people(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_format_bytes_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_bytes(-1)
