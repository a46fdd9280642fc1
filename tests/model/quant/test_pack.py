"""Weight pack round trip and every kind of bad pack."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from m3vit.configs import get_config
from m3vit.quant.pack import PackError, read_pack, tile16, untile16, write_pack


@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2))
def test_tiling_roundtrip(r, c, lead):
    m = np.arange(r * c * (lead + 1)).reshape((lead + 1, r, c))
    t = tile16(m)
    assert t.shape[-2:] == (16, 16)
    assert np.array_equal(untile16(t, m.shape), m)
    # tile (i, j) row r holds matrix row 16i + r, columns 16j … 16j + 15 (zero padded)
    i, j = (r - 1) // 16, (c - 1) // 16
    row = m[0, r - 1, 16 * j : 16 * j + 16]
    assert np.array_equal(t[0, i, j, (r - 1) % 16, : row.size], row)


def test_roundtrip_gives_identical_model(qmodel, images, tmp_path):
    bin_path, manifest = write_pack(qmodel, tmp_path)
    pack = read_pack(manifest, expect_config=qmodel.cfg, expect_tasks=qmodel.cfg.task_names, expect_mode="w8a8")
    assert pack.iparams.keys() == qmodel.iparams.keys()
    for k, v in qmodel.iparams.items():
        assert np.array_equal(pack.iparams[k], v), k
    loaded = pack.quantized_model()
    x = torch.from_numpy(images[:2]).float()
    for task in qmodel.cfg.task_names:
        assert torch.equal(loaded.predict(x, task), qmodel.predict(x, task))
    meta = json.loads(manifest.read_text())
    assert all(t["offset"] % 64 == 0 for t in meta["tensors"])
    assert {t["layout"] for t in meta["tensors"] if t["name"].endswith(".q.w")} == {"tiled16"}
    assert bin_path.stat().st_size == 64 + meta["payload_size"]


@pytest.fixture
def pack_files(qmodel, tmp_path):
    return write_pack(qmodel, tmp_path)


def test_corrupted_payload(pack_files):
    bin_path, manifest = pack_files
    raw = bytearray(bin_path.read_bytes())
    raw[200] ^= 0xFF
    bin_path.write_bytes(bytes(raw))
    with pytest.raises(PackError, match="corrupted"):
        read_pack(manifest)


def test_truncated_pack(pack_files):
    bin_path, manifest = pack_files
    bin_path.write_bytes(bin_path.read_bytes()[:-10])
    with pytest.raises(PackError, match="truncated"):
        read_pack(manifest)
    bin_path.write_bytes(b"M3V")
    with pytest.raises(PackError, match="truncated"):
        read_pack(manifest)


def test_bad_magic_and_version(pack_files):
    bin_path, manifest = pack_files
    raw = bytearray(bin_path.read_bytes())
    bin_path.write_bytes(b"NOTAPACK" + bytes(raw[8:]))
    with pytest.raises(PackError, match="bad magic"):
        read_pack(manifest)
    meta = json.loads(manifest.read_text())
    meta["pack_version"] = 99
    manifest.write_text(json.dumps(meta))
    with pytest.raises(PackError, match="pack version 99"):
        read_pack(manifest)


def test_mismatched_pair_and_expectations(qmodel, pack_files, tmp_path):
    bin_path, manifest = pack_files
    other = qmodel.iparams.copy()
    other["l0.q.w"] = -other["l0.q.w"]
    from m3vit.quant.quantize import QuantizedModel

    other_bin, _ = write_pack(QuantizedModel(qmodel.cfg, qmodel.spec, other, qmodel.heads), tmp_path / "other")
    bin_path.write_bytes(other_bin.read_bytes())
    with pytest.raises(PackError, match="does not belong to manifest"):
        read_pack(manifest)


def test_wrong_config_tasks_mode(pack_files):
    _, manifest = pack_files
    with pytest.raises(PackError, match="asked for"):
        read_pack(manifest, expect_config=get_config("m3vit-tiny"))
    with pytest.raises(PackError, match="exported for tasks"):
        read_pack(manifest, expect_tasks=["semseg", "depth"])
    with pytest.raises(PackError, match="not w16a16"):
        read_pack(manifest, expect_mode="w16a16")


def test_missing_files(pack_files, tmp_path):
    bin_path, manifest = pack_files
    with pytest.raises(PackError, match="does not exist"):
        read_pack(tmp_path / "none.json")
    bin_path.unlink()
    with pytest.raises(PackError, match="does not exist"):
        read_pack(manifest)


def test_manifest_tensor_out_of_bounds(pack_files):
    _, manifest = pack_files
    meta = json.loads(manifest.read_text())
    meta["tensors"][3]["offset"] = meta["payload_size"]
    manifest.write_text(json.dumps(meta))
    with pytest.raises(PackError, match="does not fit the payload"):
        read_pack(manifest)


def test_manifest_format_disagreeing_with_contract(pack_files):
    _, manifest = pack_files
    meta = json.loads(manifest.read_text())
    entry = next(t for t in meta["tensors"] if t["name"] == "l0.q.b")
    entry["format"]["frac"] += 1
    manifest.write_text(json.dumps(meta))
    with pytest.raises(PackError, match=r"l0\.q\.b has format .* but the config and the contract give"):
        read_pack(manifest)


def _edit(manifest, change) -> None:
    meta = json.loads(manifest.read_text())
    change(meta)
    manifest.write_text(json.dumps(meta))


TOP_FIELDS = ["binary", "header_size", "alignment", "payload_size", "payload_sha256", "config", "tasks", "quant",
              "tensors", "hardware"]


@pytest.mark.parametrize("field", TOP_FIELDS)
def test_missing_top_level_field_is_a_pack_error_naming_it(pack_files, field):
    _, manifest = pack_files
    _edit(manifest, lambda m: m.pop(field))
    with pytest.raises(PackError, match=f"'{field}' is missing"):
        read_pack(manifest)


@pytest.mark.parametrize("field", ["name", "offset", "nbytes", "dtype", "stored_shape", "shape", "layout", "format"])
def test_missing_or_mistyped_tensor_field_is_a_pack_error(pack_files, field):
    _, manifest = pack_files
    _edit(manifest, lambda m: m["tensors"][5].pop(field))
    with pytest.raises(PackError, match=f"'{field}' is missing"):
        read_pack(manifest)
    _edit(manifest, lambda m: m["tensors"][5].update({field: True}))
    with pytest.raises(PackError, match=f"'{field}' should be"):
        read_pack(manifest)


@pytest.mark.parametrize(("field", "value"), [("shape", [64, 65]), ("stored_shape", [4, 4, 16, 17]),
                                              ("layout", "plain"), ("dtype", "<i2"),
                                              ("format", {"bits": 8, "frac": 1})])
def test_wrong_tensor_description_is_refused_naming_the_tensor(pack_files, field, value):
    _, manifest = pack_files
    _edit(manifest, lambda m: next(t for t in m["tensors"] if t["name"] == "l0.k.w").update({field: value}))
    with pytest.raises(PackError, match=rf"tensor l0\.k\.w has {field}"):
        read_pack(manifest)


@pytest.mark.parametrize(("key", "value"), [("dim", 32), ("img_size", [64, 64]), ("num_experts", 8)])
def test_manifest_config_that_does_not_match_the_tensors_is_refused(pack_files, key, value):
    _, manifest = pack_files
    _edit(manifest, lambda m: m["config"].update({key: value}))
    # a named config's sizes are its name's: the edit is caught there, before the tensors are compared
    with pytest.raises(PackError, match=rf"config is named 'micro' but differs from that config in \['{key}'\]"):
        read_pack(manifest)


def test_bad_config_quant_and_tasks_fields(pack_files):
    _, manifest = pack_files
    _edit(manifest, lambda m: m["config"].update({"dim": "wide"}))
    with pytest.raises(PackError):
        read_pack(manifest)
    _edit(manifest, lambda m: m["config"].update({"dim": 64}) or m["quant"].update({"mode": "w4a4"}))
    with pytest.raises(PackError, match="'quant'"):
        read_pack(manifest)
    _edit(manifest, lambda m: m["quant"].update({"mode": "w8a8"}) or m.update({"tasks": ["depth"]}))
    with pytest.raises(PackError, match="'tasks'"):
        read_pack(manifest)
    _edit(manifest, lambda m: m.update({"tasks": ["semseg", "depth", "normals"], "binary": "../x.m3vpack"}))
    with pytest.raises(PackError, match="'binary'"):
        read_pack(manifest)


def test_activation_format_of_the_wrong_width_is_refused(pack_files):
    _, manifest = pack_files
    _edit(manifest, lambda m: m["quant"]["activations"]["l0.q"].update({"bits": 16}))
    with pytest.raises(PackError, match=r"activation l0\.q is Q16"):
        read_pack(manifest)


def test_hardware_constants_are_checked_against_the_derived_ones(pack_files):
    _, manifest = pack_files
    _edit(manifest, lambda m: m["hardware"]["layers"][0]["ops"]["ln1"].update({"eps_term": 12345}))
    with pytest.raises(PackError, match=r"hardware\.layers\[0\]\.ops\.ln1\.eps_term is 12345"):
        read_pack(manifest)
    _edit(manifest, lambda m: m["hardware"]["tables"]["exp2"].__setitem__(3, 0))
    with pytest.raises(PackError, match=r"hardware\.layers|hardware\.tables"):
        read_pack(manifest)


def test_integer_reference_reads_its_constants_from_the_manifest(qmodel, images, pack_files):
    """A shift changed in the loaded manifest changes the reference's output: it is read, not recomputed."""
    _, manifest = pack_files
    pack = read_pack(manifest)
    pack.manifest["hardware"]["layers"][0]["ops"]["q"]["shift"] += 1
    pack.manifest["hardware"]["layers"][0]["ops"]["ln1"]["eps_term"] += 1 << 30
    a, _ = qmodel.tokens(images[:1], "semseg")
    b, _ = pack.quantized_model().tokens(images[:1], "semseg")
    assert not np.array_equal(a, b)


def test_manifest_carries_accumulators_and_per_layer_points(pack_files, qmodel):
    _, manifest = pack_files
    hw = json.loads(manifest.read_text())["hardware"]
    assert set(hw["accumulators"]) >= {"patch", "l0.q", "l1.e1"} and all(a["fits"] for a in hw["accumulators"].values())
    ops = hw["layers"][1]["ops"]
    assert ops["ln1"]["input"] == "l0.out" and ops["q"]["input"] == "l1.ln1" and ops["e2"]["input"] == "l1.egelu"
    assert ops["scores"]["format"] == qmodel.spec.activations["l1.scores"].to_dict()
    assert hw["layers"][0]["ops"]["ln1"]["input"] == "embed"
