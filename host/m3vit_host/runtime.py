"""The host runtime's one API, whatever runs the accelerator.

    rt = open_runtime("simboard", "build/demo/pack/model.json", config="micro", mode="w8a8")
    rt.set_task("depth")                # a register write on device backends: nothing reloads
    result = rt.run(images)             # normalised float [B,3,H,W] or uint8 pictures [B,H,W,3] (B optional)
    result.outputs, result.head, result.tokens, result.timings

Stages, each timed: *preprocess* (normalise pictures, quantize into the accelerator's input
format), *accelerator* (the backend), *postprocess* (dequantize the tokens, the task head in
float from the pack, decoding). The heads are the pack's own float weights, run in numpy
(:mod:`m3vit.heads_np`): the runtime imports no PyTorch, so it runs on the board's lean install.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from m3vit.configs import ModelConfig, get_config
from m3vit.heads_np import numpy_heads
from m3vit.metrics import as_numpy
from m3vit.quant.fixed import FixedPointOverflow
from m3vit.quant.pack import Pack, PackError, manifest_of, read_pack

from .backends import Backend, BackendOptions, make_backend
from .errors import HostError
from .images import check_model_input, check_not_empty, normalise
from .outputs import decode

STAGES = ("preprocess", "accelerator", "postprocess")


@dataclass
class RunResult:
    task: str
    head: np.ndarray  # the task head's float32 output [B, C, H, W]
    outputs: np.ndarray  # decoded (labels, depth, normals, probabilities)
    tokens: np.ndarray | None  # dequantized backbone tokens [B, N, D] (None for whole-model backends)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage for this batch


class Runtime:
    def __init__(self, backend: Backend, pack: Pack, manifest_path: Path):
        self.backend, self.pack, self.cfg, self.manifest_path = backend, pack, pack.cfg, manifest_path
        self.heads = numpy_heads(pack.cfg, pack.heads)
        backend.load(pack, manifest_path)
        if not backend.keeps_integers:
            pack.iparams = {}  # the accelerator has them; see Backend.keeps_integers
        self.task: str | None = None
        self.set_task(self.cfg.task_names[0])

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.cfg.task_names

    def set_task(self, task: str) -> None:
        index = self.cfg.task_index(task)  # KeyError naming the tasks there are
        if task != self.task:
            self.backend.set_task(index)
            self.task = task

    def run(self, images: np.ndarray, task: str | None = None) -> RunResult:
        if task is not None:
            self.set_task(task)
        spec = self.cfg.task(self.task)
        t0 = time.perf_counter()
        images = as_numpy(images)  # a CPU torch tensor is taken too (without importing torch here)
        if images.ndim == 3:  # one image: a batch of one
            images = images[None]
        check_not_empty(images)  # pictures are normalised first: check before that too
        if images.dtype == np.uint8:
            if images.ndim != 4 or images.shape[-1] != self.cfg.in_chans:
                raise HostError(f"pictures must be uint8 [B, H, W, {self.cfg.in_chans}], got {list(images.shape)}")
            images = normalise(images)
        check_model_input(images, self.cfg)
        prepared = self.backend.prepare(images)
        t1 = time.perf_counter()
        try:
            raw = self.backend.execute(prepared)
        except FixedPointOverflow as exc:  # the reference on a pack from a diverged model
            raise HostError(f"the pack's integers overflow on this input ({exc}): verify it with `m3vit-pack "
                            f"verify` and re-quantize the checkpoint (a diverged model?)") from None
        t2 = time.perf_counter()
        # a diverged pack overflows in the float head: numpy's RuntimeWarnings would print eight lines before the
        # one line below that says what is wrong, so they are silenced here and the result checked instead
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            collected = self.backend.collect(raw)
            if self.backend.produces == "tokens":
                tokens = collected
                head = self.heads[self.task](tokens)
            else:
                tokens, head = None, np.asarray(collected, dtype=np.float32)
        if not np.isfinite(head).all():  # never hand back (or write) all-NaN outputs as a result
            raise HostError(f"task {self.task}: the outputs are not finite (NaN or Inf) on finite input: the pack "
                            f"comes from a diverged model; check it with `m3vit-pack verify`")
        outputs = decode(spec, head)
        t3 = time.perf_counter()
        return RunResult(self.task, head, outputs, tokens,
                         {"preprocess": t1 - t0, "accelerator": t2 - t1, "postprocess": t3 - t2})

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def config_difference(have: ModelConfig, want: ModelConfig) -> str:
    """What tells two configs apart, for messages where both may carry the same name."""
    a, b = have.to_dict(), want.to_dict()
    fields = [k for k in b if k not in ("name", "tasks") and a.get(k) != b[k]]
    parts = [f"{k} {a.get(k)} vs {b[k]}" for k in fields[:4]]
    if not set(want.task_names) <= set(have.task_names):
        parts.append(f"tasks {','.join(have.task_names)} vs {','.join(want.task_names)}")
    return "; ".join(parts) or "same fields"


def load_pack(manifest: str | Path, config: str | ModelConfig | None = None, mode: str | None = None) -> Pack:
    """``read_pack`` validated against the config and precision asked for (by name or object)."""
    manifest = manifest_of(manifest)
    expect = get_config(config) if isinstance(config, str) else config
    if expect is not None:
        # a named config may have been trained on fewer tasks: compare everything but the task list first
        pack = read_pack(manifest, expect_mode=mode)
        if pack.cfg.replace(tasks=expect.tasks) != expect or not set(pack.cfg.task_names) <= set(expect.task_names):
            raise PackError(f"pack {manifest} holds model {pack.cfg.name!r}, which differs from the "
                            f"{expect.name!r} asked for ({config_difference(pack.cfg, expect)}): pass the pack "
                            f"exported for {expect.name!r} or drop --config")
        return pack
    return read_pack(manifest, expect_mode=mode)


def open_runtime(backend: str, pack: str | Path, config: str | ModelConfig | None = None, mode: str | None = None,
                 options: BackendOptions | None = None) -> Runtime:
    """Open ``backend``, load the pack at ``pack`` (its ``.json`` manifest or ``.m3vpack``) onto it."""
    if str(pack).strip() == "":  # Path("") would be the current folder
        raise PackError("no pack given (the path is empty): name a pack manifest, e.g. build/demo/pack/model.json")
    manifest = manifest_of(pack)
    loaded = load_pack(manifest, config, mode)
    return Runtime(make_backend(backend, options), loaded, manifest)
