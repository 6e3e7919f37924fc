import shutil
from pathlib import Path

import pytest

from kbuild import cachekey
from kbuild.cachekey import compute_key
from kbuild.patches import Patch

TOOLS = {"gcc": "gcc (Debian 12.2.0-14+deb12u1) 12.2.0", "ld": "GNU ld 2.40"}


def key(tmp_path: Path, **over: object) -> str:
    frag = tmp_path / "base"
    if not frag.exists():
        frag.write_text("CONFIG_A=y\n")
    args: dict[str, object] = {
        "source_ident": "linux-source-6.12=6.12.117-1 sha256=ab", "series": [],
        "series_text": "", "fragments": [frag], "flavor": "debug", "mshare": True,
        "toolchain": TOOLS, "recipe": "r1",
    }
    args.update(over)
    return compute_key(**args)  # type: ignore[arg-type]


def test_key_is_stable(tmp_path: Path) -> None:
    assert key(tmp_path) == key(tmp_path)
    # The toolchain's order does not matter, only its content.
    assert key(tmp_path, toolchain=dict(reversed(TOOLS.items()))) == key(tmp_path)


def test_every_input_changes_the_key(tmp_path: Path) -> None:
    base = key(tmp_path)
    p = Patch("0001-mm-add.patch", "11" * 32, tmp_path / "x")
    variants = {
        "source": key(tmp_path, source_ident="linux-source-6.12=6.12.118-1 sha256=ab"),
        "patch": key(tmp_path, series=[p]),
        "patch content": key(tmp_path, series=[Patch(p.name, "22" * 32, p.path)]),
        "series": key(tmp_path, series_text="0001-mm-add.patch\n"),
        "flavor": key(tmp_path, flavor="release"),
        "mshare": key(tmp_path, mshare=False),
        "compiler": key(tmp_path, toolchain={**TOOLS, "gcc": "gcc 13"}),
        "linker": key(tmp_path, toolchain={**TOOLS, "ld": "GNU ld 2.41"}),
        "new tool": key(tmp_path, toolchain={**TOOLS, "pahole": "v1.24"}),
        "recipe": key(tmp_path, recipe="r2"),
    }
    assert len(set(variants.values()) | {base}) == len(variants) + 1
    (tmp_path / "base").write_text("CONFIG_A=y\nCONFIG_B=y\n")
    assert key(tmp_path) != base


def test_recipe_digest_covers_every_kbuild_file_and_the_entry_script() -> None:
    names = {f"{f.parent.name}/{f.name}" for f in cachekey.recipe_files()}
    assert "kernel-build/build" in names
    assert {"kbuild/cli.py", "kbuild/kmake.py", "kbuild/cachekey.py",
            "kbuild/kconfig.py", "kbuild/patches.py", "kbuild/source.py"} <= names


def test_editing_any_recipe_file_changes_the_digest(tmp_path: Path) -> None:
    """No version number to bump: a changed byte in the recipe is a new key."""
    copies = []
    for f in cachekey.recipe_files():
        d = tmp_path / f.parent.name
        d.mkdir(exist_ok=True)
        copies.append(Path(shutil.copy2(f, d / f.name)))
    before = cachekey.recipe_digest(copies)
    assert before == cachekey.recipe_digest(cachekey.recipe_files())
    for c in copies:
        original = c.read_bytes()
        c.write_bytes(original + b"\n# edited\n")
        assert cachekey.recipe_digest(copies) != before, c
        c.write_bytes(original)
    assert cachekey.recipe_digest(copies) == before


def test_toolchain_versions_name_every_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = cachekey.toolchain_versions()
    assert set(versions) == set(cachekey.TOOLS)
    assert versions["gcc"].startswith("gcc")  # the build host has gcc (ci/setup)
    assert cachekey.tool_version(["no-such-tool-here", "--version"]) == "not found"


def test_summary_keeps_names_and_digests_not_contents(tmp_path: Path) -> None:
    frag = tmp_path / "base"
    frag.write_text("CONFIG_A=y\n")
    m = cachekey.key_material(source_ident="s", series=[], series_text="0001-x.patch\n",
                              fragments=[frag], flavor="debug", mshare=True,
                              toolchain=TOOLS, recipe="r1")
    s = cachekey.summary(m)
    assert s["fragments"][0][0] == "base" and "CONFIG_A" not in str(s)
    assert s["toolchain"] == dict(sorted(TOOLS.items())) and s["recipe_sha256"] == "r1"
