"""The benchmark scripts (model/benchmarks/*.py): a bad argument is one line on stderr and exit 2, before any work,
and nothing is written (they printed many lines of usage, tracebacks for an unknown config, or ran with 0 images)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "model" / "benchmarks"

CASES = [
    ("reference_speed", "--configs bogus", "invalid choice: 'bogus'"),  # was a KeyError traceback
    ("reference_speed", "--configs micro --images 0", "--images: must be at least 1"),  # was a calibration traceback
    ("reference_speed", "--configs micro --out {tmp}", "is a folder"),  # was checked only after the timing
    ("numerics_errors", "--out {tmp}", "is a folder"),
    ("lean_footprint", "--config bogus", "invalid choice: 'bogus'"),
    ("lean_footprint", "--config micro --images 0", "--images: must be at least 1"),
    ("head_ablation", "--epochs 0", "--epochs: must be at least 1"),  # was a ValueError traceback
    ("software_speed", "--frames 0", "--frames: must be at least 1"),  # was four lines of usage
    ("route_attribution", "--headroom 99", "--headroom: must be between 0 and 8"),
    ("route_attribution", "--modes bogus", "invalid choice: 'bogus'"),
    ("token_fidelity", "--bogus", "unrecognized arguments: --bogus"),  # was 19 lines of usage
    ("weight_grid", "--grids 8:row", "--grids: weight grid '8:row'"),
    ("weight_grid", "--grids 8:g40:real", "groups of 40 do not divide"),
    ("weight_grid", "--generators bogus", "invalid choice: 'bogus'"),
    ("weight_grid", "--goal 2", "--goal"),
    ("ln_reciprocal", "--variants 40:12", "variant '40:12'"),
    ("ln_reciprocal", "--out {tmp}", "is a folder"),
    ("ln_reciprocal", "--val-samples 0", "must be at least 1"),
]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(("script", "argv", "needle"), CASES, ids=[f"{s}:{a}" for s, a, _ in CASES])
def test_bad_argument_is_one_line_exit_2(script, argv, needle, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # default outputs (build/bench/...) would land here
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv.format(tmp=tmp_path).split()])
    with pytest.raises(SystemExit) as stop:
        _load(script).main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and needle in err, err
    assert list(work.iterdir()) == [], "the script wrote files"


def test_ln_reciprocal_what_if_changes_layernorm_and_restores_the_contract():
    """The what-if LayerNorm constants reach the integer reference (a wide row's output changes with a finer
    reciprocal) and are the contract's again afterwards, also after an error inside."""
    import numpy as np

    from m3vit.quant import hwconst, intops
    from m3vit.quant.fixed import QFormat

    bench = _load("ln_reciprocal")
    rng = np.random.default_rng(0)
    x = rng.integers(-(2**15), 2**15, (4, 192))  # wide rows: root near D·2^15, the contract's rcp has 7 bits
    out = QFormat(16, 12)
    consts = hwconst.layernorm_constants(QFormat(16, 0), 0, out, 192, 1e-6)
    gain, bias = np.ones(192, dtype=np.int64), np.zeros(192, dtype=np.int64)
    before = intops.layernorm(x, gain, bias, out, consts)
    with bench.layernorm_constants(12, 40):
        assert intops.LN_RECIP_FRAC == 40 and intops.LN_NORM_SHIFT == 28
        finer = intops.layernorm(x, gain, bias, out, consts)
    with pytest.raises(RuntimeError), bench.layernorm_constants(16, 44):
        raise RuntimeError("inside")
    assert (intops.LN_NORM_FRAC, intops.LN_RECIP_FRAC) == bench.CONTRACT == (hwconst.LN_NORM_FRAC, 30)
    assert (intops.layernorm(x, gain, bias, out, consts) == before).all()
    exact = (192 * x - x.sum(-1, keepdims=True)) / np.sqrt(192 * (x * x).sum(-1, keepdims=True)
                                                           - x.sum(-1, keepdims=True) ** 2) * 2**12
    assert np.abs(finer - exact).max() < np.abs(before - exact).max()
