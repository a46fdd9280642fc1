"""Shared fixtures. Every test run logs its seed so a failure can be replayed."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

SEED = int(os.environ.get("M3VIT_TEST_SEED", "1234"))


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
