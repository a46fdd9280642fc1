"""The weight-grid tool (quant/fidelity_grid.py, NUMERICS.md §7.1): grids round as they say, a fine grid is float,
a coarse one moves routes, and the summary counts the worst case."""

import numpy as np
import pytest

from m3vit.quant.fidelity_grid import WeightGrid, grid_params, markdown, measure_case, summarise
from m3vit.quant.params import float_params


def _w(seed: int = 0, shape=(6, 64)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape) * np.linspace(0.01, 3.0, shape[0])[:, None]


@pytest.mark.parametrize("spec", ["8:row:pow2", "8:row:real", "8:g16:real", "6:g8:pow2", "12:row:pow2"])
def test_a_grid_rounds_to_nearest_within_half_its_step(spec):
    grid = WeightGrid.parse(spec)
    w = _w()
    q = grid.round(w)
    top = 2 ** (grid.bits - 1) - 1
    g = w.shape[-1] if grid.group == 0 else grid.group
    wg, qg = w.reshape(w.shape[0], -1, g), q.reshape(w.shape[0], -1, g)
    amax = np.abs(wg).max(-1, keepdims=True)
    step = amax / top
    if grid.pow2:
        step = 2.0 ** np.ceil(np.log2(step))
        assert np.all(step >= amax / top) and np.all(step < 2 * amax / top)  # the smallest power that keeps amax
    levels = qg / step
    assert np.allclose(levels, np.round(levels)) and np.abs(levels).max() <= top + 1e-9  # on the grid, in range
    assert np.all(np.abs(qg - wg) <= step / 2 + 1e-12)  # nearest
    assert grid.label == spec


def test_finer_grids_are_closer():
    w = _w(1)
    err = {s: np.abs(WeightGrid.parse(s).round(w) - w).mean() for s in ("8:row:pow2", "8:row:real", "8:g8:real",
                                                                           "16:row:pow2")}
    assert err["8:row:pow2"] > err["8:row:real"] > err["8:g8:real"] > err["16:row:pow2"]


@pytest.mark.parametrize("bad", ["8", "8:row", "8:g0:real", "8:row:float", "1:row:pow2", "30:row:pow2", "x:row:pow2"])
def test_a_bad_grid_is_refused(bad):
    with pytest.raises(ValueError):
        WeightGrid.parse(bad)


def test_a_group_that_does_not_divide_the_row_is_refused():
    with pytest.raises(ValueError, match="whole groups"):
        WeightGrid.parse("8:g48:real").round(_w())


def test_only_matrices_are_rounded(micro_model):
    fp = float_params(micro_model)
    gp = grid_params(fp, WeightGrid.parse("4:row:pow2"))
    for name, v in fp.items():
        assert np.array_equal(gp[name], v) != name.endswith(".w"), name


def test_a_fine_grid_routes_as_float_and_a_coarse_one_does_not(micro_model, images):
    r = measure_case(micro_model, images[:2].astype(np.float64),
                     [WeightGrid.parse("24:row:real"), WeightGrid.parse("3:row:pow2")])
    assert r["grids"]["24:row:real"]["worst"] == 1.0
    assert r["grids"]["3:row:pow2"]["worst"] < 1.0
    result = {"config": "micro", "grids": ["24:row:real", "3:row:pow2"], "cases": {"timm_init seed 0 scenes": r}}
    rows = {row["grid"]: row for row in summarise(result)}
    assert rows["24:row:real"]["holds"] and rows["24:row:real"]["worst"] == 1.0
    assert rows["3:row:pow2"]["worst"] == r["grids"]["3:row:pow2"]["worst"]
    assert "`3:row:pow2`" in markdown(result)
