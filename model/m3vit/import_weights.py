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
   Its final ``norm``, its decoders and the routers' noise weights are not used by our model and
   are listed as ignored; any other key, a block past the config's depth or a gate past its task
   count is an error.

2. **Edge-MoE's per-tensor float32 files** (raw little-endian, row-major, one file per tensor):
   ``patch_embed_weight`` [D, C, P, P], ``patch_embed_bias`` [D], ``pos_embed`` [1 + N, D] with
   the CLS token folded into row 0; per layer ``l{i}_norm{1,2}_{weight,bias}`` [D],
   ``l{i}_qkv_{weight,bias}`` [3D, D] / [3D], ``l{i}_attn_proj_{weight,bias}``; even layers
   ``l{i}_fc{1,2}_{weight,bias}``; odd layers ``l{i}_htoh4_weight`` [E, H, D],
   ``l{i}_htoh4_bias`` [E, H], ``l{i}_h4toh_weight`` [E, D, H], ``l{i}_h4toh_bias`` [E, D] and
   ``l{i}_w_gate_T_task{t}`` [E, D]. Each file is named ``<tensor>.float32.bin``.

Neither layout carries our dense heads: the importers return the backbone and name what was
not provided, so the heads can be fine-tuned on top.

Both layouts index task gates by position (``gate.{t}``, ``task{t}``); the position is a task of
the model the weights come from. The importers bind gates **by task name**: ``source_tasks``
names the file's task order (default: the full task list of the named config, e.g. semseg,
depth for m3vit-tiny), and each task of the requested config takes the gate at its name's
position, so a subset or a reordering of tasks gets the right gates. Every tensor is checked:
its shape (a ``.bin`` file by its exact byte size) and that it holds no NaN or ±Inf.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, load_torch_file
from .configs import CONFIGS, ModelConfig
from .model import M3ViT


class WeightImportError(RuntimeError):
    """Weights in a foreign layout are missing, malformed, or do not fit the config."""


@dataclass
class ImportReport:
    loaded: list[str] = field(default_factory=list)  # our parameter names that were set
    not_provided: list[str] = field(default_factory=list)  # ours that the file did not hold
    ignored: list[str] = field(default_factory=list)  # source tensors that are not part of our model
    source_tasks: list[str] = field(default_factory=list)  # the file's task order (gate positions)


def source_task_order(cfg: ModelConfig, source_tasks: Sequence[str] | None = None) -> tuple[str, ...]:
    """The task names in the order a weight file indexes its gates.

    Default: the full task list of the named config ``cfg`` was derived from (``--tasks`` only
    picks a subset of it), else ``cfg``'s own tasks."""
    if source_tasks:
        order = tuple(source_tasks)
        if len(set(order)) != len(order):
            raise WeightImportError(f"source task order {list(order)} names a task twice")
    else:
        base = CONFIGS.get(cfg.name)
        order = base.task_names if base and set(cfg.task_names) <= set(base.task_names) else cfg.task_names
    missing = [t for t in cfg.task_names if t not in order]
    if missing:
        raise WeightImportError(f"task(s) {missing} have no gate in the weights, whose tasks are {list(order)}")
    return order


def _check_finite(name: str, value: torch.Tensor) -> None:
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise WeightImportError(f"{name} holds {bad} NaN or infinite value(s); these weights are unusable")


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
    _check_finite(source, value)
    target[name] = value.detach().to(torch.float32).clone()
    report.loaded.append(name)


def _too_many(what: str, found: int, cfg: ModelConfig, limit: int, key: str) -> WeightImportError:
    return WeightImportError(f"{key}: the weights hold {what} {found}, but config {cfg.name!r} has only {limit}; "
                             f"choose the config these weights were trained with")


# Keys of an official checkpoint that are not part of our backbone (M³ViT's decoders, its final
# norm, classifier heads, the routers' noise weights, unused at noise 0).
_OFFICIAL_IGNORED = re.compile(r"(norm|fc_norm|head|heads|decoder|decoders)\..*"
                               r"|blocks\.\d+\.mlp\.gate\.(\d+\.)?w_noise")
_OFFICIAL_GATE = re.compile(r"blocks\.(\d+)\.mlp\.gate\.(\d+)\.w_gate")
_OFFICIAL_BLOCK = re.compile(r"blocks\.(\d+)\..*")


def _check_official_extent(src: dict[str, torch.Tensor], cfg: ModelConfig, order: tuple[str, ...]) -> None:
    """No block past the config's depth, no gate past the file's task count."""
    for key in src:
        m = _OFFICIAL_BLOCK.fullmatch(key)
        if m and int(m.group(1)) >= cfg.depth:
            raise _too_many("block", int(m.group(1)), cfg, cfg.depth, key)
        m = _OFFICIAL_GATE.fullmatch(key)
        if m and int(m.group(2)) >= len(order):
            raise WeightImportError(f"{key}: the weights hold a gate for task {m.group(2)}, but their tasks are "
                                    f"{list(order)}; give the file's task order with --source-tasks")


