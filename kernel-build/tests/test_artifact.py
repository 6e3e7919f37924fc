"""What building a flavor returns (kbuild.artifact.Build)."""
import json
from pathlib import Path

from kbuild.artifact import Build


def plant(out: Path, meta: dict[str, object]) -> None:
    out.mkdir(parents=True)
    (out / "bzImage").write_bytes(b"kernel")
    (out / "config").write_text("CONFIG_MSHARE=y\n")
    (out / "meta.json").write_text(json.dumps(meta))


def test_a_cached_build_knows_its_image_key_config_and_meta(tmp_path: Path) -> None:
    out = tmp_path / "builds" / "abc"
    plant(out, {"key": "abc", "flavor": "kasan", "mshare_applied": True})
    build = Build.from_dir(out)
    assert (build.image, build.key, build.flavor, build.mshare) == (
        out / "bzImage", "abc", "kasan", True)
    assert build.config == out / "config" and build.meta["flavor"] == "kasan"
    assert Build.from_image(out / "bzImage") == build
    assert json.loads(json.dumps(build.record()))["key"] == "abc"


def test_an_image_without_meta_is_no_build(tmp_path: Path) -> None:
    (tmp_path / "bzImage").write_bytes(b"kernel")
    assert Build.from_image(tmp_path / "bzImage") is None
