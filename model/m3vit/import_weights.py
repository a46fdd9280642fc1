"""Import (and export) backbone weights in the two public layouts users hold.

1. **Official M³ViT state dict** (a ``torch.save`` of its model, possibly under ``model`` /
   ``state_dict`` and with ``module.`` / ``backbone.`` prefixes). Keys as in its code:
   ``patch_embed.proj.*``, ``cls_token``, ``pos_embed``, ``blocks.{i}.norm1.*``,
   ``blocks.{i}.attn.qkv.*``, ``blocks.{i}.attn.proj.*``, ``blocks.{i}.norm2.*``; dense blocks
   ``blocks.{i}.mlp.fc1.*`` / ``fc2.*``; MoE blocks ``blocks.{i}.mlp.experts.htoh4.*`` /
   ``h4toh.*`` (FMoE: weight [E, out, in]) and either one router per task
   ``blocks.{i}.mlp.gate.{t}.w_gate`` [D, E] (multi-gate) or a shared router
   ``blocks.{i}.mlp.gate.w_gate`` [D + De, E] fed with a task feature (task-embedding mode; the
   feature is read from a ``*task_embedding*`` tensor [T, De], or is one-hot when De == T).
   Its final ``norm`` and its decoders are not used by our heads and are reported as skipped.

2. **Edge-MoE's per-tensor float32 files** (raw little-endian, row-major, one file per tensor):
   ``patch_embed_weight`` [D, C, P, P], ``patch_embed_bias`` [D], ``pos_embed`` [1 + N, D] with
   the CLS token folded into row 0; per layer ``l{i}_norm{1,2}_{weight,bias}`` [D],
   ``l{i}_qkv_{weight,bias}`` [3D, D] / [3D], ``l{i}_attn_proj_{weight,bias}``; even layers
   ``l{i}_fc{1,2}_{weight,bias}``; odd layers ``l{i}_htoh4_weight`` [E, H, D],
   ``l{i}_htoh4_bias`` [E, H], ``l{i}_h4toh_weight`` [E, D, H], ``l{i}_h4toh_bias`` [E, D] and
   ``l{i}_w_gate_T_task{t}`` [E, D]. Each file is named ``<tensor>.float32.bin``.

Neither layout carries our dense heads: the importers return the backbone and name what was
not provided, so the heads can be fine-tuned on top.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .configs import ModelConfig
from .model import M3ViT


class WeightImportError(RuntimeError):
    """Weights in a foreign layout are missing, malformed, or do not fit the config."""


@dataclass
class ImportReport:
    loaded: list[str] = field(default_factory=list)  # our parameter names that were set
    not_provided: list[str] = field(default_factory=list)  # ours that the file did not hold
    skipped: list[str] = field(default_factory=list)  # source keys we did not use


def _unwrap(obj) -> dict[str, torch.Tensor]:
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            return _unwrap(obj[key])
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightImportError("not a state dict of tensors (nor one under 'model' / 'state_dict')")
    return obj


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "backbone.", "encoder."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def _assign(target: dict[str, torch.Tensor], name: str, value: torch.Tensor, report: ImportReport,
            source: str) -> None:
    want = target[name].shape
    if tuple(value.shape) != tuple(want):
        raise WeightImportError(f"{source}: shape {list(value.shape)} does not fit {name} {list(want)}; "
                                f"is this checkpoint for a different config?")
    target[name] = value.detach().to(torch.float32).clone()
    report.loaded.append(name)


def m3vit_official_to_ours(state: dict, cfg: ModelConfig, model: M3ViT | None = None
                           ) -> tuple[M3ViT, ImportReport]:
    """Map an official M³ViT state dict onto our model (heads untouched)."""
    src = _strip_prefixes(_unwrap(state))
    model = model or M3ViT(cfg)
    ours = model.state_dict()
    report = ImportReport()
    used: set[str] = set()

    def take(src_key: str, our_key: str) -> None:
        if src_key not in src:
            raise WeightImportError(f"official M³ViT checkpoint lacks {src_key!r} (needed for {our_key})")
        _assign(ours, our_key, src[src_key], report, src_key)
        used.add(src_key)

    for name in ("patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed"):
        take(name, f"backbone.{name}")
    for i in range(cfg.depth):
        s, o = f"blocks.{i}", f"backbone.blocks.{i}"
        for part in ("norm1", "attn.qkv", "attn.proj", "norm2"):
            for p in ("weight", "bias"):
                take(f"{s}.{part}.{p}", f"{o}.{part}.{p}")
        if not cfg.is_moe(i):
            for part in ("fc1", "fc2"):
                for p in ("weight", "bias"):
                    take(f"{s}.mlp.{part}.{p}", f"{o}.mlp.{part}.{p}")
            continue
        for fmoe, ours_w, ours_b in (("htoh4", "w1", "b1"), ("h4toh", "w2", "b2")):
            take(f"{s}.mlp.experts.{fmoe}.weight", f"{o}.mlp.{ours_w}")
            take(f"{s}.mlp.experts.{fmoe}.bias", f"{o}.mlp.{ours_b}")
        if cfg.router == "multi_gate":
            gates = []
            for t in range(len(cfg.tasks)):
                key = f"{s}.mlp.gate.{t}.w_gate"
                if key not in src:
                    raise WeightImportError(f"multi-gate checkpoint lacks {key!r}; it holds "
                                            f"{sum(k.startswith(f'{s}.mlp.gate.') for k in src)} gate tensors "
                                            f"for block {i} but the config has {len(cfg.tasks)} tasks")
                gates.append(src[key])
                used.add(key)
            _assign(ours, f"{o}.mlp.w_gate", torch.stack(gates), report, f"{s}.mlp.gate.*.w_gate")
        else:
            take(f"{s}.mlp.gate.w_gate", f"{o}.mlp.w_gate")
            emb_dim = src[f"{s}.mlp.gate.w_gate"].shape[0] - cfg.dim
            feature_keys = [k for k in src if "task_embedding" in k]
            if feature_keys:
                feat = src[feature_keys[0]]
                used.add(feature_keys[0])
            elif emb_dim == len(cfg.tasks):
                feat = torch.eye(len(cfg.tasks))  # M³ViT's one-hot task feature
            else:
                raise WeightImportError(f"shared-router checkpoint has a {emb_dim}-wide task feature but no "
                                        f"'task_embedding' tensor, and it is not one-hot for {len(cfg.tasks)} tasks")
            _assign(ours, f"{o}.mlp.task_embed", feat, report, "task feature")
    report.skipped = sorted(set(src) - used)
    report.not_provided = sorted(set(ours) - set(report.loaded))
    model.load_state_dict(ours)
    return model, report


def load_m3vit_official(path: str | Path, cfg: ModelConfig) -> tuple[M3ViT, ImportReport]:
    path = Path(path)
    if not path.is_file():
        raise WeightImportError(f"{path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightImportError(f"{path} cannot be read as a PyTorch file ({type(exc).__name__}: {exc})") from exc
    try:
        return m3vit_official_to_ours(state, cfg)
    except WeightImportError as exc:
        raise WeightImportError(f"{path}: {exc}") from exc


# Edge-MoE per-tensor files --------------------------------------------------------------------

def _edge_moe_tensors(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every Edge-MoE file name (without suffix) and its shape, for a config."""
    d, e, h, hm = cfg.dim, cfg.num_experts, cfg.expert_hidden, cfg.mlp_hidden
    shapes: dict[str, tuple[int, ...]] = {
        "patch_embed_weight": (d, cfg.in_chans, cfg.patch_size, cfg.patch_size),
        "patch_embed_bias": (d,),
        "pos_embed": (cfg.num_tokens, d),
    }
    for i in range(cfg.depth):
        for n in ("norm1", "norm2"):
            shapes[f"l{i}_{n}_weight"] = (d,)
            shapes[f"l{i}_{n}_bias"] = (d,)
        shapes[f"l{i}_qkv_weight"], shapes[f"l{i}_qkv_bias"] = (3 * d, d), (3 * d,)
        shapes[f"l{i}_attn_proj_weight"], shapes[f"l{i}_attn_proj_bias"] = (d, d), (d,)
        if cfg.is_moe(i):
            shapes[f"l{i}_htoh4_weight"], shapes[f"l{i}_htoh4_bias"] = (e, h, d), (e, h)
            shapes[f"l{i}_h4toh_weight"], shapes[f"l{i}_h4toh_bias"] = (e, d, h), (e, d)
            for t in range(len(cfg.tasks)):
                shapes[f"l{i}_w_gate_T_task{t}"] = (e, d)
        else:
            shapes[f"l{i}_fc1_weight"], shapes[f"l{i}_fc1_bias"] = (hm, d), (hm,)
            shapes[f"l{i}_fc2_weight"], shapes[f"l{i}_fc2_bias"] = (d, hm), (d,)
    return shapes


