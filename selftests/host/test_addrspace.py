"""Window picking against the real /proc/self/maps, and window validation messages."""

from __future__ import annotations

import pytest
from _hosthelp import FAKE_ALIGN, is_mapped

from libmshare import _libc, addrspace
from libmshare.addrspace import MapEntry, check_size, check_window, find_free_window
from libmshare.errors import AddressRangeError, AlignmentError

G512 = 1 << 39


def test_parse_maps() -> None:
    text = (
        "55d0c0000000-55d0c0021000 r-xp 00000000 fe:00 123   /usr/bin/python3\n"
        "7ffd4d4f8000-7ffd4d519000 rw-p 00000000 00:00 0     [stack]\n"
        "7f0000000000-7f0000001000 rw-s 00000000 00:01 9     /sys/fs/mshare/a b\n"
        "7f0000002000-7f0000003000 ---p 00000000 00:00 0\n"
    )
    entries = addrspace.parse_maps(text)
    assert entries[0] == MapEntry(0x55D0C0000000, 0x55D0C0021000, "/usr/bin/python3")
    assert entries[1].name == "[stack]"
    assert entries[2].name == "/sys/fs/mshare/a b"
    assert entries[3] == MapEntry(0x7F0000002000, 0x7F0000003000, "")


def test_picks_highest_free_window_below_every_mmap_base() -> None:
    limit = addrspace.lowest_mmap_base()
    assert limit < addrspace.TASK_SIZE - (1 << 40)  # below the whole randomisation range
    assert find_free_window(G512, G512, []) == (limit - G512) // G512 * G512
    start = find_free_window(G512, G512, [])
    assert start is not None and start % G512 == 0 and start + G512 <= limit


def test_jumps_below_each_collision() -> None:
    top = find_free_window(G512, G512, [])
    assert top is not None
    busy = [MapEntry(top + G512 - 4096, top + G512, "x")]  # last page of the top window
    assert find_free_window(G512, G512, busy) == top - G512
    busy.append(MapEntry(top - 1, top, "y"))  # ... and last byte of the next one
    assert find_free_window(G512, G512, busy) == top - 2 * G512
    # A mapping straddling two windows blocks both.
    busy = [MapEntry(top - 4096, top + 4096, "z")]
    assert find_free_window(G512, G512, busy) == top - 2 * G512
    # Mappings above the limit (stack, vsyscall) never block.
    assert find_free_window(G512, G512, [MapEntry(0x7FFD00000000, 0x7FFD00100000, "[stack]"),
                                         MapEntry(0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000, "")]) == top


def test_no_window_when_space_is_full() -> None:
    assert find_free_window(G512, G512, [MapEntry(0, addrspace.TASK_SIZE, "all")]) is None
    assert find_free_window(1 << 47, G512, []) is None


def test_window_from_real_maps_is_free_and_mappable() -> None:
    start = find_free_window(FAKE_ALIGN, FAKE_ALIGN)
    assert start is not None and start % FAKE_ALIGN == 0
    assert not is_mapped(start, FAKE_ALIGN)
    rw = _libc.PROT_READ | _libc.PROT_WRITE
    flags = _libc.MAP_PRIVATE | _libc.MAP_ANONYMOUS | _libc.MAP_FIXED_NOREPLACE
    assert _libc.mmap(start, FAKE_ALIGN, rw, flags, -1) == start
    _libc.munmap(start, FAKE_ALIGN)


def test_real_maps_pick_avoids_existing_mapping(anon_block: tuple[int, int]) -> None:
    # anon_block sits in the window that would be picked now; the next pick goes below.
    start, _ = anon_block
    again = find_free_window(FAKE_ALIGN, FAKE_ALIGN)
    assert again is not None and again + FAKE_ALIGN <= start


@pytest.mark.parametrize(
    ("start", "size", "error", "words"),
    [
        (None, 0, AlignmentError, ["size 0", "0x8000000000 (512G)"]),
        (None, -G512, AlignmentError, [f"size {-G512}", "(512G)"]),
        (None, 1000, AlignmentError, ["size 0x3e8", "alignment 0x8000000000 (512G)", "512G"]),
        (None, G512 + 4096, AlignmentError, ["0x8000001000", "next multiple is 1T"]),
        (0, G512, AlignmentError, ["start 0x0", "0x8000000000 (512G)"]),
        (0x7E0000001000, G512, AlignmentError, ["start 0x7e0000001000", "(512G)"]),
        (0x7F8000000000, G512, AddressRangeError, ["0x7f8000000000-0x800000000000",
                                                  "0x7ffffffff000", "(512G)"]),
    ],
)
def test_validation_names_value_and_alignment(
    start: int | None, size: int, error: type[ValueError], words: list[str]
) -> None:
    with pytest.raises(error) as exc:
        if start is None:
            check_size(size, G512)
        else:
            check_window(start, size, G512)
    for word in words:
        assert word in str(exc.value)


def test_valid_window_passes() -> None:
    check_window(0x7E0000000000, G512, G512)
    check_size(2 * G512, G512)