def m3vit_official_to_ours(state: dict, cfg: ModelConfig, model: M3ViT | None = None,
                           source_tasks: Sequence[str] | None = None) -> tuple[M3ViT, ImportReport]:
    """Map an official M³ViT state dict onto our model (heads untouched)."""
    src = _strip_prefixes(_unwrap(state))
    order = source_task_order(cfg, source_tasks)
    for key, value in src.items():
        _check_finite(key, value)
    _check_official_extent(src, cfg, order)
    model = model or M3ViT(cfg)
    ours = model.state_dict()
    report = ImportReport(source_tasks=list(order))
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
            for task in cfg.task_names:  # by name: the gate at the task's position in the file's order
                key = f"{s}.mlp.gate.{order.index(task)}.w_gate"
                if key not in src:
                    raise WeightImportError(f"multi-gate checkpoint lacks {key!r} (the gate of task {task!r}, "
                                            f"position {order.index(task)} of {list(order)})")
                gates.append(src[key])
                used.add(key)
            _assign(ours, f"{o}.mlp.w_gate", torch.stack(gates), report, f"{s}.mlp.gate.*.w_gate")
        else:
            take(f"{s}.mlp.gate.w_gate", f"{o}.mlp.w_gate")
            _assign(ours, f"{o}.mlp.task_embed", _task_feature(src, cfg, order, s, used), report, "task feature")
    # unused and fine: what is not backbone, and (multi-gate) the gates of tasks not asked for
    unknown = sorted(k for k in src if k not in used and not _OFFICIAL_IGNORED.fullmatch(k)
                     and not (cfg.router == "multi_gate" and (g := _OFFICIAL_GATE.fullmatch(k))
                              and cfg.is_moe(int(g.group(1)))))
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise WeightImportError(f"the checkpoint holds tensors config {cfg.name!r} has no place for: {shown}; "
                                f"is it for a different config or router?")
    report.ignored = sorted(set(src) - used)
    report.not_provided = sorted(set(ours) - set(report.loaded))
    model.load_state_dict(ours)
    return model, report


def _task_feature(src: dict[str, torch.Tensor], cfg: ModelConfig, order: tuple[str, ...], block: str,
                  used: set[str]) -> torch.Tensor:
    """The task-embedding router's feature rows of ``cfg``'s tasks, picked by name."""
    emb_dim = src[f"{block}.mlp.gate.w_gate"].shape[0] - cfg.dim
    feature_keys = [k for k in src if "task_embedding" in k]
    if feature_keys:
        feat = src[feature_keys[0]]
        used.update(feature_keys[:1])
    elif emb_dim == len(order):
        feat = torch.eye(len(order))  # M³ViT's one-hot task feature
    else:
        raise WeightImportError(f"shared-router checkpoint has a {emb_dim}-wide task feature but no "
                                f"'task_embedding' tensor, and it is not one-hot for {len(order)} tasks")
    if feat.ndim != 2 or feat.shape[0] != len(order):
        raise WeightImportError(f"task feature {feature_keys[0] if feature_keys else 'one-hot'} has shape "
                                f"{list(feat.shape)}; expected one row per task of {list(order)}")
    return feat[[order.index(t) for t in cfg.task_names]]


def load_m3vit_official(path: str | Path, cfg: ModelConfig, source_tasks: Sequence[str] | None = None
                        ) -> tuple[M3ViT, ImportReport]:
    path = Path(path)
    try:  # the checkpoints' one reader: one line for a folder, a FIFO, a truncated or foreign file
        state = load_torch_file(path, what="--src", kind="a state dict file",
                                hint="give the official M³ViT weights (.pth)", missing="check the path")
    except CheckpointError as exc:
        raise WeightImportError(str(exc)) from None
    try:
        return m3vit_official_to_ours(state, cfg, source_tasks=source_tasks)
    except WeightImportError as exc:
        raise WeightImportError(f"{path}: {exc}") from exc


# Edge-MoE per-tensor files --------------------------------------------------------------------

SUFFIX = ".float32.bin"


def _edge_moe_tensors(cfg: ModelConfig, gate_positions: Sequence[int] | None = None) -> dict[str, tuple[int, ...]]:
    """Every Edge-MoE file name (without suffix) and its shape, for a config.

    ``gate_positions``: the file-side task index of each of ``cfg``'s tasks (default 0, 1, ...)."""
    d, e, h, hm = cfg.dim, cfg.num_experts, cfg.expert_hidden, cfg.mlp_hidden
    positions = list(range(len(cfg.tasks))) if gate_positions is None else list(gate_positions)
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
            for t in positions:
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
_EDGE_GATE = re.compile(r"l(\d+)_w_gate_T_task(\d+)")


def _our_name(edge_name: str) -> str | None:
    for pattern, template in _EDGE_TO_OURS:
        m = re.fullmatch(pattern, edge_name)
        if m:
            return template.format(*m.groups())
    return None


