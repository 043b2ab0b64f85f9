"""`pretrain`: turn a tokenisation into a short GPT training run, and its loss, bits-per-byte and FLOPs.

The corpus is segmented into cached token shards (train and validation from the corpus layer's
split), a GPT of the chosen shape trains until its budget is spent, and the run folder gets a
JSONL log of every evaluation, a checkpoint, and a report: summary.json, summary.md and curves
of loss and bits-per-byte against steps and against training FLOPs.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toklab.errors import ToklabError
from toklab.files import write_text_atomic
from toklab.gpt.train import CHECKPOINT, LOG, RUN_FILE, Budget, RunResult, TrainConfig, Trainer, peak_memory, gpu_peak_flops

if TYPE_CHECKING:
    from toklab.corpus import Corpus
    from toklab.segmenters import Segmenter

SEGMENTER_DIR = "segmenter"
FLOPS_FORMULA = (
    "FLOPs per token = 6N + 12·L·T·d, N = every matmul weight (attention and MLP of each layer, and the "
    "output head over the padded vocabulary; not the embedding lookup), L layers, T context, d width"
)


def _budget(flops: float | None, tokens: float | None, steps: int | None, minutes: float | None) -> Budget:
    given = [(k, v) for k, v in (("flops", flops), ("tokens", tokens), ("steps", steps), ("minutes", minutes)) if v is not None]
    if len(given) > 1:
        raise ToklabError(f"give one budget, not {' and '.join('--' + k for k, _ in given)}")
    kind, value = given[0] if given else ("steps", 200)
    return Budget(kind, float(value))


def run_name(corpus_spec: str, segmenter_spec: str, model: str) -> str:
    corpus_name = Path(corpus_spec.rstrip("/*")).stem or "corpus"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"pretrain-{corpus_name}-{segmenter_spec}-{model}").strip("-")


def _prepare_out(out: Path, run: dict[str, Any], resume: bool, overwrite: bool) -> None:
    """An empty or new folder starts a run; --resume needs the same run; --overwrite replaces a run."""
    if out.exists() and not out.is_dir():
        raise ToklabError(f"--out {out} is a file; choose a folder")
    empty = not out.exists() or not any(out.iterdir())
    previous = None
    if (out / RUN_FILE).is_file():
        try:
            previous = json.loads((out / RUN_FILE).read_text())
        except ValueError:
            previous = None
    if resume:
        if previous is None:
            raise ToklabError(f"--resume: {out} holds no run to continue ({RUN_FILE} is missing)")
        if previous != run:
            changed = sorted(k for k in set(run) | set(previous) if run.get(k) != previous.get(k))
            raise ToklabError(f"--resume: the run in {out} was started with other settings ({', '.join(changed)} differ); resume with the same arguments")
        if not (out / CHECKPOINT).is_file():
            raise ToklabError(f"--resume: {out} has no {CHECKPOINT} yet; start it again with --overwrite")
        return
    if not empty:
        if previous is None:
            raise ToklabError(f"--out {out} is not empty and holds no toklab run; choose a new or empty folder")
        if not overwrite:
            raise ToklabError(f"--out {out} already holds a run; pass --resume to continue it or --overwrite to start again")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / RUN_FILE, json.dumps(run, indent=2) + "\n")


def pretrain(
    corpus: "str | Corpus" = "default",
    segmenter: "str | Segmenter" = "bytes",
    *,
    model: str | None = "tiny",
    context: int = 256,
    n_layer: int | None = None,
    n_head: int | None = None,
    d_model: int | None = None,
    flops: float | None = None,
    tokens: float | None = None,
    steps: int | None = None,
    minutes: float | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    **train_options: Any,
) -> RunResult:
    """Train a GPT on `corpus` segmented by `segmenter` until the budget is spent.

    Give one budget: `flops` (what makes segmenters comparable), `tokens`, `steps` or `minutes`
    (default 200 steps). `model` is a preset (tiny, small, medium, gpt2-124m); n_layer, n_head
    and d_model override it. Other options are `TrainConfig` fields (batch_size, batch_tokens,
    lr, schedule, eval_every, eval_tokens, checkpoint_every, seed, device, dtype, compile).
    """
    from toklab.corpus import open_corpus
    from toklab.gpt.data import build_token_data
    from toklab.gpt.model import model_config
    from toklab.segmenters import Segmenter, get_segmenter

    budget = _budget(flops, tokens, steps, minutes)
    try:
        config = TrainConfig(budget=budget, **train_options)
    except TypeError as exc:
        raise TypeError(f"pretrain: {exc}") from None
    if context < 2:
        raise ToklabError(f"--context must be at least 2, got {context}")
    if isinstance(corpus, str):
        corpus = open_corpus(corpus, progress=progress)
    seg = segmenter if isinstance(segmenter, Segmenter) else get_segmenter(segmenter, corpus, progress=progress)
    data = build_token_data(corpus, seg, progress=progress)
    preset = model if not (n_layer and n_head and d_model) else None
    shape = model_config(seg.vocab_size, preset, context, n_layer=n_layer, n_head=n_head, d_model=d_model)
    custom = any(v is not None for v in (n_layer, n_head, d_model))
    name = f"L{shape.n_layer}-H{shape.n_head}-d{shape.d_model}" if custom or preset is None else preset
    out_path = Path(out) if out is not None else Path("reports") / run_name(corpus.spec, seg.spec, name)
    run = {
        "corpus": corpus.spec,
        "corpus_fingerprint": corpus.fingerprint(),
        "val_fraction": corpus.options.val_fraction,
        "segmenter": seg.spec,
        "token_data": data.manifest,
        "model_preset": preset,
        "model": shape.to_dict(),
        "train": config.to_dict(),
    }
    _prepare_out(out_path, run, resume, overwrite)
    if not (out_path / SEGMENTER_DIR).is_dir():
        seg.save(out_path / SEGMENTER_DIR)  # the run folder alone is enough to sample from it

    trainer = Trainer(data, shape, config, out_path, segmenter_spec=seg.spec)
    if resume:
        trainer.load_checkpoint()
    else:
        (out_path / LOG).unlink(missing_ok=True)
    start = time.perf_counter()
    with _progress_bar(trainer, enabled=progress) as on_step:
        trainer.run(on_step)
    wall = time.perf_counter() - start
    result = _result(trainer, seg, shape, config, out_path, wall)
    write_run_report(result)
    return result


class _progress_bar:
    """A rich bar over the budget showing loss, bits-per-byte and tokens/s (only on a terminal)."""

    def __init__(self, trainer: Trainer, enabled: bool) -> None:
        self.trainer, self.enabled, self.bar = trainer, enabled, None

    def __enter__(self) -> Any:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from toklab.progress import stderr_console

        if not (self.enabled and stderr_console.is_terminal):
            return None
        trainer = self.trainer
        total = trainer.total_steps if trainer.total_steps is not None else 1000
        self.bar = Progress(
            TextColumn("training"), BarColumn(), TextColumn("{task.fields[step]}"), TextColumn("loss {task.fields[loss]}"),
            TextColumn("val bpb {task.fields[bpb]}"), TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=stderr_console, transient=True,
        )  # fmt: skip
        self.bar.__enter__()
        self.task = self.bar.add_task("train", total=total, step="", loss="-", bpb="-", speed="")
        self.bpb = "-"

        def on_step(t: Trainer, entry: dict[str, Any] | None) -> None:
            if entry is not None:
                self.bpb = f"{entry['val_bits_per_byte']:.3f}"
            speed = t.step * t.tokens_per_step / t.elapsed if t.elapsed else 0.0
            done = t.step if t.total_steps is not None else t.progress() * 1000
            self.bar.update(self.task, completed=done, step=f"step {t.step}", loss=f"{t.last_train_loss:.3f}", bpb=self.bpb, speed=f"{speed:,.0f} tok/s")  # type: ignore[union-attr]

        return on_step

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _result(trainer: Trainer, seg: "Segmenter", shape: Any, config: TrainConfig, out: Path, wall: float) -> RunResult:
    import torch

    last = trainer.history[-1]
    tokens = trainer.step * trainer.tokens_per_step
    tokens_per_s = tokens / trainer.elapsed if trainer.elapsed else 0.0
    device = torch.cuda.get_device_name(trainer.device) if trainer.device_type == "cuda" else "cpu"
    peak = gpu_peak_flops(device) if trainer.device_type == "cuda" else None
    mfu = trainer.flops_per_token * tokens_per_s / peak if peak else None
    notes = [FLOPS_FORMULA]
    if trainer.device_type == "cuda" and peak is None:
        notes.append(f"no MFU: {device} is not in toklab's table of GPU peaks")
    stopped = config.budget.kind
    return RunResult(
        out=out,
        segmenter=seg.spec,
        model={**shape.to_dict(), "padded_vocab_size": shape.padded_vocab_size, "params": trainer.model.num_params(), "matmul_params": trainer.model.matmul_params()},
        train={**config.to_dict(), "accumulation": trainer.accumulation, "tokens_per_step": trainer.tokens_per_step},
        steps=trainer.step,
        tokens=tokens,
        flops=tokens * trainer.flops_per_token,
        flops_per_token=trainer.flops_per_token,
        flops_per_byte=trainer.flops_per_token / trainer.bytes_per_token,
        train_loss=trainer.last_train_loss,
        val_loss=last["val_loss"],
        val_bits_per_byte=last["val_bits_per_byte"],
        tokens_per_s=tokens_per_s,
        bytes_per_s=tokens_per_s * trainer.bytes_per_token,
        mfu=mfu,
        peak_memory_bytes=peak_memory(trainer.device),
        device=device,
        wall_s=wall,
        stopped_by=stopped,
        history=list(trainer.history),
        notes=notes,
    )


# --- report ------------------------------------------------------------------------------------


def summary_markdown(result: RunResult) -> str:
    m, t = result.model, result.train
    rows = [
        ("segmenter", result.segmenter),
        ("model", f"{m['n_layer']} layers, {m['n_head']} heads, d_model {m['d_model']}, context {m['context']}, vocab {m['vocab_size']:,} (padded {m['padded_vocab_size']:,}), {m['params']:,} parameters"),
        ("budget", f"{t['budget']['kind']} {t['budget']['value']:g}"),
        ("steps", f"{result.steps:,} ({t['tokens_per_step']:,} tokens per step: batch {t['batch_size']} x {t['accumulation']} accumulation)"),
        ("tokens seen", f"{result.tokens:,}"),
        ("training FLOPs", f"{result.flops:.4g}"),
        ("FLOPs per token", f"{result.flops_per_token:.4g}"),
        ("FLOPs per byte", f"{result.flops_per_byte:.4g}"),
        ("train loss (nats/token)", f"{result.train_loss:.4f}"),
        ("validation loss (nats/token)", f"{result.val_loss:.4f}"),
        ("validation bits-per-byte", f"{result.val_bits_per_byte:.4f}"),
        ("tokens/s", f"{result.tokens_per_s:,.0f}"),
        ("bytes/s", f"{result.bytes_per_s:,.0f}"),
        ("MFU", f"{100 * result.mfu:.1f}%" if result.mfu is not None else "n/a (" + ("CPU" if result.device == "cpu" else "GPU not in the peak table") + ")"),
        ("peak memory", f"{result.peak_memory_bytes / 2**20:,.0f} MiB" + (" (GPU, allocated)" if result.device != "cpu" else " (process RSS)")),
        ("device", result.device),
        ("wall time", f"{result.wall_s:,.1f} s"),
    ]
    lines = [f"# Pretrain run: {result.out.name}\n", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    lines += ["", f"{FLOPS_FORMULA}.", "", "Validation bits-per-byte = Σ loss / (ln 2 × Σ UTF-8 bytes of the target tokens), special tokens counting 0 bytes.", ""]
    lines += ["![loss](loss.png)", "", "![bits per byte](bits_per_byte.png)", ""]
    return "\n".join(lines)


def plot_curves(history: list[dict[str, Any]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key, name, label in (("val_loss", "loss.png", "loss (nats/token)"), ("val_bits_per_byte", "bits_per_byte.png", "validation bits-per-byte")):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for ax, x_key, x_label in ((axes[0], "step", "step"), (axes[1], "flops", "training FLOPs")):
            xs = [h[x_key] for h in history]
            ax.plot(xs, [h[key] for h in history], marker="o", markersize=3, label="validation")
            if key == "val_loss":
                train = [(h[x_key], h["train_loss"]) for h in history if h["train_loss"] is not None]
                if train:
                    ax.plot(*zip(*train), marker=".", markersize=3, label="train")
                ax.legend(fontsize=8)
            ax.set_xlabel(x_label)
            ax.set_ylabel(label)
            if x_key == "flops":
                ax.set_xscale("symlog", linthresh=max(min((x for x in xs if x > 0), default=1.0), 1.0))
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)


def write_run_report(result: RunResult) -> None:
    out = result.out
    payload = {**result.summary(), "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    write_text_atomic(out / "summary.json", json.dumps(payload, indent=2, default=str) + "\n")
    write_text_atomic(out / "summary.md", summary_markdown(result))
    plot_curves(result.history, out, f"{result.segmenter}: {result.model['n_layer']} layers, d {result.model['d_model']}")


def read_history(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every evaluation of a run, from its JSONL log."""
    path = Path(run_dir) / LOG
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise ToklabError(f"{run_dir} is not a pretrain run (no {LOG})") from None


