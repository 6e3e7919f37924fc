"""The warm path and the stdout contract of kernel-build/build, without compiling."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kbuild import cachekey, cli, flavors, patches, source

BUILD = Path(__file__).resolve().parents[1] / "build"


@pytest.fixture
def fake_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> source.Source:
    tarball = tmp_path / "linux-source-6.12.tar.xz"
    tarball.write_bytes(b"not really a tarball")
    src = source.Source(tarball, "6.12.117-test", "00" * 32)
    monkeypatch.setattr(source, "locate", lambda root: src)
    monkeypatch.setenv("LIBMSHARE_CACHE", str(tmp_path / "cache"))
    # ci/fresh-machine's warm run sets it for everything it runs, these tests included.
    monkeypatch.delenv(cli.CACHED_ONLY_ENV, raising=False)
    return src


def test_warm_call_prints_only_the_cached_path(
        fake_source: source.Source, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A first call would have to build; make that an error so we see the warm path alone.
    def no_build(*a: object) -> None:
        raise AssertionError("should not build")
    monkeypatch.setattr(cli, "prepare_tree", no_build)
    with pytest.raises(AssertionError):
        cli.main(["--flavor", "debug"])
    capsys.readouterr()
    # Plant a finished build under the key the first call computed.
    builds = tmp_path / "cache" / "builds"
    assert not builds.exists() or not any(builds.iterdir())
    key = cachekey.compute_key(
        source_ident=fake_source.ident, series=patches.read_series(cli.PATCH_DIR),
        series_text=(cli.PATCH_DIR / "series").read_text()
        if (cli.PATCH_DIR / "series").is_file() else "",
        fragments=flavors.fragment_paths(cli.CONFIG_DIR, "debug", True),
        flavor="debug", mshare=True, toolchain=cachekey.toolchain_versions(),
        recipe=cachekey.recipe_digest())
    out = builds / key
    out.mkdir(parents=True)
    (out / "bzImage").write_bytes(b"kernel")
    (out / "meta.json").write_text(json.dumps({"key": key}))
    started = time.monotonic()
    assert cli.main(["--flavor", "debug"]) == 0
    assert time.monotonic() - started < 5
    stdout = capsys.readouterr().out
    assert stdout == f"{out / 'bzImage'}\n"
    # The same build from Python, and as --json for a shell user.
    built = cli.build("debug")
    assert (built.image, built.key) == (out / "bzImage", key)
    assert cli.main(["--flavor", "debug", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["image"], record["key"]) == (str(out / "bzImage"), key)
    # A different flavor is a different key, so it is not served from this entry.
    with pytest.raises(AssertionError):
        cli.main(["--flavor", "release"])


def test_tree_that_is_not_a_kernel_fails_cleanly(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BUILD), "--tree", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "does not look like a kernel tree" in proc.stderr


def test_cached_only_refuses_to_build_and_names_the_inputs(
        fake_source: source.Source, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_build(*a: object) -> None:
        raise AssertionError("should not build")
    monkeypatch.setattr(cli, "prepare_tree", no_build)
    monkeypatch.setenv(cli.CACHED_ONLY_ENV, "1")
    assert cli.main(["--flavor", "release"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{cli.CACHED_ONLY_ENV}=1 forbids building it" in captured.err
    assert '"recipe_sha256"' in captured.err and '"toolchain"' in captured.err
