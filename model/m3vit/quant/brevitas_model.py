"""The backbone in Brevitas: fixed-point fake quantization with exactly the contract's formats.

Every quantizer is a Brevitas power-of-two fixed-point quantizer with a *constant* scale taken
from the :class:`QuantSpec` (so calibration, not training, decides formats, and the formats
after fine-tuning are the contract's): weights narrow-range at their tensor's format, biases at
their accumulator's scale, and a ``QuantIdentity`` at every activation point of the contract.
LayerNorm, softmax and GELU stay float here (the integer reference approximates them; NUMERICS.md
§5 lists where the two paths cannot agree bit for bit).

Use it for quantization-aware fine-tuning (:func:`qat_finetune`) and for ONNX export of the
quantized linear layers (QCDQ; ``m3vit.quant.onnx_export``).
"""

from __future__ import annotations

import copy
import math
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from brevitas.inject.enum import ScalingImplType
from brevitas.nn import QuantIdentity, QuantLinear
from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int32Bias
from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint
from torch import nn

from ..model import M3ViT
from ..moe import topk_lowest_index_ties
from .fixed import QFormat
from .params import LOG2E, float_params, linear_inputs
from .spec import QuantSpec


def _threshold(fmt: QFormat) -> float:
    return 2.0 ** (fmt.bits - 1 - fmt.frac)  # scale = threshold / 2^(bits-1) = 2^-frac


def act_quant(fmt: QFormat):
    t = _threshold(fmt)
    return Int8ActPerTensorFixedPoint.let(scaling_impl_type=ScalingImplType.CONST, bit_width=fmt.bits,
                                          min_val=-t, max_val=t)


def weight_quant(fmt: QFormat, row_fracs: np.ndarray | None = None):
    """Narrow-range power-of-two weight quantizer: one constant scale 2^-frac (per tensor), or with ``row_fracs``
    Brevitas' per-channel fixed-point quantizer with a constant scale 2^-f_r per output row (per-row weight scales)."""
    if row_fracs is None:
        return Int8WeightPerTensorFixedPoint.let(scaling_impl_type=ScalingImplType.CONST, bit_width=fmt.bits,
                                                 scaling_const=_threshold(fmt))
    thresholds = torch.from_numpy(np.ldexp(1.0, fmt.bits - 1 - np.asarray(row_fracs))).float().view(-1, 1)
    return Int8WeightPerChannelFixedPoint.let(scaling_impl_type=ScalingImplType.CONST, bit_width=fmt.bits,
                                              scaling_per_output_channel=True, scaling_const=thresholds)


def bias_quant(bits: int):
    return Int32Bias.let(bit_width=bits)


def quant_linear(w: np.ndarray, b: np.ndarray, in_fmt: QFormat, w_fmt: QFormat, bias_bits: int,
                 row_fracs: np.ndarray | None = None) -> QuantLinear:
    """A QuantLinear holding float weights w [out, in], b [out]; float (dequantized) output. With ``row_fracs``
    each output row has its own weight scale, so the bias (input scale x weight scale) is per row too."""
    layer = QuantLinear(w.shape[1], w.shape[0], bias=True, input_quant=act_quant(in_fmt),
                        weight_quant=weight_quant(w_fmt, row_fracs), bias_quant=bias_quant(bias_bits),
                        return_quant_tensor=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)).float())
        layer.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)).float())
    return layer


def _key(point: str) -> str:
    return point.replace(".", "_")


