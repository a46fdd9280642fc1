"""m3vit-edge's wheel: every ``m3vit`` module except the torch-free ones that m3vit-host ships and owns.

``host/lean_modules.txt`` names those modules (and ``m3vit_host`` is all m3vit-host's), so the two
distributions never install the same file; m3vit-edge depends on m3vit-host. An editable install
(``make setup``: ``pip install -e .``) maps both source folders whole, as a development checkout wants.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
LEAN = {line.strip() for line in (HERE / "host" / "lean_modules.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")}


class WorkstationBuildPy(build_py):
    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        return [(pkg, mod, path) for pkg, mod, path in super().find_package_modules(package, package_dir)
                if f"{pkg}.{mod}" not in LEAN and not pkg.startswith("m3vit_host")]


setup(cmdclass={"build_py": WorkstationBuildPy})
