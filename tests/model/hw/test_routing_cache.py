"""The routing cache of the performance model: written whole, and a cache cut short is measured again."""

from __future__ import annotations

import json

from m3vit.hw.estimate.routing_stats import measure


def test_a_truncated_cache_is_measured_again_and_rewritten_whole(tmp_path):
    first = measure("micro", frames=1, cache_dir=tmp_path)
    (cache,) = tmp_path.glob("routing-*.json")
    good = cache.read_text()
    cache.write_text(good[: len(good) // 2])  # as a run killed mid-write (before the write was atomic) left it
    again = measure("micro", frames=1, cache_dir=tmp_path)  # was json.JSONDecodeError in every later run
    assert (again.top == first.top).all() and again.source == first.source
    assert json.loads(cache.read_text()) == json.loads(good)
    assert [p.name for p in tmp_path.iterdir()] == [cache.name]  # no temporary file left beside it