class BrevitasBackbone(nn.Module):
    """Drop-in replacement for :class:`m3vit.vit.Backbone` (same forward signature)."""

    def __init__(self, model: M3ViT, spec: QuantSpec, weights: dict[str, np.ndarray] | None = None):
        """``weights``: folded linear weight matrices to use instead of ``model``'s (e.g. a pack's, from
        :func:`~m3vit.quant.params.dequantized_weights`, so the fake-quantized model computes with its integers)."""
        super().__init__()
        cfg = self.cfg = model.cfg
        self.spec = spec
        p = {**float_params(model), **(weights or {})}
        a, w, bits = spec.activations, spec.weights, spec.mode.bias_bits
        self.acts = nn.ModuleDict({_key(n): QuantIdentity(act_quant(f), return_quant_tensor=False)
                                   for n, f in a.items() if n not in ("image",)})
        self.image_quant = QuantIdentity(act_quant(a["image"]), return_quant_tensor=False)
        self.cls = nn.Parameter(torch.from_numpy(p["cls"]).float())
        self.pos = nn.Parameter(torch.from_numpy(p["pos"]).float())
        self.norms = nn.ModuleDict()
        for i in range(cfg.depth):
            for ln in ("ln1", "ln2"):
                norm = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
                with torch.no_grad():
                    norm.weight.copy_(torch.from_numpy(p[f"l{i}.{ln}.g"]))
                    norm.bias.copy_(torch.from_numpy(p[f"l{i}.{ln}.b"]))
                self.norms[f"l{i}_{ln}"] = norm
        # One QuantLinear per weighted op (routers: one per task, experts: one per expert), its input
        # quantizer at the format of the point that feeds it (params.linear_inputs, as the reference).
        self.linears = nn.ModuleDict()
        for op, src in linear_inputs(cfg).items():
            weight, bias = p[f"{op}.w"], p[f"{op}.b"]
            rows = spec.row_fracs.get(f"{op}.w")  # per-row weight scales: one fraction per output row
            make = partial(quant_linear, in_fmt=a[src], w_fmt=w[f"{op}.w"], bias_bits=bits)
            if weight.ndim == 3:  # a stack: routers [T, E, D] or experts [E, out, in]
                self.linears[_key(op)] = nn.ModuleList(make(weight[j], bias[j], row_fracs=None if rows is None
                                                            else rows[j]) for j in range(weight.shape[0]))
            else:
                self.linears[_key(op)] = make(weight, bias, row_fracs=rows)

    def q(self, point: str, x: torch.Tensor) -> torch.Tensor:
        return self.acts[_key(point)](x)

    def linear(self, op: str, index: int | None = None) -> QuantLinear:
        """The QuantLinear of ``op``; ``index`` picks the task's router or the expert of a stack."""
        layer = self.linears[_key(op)]
        return layer if index is None else layer[index]

    def forward(self, images: torch.Tensor, task_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        b = images.shape[0]
        n, d, heads, hd = cfg.num_tokens, cfg.dim, cfg.num_heads, cfg.head_dim
        x = self.image_quant(images)
        gh, gw, ps = *cfg.grid, cfg.patch_size
        patches = x.reshape(b, cfg.in_chans, gh, ps, gw, ps).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, -1)
        x = self.linear("patch")(patches) + self.pos[1:]
        x = torch.cat([(self.cls + self.pos[0]).expand(b, 1, d), x], dim=1)
        x = self.q("embed", x)
        for i in range(cfg.depth):
            o = f"l{i}"
            h = self.q(f"{o}.ln1", self.norms[f"{o}_ln1"](x))
            q, k, v = (self.q(f"{o}.{t}", self.linear(f"{o}.{t}")(h)).reshape(b, n, heads, hd).transpose(1, 2)
                       for t in ("q", "k", "v"))
            scores = self.q(f"{o}.scores", q @ k.transpose(-2, -1))
            attn = torch.softmax(scores * math.log(2.0), dim=-1)  # base-2 logits
            att = self.q(f"{o}.attn", (attn @ v).transpose(1, 2).reshape(b, n, d))
            x = self.q(f"{o}.mid", x + self.q(f"{o}.proj", self.linear(f"{o}.proj")(att)))
            h = self.q(f"{o}.ln2", self.norms[f"{o}_ln2"](x))
            if cfg.is_moe(i):
                y = self._moe(o, h.reshape(b * n, d), task_idx).reshape(b, n, d)
            else:
                g = self.q(f"{o}.gelu", F.gelu(self.q(f"{o}.fc1", self.linear(f"{o}.fc1")(h))))
                y = self.q(f"{o}.fc2", self.linear(f"{o}.fc2")(g))
            x = self.q(f"{o}.out", x + y)
        return x, x.new_zeros(())

    def _moe(self, o: str, h: torch.Tensor, task_idx: int) -> torch.Tensor:
        logits = self.q(f"{o}.gate", self.linear(f"{o}.gate", task_idx)(h))
        probs = torch.softmax(logits * math.log(2.0), dim=-1)
        top_p, top_idx = topk_lowest_index_ties(probs, self.cfg.top_k)
        out = torch.zeros_like(h)
        for e in range(self.cfg.num_experts):
            rows, slot = (top_idx == e).nonzero(as_tuple=True)
            if rows.numel() == 0 and not torch.onnx.is_in_onnx_export():
                continue
            z = self.q(f"{o}.egelu", F.gelu(self.q(f"{o}.e1", self.linear(f"{o}.e1", e)(h[rows]))))
            y = self.q(f"{o}.e2", self.linear(f"{o}.e2", e)(z))
            out = out.index_add(0, rows, top_p[rows, slot].unsqueeze(1) * y)
        return self.q(f"{o}.moe", out)

    @torch.no_grad()
    def write_back(self, model: M3ViT) -> M3ViT:
        """A copy of the float ``model`` carrying this backbone's (fine-tuned) weights, unfolded."""
        cfg = self.cfg
        out = copy.deepcopy(model)
        bb = out.backbone
        q_scale = cfg.head_dim**-0.5 * LOG2E
        patch = self.linear("patch")
        bb.patch_embed.proj.weight.copy_(patch.weight.reshape_as(bb.patch_embed.proj.weight))
        bb.patch_embed.proj.bias.copy_(patch.bias)
        bb.cls_token.zero_()
        bb.cls_token.view(-1).copy_(self.cls)
        bb.pos_embed.view(cfg.num_tokens, -1).copy_(self.pos)
        for i, blk in enumerate(bb.blocks):
            o = f"l{i}"
            blk.norm1.load_state_dict(self.norms[f"{o}_ln1"].state_dict())
            blk.norm2.load_state_dict(self.norms[f"{o}_ln2"].state_dict())
            ws = [self.linear(f"{o}.{t}").weight for t in ("q", "k", "v")]
            bs = [self.linear(f"{o}.{t}").bias for t in ("q", "k", "v")]
            blk.attn.qkv.weight.copy_(torch.cat([ws[0] / q_scale, ws[1], ws[2]]))
            blk.attn.qkv.bias.copy_(torch.cat([bs[0] / q_scale, bs[1], bs[2]]))
            blk.attn.proj.load_state_dict({"weight": self.linear(f"{o}.proj").weight,
                                           "bias": self.linear(f"{o}.proj").bias})
            if cfg.is_moe(i):
                mlp = blk.mlp
                for e in range(cfg.num_experts):
                    mlp.w1[e].copy_(self.linear(f"{o}.e1", e).weight)
                    mlp.b1[e].copy_(self.linear(f"{o}.e1", e).bias)
                    mlp.w2[e].copy_(self.linear(f"{o}.e2", e).weight)
                    mlp.b2[e].copy_(self.linear(f"{o}.e2", e).bias)
                if mlp.task_embed is None:
                    for t in range(len(cfg.tasks)):
                        mlp.w_gate[t].copy_(self.linear(f"{o}.gate", t).weight.T / LOG2E)
                # a task-embedding router's folded bias cannot be split back: keep its float router
            else:
                blk.mlp.fc1.load_state_dict(self.linears[_key(f"{o}.fc1")].state_dict(), strict=False)
                blk.mlp.fc2.load_state_dict(self.linears[_key(f"{o}.fc2")].state_dict(), strict=False)
        return out


