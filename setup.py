"""m3vit-edge's wheel: every ``m3vit`` module except the torch-free ones that m3vit-host ships and owns.

``host/lean_modules.txt`` names those modules (and ``m3vit_host`` is all m3vit-host's), so the two
distributions never install the same file; m3vit-edge depends on m3vit-host. An editable install
(``make setup``: ``pip install -e .``) maps both source folders whole, as a development checkout wants.
"""

import shutil
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

    def run(self) -> None:
        super().run()
        # setuptools reuses build/lib: a module copied there by an older build (before it became m3vit-host's)
        # would ship in both wheels, so none of m3vit-host's files may stay in it
        for mod in LEAN:
            Path(self.build_lib, *mod.split(".")).with_suffix(".py").unlink(missing_ok=True)
        shutil.rmtree(Path(self.build_lib, "m3vit_host"), ignore_errors=True)


setup(cmdclass={"build_py": WorkstationBuildPy})
