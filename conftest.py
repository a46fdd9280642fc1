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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))

    def rank(item: pytest.Item) -> int:
        return next((i for i, m in enumerate(_START_ORDER) if item.get_closest_marker(m)), len(_START_ORDER))

    queues: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for r in range(len(_START_ORDER) + 1):
        for i, item in enumerate(it for it in items if rank(it) == r):
            queues[i % workers].append(item)
    # worksteal cuts the list at multiples of len // N; the round-robin deal keeps the queues within one item of
    # that, so each worker's share starts with its queue's long runs
    items[:] = [item for queue in queues for item in queue]
