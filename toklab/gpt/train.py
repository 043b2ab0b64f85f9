"""The training loop: a budget (FLOPs, tokens, steps or minutes), evaluation in bits-per-byte,
checkpoints that resume exactly, and a run folder with a JSONL log and a summary.

Validation bits-per-byte = sum of per-token losses (nats) / (ln 2 x sum of the target tokens'
UTF-8 bytes), special tokens counting 0 bytes: the same figure whatever the segmenter, so runs
with different tokenisations compare on the same scale.

Under torchrun (WORLD_SIZE > 1) the same loop runs with DistributedDataParallel
(toklab.gpt.distributed): each rank reads its share of the windows, the accumulation divides by the
world size (so --batch-tokens is the global batch), validation is split by batch and the nats
summed over the ranks, and rank 0 alone writes the log and the checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from toklab.errors import ToklabError, one_line
from toklab.files import temp_name, write_text_atomic

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
RUN_FILE = "run.json"
SCHEDULES = ("cosine", "one-cycle")
VAL_BYTES = 16 * 2**20  # a larger validation split is scored on a 16 MiB document sample
EVAL_BYTES = 256 * 2**10  # the curve's intermediate points: 256 KiB of the same documents
BUDGETS = ("flops", "tokens", "steps", "minutes")
# On CUDA the training losses stay on the device and are read (one copy, which waits for the
# queued steps) at evaluations, checkpoints, the end, and at least this often, so the GPU never
# idles for a per-step .item() or synchronize. On a CPU reading costs nothing: every step.
LOSS_READ_EVERY = 20

# Dense bf16 tensor-core peak FLOP/s by GPU name (vendor datasheets), for MFU.
GPU_PEAK_FLOPS = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "A10G": 70e12,
    "A10": 125e12,
    "L40S": 362e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
    "V100": 125e12,
    "T4": 65e12,
}


def gpu_peak_flops(name: str) -> float | None:
    """The peak for a device name such as 'NVIDIA H100 80GB HBM3'; None when it is not in the table."""
    for key, peak in GPU_PEAK_FLOPS.items():  # more specific names come first
        if key in name:
            return peak
    return None


CPU_FLOPS_PER_S = 1e11  # what the tiny and small presets reach on a 2-core CPU (reports/benchmarks/pretrain_throughput.md)
GPU_MFU_GUESS = 0.3  # a share of the GPU's bf16 peak for an untuned run, for estimates only
MAX_HOURS = 24.0  # a longer estimate is refused unless the user says --yes


def estimate_hours(total_flops: float, device: str = "auto") -> tuple[float, str] | None:
    """Rough wall hours for `total_flops` of training on `device`, and the rate assumed; None
    when there is no basis for a guess (a GPU not in the peak table)."""
    name = pick_device(device)
    if name == "cpu":
        return total_flops / CPU_FLOPS_PER_S / 3600, f"about {CPU_FLOPS_PER_S / 1e12:.1f} TFLOP/s on a CPU"
    if name.startswith("cuda"):
        import torch

        gpu = torch.cuda.get_device_name(name)
        peak = gpu_peak_flops(gpu)
        if peak:
            return total_flops / (GPU_MFU_GUESS * peak) / 3600, f"{GPU_MFU_GUESS:.0%} of the {gpu}'s {peak / 1e12:.0f} TFLOP/s peak"
    return None


def check_duration(total_flops: float, device: str, yes: bool, what: str) -> str | None:
    """Refuse work estimated above MAX_HOURS unless `yes`; a note when it will take over ten minutes."""
    estimate = estimate_hours(total_flops, device)
    if estimate is None:
        return None
    hours, rate = estimate
    text = f"{what}: {total_flops:.2g} training FLOPs at {rate} is roughly {hours:,.1f} hours"
    if hours > MAX_HOURS and not yes:
        raise ToklabError(f"{text}; pass --yes to run it anyway, or use a GPU or a smaller budget")
    return text if hours * 60 >= 10 else None


@dataclass(frozen=True)
class Budget:
    """When the run stops: after this many training FLOPs, tokens, optimiser steps, or minutes."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in BUDGETS:
            raise ToklabError(f"unknown budget '{self.kind}' (use {', '.join(BUDGETS)})")
        if not (self.value > 0 and math.isfinite(self.value)):
            raise ToklabError(f"--{self.kind} must be a positive finite number, got {self.value:g}")

    def total_steps(self, tokens_per_step: int, flops_per_token: float) -> int | None:
        """Optimiser steps the budget allows; None for a wall-clock budget."""
        if self.kind == "steps":
            return int(self.value)
        if self.kind == "tokens":
            return max(1, math.ceil(self.value / tokens_per_step))
        if self.kind == "flops":
            steps = int(self.value // (flops_per_token * tokens_per_step))
            if steps < 1:
                raise ToklabError(f"--flops {self.value:.3g} is less than one step ({flops_per_token * tokens_per_step:.3g} FLOPs); raise it or shrink the batch")
            return steps
        return None


def step_size(batch_size: int, context: int, batch_tokens: int | None, world_size: int = 1) -> tuple[int, int]:
    """(micro-batches accumulated per optimiser step on each process, tokens per step in all): at
    least `batch_tokens`. Under DDP a micro-step reads `batch_size` sequences on each of the
    `world_size` processes, so the accumulation divides by the world size and `batch_tokens` stays
    the global batch."""
    micro = batch_size * context * world_size
    accumulation = max(1, math.ceil((batch_tokens or micro) / micro))
    return accumulation, micro * accumulation


@dataclass
class TrainConfig:
    """How to train: batch, optimiser, schedule, evaluation and checkpoints."""

    budget: Budget = field(default_factory=lambda: Budget("steps", 200))
    batch_size: int = 8  # sequences per micro-batch
    batch_tokens: int | None = None  # tokens per optimiser step; None: one micro-batch. Reached by gradient accumulation.
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * this
    warmup: float = 0.05  # share of the run spent warming up (cosine)
    schedule: str = "cosine"
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 50  # steps
    val_bytes: int | None = VAL_BYTES  # the scoring set: whole validation documents up to this many bytes, by id hash; None: all
    eval_bytes: int | None = EVAL_BYTES  # evaluations before the last score a hash-ordered prefix of the scoring set this size
    checkpoint_every: int = 100  # steps
    seed: int = 0
    device: str = "auto"  # auto: cuda when available
    dtype: str = "auto"  # auto: bfloat16 autocast on CUDA, float32 on CPU
    # Off by default, on CUDA too: compiling gpt2-124m costs about a minute before the first step,
    # more than many short runs and studies train for, and its gain has not been measured yet
    # (scripts/gpu_check.py measures tokens/s with and without it). Revisit once it has been.
    compile: bool = False

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ToklabError(f"unknown --schedule '{self.schedule}' (use {', '.join(SCHEDULES)})")
        for name in ("batch_size", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ToklabError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("val_bytes", "eval_bytes"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ToklabError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ToklabError(f"--lr must be a positive finite number, got {self.lr}")
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise ToklabError(f"--batch-tokens must be positive, got {self.batch_tokens}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ToklabError(f"unknown --dtype '{self.dtype}' (use auto, float32 or bfloat16)")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        data = dict(data)
        data["budget"] = Budget(**data["budget"])
        data["betas"] = tuple(data["betas"])
        return cls(**data)


TRAIN_OPTIONS = tuple(f.name for f in fields(TrainConfig) if f.name != "budget")  # what callers may set by keyword


def train_config(base: TrainConfig | None = None, budget: Budget | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """One TrainConfig: `base` (default: TrainConfig()), then the budget, then keyword overrides
    (TrainConfig's own fields; an unknown one is a TypeError, a bad value a ToklabError). The one
    place where loose training options become the typed config that is passed on."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(TRAIN_OPTIONS))
    if unknown:
        raise TypeError(f"unknown training options: {', '.join(unknown)} (known: {', '.join(TRAIN_OPTIONS)})")
    if budget is not None:
        overrides["budget"] = budget
    return replace(base or TrainConfig(), **overrides)


def given_options(config: TrainConfig | None) -> dict[str, Any]:
    """The fields of `config` that differ from TrainConfig's defaults (budget aside): what a caller set."""
    if config is None:
        return {}
    default = TrainConfig()
    return {name: getattr(config, name) for name in TRAIN_OPTIONS if getattr(config, name) != getattr(default, name)}


def learning_rate(progress: float, config: TrainConfig) -> float:
    """The learning rate at `progress` (0 at the start, 1 at the end of the budget).

    cosine: linear warmup, then cosine decay to lr * min_lr_ratio. one-cycle (Cramming): a linear
    rise to lr at the middle of the run, then a linear fall to 0.
    """
    p = min(max(progress, 0.0), 1.0)
    if config.schedule == "one-cycle":
        return config.lr * (p / 0.5 if p < 0.5 else (1.0 - p) / 0.5)
    if config.warmup > 0 and p < config.warmup:
        return config.lr * (p / config.warmup)
    decay = (p - config.warmup) / max(1.0 - config.warmup, 1e-12)
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (config.lr - floor) * (1.0 + math.cos(math.pi * decay))


def bits_per_byte(loss_sum_nats: float, target_bytes: int) -> float:
    """Tokeniser-independent: total loss in bits over the bytes the target tokens stand for."""
    return loss_sum_nats / (math.log(2) * target_bytes) if target_bytes else float("nan")


@dataclass
class RunResult:
    """A finished (or budget-stopped) training run."""

    out: Path
    segmenter: str
    model: dict[str, Any]
    train: dict[str, Any]
    steps: int
    tokens: int
    flops: float
    flops_per_token: float
    flops_per_byte: float
    train_loss: float  # mean over the optimiser steps since the evaluation before the last one
    last_step_train_loss: float
    val_loss: float
    val_bits_per_byte: float
    val_docs_scored: int
    val_bytes_scored: int
    val_tokens_scored: int
    epochs: float  # passes over the training split's windows
    train_bytes_seen: int  # bytes of training text trained on, repeats included
    unique_train_bytes: int  # distinct bytes of training text trained on
    train_split_bytes: int
    tokens_per_s: float
    bytes_per_s: float
    mfu: float | None
    peak_memory_bytes: int
    device: str
    wall_s: float
    stopped_by: str
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    arch: str = "gpt"  # "blt": a byte-latent patch model, whose tokens are byte positions
    patches: dict[str, Any] | None = None  # a BLT's patches: bytes per patch, the patcher, its FLOPs
    parallel: dict[str, Any] | None = None  # a DDP run: processes, backend, and the whole job's and each process's throughput

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "history"}
        out["out"] = str(self.out)
        return out


def world_size_message(out: Path | str, saved: int, now: int) -> str:
    """Why a run cannot resume with another number of processes, and what to do."""
    processes = lambda n: f"{n} process" + ("" if n == 1 else "es")  # noqa: E731
    how = "as one process (no --nproc, no torchrun)" if saved == 1 else f"with {processes(saved)} in all (--nproc {saved}, or torchrun with nodes x --nproc-per-node = {saved})"
    return f"--resume: {out} was trained with {processes(saved)} and this job has {now}; resume it {how}, or start it again with --overwrite"


# --- devices ------------------------------------------------------------------------------------


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ToklabError(f"--device {name}: no CUDA device is available (this torch build: {torch.__version__})")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ToklabError(f"unknown --device '{name}' (use auto, cpu or cuda[:N])")
    return name


def peak_memory(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def _rng_state() -> dict[str, Any]:
    import numpy as np  # here, like torch, so the CLI starts without it
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np  # here, like torch, so the CLI starts without it
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    # RNG states are CPU byte tensors whatever device the checkpoint was mapped to
    torch.set_rng_state(torch.as_tensor(state["torch"], device="cpu", dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.as_tensor(s, device="cpu", dtype=torch.uint8) for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    import numpy as np  # here, like torch, so the CLI starts without it
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- the loop -----------------------------------------------------------------------------------


class Trainer:
    """One run in one folder: model, optimiser, data position, log and checkpoints."""

    def __init__(self, data: Any, model_config: Any, config: TrainConfig, out: Path, *, segmenter_spec: str) -> None:
        import torch

        from toklab.gpt import distributed
        from toklab.gpt.data import TokenStream, ValidationSet
        from toklab.gpt.blt import BLT, BLTConfig
        from toklab.gpt.model import GPT

        self.data, self.model_config, self.config, self.out = data, model_config, config, Path(out)
        self.segmenter_spec = segmenter_spec
        self.world = distributed.init(config.device)  # one process unless torchrun set WORLD_SIZE > 1
        self.device = pick_device(config.device)
        self.device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        if self.world.distributed and self.device_type == "cuda":
            self.device = f"cuda:{self.world.local_rank}"  # one GPU per process, whatever --device named
        bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and self.device_type == "cuda")
        self.autocast_dtype = torch.bfloat16 if bf16 else None
        if self.device_type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        seed_everything(config.seed)
        if isinstance(model_config, BLTConfig):  # a patch model reads flagged bytes (toklab.segmenters.patchers)
            self.positions_per_patch: float | None = data.positions_per_patch("train")
            self.model = BLT(model_config).to(self.device)
            self.flops_per_token = model_config.flops_per_byte(self.positions_per_patch)
        else:
            self.positions_per_patch = None
            self.model = GPT(model_config).to(self.device)
            self.flops_per_token = model_config.flops_per_token()
        self.optimizer = self.model.optimizer(config.lr, config.weight_decay, config.betas, self.device_type)
        self.ddp: Any = None
        if self.world.distributed:  # every rank starts from the same seed; DDP also broadcasts rank 0's weights
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(self.model, device_ids=[self.world.local_rank] if self.device_type == "cuda" else None)
        wrapped = self.ddp if self.ddp is not None else self.model
        self.forward = torch.compile(wrapped) if config.compile else wrapped
        self.accumulation, self.tokens_per_step = step_size(config.batch_size, model_config.context, config.batch_tokens, self.world.size)
        self.total_steps = config.budget.total_steps(self.tokens_per_step, self.flops_per_token)
        self.stream = TokenStream(
            data.train_shards, config.batch_size, model_config.context, seed=config.seed, byte_lengths=data.byte_lengths, rank=self.world.rank, world_size=self.world.size,
        )  # fmt: skip
        self.validation = ValidationSet(data, model_config.context, config.val_bytes)
        self.bytes_per_token = data.bytes_per_token("train")
        self.step = 0
        self.elapsed = 0.0  # training seconds, summed over resumed sessions
        self.wall = 0.0  # wall seconds of the run (evaluations and checkpoints included), summed over resumed sessions
        self.final_scores: Any = None  # the last evaluation's per-document scores, on the whole scoring set
        self.train_loss_sum = 0.0  # since the last evaluation
        self.train_loss_count = 0
        self.last_train_loss = float("nan")  # as of the last read_losses()
        self._pending: list[tuple[int, list[Any]]] = []  # (step, its micro-batch losses on the device), not yet read
        self.history: list[dict[str, Any]] = []

    # progress through the budget, 0..1, which drives the schedule
    def progress(self) -> float:
        if self.total_steps is not None:
            return self.step / self.total_steps
        return self.elapsed / (self.config.budget.value * 60.0)

    def done(self) -> bool:
        return self.progress() >= 1.0

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype)

    def _to_device(self, t: Any) -> Any:
        if self.device_type == "cuda":
            # a pinned copy lets the transfer run asynchronously; the caching host allocator keeps
            # the block alive until the copy is done. contiguous() first: the batch is a view.
            return t.contiguous().pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def train_step(self) -> None:
        """One optimiser step (with gradient accumulation). Its loss stays on the device until
        `read_losses` (every step on a CPU), which checks it and adds it to the running mean."""
        import torch

        lr = learning_rate(self.progress(), self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        losses = []
        for i in range(self.accumulation):
            x, y = self.stream.next_batch()
            x, y = self._to_device(x), self._to_device(y)
            with self._sync(i == self.accumulation - 1):
                with self._autocast():
                    _, loss = self.forward(x, y)
                (loss / self.accumulation).backward()
            losses.append(loss.detach())
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self._pending.append((self.step, losses))

    def _sync(self, last: bool) -> Any:
        """Under DDP the gradients are averaged over the ranks once per step, at the last micro-batch."""
        import contextlib

        return self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext()

    def read_losses(self) -> None:
        """Copy the losses of the steps not yet read to the host in one transfer (on CUDA this waits
        for them), then check and add each step's mean in order: the same float arithmetic as
        reading every micro-batch with .item(), so the figures do not depend on how often this runs.
        A non-finite loss names the step it happened at, wherever the read falls."""
        import torch

        if not self._pending:
            return
        stacked = torch.stack([loss for _, losses in self._pending for loss in losses])
        if self.world.distributed:  # every rank's micro-batch losses, in global micro-batch order (m·w + r)
            from toklab.gpt import distributed

            gathered = torch.stack(distributed.all_gather(stacked)).view(self.world.size, len(self._pending), self.accumulation)
            stacked = gathered.permute(1, 2, 0).reshape(-1)
        values = stacked.tolist()
        pending, self._pending = self._pending, []
        per_step = self.accumulation * self.world.size
        i = 0
        for step, _ in pending:
            total = 0.0
            for value in values[i : i + per_step]:
                total += value
            i += per_step
            loss_value = total / per_step
            if not math.isfinite(loss_value):
                raise ToklabError(self._nan_message(loss_value, step=step))
            self.train_loss_sum += loss_value
            self.train_loss_count += 1
            self.last_train_loss = loss_value

    def _nan_message(self, value: float, what: str = "training loss", step: int | None = None) -> str:
        kept = self.out / CHECKPOINT
        where = f"the last good checkpoint is kept in {kept}" if kept.exists() else "no checkpoint was written yet"
        return f"{what} became {value} at step {self.step + 1 if step is None else step}; stopped ({where}); try a lower --lr"

    def evaluate(self, final: bool = True) -> Any:
        """Per-document validation scores (`toklab.gpt.data.Scores`): on the whole scoring set when
        `final`, else on its first `eval_bytes` in hash order (the curve's intermediate points)."""
        import torch

        validation = self.validation
        docs = None if final else validation.subset(self.config.eval_bytes)
        on_device = []
        rank, size = self.world.rank, self.world.size
        self.model.eval()
        with torch.no_grad():
            for k, (x, y, _, doc) in enumerate(validation.batches(docs)):
                if k % size != rank:  # under DDP each rank scores every size-th batch
                    continue
                with self._autocast():
                    _, losses = self.model(self._to_device(x), self._to_device(y), reduction="none")  # 0 at padding (-100)
                on_device.append((losses.double().sum(dim=1), doc))  # read after the loop: no wait per batch
        self.model.train()
        per_batch = [(sums.cpu().numpy(), doc) for sums, doc in on_device]
        if self.world.distributed:  # each document's nats summed over the ranks; its bytes come from the index
            import numpy as np

            from toklab.gpt import distributed

            local = validation.scores(per_batch, np.arange(len(validation.index))).loss_nats
            total = distributed.all_reduce_sum(torch.from_numpy(local).to(self.device)).cpu().numpy()
            per_batch = [(total, np.arange(len(total)))]
        return validation.scores(per_batch, docs)

    def log_evaluation(self, final: bool = False) -> dict[str, Any]:
        self.read_losses()
        scores = self.evaluate(final)
        if not math.isfinite(scores.loss_sum):
            raise ToklabError(self._nan_message(scores.loss_sum, what="validation loss", step=self.step))
        if final:
            self.final_scores = scores
        train_loss = self.train_loss_sum / self.train_loss_count if self.train_loss_count else None  # None before any step
        tokens = self.step * self.tokens_per_step
        entry = {
            "step": self.step,
            "tokens": tokens,
            "flops": tokens * self.flops_per_token,
            "train_loss": train_loss,
            "val_loss": scores.loss_sum / scores.n_tokens,
            "val_bits_per_byte": bits_per_byte(scores.loss_sum, scores.n_bytes),
            "val_docs_scored": len(scores.doc),
            "val_bytes_scored": scores.n_bytes,
            "final": final,
            "epochs": self.stream.epochs,
            "unique_train_bytes": self.stream.unique_bytes,
            "lr": learning_rate(self.progress(), self.config),
            "elapsed_s": round(self.elapsed, 3),
            "tokens_per_s": tokens / self.elapsed if self.elapsed else 0.0,
        }
        self.train_loss_sum, self.train_loss_count = 0.0, 0
        self.history.append(entry)
        if self.world.main:  # under DDP only rank 0 writes
            with open(self.out / LOG, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        return entry

    # --- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        import torch

        self.read_losses()  # the running mean below must count every step taken
        if not self.world.main:  # every rank holds the same state; rank 0 writes it, the others wait till it is whole
            from toklab.gpt import distributed

            distributed.barrier()
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "wall": self.wall_so_far(),
            "stream": self.stream.state_dict(),
            "rng": _rng_state(),
            "train_loss": [self.train_loss_sum, self.train_loss_count, self.last_train_loss],
            "history": self.history,
            "world_size": self.world.size,
        }
        final = self.out / CHECKPOINT
        tmp = temp_name(final)
        try:
            torch.save(state, tmp)
            os.replace(tmp, final)
        except (OSError, RuntimeError) as exc:  # a full disk shows as either, depending on where torch notices
            tmp.unlink(missing_ok=True)
            raise ToklabError(f"cannot write {final}: {getattr(exc, 'strerror', None) or one_line(exc)}") from None
        if self.world.distributed:
            from toklab.gpt import distributed

            distributed.barrier()

    def weights_finite(self) -> bool:
        import torch

        with torch.no_grad():  # one device-to-host read for every tensor, not one each
            return bool(torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all())

    def load_checkpoint(self) -> None:
        import torch

        path = self.out / CHECKPOINT
        try:
            # onto the CPU: load_state_dict then copies weights and optimiser state to the model's
            # device, while the RNG states must stay CPU tensors (mapped to CUDA, set_rng_state fails)
            state = torch.load(path, map_location="cpu", weights_only=False)
        except FileNotFoundError:
            raise ToklabError(f"--resume: no {CHECKPOINT} in {self.out}") from None
        except Exception as exc:
            raise ToklabError(f"cannot read {path}: {exc}") from None
        saved = int(state.get("world_size", 1))
        if saved != self.world.size:
            raise ToklabError(world_size_message(self.out, saved, self.world.size))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.wall = float(state.get("wall", state["elapsed"]))
        self.stream.load_state_dict(state["stream"])
        _set_rng_state(state["rng"])
        self.train_loss_sum, self.train_loss_count, self.last_train_loss = state["train_loss"]
        self.history = state["history"]
        # the log gets exactly the evaluations the checkpoint knows about; later ones are redone
        if self.world.main:
            write_text_atomic(self.out / LOG, "".join(json.dumps(entry) + "\n" for entry in self.history))

    # --- the run --------------------------------------------------------------------------------

    def run(self, on_step: Callable[["Trainer", dict[str, Any] | None], None] | None = None) -> None:
        """Train until the budget is spent: evaluate every eval_every steps and at the end,
        checkpoint every checkpoint_every steps and at the end."""
        import torch

        self._session_start = time.perf_counter()
        if self.step == 0 and not self.history:
            self.log_evaluation()  # the untrained model: where every curve starts
        while not self.done():
            # On CUDA, elapsed sums the host time of the steps between two reads and the wait at the
            # read, so over each interval it is the GPU's training time without a synchronize per step.
            start = time.perf_counter()
            try:
                self.train_step()
                if self._read_due():
                    self.read_losses()
            except torch.cuda.OutOfMemoryError:
                raise ToklabError(self._oom_message()) from None
            self.elapsed += time.perf_counter() - start
            if self.world.distributed and self.total_steps is None:  # a minutes budget: every rank follows rank 0's clock
                from toklab.gpt import distributed

                self.elapsed = distributed.broadcast_float(self.elapsed, self.device)
            finished = self.done()
            if finished and self._pending:  # a minutes budget ran out between two reads
                start = time.perf_counter()
                self.read_losses()
                self.elapsed += time.perf_counter() - start
            entry = None
            if self.step % self.config.eval_every == 0 or finished:
                entry = self.log_evaluation(final=finished)
            if self.step % self.config.checkpoint_every == 0 or finished:
                if not self.weights_finite():  # a checkpoint is only ever written from finite weights
                    raise ToklabError(self._nan_message(float("nan"), what="the weights", step=self.step))
                self.save_checkpoint()
            if on_step is not None:
                on_step(self, entry)

    def _read_due(self) -> bool:
        """Whether the losses are read after this step: every step on a CPU; on CUDA at evaluations,
        checkpoints, the last step of a counted budget, and every LOSS_READ_EVERY steps."""
        if self.device_type != "cuda":
            return True
        step, config = self.step, self.config
        last = self.total_steps is not None and step >= self.total_steps
        return last or step % LOSS_READ_EVERY == 0 or step % config.eval_every == 0 or step % config.checkpoint_every == 0

    def wall_so_far(self) -> float:
        """Wall seconds of the run, earlier sessions included."""
        start = getattr(self, "_session_start", None)
        return self.wall + (time.perf_counter() - start if start is not None else 0.0)

    def _oom_message(self) -> str:
        b, a = self.config.batch_size, self.accumulation
        options = [f"--batch-size {b // k} with {a * k} accumulation steps" for k in (2, 4, 8) if b // k >= 1]
        fits = "; ".join(options) or "a smaller --context or model"
        return (
            f"CUDA out of memory with --batch-size {b} x context {self.model_config.context} and {a} accumulation steps "
            f"({self.tokens_per_step:,} tokens per step); the same tokens per step fit in less memory as: {fits} "
            f"(pass --batch-tokens {self.tokens_per_step} to keep the step size)"
        )
