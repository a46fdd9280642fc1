"""Every bad input, one row each: one line on stderr (or ``HostError`` from the API), exit code 2, nothing written.

A new case joins by adding a row to ``CLI`` (tool, arguments, words the message must contain, words it must not)
or ``API`` (a call on an open runtime, words of the ``HostError``). ``{name}`` in a row is a fixture of
``conftest.world`` (files, and ``good_sha`` / ``other_sha`` / ``pack_sha``: the first 12 hex digits of the two
checkpoints' and the pack's sha256); ``{out}`` is a fresh path in the case's own folder, which the test runs in
and checks is still empty afterwards, as are the fixtures.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from m3vit.cli import demo, evaluate, flops, import_checkpoint, pack, quantize, train
from m3vit.hw import platform
from m3vit.hw.estimate import hls_estimate, param_sweep, perf_report
from m3vit.hw.gen import hls_config
from m3vit.hw.run import vectors
from m3vit_host import BackendOptions, HostError, open_runtime
from m3vit_host import cli as run_cli

TOOLS = {"run": run_cli, "pack": pack, "quantize": quantize, "train": train, "evaluate": evaluate, "demo": demo,
         "import": import_checkpoint, "flops": flops,
         # the `python -m` tools the READMEs and the Makefile run
         "hls_estimate": hls_estimate, "param_sweep": param_sweep, "perf_report": perf_report, "vectors": vectors,
         "platform": platform, "hls_config": hls_config}


def _prefixes(tool: str) -> tuple[str, ...]:
    """How a tool's one line starts: ``m3vit-<tool>``, or a module tool's short name / ``python -m <module>``."""
    module = TOOLS[tool].__name__
    return (f"m3vit-{tool}",) if module.startswith(("m3vit.cli.", "m3vit_host.")) else (tool, f"python -m {module}")


@dataclass(frozen=True)
class Case:
    tool: str
    argv: tuple[str, ...]
    needles: tuple[str, ...]  # words the one-line message must contain
    absent: tuple[str, ...] = ()  # words it must not contain (a message that contradicts the input)
    slow: bool = False


def case(tool: str, argv: str | list[str], *needles: str, absent: tuple[str, ...] = (), slow: bool = False) -> Case:
    return Case(tool, tuple(argv.split() if isinstance(argv, str) else argv), needles, absent, slow)


INFER = "infer {image} --pack {pack} --out {out} --no-progress"
CMP = "compare --pack {pack} --checkpoint {good} --val-samples 2 --out {out} --no-progress"
CLI = [
    # numbers checked at the door
    case("run", INFER + " --timeout nan", "--timeout", "'nan' is not a finite number"),
    case("run", INFER + " --timeout inf", "'inf' is not a finite number"),
    case("run", INFER + " --timeout 0", "--timeout: must be greater than 0"),
    case("run", INFER + " --backend simboard --device-frames 100000000", "--device-frames: must be between 1 and 1024"),
    case("run", INFER + " --batch-size 0", "--batch-size: must be between 1 and 4096, got 0"),
    case("run", CMP + " --worst 0", "--worst: must be between 1 and 64, got 0"),
    case("run", "bench --pack {pack} --frames 0 --out {out}", "--frames: must be between 1"),
    case("run", INFER + " --bogus", "unrecognized arguments: --bogus"),
    case("run", "infer", "the following arguments are required: inputs"),
    case("quantize", "--checkpoint {good} --calib-samples 100000000 --out {out}", "--calib-samples",
         "between 1 and 4096", "held in memory"),
    case("demo", "--calib-samples 100000000 --out {out}", "--calib-samples", "between 1 and 4096"),
    # images
    case("run", "infer {bomb} --pack {pack} --out {out}", "bomb.png claims over", "pixels", "scale it down"),
    case("run", "infer {bomb} --pack {pack} --out {out} --resize", "bomb.png claims over", "scale it down"),
    case("run", "infer {big} --pack {pack} --out {out}", "big.png is 9000x9000 (WxH)", "takes 128x64"),
    case("run", "infer {big} --pack {pack} --out {out} --resize", "9000x9000, over 64,000,000 pixels to resize"),
    # output folders: never "" (the cwd), never someone's results without --force, never the inputs' folder
    case("run", ["infer", "{image}", "--pack", "{pack}", "--out", ""], "--out is empty"),
    case("run", INFER.replace("{out}", "{held}"), "--out {held} already holds results", "--force"),
    case("run", CMP.replace("{out}", "{held}"), "already holds results"),
    case("run", "infer {dir}/images/a --pack {pack} --force --out {dir}/images", "holds the input"),
    case("train", "--out {run} --max-steps 1", "already holds a training run (last.pt, history.jsonl)",
         "--resume {run}/last.pt", "--force"),
    case("demo", "--out {held}", "--out {held} already holds results", "--force"),
    case("quantize", "--checkpoint {good} --out {dir}/pack", "--out {dir}/pack already holds results", "--force"),
    case("evaluate", ["--checkpoint", "{good}", "--out", ""], "--out is empty"),
    case("evaluate", "--checkpoint {good} --out {good}", "--out {good} already exists", "--force"),
    case("import", "--to edge-moe --checkpoint {good} --out {dir}/edge", "--out {dir}/edge already holds results",
         "--force"),
    case("import", "--from m3vit --src {good} --out {other}", "--out {other} already exists", "--force"),
    # packs named wrongly
    case("run", INFER.replace("{pack}", "{empty}"), "pack {empty} is a folder", absent=("does not exist",)),
    case("run", INFER.replace("{pack}", "/dev/null"), "/dev/null is not a regular file", absent=("does not exist",)),
    case("run", INFER.replace("{pack}", "{fifo}"), "{fifo} is not a regular file"),
    case("run", ["infer", "{image}", "--pack", "", "--out", "{out}"], "no pack given", absent=("manifest .",)),
    case("pack", "verify {empty}", "is a folder"),
    case("pack", "verify {pack} --bogus", "unrecognized arguments: --bogus"),
    # packs that are wrong inside
    case("pack", "verify {pack_renamed}", "config is named 'm3vit-tiny' but differs", "re-export"),
    case("run", INFER.replace("{pack}", "{pack_renamed}"), "config is named 'm3vit-tiny'"),
    case("pack", "verify {pack_strversion}", "'pack_version' should be an integer, got str", absent=("reads",)),
    case("pack", "verify {pack_noheads}", "sizes must be integers of 1 or more", "num_heads 0"),  # ZeroDivisionError
    case("run", INFER.replace("{pack}", "{pack_noheads}"), "num_heads 0"),
    case("pack", "verify {pack_inf}", "task depth gives non-finite outputs", "diverged"),
    case("run", INFER.replace("{pack}", "{pack_inf}") + " --backend simboard", "task depth: the outputs are not finite",
         "m3vit-pack verify"),
    case("quantize", "--checkpoint {good} --qat-steps 3 --qat-lr 1e6 --qat-samples 16 --calib-samples 4 "
                     "--no-fidelity --out {out}", "diverged", "--qat-lr", slow=True),
    # checkpoints: the loader's own line, not PyTorch's advice
    case("run", CMP.replace("{good}", "{text}"), "checkpoint {text} cannot be read", "not an m3vit checkpoint",
         absent=("weights_only", "arbitrary code")),
    case("train", "--resume {text} --out {out}", "cannot be read", absent=("weights_only",)),
    case("quantize", "--checkpoint {text} --out {out}", "cannot be read", absent=("weights_only",)),
    case("evaluate", "--checkpoint /dev/null", "/dev/null is empty or not a regular file"),
    # provenance: artefacts of different origins are refused, both hashes named
    case("run", CMP.replace("{good}", "{other}"), "was made from a checkpoint with sha256 {good_sha}",
         "has sha256 {other_sha}"),
    case("run", CMP.replace("{pack}", "{pack_unrecorded}"), "records no checkpoint", "{good_sha}"),
    case("run", CMP + " --backend onnx --onnx-dir {onnx_other}", "ONNX file", "0000000000",
         "pack with sha256", "{pack_sha}"),
    case("run", INFER + " --backend onnx --checkpoint {other}", "has sha256 {other_sha}", "{good_sha}"),
    # second pass (new cases): results replaced silently, work done twice, messages that named nothing
    case("flops", "--out {good}", "--out {good} already exists", "--force"),
    case("run", INFER + " --tasks depth,semseg,depth", "names a task twice"),
    case("run", INFER + " --backend pynq", "the pynq backend needs --bitstream", absent=("None",)),
    case("run", INFER.replace("{image}", "{pages}"), "holds 2 frames", "one picture per file"),
    case("pack", "verify {dir}/pack_renamed/model.m3vpack", "config is named 'm3vit-tiny'", absent=("JSON",)),
    case("evaluate", "--checkpoint {good} --data-seed -5", "--data-seed: must be between 0 and 4294967295"),
    case("train", "--seed -1 --max-steps 1 --out {out}", "--seed: must be between 0 and"),
    case("demo", "--seed 99999999999999999999 --out {out}", "--seed: must be between 0 and"),
    case("evaluate", "--checkpoint {good} --data nyud --data-root {good}", "is a file, not a folder",
         absent=("does not exist",)),
    case("run", "compare --pack {pack} --golden {scenes} --out {out}", "it is not an .npz",
         absent=("pickle", "allow_pickle")),
    case("run", "compare --pack {pack} --golden {image} --out {out}", "it is not an .npz", absent=("pickle",)),
    case("run", "compare --pack {pack} --golden {scenes} --val-samples 5 --data-seed 3 --out {out}",
         "--val-samples, --data-seed would be ignored", "drop them"),
    case("run", "compare --pack {pack} --golden {scenes} --checkpoint {good} --out {out}",
         "--checkpoint would be ignored"),
    case("run", "bench --pack {pack} --backends reference,reference --frames 1 --out {out}", "a backend twice"),
    case("run", ["bench", "--pack", "{pack}", "--backends", ",", "--frames", "1", "--out", "{out}"],
         "names no backend", absent=("unknown backend(s) []",)),
    case("import", "--from m3vit --src {text} --config micro --out {out}", "--src {text} cannot be read",
         "not a state dict file", absent=("weights_only", "arbitrary code")),
    case("import", "--from m3vit --src {fifo} --config micro --out {out}", "not a regular file",
         absent=("does not exist",)),
    # options the chosen backend ignores (the reference ran and its results looked like the board's)
    case("run", INFER + " --bitstream {image}", "--bitstream only applies to --backend pynq", "reference"),
    case("run", INFER + " --accelerator hang", "--accelerator only applies to --backend simboard"),
    case("run", INFER + " --backend simboard --onnx-dir {empty}", "--onnx-dir only applies to --backend onnx"),
    case("run", INFER + " --checkpoint {good}", "--checkpoint only applies to --backend onnx"),
    case("run", CMP + " --bitstream {image}", "--bitstream only applies to --backend pynq"),
    case("train", "--lr 1e300 --max-steps 1 --out {out}", "--lr: must be greater than 0 and at most 1e+12"),
    case("demo", "--lr 1e300 --out {out}", "--lr: must be greater than 0 and at most 1e+12"),
    case("train", "--workers 1000 --max-steps 1 --out {out}", "--workers: must be between 0 and 64"),
    case("run", INFER + " --backend onnx --onnx-dir {dir}/nowhere", "--onnx-dir {dir}/nowhere does not exist",
         absent=("for task",)),
    case("run", INFER + " --backend onnx --onnx-dir {image}", "is a file, not a folder"),
    # outputs that are not what they seem: a FIFO (the final rename replaced it, as it did /dev/full), links
    case("flops", "--out {fifo}", "--out {fifo} is a device, FIFO or socket"),
    case("evaluate", "--checkpoint {good} --force --out {fifo}", "not a regular file"),
    case("run", "golden --pack {pack} --checkpoint {good} --force --out {fifo}", "not a regular file"),
    case("run", INFER.replace("{out}", "{dangling}"), "is a symbolic link to", "which does not exist",
         absent=(".partial",)),
    case("run", INFER.replace("{out}", "{loop}"), "is a symbolic link that loops"),
    case("flops", "--out {loop}", "is a symbolic link that loops"),
    # the `python -m` tools: tracebacks, many-line usage errors, a pack left without its vectors
    case("hls_estimate", "--config micro --out {empty}", "--out {empty} is a folder"),
    case("hls_estimate", "--config micro --out {good}/est.json", "is a file, not a folder"),
    case("hls_estimate", "--config micro --bogus", "unrecognized arguments: --bogus"),
    # a set the sources reject: their static_assert's words, not g++'s traceback
    case("hls_estimate", "--param mac_rows=16 --out {out}", "does not compile", "Q/K/V row is whole"),
    case("param_sweep", "--config micro --grid epi_lanes=8 --out {empty}", "--out {empty} is a folder"),
    case("perf_report", "--configs micro --frames 1 --out {good}", "--out {good} is an existing file"),
    case("perf_report", "--configs micro --frames 1 --cycles {image} --out {out}", "is not a cycles file",
         "--cycles"),
    case("perf_report", "--configs bogus --out {out}", "invalid choice: 'bogus'"),
    case("perf_report", "--frames 0 --out {out}", "--frames: must be between 1"),
    case("vectors", "--pack {image} --out {out}", "is not valid JSON"),
    case("vectors", "--pack {pack} --task bogus --out {out}", "unknown task 'bogus'"),
    case("vectors", "--config micro --task bogus --out {out}", "unknown task 'bogus'"),
    case("vectors", "--pack {pack} --out {good}", "--out {good} is an existing file"),
    case("vectors", "--pack {pack} --out {dir}", "already holds files this tool did not write"),
    case("vectors", "--pack {pack} --frames 0 --out {out}", "--frames: must be between 1"),
    case("platform", "--tcl {empty}", "--tcl {empty} is a folder"),  # was an IsADirectoryError traceback
    case("platform", "--tcl {good}/platform.tcl", "is a file, not a folder"),
    case("hls_config", "--config nonexistent --out {out}", "invalid choice: 'nonexistent'"),  # was 5 lines
    # messages that contradicted the input
    case("run", CMP + " --data cityscapes --data-root {cityscapes} --tasks semseg,depth", "cityscapes",
         absent=("choose them with --tasks",)),
]


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in folder.rglob("*") if not p.is_fifo()}


def _call(main, argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own exits
        return exc.code


def _id(c: Case) -> str:
    return f"{c.tool}:{' '.join(c.argv)}"[:90]


@pytest.mark.parametrize("row", [pytest.param(c, marks=pytest.mark.slow) if c.slow else c for c in CLI], ids=_id)
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(row: Case, world, tmp_path, capsys, monkeypatch):
    work = tmp_path / "case"
    work.mkdir()
    monkeypatch.chdir(work)  # default outputs and caches would land here
    monkeypatch.setenv("M3VIT_BUILD_DIR", str(work / "cache"))
    names = dict(world, out=str(work / "out"))
    argv = [a.format(**names) for a in row.argv]
    if row.tool in ("quantize", "train", "evaluate", "demo"):
        argv.append("--no-progress")  # progress bars go to stderr: the one line must be the only one
    before = _snapshot(Path(world["dir"]))
    with warnings.catch_warnings(record=True) as caught:  # pytest would hide what a real run prints on stderr
        warnings.simplefilter("always")
        code = _call(TOOLS[row.tool].main, argv)
    err = capsys.readouterr().err
    assert not caught, f"warnings would add lines to stderr: {[str(w.message) for w in caught]}"
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and err.startswith(_prefixes(row.tool)), err
    assert "Traceback" not in err
    for needle in row.needles:
        assert needle.format(**names) in err, (needle, err)
    for word in row.absent:
        assert word not in err, (word, err)
    assert _snapshot(work) == {}, "the tool wrote files"
    assert _snapshot(Path(world["dir"])) == before, "the tool changed an existing file"


# The API: (what is passed to Runtime.run, or the options of open_runtime) → HostError with these words.
def _scenes(world) -> np.ndarray:
    return np.load(world["scenes"])


API = {
    "NaN image": (lambda s: np.where(np.arange(s.size).reshape(s.shape) == 5, np.nan, s), "NaN or infinite"),
    "inf image": (lambda s: s + np.inf, "NaN or infinite"),
    "1e6 image": (lambda s: s * 0 + 1e6, "outside the normalised range"),
    "0..255 floats": (lambda s: (s * 0 + 200.0).astype(np.float32), "outside the normalised range"),
    "complex image": (lambda s: s.astype(np.complex64), "complex"),
    "object image": (lambda s: s.astype(object), "dtype object"),
    "empty batch": (lambda s: s[:0], "no images: the batch is empty"),
    "empty picture batch": (lambda s: np.zeros((0, *s.shape[2:], 3), np.uint8), "no images: the batch is empty"),
    "uint8 wrong layout": (lambda s: np.zeros(s.shape, np.uint8), "pictures must be uint8 [B, H, W, 3]"),
}
OPTIONS = {
    "device frames 1e8": (BackendOptions(device_frames=100_000_000), "device_frames must be an integer from 1"),
    "timeout nan": (BackendOptions(timeout_s=float("nan")), "timeout must be a finite number"),
    "timeout inf": (BackendOptions(timeout_s=float("inf")), "timeout must be a finite number"),
    "timeout negative": (BackendOptions(timeout_s=-1.0), "timeout must be a finite number"),
    "options as a dict": ({"timeout_s": 1.0}, "options must be a BackendOptions"),
}


@pytest.mark.parametrize("name", sorted(API))
def test_api_refuses_images_it_cannot_run(name, world):
    make, needle = API[name]
    with open_runtime("reference", world["pack"]) as rt, pytest.raises(HostError, match=re.escape(needle)):
        rt.run(make(_scenes(world)), "depth")


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_api_refuses_options_out_of_range(name, world):
    options, needle = OPTIONS[name]
    with pytest.raises(HostError, match=re.escape(needle)):
        open_runtime("simboard", world["pack"], options=options)