# --- sampling -------------------------------------------------------------------------------------


def sample(run_dir: str | os.PathLike, prompt: str = "", *, max_new_tokens: int = 200, temperature: float = 0.8, top_k: int | None = 50, seed: int = 0, device: str = "auto") -> str:
    """Text generated by a run's last checkpoint from `prompt`, through its segmenter's decode."""
    import torch

    from toklab.gpt.data import eot_id
    from toklab.gpt.model import GPT, GPTConfig
    from toklab.gpt.train import pick_device
    from toklab.segmenters import load_segmenter

    run_dir = Path(run_dir)
    try:
        run = json.loads((run_dir / RUN_FILE).read_text())
    except FileNotFoundError:
        raise ToklabError(f"{run_dir} is not a pretrain run (no {RUN_FILE})") from None
    if not (run_dir / CHECKPOINT).is_file():
        raise ToklabError(f"{run_dir} has no {CHECKPOINT} yet")
    if max_new_tokens < 1:
        raise ToklabError(f"--max-tokens must be at least 1, got {max_new_tokens}")
    seg = load_segmenter(run_dir / SEGMENTER_DIR)
    device = pick_device(device)
    model = GPT(GPTConfig.from_dict(run["model"])).to(device)
    state = torch.load(run_dir / CHECKPOINT, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    ids = [eot_id(seg)] + seg.encode(prompt)  # a document starts after an end-of-text, as in training
    idx = torch.tensor([ids[-model.config.context :]], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, generator=generator)
    new = out[0, idx.shape[1] :].tolist()
    eot = eot_id(seg)
    if eot in new:
        new = new[: new.index(eot)]  # the document ended
    return prompt + seg.decode(new)
