"""The VM runner as a library: run() takes a Build (or a path) and returns a GuestResult;
guestdoc brings a guest script's JSON document back; --json writes the result.  Booted
with the fake vng of conftest.py."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from kbuild.artifact import Build
from vmrun import cli, guestdoc, provenance, run, status

Fake = Callable[..., Path]


def build_of(image: Path) -> Build:
    # No meta.json beside the image: provenance must come from the Build itself.
    return Build(image, "k42", "release", True, None, {"git_revision": "r1", "patches": ["p"]})


def test_run_returns_status_provenance_and_scratch(fake: Fake) -> None:
    image = fake()
    result = run.run(["sh", "-c", "exit 4"], build_of(image), cpus=3, memory="5G")
    assert (result.status, result.cmd_status, result.timed_out) == (4, 4, False)
    assert result.findings == []
    kernel = result.provenance["kernel"]
    assert (kernel["key"], kernel["flavor"], kernel["built_from"]) == ("k42", "release", "r1")
    assert result.provenance["guest"] == {"cpus": 3, "memory": "5G", "accelerator": "TCG"}
    assert result.scratch is not None and (result.scratch / "provenance.json").is_file()
    assert result.dmesg == result.scratch / "dmesg.txt"
    assert "cmd_start" in result.uptimes


def test_run_reports_findings(fake: Fake) -> None:
    image = fake(dmesg="[ 9.0] WARNING: CPU: 1 PID: 9 at mm/mshare.c:5 x+0x1/0x2\n")
    result = run.run(["true"], image)
    assert result.status == status.SPLAT
    assert [f.category for f in result.findings] == ["warning"]
    assert result.provenance["kernel"]["key"] is None  # a bare image, not a build


def test_missing_image_is_no_result(tmp_path: Path) -> None:
    assert run.run(["true"], tmp_path / "nope").status == status.INFRA


def test_json_option_writes_the_result(fake: Fake, tmp_path: Path) -> None:
    image = fake()
    out = tmp_path / "result.json"
    assert cli.main(["--kernel", str(image), "--json", str(out), "--", "true"]) == 0
    record = json.loads(out.read_text())
    assert record["status"] == 0 and record["findings"] == []
    assert record["dmesg"].endswith("dmesg.txt") and record["provenance"]["guest"]["cpus"] == 2


def test_guestdoc_brings_the_document_back(fake: Fake, tmp_path: Path) -> None:
    image = fake()
    script = tmp_path / "writer.py"
    script.write_text("import json, sys\n"
                      "json.dump({'args': sys.argv[1:-2]}, open(sys.argv[-1], 'w'))\n")
    rwdir = tmp_path / "rw"
    rwdir.mkdir()
    out = rwdir / "doc.json"
    result, doc = guestdoc.run_script(str(script), ["a", "b", "--out", str(out)], out, image,
                                      label="test", cpus=2, memory="1G", timeout=60)
    assert result.status == 0 and doc == {"args": ["a", "b"]}


def test_run_bench_gives_the_document_with_the_finished_provenance(fake: Fake,
                                                                  tmp_path: Path) -> None:
    image = fake()
    script = tmp_path / "bench.py"
    script.write_text("import json, sys\n"
                      "json.dump({'args': sys.argv[1:-2], 'provenance': {}},"
                      " open(sys.argv[-1], 'w'))\n")
    status_, doc = guestdoc.run_bench(str(script), ["--plan", "quick"], build_of(image),
                                      label="test", cpus=2, memory="1G", timeout=60)
    assert status_ == 0 and doc is not None and doc["args"] == ["--plan", "quick"]
    assert doc["provenance"]["kernel"]["key"] == "k42"
    assert "load_after" in doc["provenance"]["host"]


def test_guestdoc_without_a_document_gives_none(tmp_path: Path) -> None:
    assert guestdoc.load(tmp_path / "absent.json") is None


def test_a_host_run_has_the_same_record_with_the_running_kernel() -> None:
    record = provenance.finish(provenance.on_host())
    assert set(record) == {"git_revision", "kernel", "guest", "host"}
    assert record["kernel"]["flavor"].startswith("host ") and record["kernel"]["key"] is None
    assert {"load_before", "load_after"} <= set(record["host"])
    assert "none (host run, no guest)" in provenance.describe(record)
