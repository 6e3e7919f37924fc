from pathlib import Path

import pytest

from kbuild import kconfig
from kbuild.cli import CONFIG_DIR
from kbuild.flavors import fragment_names, fragment_paths


def test_parse_set_unset_and_values() -> None:
    text = """
# comment
CONFIG_A=y
CONFIG_NR_CPUS=8
CONFIG_S="hello world"
# CONFIG_B is not set
not a config line
"""
    assert kconfig.parse_config_text(text) == {
        "CONFIG_A": "y", "CONFIG_NR_CPUS": "8", "CONFIG_S": '"hello world"', "CONFIG_B": "n",
    }


def test_later_fragment_wins(tmp_path: Path) -> None:
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.write_text("CONFIG_SLUB_TINY=y\nCONFIG_X=y\n")
    b.write_text("# CONFIG_SLUB_TINY is not set\n")
    assert kconfig.merge_requests([a, b]) == {"CONFIG_SLUB_TINY": "n", "CONFIG_X": "y"}


def test_find_dropped() -> None:
    requested = {"CONFIG_KASAN": "y", "CONFIG_NUMA": "n", "CONFIG_GONE": "n",
                 "CONFIG_NR_CPUS": "8", "CONFIG_OK": "y"}
    final = {"CONFIG_KASAN": "n", "CONFIG_NUMA": "y", "CONFIG_NR_CPUS": "64", "CONFIG_OK": "y"}
    dropped = {d.option: (d.wanted, d.got) for d in kconfig.find_dropped(requested, final)}
    # absent counts as "not set", which is what CONFIG_GONE asked for
    assert dropped == {"CONFIG_KASAN": ("y", "n"), "CONFIG_NUMA": ("n", "y"),
                       "CONFIG_NR_CPUS": ("8", "64")}


def test_missing_option_requested_y_is_dropped() -> None:
    dropped = kconfig.find_dropped({"CONFIG_MSHARE": "y"}, {})
    assert [str(d) for d in dropped] == ["CONFIG_MSHARE: wanted y, got n"]


def test_tree_defines(tmp_path: Path) -> None:
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / "Kconfig").write_text("config MSHARE_FOO\n\tbool\nconfig ZSWAP\n")
    assert not kconfig.tree_defines(tmp_path, "CONFIG_MSHARE")
    (tmp_path / "mm" / "Kconfig").write_text("config ZSWAP\n\nconfig MSHARE\n\tbool \"x\"\n")
    assert kconfig.tree_defines(tmp_path, "CONFIG_MSHARE")


def test_flavor_fragment_order() -> None:
    assert fragment_names("release", mshare=False) == ["base", "release"]
    assert fragment_names("debug", mshare=True) == ["base", "mshare", "debug"]
    # kasan must come after debug so it can turn SLUB_TINY back off
    assert fragment_names("kasan", mshare=True) == ["base", "mshare", "debug", "kasan"]
    with pytest.raises(ValueError):
        fragment_names("fast", mshare=False)


@pytest.mark.parametrize("flavor", ["release", "debug", "kasan", "mmtests"])
def test_real_fragments_are_clean(flavor: str) -> None:
    """Every line of the shipped fragments is a comment, blank, or a parsable option:
    a typo there would otherwise be ignored by merge_config.sh and by verification."""
    for path in fragment_paths(CONFIG_DIR, flavor, mshare=True):
        for line in path.read_text().splitlines():
            s = line.strip()
            if not s or (s.startswith("#") and "is not set" not in s):
                continue
            assert kconfig.parse_config_text(s), f"{path.name}: unparsable line {line!r}"


def test_kasan_flavor_turns_off_slub_tiny() -> None:
    merged = kconfig.merge_requests(fragment_paths(CONFIG_DIR, "kasan", mshare=False))
    assert merged["CONFIG_KASAN"] == "y"
    assert merged["CONFIG_SLUB_TINY"] == "n"
    assert merged["CONFIG_PROVE_LOCKING"] == "y"  # kasan includes debug
    release = kconfig.merge_requests(fragment_paths(CONFIG_DIR, "release", mshare=False))
    assert "CONFIG_KASAN" not in release and "CONFIG_PROVE_LOCKING" not in release


def test_mmtests_flavor_is_release_plus_mm_selftest_options() -> None:
    merged = kconfig.merge_requests(fragment_paths(CONFIG_DIR, "mmtests", mshare=True))
    for opt in ("CONFIG_GUP_TEST", "CONFIG_MEM_SOFT_DIRTY", "CONFIG_KSM", "CONFIG_MSHARE"):
        assert merged[opt] == "y", opt
    assert "CONFIG_PROVE_LOCKING" not in merged
