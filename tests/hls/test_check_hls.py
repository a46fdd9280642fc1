"""The HLS rule checker (hls/tools/check_hls.py): each rule rejects its bad example, the accepted forms pass,
and the accelerator's sources pass (64-bit arithmetic within the committed ratchet, hls/README.md)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CASES = Path(__file__).resolve().parent / "hls_check_cases"
BASELINE = REPO / "hls" / "tools" / "check_hls_baseline.json"


def _checker():
    spec = importlib.util.spec_from_file_location("check_hls", REPO / "hls" / "tools" / "check_hls.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_hls"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


check_hls = _checker()


@pytest.mark.parametrize(("case", "rule"), [
    ("stream_pointer", "stream-pointer"),
    ("recursion", "recursion"),
    ("int64", "int64"),
    ("dataflow_shared", "dataflow-shared"),
    ("dataflow_two_writers", "dataflow-shared"),
    ("dataflow_global", "dataflow-global"),
    ("dataflow_static_local", "dataflow-global"),
    ("tripcount", "tripcount"),
    ("storage", "storage"),
])
def test_each_rule_rejects_its_bad_example(case, rule, capsys):
    assert check_hls.main(["--source", str(CASES / f"{case}.cpp"), "--top", "top"]) == 1
    findings = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("check_hls:")]
    assert findings and {line.split()[0] for line in findings} == {rule}, findings


def test_wide_ap_int_values_are_findings_and_pointers_to_them_are_not(capsys):
    """ap_int<64> and a 128-bit word held as a value are datapaths; an ap_uint<128> pointer (an m_axi port) is an
    address, as an int64_t pointer always was."""
    assert check_hls.main(["--source", str(CASES / "int64_ap.cpp"), "--top", "top"]) == 1
    findings = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("check_hls:")]
    assert findings and all(line.startswith("int64 ") for line in findings), findings
    assert any(" p: " in line for line in findings) and any(" w: " in line for line in findings), findings
    assert not any("mem" in line for line in findings), findings


def test_the_accepted_forms_pass(capsys):
    assert check_hls.main(["--source", str(CASES / "good.cpp"), "--top", "top"]) == 0
    assert "0 finding(s)" in capsys.readouterr().out


def test_the_accelerator_passes_and_the_ratchet_is_tight(capsys):
    """No finding of any rule beyond the baseline, and no baseline entry above what is left (lower it as the
    64-bit arithmetic goes: the baseline only shrinks)."""
    rc = check_hls.main(["--baseline", str(BASELINE)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "stale baseline entry" not in out, out
    # every other rule holds outright: the ratchet covers 64-bit arithmetic only
    assert all(key.startswith("int64 ") for key in json.loads(BASELINE.read_text())), "only int64 is ratcheted"


@pytest.mark.parametrize(("config", "mode"), [("m3vit-tiny", "w16a16"), ("m3vit-small", "w8a8")])
def test_other_builds_pass_every_rule_but_the_ratcheted_one(config, mode, capsys):
    """The rules hold for the unpacked 16-bit datapath and for M3ViT-S's shapes too (the same sources)."""
    rc = check_hls.main(["--config", config, "--mode", mode,
                         "--rules", "stream-pointer,recursion,dataflow-shared,dataflow-global,tripcount,storage"])
    assert rc == 0, capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--rules", "nope"], ["--source", "missing.cpp"], ["--config", "nope"],
                                  ["--source", str(CASES / "good.cpp"), "--top", "absent"]])
def test_bad_input_exits_2_with_one_line(argv, capsys):
    assert check_hls.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("check_hls: ")


GOOD = ["--source", str(CASES / "good.cpp"), "--top", "top"]


@pytest.mark.parametrize(("extra", "needle"), [
    (["--bogus"], "unrecognized arguments: --bogus"),  # was five lines of usage
    (["--storage-bits", "-1"], "--storage-bits: must be between 1"),  # was accepted: every array then "undecided"
    (["--baseline", "{list}"], "expected a JSON object"),  # was an AttributeError traceback
    (["--write-baseline", "{dir}"], "is a folder"),  # was an IsADirectoryError traceback after the whole parse
    (["--write-baseline", "/proc/baseline.json"], "cannot write in /proc"),
])
def test_second_pass_bad_inputs_are_one_line_exit_2(extra, needle, tmp_path, capsys):
    (tmp_path / "list.json").write_text("[1, 2]\n")
    argv = GOOD + [a.format(list=tmp_path / "list.json", dir=tmp_path) for a in extra]
    try:
        code = check_hls.main(argv)
    except SystemExit as exc:  # argparse's own exit
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("check_hls") and needle in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.json"]