def qat_finetune(model: M3ViT, spec: QuantSpec, dataset, steps: int = 100, lr: float = 1e-4,
                 batch_size: int = 8, seed: int = 0, progress: bool = False) -> tuple[M3ViT, list[float]]:
    """Fine-tune with the backbone fake-quantized at the contract's formats (heads stay float).

    Returns the float model carrying the fine-tuned weights (to be re-calibrated and exported)
    and the loss per step.
    """
    from tqdm.auto import tqdm

    from ..losses import MultiTaskLoss

    torch.manual_seed(seed)
    qat = copy.deepcopy(model)
    qat.backbone = BrevitasBackbone(model, spec)
    qat.train()
    criterion = MultiTaskLoss(model.cfg.tasks)
    optimizer = torch.optim.AdamW(qat.parameters(), lr=lr, weight_decay=0.0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    losses: list[float] = []
    bar = tqdm(total=steps, desc="QAT", disable=not progress)
    while len(losses) < steps:
        for batch in loader:
            total = torch.zeros(())
            for task in model.cfg.task_names:
                weighted, _ = criterion(task, qat(batch["image"], task), batch[task])
                total = total + weighted
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            losses.append(float(total.detach()))
            bar.update(1)
            if len(losses) >= steps:
                break
    bar.close()
    tuned = qat.backbone.write_back(model)
    tuned.heads.load_state_dict(qat.heads.state_dict())
    return tuned.eval(), losses
