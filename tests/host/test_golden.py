"""m3vit-run golden (workstation) → compare --golden (the board's lean path: no torch, no matplotlib, no scipy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from m3vit_host.cli import main

REPO = Path(__file__).resolve().parents[2]
# Run m3vit-run as on the board's lean install: the workstation-only packages cannot be imported.
LEAN = """
import sys
ABSENT = ('torch', 'scipy', 'matplotlib', 'brevitas', 'onnx', 'onnxruntime')
for name in ABSENT:
    sys.modules[name] = None  # import → ModuleNotFoundError, importlib.util.find_spec → None: as if not installed
from m3vit_host.cli import main
code = main(sys.argv[1:])
assert all(sys.modules.get(name) is None for name in ABSENT)
sys.exit(code)
"""


def lean_run(args: list) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": f"{REPO / 'model'}:{REPO / 'host'}", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", LEAN, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=REPO)


@pytest.fixture(scope="module")
def golden_file(assets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("golden") / "golden.npz"
    assert main(["golden", "--pack", str(assets.manifest), "--checkpoint", str(assets.checkpoint), "--out", str(out),
                 "--val-samples", "3"]) == 0
    return out


def test_golden_file_holds_outputs_and_provenance(assets, golden_file):
    from m3vit.provenance import sha256_file
    from m3vit_host.golden import read_golden
    from m3vit_host.runtime import load_pack

    golden = read_golden(golden_file, load_pack(assets.manifest))
    assert golden.meta["checkpoint_sha256"] == sha256_file(assets.checkpoint)
    assert golden.meta["pack_payload_sha256"] == json.loads(assets.manifest.read_text())["payload_sha256"]
    assert len(golden) == 3 and set(golden.heads) == set(assets.cfg.task_names)
    import torch

    with torch.no_grad():
        want = assets.model(torch.from_numpy(golden.images), "depth").numpy()
    assert np.array_equal(golden.heads["depth"], want)


def test_compare_golden_on_the_lean_path_equals_compare_with_the_model(assets, golden_file, tmp_path):
    lean_out, ws_out = tmp_path / "lean", tmp_path / "ws"
    res = lean_run(["compare", "--pack", assets.manifest, "--golden", golden_file, "--backend", "simboard",
                    "--out", lean_out, "--no-progress", "--batch-size", 2])
    assert res.returncode == 0, res.stderr
    assert "0 of" in res.stdout and "matplotlib is not installed" in res.stdout
    assert main(["compare", "--pack", str(assets.manifest), "--checkpoint", str(assets.checkpoint), "--backend",
                 "simboard", "--out", str(ws_out), "--no-progress", "--batch-size", "2", "--val-samples", "3"]) == 0
    lean, ws = (json.loads((o / "summary.json").read_text()) for o in (lean_out, ws_out))
    assert lean["tokens_vs_integer_reference"]["differing_values"] == 0
    assert lean["tokens_vs_integer_reference"] == ws["tokens_vs_integer_reference"]
    for task in assets.cfg.task_names:  # same images, same golden outputs: the same figures
        for side in ("golden", "backend"):
            for key, value in ws["tasks"][task][side].items():
                assert lean["tasks"][task][side][key] == pytest.approx(value, rel=1e-4, abs=1e-6), (task, side, key)
    assert sorted(p.name for p in lean_out.iterdir()) == ["report.md", "summary.json"]


def test_lean_infer_runs_without_torch(assets, tmp_path):
    from PIL import Image

    from m3vit_host.report import _denormalise

    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.fromarray((_denormalise(assets.images[0]) * 255).round().astype(np.uint8)).save(folder / "a.png")
    res = lean_run(["infer", folder, "--pack", assets.manifest, "--backend", "simboard", "--out", tmp_path / "o",
                    "--no-progress"])
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o" / "a" / "semseg.npy").is_file() and (tmp_path / "o" / "a" / "semseg.png").is_file()


def test_golden_of_another_pack_is_refused_in_one_line(assets, golden_file, pack_w16, tmp_path):
    res = lean_run(["compare", "--pack", pack_w16, "--golden", golden_file, "--out", tmp_path / "x", "--no-progress"])
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "written for another pack" in res.stderr and not (tmp_path / "x").exists()
    res = lean_run(["compare", "--pack", assets.manifest, "--out", tmp_path / "x", "--no-progress"])
    assert res.returncode == 2 and "pass --golden" in res.stderr, res.stderr
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    res = lean_run(["compare", "--pack", assets.manifest, "--golden", tmp_path / "bad.npz", "--out", tmp_path / "x"])
    assert res.returncode == 2 and "not readable" in res.stderr, res.stderr
