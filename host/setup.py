"""m3vit-host's module list: ``m3vit_host`` and the torch-free modules of ``m3vit`` named in lean_modules.txt.

The ``m3vit`` sources stay where they are (``../model/m3vit``): one copy of every format's code.
Build the wheel from a checkout (``pip wheel ./host`` or ``make board-bundle``); metadata is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
LEAN = [line.strip() for line in (HERE / "lean_modules.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")]

setup(
    packages=["m3vit_host", "m3vit_host.backends"],
    package_data={"m3vit_host": ["data/*.hwh"]},
    py_modules=[m for m in LEAN if not m.endswith(".__init__")],
    package_dir={"m3vit_host": "m3vit_host", "m3vit": "../model/m3vit"},
)