def _read_bin(path: Path, shape: tuple[int, ...], cfg: ModelConfig) -> torch.Tensor:
    want = 4 * int(np.prod(shape))
    size = path.stat().st_size
    if size != want:  # by bytes: np.fromfile would silently drop a partial last value
        raise WeightImportError(f"{path.name} is {size} bytes; config {cfg.name!r} expects {list(shape)} "
                                f"float32 values = {want} bytes")
    tensor = torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(shape).copy())
    _check_finite(path.name, tensor)
    return tensor


def _check_edge_extra(names: list[str], expected: set[str], cfg: ModelConfig, order: tuple[str, ...]) -> list[str]:
    """Files of the folder that the import does not read: the gates of tasks not asked for are
    fine (returned); anything else means the weights are for a bigger or different model."""
    ignored, unknown = [], []
    for name in sorted(set(names) - expected):
        gate = _EDGE_GATE.fullmatch(name)
        layer = re.match(r"l(\d+)_", name)
        if layer and int(layer.group(1)) >= cfg.depth:
            raise _too_many("layer", int(layer.group(1)), cfg, cfg.depth, name + SUFFIX)
        if gate and int(gate.group(2)) >= len(order):
            raise WeightImportError(f"{name}{SUFFIX}: a gate for task {gate.group(2)}, but the weights' tasks are "
                                    f"{list(order)}; give the folder's task order with --source-tasks")
        (ignored if gate and cfg.is_moe(int(gate.group(1))) else unknown).append(name)
    if unknown:
        shown = ", ".join(n + SUFFIX for n in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5
                                                               else "")
        raise WeightImportError(f"the folder holds files config {cfg.name!r} has no place for: {shown}")
    return ignored


def load_edge_moe_dir(folder: str | Path, cfg: ModelConfig, model: M3ViT | None = None,
                      source_tasks: Sequence[str] | None = None) -> tuple[M3ViT, ImportReport]:
    """Read Edge-MoE's ``*.float32.bin`` files into our model (multi-gate router only)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightImportError(f"Edge-MoE weight folder {folder} does not exist" if not folder.exists()
                                else f"Edge-MoE weights are a folder of {SUFFIX} files; {folder} is a file")
    if cfg.router != "multi_gate":
        raise WeightImportError("Edge-MoE files hold one gate per task: use a multi_gate config")
    order = source_task_order(cfg, source_tasks)
    positions = [order.index(t) for t in cfg.task_names]
    expected = _edge_moe_tensors(cfg, positions)
    present = [p.name.removesuffix(SUFFIX) for p in folder.glob(f"*{SUFFIX}")]
    ignored = _check_edge_extra(present, set(expected), cfg, order)
    model = model or M3ViT(cfg)
    ours = model.state_dict()
    report = ImportReport(source_tasks=list(order))
    arrays: dict[str, torch.Tensor] = {}
    for name, shape in expected.items():
        path = folder / f"{name}{SUFFIX}"
        if not path.is_file():
            raise WeightImportError(f"Edge-MoE folder {folder} lacks {path.name}")
        arrays[name] = _read_bin(path, shape, cfg)
    for name in ignored:  # not imported, but NaN there still means a broken export
        _check_finite(name + SUFFIX, torch.from_numpy(np.fromfile(folder / f"{name}{SUFFIX}", dtype="<f4")))
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
        gates = torch.stack([arrays[f"l{i}_w_gate_T_task{t}"].T for t in positions])
        _assign(ours, f"backbone.blocks.{i}.mlp.w_gate", gates, report, f"l{i}_w_gate_T_task*")
    report.not_provided = sorted(set(ours) - set(report.loaded))
    report.ignored = [n + SUFFIX for n in ignored]
    model.load_state_dict(ours)
    return model, report


def export_edge_moe_dir(model: M3ViT, folder: str | Path, source_tasks: Sequence[str] | None = None) -> list[Path]:
    """Write the backbone as Edge-MoE's float32 files (to run their C-simulation on our weights).

    A task's gate goes to ``task{t}`` with ``t`` its position in ``source_tasks`` (default: the
    named config's full task list), so a model trained on a subset of tasks keeps Edge-MoE's
    task numbering."""
    cfg = model.cfg
    if cfg.router != "multi_gate":
        raise WeightImportError("Edge-MoE files hold one gate per task: export a multi_gate model")
    order = source_task_order(cfg, source_tasks)
    position = {t: order.index(t) for t in cfg.task_names}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    written = []
    for name, shape in _edge_moe_tensors(cfg, list(position.values())).items():
        if name == "pos_embed":
            t = sd["backbone.pos_embed"][0].clone()
            t[0] += sd["backbone.cls_token"].view(-1)
        elif (gate := _EDGE_GATE.fullmatch(name)) is not None:
            layer, file_task = int(gate.group(1)), int(gate.group(2))
            t = sd[f"backbone.blocks.{layer}.mlp.w_gate"][cfg.task_names.index(order[file_task])].T
        else:
            t = sd[_our_name(name)]
        path = folder / f"{name}{SUFFIX}"
        t.reshape(shape).contiguous().numpy().astype("<f4").tofile(path)
        written.append(path)
    return written
