"""m3vit-pack verify: a one-line summary and exit 0 for a sound pack, one clear line and exit 2 otherwise."""

import json
import subprocess
import sys

import pytest

from m3vit.cli import pack as pack_cli
from m3vit.quant.pack import write_pack


@pytest.fixture
def manifest(qmodel, tmp_path):
    return write_pack(qmodel, tmp_path)[1]


def test_verify_sound_pack(manifest, capsys):
    assert pack_cli.main(["verify", str(manifest), "--config", "micro", "--mode", "w8a8"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "OK" in out[0] and "micro" in out[0] and "w8a8" in out[0]


def test_verify_takes_the_binary_as_m3vit_run_does(manifest, capsys):
    """m3vit-run --pack takes the .m3vpack as well as the .json; verify said 'is not valid JSON' of the binary."""
    assert pack_cli.main(["verify", str(manifest.with_suffix(".m3vpack")), "--no-probe"]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.pop("hardware"), "'hardware' is missing"),
    (lambda m: m["tensors"][0].update({"shape": [1, 2]}), "has shape"),
    (lambda m: m["config"].update({"dim": 32}), "config is named 'micro' but differs from that config in ['dim']"),
])
def test_verify_bad_manifest_exits_2_with_one_line(manifest, capsys, edit, message):
    meta = json.loads(manifest.read_text())
    edit(meta)
    manifest.write_text(json.dumps(meta))
    assert pack_cli.main(["verify", str(manifest)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("m3vit-pack: error:") and message in err[0]


def test_verify_expectations_and_missing_file(manifest, tmp_path, capsys):
    assert pack_cli.main(["verify", str(manifest), "--mode", "w16a16"]) == 2
    assert pack_cli.main(["verify", str(manifest), "--tasks", "depth"]) == 2
    assert pack_cli.main(["verify", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert "not w16a16" in err and "exported for tasks" in err and "does not exist" in err and "Traceback" not in err


def test_verify_help_shows_defaults():
    out = subprocess.run([sys.executable, "-m", "m3vit.cli.pack", "verify", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--mode" in out and "(default: None)" in out
