"""Shared fixtures. Every test run logs its seed so a failure can be replayed."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from hypothesis import settings

SEED = int(os.environ.get("M3VIT_TEST_SEED", "1234"))

# Property tests: no per-example deadline (a loaded 2-core CI machine makes timing meaningless here;
# speed is measured by the benchmark scripts), and a failing example is printed so it can be replayed.
settings.register_profile("m3vit", deadline=None, print_blob=True)
settings.load_profile("m3vit")


def pytest_report_header(config):
    return f"m3vit test seed: {SEED} (set M3VIT_TEST_SEED to replay another)"


@pytest.fixture(autouse=True)
def _seeded():
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    yield


@pytest.fixture
def micro():
    from m3vit.configs import get_config

    return get_config("micro")
