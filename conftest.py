"""What every test folder shares: the order the tests start in."""

from __future__ import annotations

import pytest

# Minute-long runs first: pytest-xdist hands each worker its share in collection order and idle workers take work
# from busy ones, so the longest runs should start early, with the short tests filling in beside them, and not be
# left for last on one core while the other idles (`make test-all`, which CI runs, holds both kinds).
_START_ORDER = ("long", "slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, m in enumerate(_START_ORDER) if item.get_closest_marker(m)), len(_START_ORDER))

    items.sort(key=rank)  # stable: within a rank, the collection order
