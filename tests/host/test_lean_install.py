"""The board's install, tried as a user would: the m3vit-host wheel in a fresh venv with numpy<2 and no torch.

Slow (builds a wheel, installs from PyPI into a new virtual environment): marked ``slow``. The venv uses
Python 3.10 (what PYNQ 3.x images ship) where ``M3VIT_LEAN_PYTHON`` or ``python3.10`` gives one, else this
interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from m3vit_host.cli import main

REPO = Path(__file__).resolve().parents[2]
LEAN_MODULES = [m.strip() for m in (REPO / "host" / "lean_modules.txt").read_text().splitlines()
                if m.strip() and not m.startswith("#")]


def sh(*args, **kwargs) -> subprocess.CompletedProcess:
    # no PYTHONPATH: the venv must see only what was installed into it (not this checkout's sources)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, **kwargs)
    assert res.returncode == 0, f"{' '.join(map(str, args))}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def build_wheel(project: Path, out: Path) -> Path:
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, project)
    return next(out.glob("*.whl"))


@pytest.fixture(scope="module")
def host_wheel(tmp_path_factory) -> Path:
    return build_wheel(REPO / "host", tmp_path_factory.mktemp("wheel"))


def lean_python() -> str:
    for candidate in (os.environ.get("M3VIT_LEAN_PYTHON"), shutil.which("python3.10")):
        if candidate and subprocess.run([candidate, "-c", "import venv"], capture_output=True).returncode == 0:
            return candidate
    return sys.executable


@pytest.fixture(scope="module")
def lean_venv(host_wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("lean") / "venv"
    sh(lean_python(), "-m", "venv", venv)
    sh(venv / "bin" / "python", "-m", "pip", "install", "-q", f"{host_wheel}", "numpy<2")
    return venv


@pytest.mark.slow
def test_the_two_wheels_share_no_file(host_wheel, tmp_path):
    workstation = build_wheel(REPO, tmp_path)
    files = [{n for n in zipfile.ZipFile(w).namelist() if ".dist-info/" not in n} for w in (host_wheel, workstation)]
    assert files[0] and files[1] and not files[0] & files[1]
    assert {m.replace(".", "/") + ".py" for m in LEAN_MODULES} <= files[0]
    assert "m3vit/model.py" in files[1] and "m3vit_host/data/m3vit.hwh" in files[0]


@pytest.mark.slow
def test_lean_install_runs_infer_and_compare_golden_bit_exact(assets, lean_venv, tmp_path):
    py = lean_venv / "bin" / "python"
    probe = sh(py, "-c", "import importlib.util as u, numpy, platform; print(platform.python_version(), "
                         "numpy.__version__, [m for m in ('torch', 'scipy', 'matplotlib', 'brevitas', 'onnx') "
                         "if u.find_spec(m)])", cwd=tmp_path).stdout.split(" ", 2)
    print(f"lean venv: Python {probe[0]}, numpy {probe[1]}")
    assert tuple(map(int, probe[0].split(".")[:2])) >= (3, 10) and probe[1].startswith("1.") and \
        probe[2].strip() == "[]", probe
    # pictures for infer
    from PIL import Image

    from m3vit_host.report import _denormalise

    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((_denormalise(assets.images[i]) * 255).round().astype(np.uint8)).save(folder / f"s{i}.png")
    run = lean_venv / "bin" / "m3vit-run"
    sh(run, "infer", folder, "--pack", assets.manifest, "--backend", "simboard", "--out", tmp_path / "lean_infer",
       "--no-progress", cwd=tmp_path)
    assert main(["infer", str(folder), "--pack", str(assets.manifest), "--backend", "reference", "--out",
                 str(tmp_path / "ws_infer"), "--no-progress"]) == 0
    for i in range(2):
        for task in assets.cfg.tasks:
            got = np.load(tmp_path / "lean_infer" / f"s{i}" / f"{task.name}.npy")
            want = np.load(tmp_path / "ws_infer" / f"s{i}" / f"{task.name}.npy")
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # same numpy heads, another numpy
    golden = tmp_path / "golden.npz"
    assert main(["golden", "--pack", str(assets.manifest), "--checkpoint", str(assets.checkpoint), "--out",
                 str(golden), "--val-samples", "2"]) == 0
    out = sh(run, "compare", "--pack", assets.manifest, "--golden", golden, "--backend", "simboard", "--out",
             tmp_path / "cmp", "--no-progress", cwd=tmp_path).stdout
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    tokens = summary["tokens_vs_integer_reference"]
    assert tokens["values"] > 0 and tokens["differing_values"] == 0, out
    assert "matplotlib is not installed" in summary["pictures"]


@pytest.mark.slow
def test_board_extra_resolves_with_pynq_pins(host_wheel, lean_venv):
    """`pip install m3vit-host[board]` resolves (pynq==4.0.0 pins numpy<2): what the board's README runs."""
    res = sh(lean_venv / "bin" / "python", "-m", "pip", "install", "--dry-run", "--ignore-installed",
             f"{host_wheel.name}[board]", cwd=host_wheel.parent)  # as build/board/README.md says
    assert "pynq-4.0.0" in res.stdout and "numpy-1." in res.stdout, res.stdout[-2000:]


@pytest.mark.slow
def test_board_bundle_holds_what_the_board_needs(assets, tmp_path):
    sys.path.insert(0, str(REPO / "host"))
    try:
        from make_bundle import main as bundle
    finally:
        sys.path.pop(0)
    out = tmp_path / "board"
    assert bundle(["--pack", str(assets.manifest), "--checkpoint", str(assets.checkpoint), "--out", str(out),
                   "--bitstream", str(tmp_path / "none.bit"), "--val-samples", "2"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["README.md", "golden.npz", "model.json", "model.m3vpack",
                            next(n for n in names if n.startswith("m3vit_host-") and n.endswith(".whl"))])
    readme = (out / "README.md").read_text()
    assert "No bitstream here" in readme and "--golden golden.npz" in readme and "sudo" in readme
    with pytest.raises(SystemExit) as exc:
        bundle(["--pack", str(tmp_path / "missing.json"), "--out", str(tmp_path / "b2")])
    assert exc.value.code == 2 and not (tmp_path / "b2").exists()
