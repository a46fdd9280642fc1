"""What every test folder shares: the order the tests start in."""

from __future__ import annotations

import os

import pytest

# Minute-long runs first, spread over the workers: pytest-xdist (`--dist worksteal`) gives each of its N workers one
# contiguous Nth of the collection, then an idle worker takes the back half of a busy one's queue. So the order is
# built as N queues, each starting with its share of the `long` runs, then of the `slow` ones (dealt round-robin),
# then the rest: every worker starts on long work, and what is left for last is short. Every worker computes the
# same order (it depends on the collection and N only). `make test-all`, which CI runs, holds both kinds.
_START_ORDER = ("long", "slow")

# Each worker's math libraries (torch, OpenMP, BLAS) get its share of the cores, not one thread per core each: N
# workers each spinning a thread per core oversubscribe the machine, and a torch training beside a yosys run then
# crawls (the demo's test took 978 s in a CI run beside a synthesis, 209 s with this). Set before any test module
# imports torch; a variable the caller set is kept.
_WORKERS = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
if _WORKERS > 1:
    _share = str(max(1, (os.cpu_count() or 1) // _WORKERS))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, _share)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workers = _WORKERS

    def rank(item: pytest.Item) -> int:
        return next((i for i, m in enumerate(_START_ORDER) if item.get_closest_marker(m)), len(_START_ORDER))

    def minutes(item: pytest.Item) -> float:
        # a `long` run's expected minutes (`@pytest.mark.long(minutes=…)`, measured on the 2-core CI machine): the
        # longest are dealt first, one to each worker, so no worker starts its longest run last
        mark = item.get_closest_marker("long")
        return float(mark.kwargs.get("minutes", 0)) if mark else 0.0

    queues: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for r in range(len(_START_ORDER) + 1):
        ranked = sorted((it for it in items if rank(it) == r), key=minutes, reverse=True)  # (stable)
        for i, item in enumerate(ranked):
            queues[i % workers].append(item)
    # worksteal cuts the list at multiples of len // N; the round-robin deal keeps the queues within one item of
    # that, so each worker's share starts with its queue's long runs
    items[:] = [item for queue in queues for item in queue]
