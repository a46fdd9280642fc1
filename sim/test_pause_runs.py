"""The back-pressure pattern of the whole-frame benches (common.pause_runs): alternating runs, the share of paused
cycles it is asked for, pauses of the asked mean length, and a clear error for a share that cannot alternate."""

from __future__ import annotations

import itertools

import pytest
from common import pause_runs


@pytest.mark.parametrize("busy", [0.3, 0.4, 0.8])
def test_runs_alternate_with_the_asked_share_and_mean(busy):
    runs = list(itertools.islice(pause_runs(seed=7, busy=busy, mean_pause=3.0), 40_000))
    assert all(n >= 1 for _, n in runs)
    assert all(a[0] != b[0] for a, b in itertools.pairwise(runs))  # paused and free runs take turns
    paused = [n for p, n in runs if p]
    share = sum(paused) / sum(n for _, n in runs)
    # free runs are at least one cycle, so a share whose free mean is near 1 comes out a little lower
    assert abs(share - busy) < (0.01 if busy < 0.5 else 0.06), share
    assert abs(sum(paused) / len(paused) - 3.0) < 0.1


def test_the_pattern_is_the_seed_s():
    a = list(itertools.islice(pause_runs(seed=1, busy=0.3), 100))
    assert a == list(itertools.islice(pause_runs(seed=1, busy=0.3), 100))
    assert a != list(itertools.islice(pause_runs(seed=2, busy=0.3), 100))


@pytest.mark.parametrize("busy, mean", [(0.0, 3.0), (1.0, 3.0), (-0.1, 3.0), (0.3, 0.5)])
def test_a_share_that_cannot_alternate_is_refused(busy, mean):
    with pytest.raises(ValueError, match="pause_runs"):
        next(pause_runs(seed=0, busy=busy, mean_pause=mean))
