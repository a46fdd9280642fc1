"""Shared fixtures. Every test run logs its seed so a failure can be replayed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable

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


@pytest.fixture
def sigterm_when() -> Callable[[subprocess.Popen, Callable[[], bool]], str]:
    """SIGTERM a running command-line subprocess as soon as ``ready()`` holds (what a CI runner's timeout does
    mid-run); fails if the process exits first or ``ready`` takes over 90 s. Returns the process's stderr after it
    exited (its exit status is ``proc.returncode``); the process never outlives the test."""

    def send(proc: subprocess.Popen, ready: Callable[[], bool]) -> str:
        try:
            deadline = time.monotonic() + 90
            while not ready():
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        return err

    return send