_EDGE_TO_OURS = [
    (r"l(\d+)_(norm[12])_(weight|bias)", "backbone.blocks.{0}.{1}.{2}"),
    (r"l(\d+)_qkv_(weight|bias)", "backbone.blocks.{0}.attn.qkv.{1}"),
    (r"l(\d+)_attn_proj_(weight|bias)", "backbone.blocks.{0}.attn.proj.{1}"),
    (r"l(\d+)_(fc[12])_(weight|bias)", "backbone.blocks.{0}.mlp.{1}.{2}"),
    (r"l(\d+)_htoh4_weight", "backbone.blocks.{0}.mlp.w1"),
    (r"l(\d+)_htoh4_bias", "backbone.blocks.{0}.mlp.b1"),
    (r"l(\d+)_h4toh_weight", "backbone.blocks.{0}.mlp.w2"),
    (r"l(\d+)_h4toh_bias", "backbone.blocks.{0}.mlp.b2"),
    (r"patch_embed_(weight|bias)", "backbone.patch_embed.proj.{0}"),
]


def _our_name(edge_name: str) -> str | None:
    for pattern, template in _EDGE_TO_OURS:
        m = re.fullmatch(pattern, edge_name)
        if m:
            return template.format(*m.groups())
    return None


def load_edge_moe_dir(folder: str | Path, cfg: ModelConfig, model: M3ViT | None = None
                      ) -> tuple[M3ViT, ImportReport]:
    """Read Edge-MoE's ``*.float32.bin`` files into our model (multi-gate router only)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightImportError(f"Edge-MoE weight folder {folder} does not exist")
    if cfg.router != "multi_gate":
        raise WeightImportError("Edge-MoE files hold one gate per task: use a multi_gate config")
    model = model or M3ViT(cfg)
    ours = model.state_dict()
    report = ImportReport()
    arrays: dict[str, torch.Tensor] = {}
    for name, shape in _edge_moe_tensors(cfg).items():
        path = folder / f"{name}.float32.bin"
        if not path.is_file():
            raise WeightImportError(f"Edge-MoE folder {folder} lacks {path.name}")
        data = np.fromfile(path, dtype="<f4")
        if data.size != int(np.prod(shape)):
            raise WeightImportError(f"{path.name} holds {data.size} float32 values; config {cfg.name!r} "
                                    f"expects {list(shape)} = {int(np.prod(shape))}")
        arrays[name] = torch.from_numpy(data.reshape(shape).copy())
    for name, tensor in arrays.items():
        target = _our_name(name)
        if target is not None:
            _assign(ours, target, tensor, report, name)
    # CLS folded into pos_embed[0]: put the sum in cls_token and zero pos_embed[0] (same tokens).
    pos = arrays["pos_embed"].clone()
    cls = pos[0].clone()
    pos[0] = 0
    _assign(ours, "backbone.pos_embed", pos[None], report, "pos_embed")
    _assign(ours, "backbone.cls_token", cls.view(1, 1, -1), report, "pos_embed[0]")
    for i in cfg.moe_layers:
        gates = torch.stack([arrays[f"l{i}_w_gate_T_task{t}"].T for t in range(len(cfg.tasks))])
        _assign(ours, f"backbone.blocks.{i}.mlp.w_gate", gates, report, f"l{i}_w_gate_T_task*")
    report.not_provided = sorted(set(ours) - set(report.loaded))
    report.skipped = sorted(p.name for p in folder.glob("*.float32.bin")
                            if p.name.removesuffix(".float32.bin") not in arrays)
    model.load_state_dict(ours)
    return model, report


def export_edge_moe_dir(model: M3ViT, folder: str | Path) -> list[Path]:
    """Write the backbone as Edge-MoE's float32 files (to run their C-simulation on our weights)."""
    cfg = model.cfg
    if cfg.router != "multi_gate":
        raise WeightImportError("Edge-MoE files hold one gate per task: export a multi_gate model")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    written = []
    for name, shape in _edge_moe_tensors(cfg).items():
        if name == "pos_embed":
            t = sd["backbone.pos_embed"][0].clone()
            t[0] += sd["backbone.cls_token"].view(-1)
        elif "_w_gate_T_task" in name:
            layer, task = re.fullmatch(r"l(\d+)_w_gate_T_task(\d+)", name).groups()
            t = sd[f"backbone.blocks.{layer}.mlp.w_gate"][int(task)].T
        else:
            t = sd[_our_name(name)]
        path = folder / f"{name}.float32.bin"
        t.reshape(shape).contiguous().numpy().astype("<f4").tofile(path)
        written.append(path)
    return written
