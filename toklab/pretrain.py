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
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toklab.audit import training_audit, training_note
from toklab.errors import ToklabError, one_line
from toklab.files import check_outside, remove_owned, remove_stale_temporaries, write_text_atomic
from toklab.outputs import OutputPolicy, Plan, plan_output, replaced_note
from toklab.text import count, short_number
from toklab.gpt import distributed
from toklab.gpt.train import world_size_message
from toklab.gpt.train import CHECKPOINT, LOG, RUN_FILE, Budget, RunResult, TrainConfig, Trainer, train_config, bits_per_byte, check_duration, gpu_peak_flops, peak_memory

if TYPE_CHECKING:
    from toklab.corpus import Corpus
    from toklab.segmenters import Segmenter
    from toklab.stats import Interval

SEGMENTER_DIR = "segmenter"
SCORING_NOTE = (
    "Validation bits-per-byte = Σ loss / (ln 2 × Σ UTF-8 bytes) over whole validation documents, each scored from its "
    "first token and including the <|endoftext|> that ends it (0 bytes); the documents are the whole validation split, or "
    "a sample chosen by a hash of their ids and capped in bytes, the same for every segmenter. Per-document losses are "
    "in val_documents.parquet, per-source bits-per-byte in per_source.csv."
)
FLOPS_FORMULA = (
    "FLOPs per token = 6N + 12·L·T·d, N = every matmul weight (attention and MLP of each layer, and the "
    "output head over the padded vocabulary; not the embedding lookup), L layers, T context, d width"
)
BLT_FLOPS_FORMULA = (
    "BLT FLOPs per byte position = local encoder + pooling + decoder with its byte head (6N + 12·L·K·d per "
    "byte, K the keys the windowed attention computes) + (global transformer + its projections) ÷ positions "
    "per patch; embedding lookups, n-gram hashing and elementwise work are not counted (toklab.gpt.blt)"
)
ARCHS = ("gpt", "blt")  # a token GPT, or a byte-latent patch model over flagged bytes


def _budget(flops: float | None, tokens: float | None, steps: int | None, minutes: float | None, default: Budget | None = None) -> Budget:
    """The one budget given; none given: `default` (a TrainConfig's own), else 200 steps."""
    given = [(k, v) for k, v in (("flops", flops), ("tokens", tokens), ("steps", steps), ("minutes", minutes)) if v is not None]
    if len(given) > 1:
        raise ToklabError(f"give one budget, not {' and '.join('--' + k for k, _ in given)}")
    if not given and default is not None:
        return default
    kind, value = given[0] if given else ("steps", 200)
    return Budget(kind, float(value))


def budget_label(budget: Budget) -> str:
    """The budget in a folder name: 200steps, 1e11flops, 1.5e11flops, 5e6tokens, 10min."""
    value = budget.value
    if budget.kind == "steps":
        return f"{int(value)}steps"
    if budget.kind == "minutes":
        return f"{value:g}min"
    return short_number(value) + budget.kind


def default_out(corpus: "Corpus", segmenter_spec: str, model: str, budget: Budget, *, seed: int = 0, context: str = "", seeds: int = 1) -> Path:
    """The run folder when none is given: reports/pretrain-<corpus>-<segmenter>-<model>-<budget>,
    then the context when it is not the default, and the seed (or the number of seeds), so that
    runs that differ in these do not meet in one folder."""
    from toklab.files import default_output

    which = f"{seeds}-seeds" if seeds > 1 else (f"seed{seed}" if seed else "")
    return default_output("pretrain", corpus.label, segmenter_spec, model, budget_label(budget), context, which)


def _context_label(context: int, context_bytes: int | None) -> str:
    return f"ctx{context_bytes}bytes" if context_bytes is not None else ("" if context == 256 else f"ctx{context}")


RUN_FILES = (
    RUN_FILE, LOG, CHECKPOINT, "segmenter", "summary.json", "summary.md", "loss.png", "bits_per_byte.png", "val_documents.parquet", "per_source.csv",
    "report.html",  # toklab report --html
)  # fmt: skip  (everything a run writes: --overwrite removes these and nothing else)


def read_run_file(out: Path) -> dict[str, Any] | None:
    """The settings a run folder was started with (run.json), or None when missing or damaged."""
    try:
        previous = json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return previous if isinstance(previous, dict) else None


AUDIT_KEY = "byte_audit"  # what the byte-accounting audit found before training (toklab.audit)


def _settings(run: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run's settings without the audit record, so that runs written before the audit existed (or
    an audit of another sample) still count as the same run."""
    return None if run is None else {k: v for k, v in run.items() if k != AUDIT_KEY}


def _finished(out: Path, run: dict[str, Any]) -> bool:
    """Whether `out` holds this very run (the same settings), finished and reported."""
    return _settings(read_run_file(out)) == _settings(run) and all((out / name).is_file() for name in ("summary.json", LOG, "val_documents.parquet"))


OUTPUT = OutputPolicy("run", resumable=True)


def _prepare_out(out: Path, run: dict[str, Any], resume: bool, overwrite: bool) -> Plan:
    """Start, continue (--resume, the same run only) or replace (--overwrite: only the files a run
    writes; anything else in the folder stays) the run in `out`, by toklab.outputs' policy."""
    previous = read_run_file(out)
    damaged = f"{RUN_FILE} cannot be read" if previous is None and (out / RUN_FILE).exists() else None
    plan = plan_output(out, OUTPUT, previous=_settings(previous), settings=_settings(run), resume=resume, overwrite=overwrite, damaged=damaged)
    if plan is Plan.CONTINUE:
        if not (out / CHECKPOINT).is_file():
            raise ToklabError(f"--resume: {out} has no {CHECKPOINT} yet; start it again with --overwrite")
        remove_stale_temporaries(out)
        return plan
    if plan is Plan.REPLACE:
        remove_owned(out, RUN_FILES)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / RUN_FILE, json.dumps(run, indent=2) + "\n")
    return plan


def _segmenter_for(arch: str, segmenter: "str | Segmenter", corpus: "Corpus", progress: bool) -> "Segmenter":
    """What the model reads: the segmenter's tokens (a GPT), or flagged bytes from a patcher spec
    (a BLT; a PatchedBytes already built is used as it is)."""
    from toklab.segmenters import Segmenter, get_segmenter
    from toklab.segmenters.patchers import PatchedBytes, load_patcher

    if arch != "blt":
        return segmenter if isinstance(segmenter, Segmenter) else get_segmenter(segmenter, corpus, progress=progress)
    if isinstance(segmenter, PatchedBytes):
        return segmenter
    if not isinstance(segmenter, str):
        raise ToklabError(f"--arch blt needs a patcher spec (static, space, entropy:..., or a segmenter's spec), not the segmenter {segmenter.spec}")
    return load_patcher(segmenter, corpus, progress=progress)


def pretrain(
    corpus: "str | Corpus" = "default",
    segmenter: "str | Segmenter" = "bytes",
    *,
    model: str | None = "tiny",
    context: int = 256,
    context_bytes: int | None = None,
    n_layer: int | None = None,
    n_head: int | None = None,
    d_model: int | None = None,
    flops: float | None = None,
    tokens: float | None = None,
    steps: int | None = None,
    minutes: float | None = None,
    arch: str = "gpt",
    train: TrainConfig | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    yes: bool = False,
    allow_lossy: bool = False,
    progress: bool = False,
    **train_options: Any,
) -> RunResult:
    """Train a GPT on `corpus` segmented by `segmenter` until the budget is spent.

    Give one budget: `flops` (what makes segmenters comparable), `tokens`, `steps` or `minutes`
    (default 200 steps). `model` is a preset (tiny, small, medium, gpt2-124m); n_layer, n_head
    and d_model override it. `context_bytes` replaces `context` by the whole number of tokens
    nearest to that many bytes at this segmenter's bytes/token on the training split. How to
    train is a `TrainConfig` (`train`), and keyword options set its fields on top of it
    (batch_size, batch_tokens, lr, schedule, eval_every, val_bytes, eval_bytes, checkpoint_every,
    seed, device, dtype, compile); a budget given here replaces its budget. A run estimated at
    over 24 hours on this machine is refused unless `yes`.

    `arch="blt"` trains the byte-latent patch model (toklab.gpt.blt) instead: `segmenter` is then a
    patcher spec (`static:size=4.5`, `space`, `entropy:target=4.5`, or any segmenter's token
    boundaries, e.g. `bpe:4k`), `model` a BLT preset (tiny, small, gpu), and `context` (or
    `context_bytes`) is in bytes.

    Before anything is built, the segmenter's byte accounting is audited on the first validation
    documents (toklab.audit; for a BLT, the segmenter whose tokens make the patches): a segmenter
    whose bits-per-byte would be wrong is refused unless `allow_lossy`. run.json records the audit.
    """
    from toklab.corpus import open_corpus
    from toklab.gpt.data import build_token_data
    from toklab.gpt.model import model_config

    budget = _budget(flops, tokens, steps, minutes, default=train.budget if train is not None else None)
    try:
        config = train_config(train, budget, train_options)
    except TypeError as exc:
        raise TypeError(f"pretrain: {exc}") from None
    if context < 2:
        raise ToklabError(f"--context must be at least 2, got {context}")
    if context_bytes is not None and context_bytes < 2:
        raise ToklabError(f"--context-bytes must be at least 2, got {context_bytes}")
    if arch not in ARCHS:
        raise ToklabError(f"unknown --arch {arch!r} (use {' or '.join(ARCHS)})")
    if arch == "blt" and any(v is not None for v in (n_layer, n_head, d_model)):
        raise ToklabError("--n-layer, --n-head and --d-model shape a GPT; a BLT takes a --model preset (tiny, small, gpu)")
    world = distributed.init(config.device)  # under torchrun (WORLD_SIZE > 1): DDP, rank 0 writes
    progress = progress and world.main
    with distributed.main_first():  # rank 0 builds what is cached (segmenter, shards); the others then read it
        if isinstance(corpus, str):
            corpus = open_corpus(corpus, progress=progress)
        seg = _segmenter_for(arch, segmenter, corpus, progress)
        byte_audit = training_audit(seg, corpus, allow_lossy)  # before the shards: a wrong byte count is refused first
        data = build_token_data(corpus, seg, progress=progress)
    if arch == "blt":
        from toklab.gpt.blt import blt_config

        preset = model or "tiny"
        context = context_bytes or context  # a BLT's context is bytes already
        shape: Any = blt_config(preset, context)
        name = f"blt-{preset}"
    else:
        if context_bytes is not None:
            context = context_for_bytes(context_bytes, data.bytes_per_token("train"))
        preset = model if not (n_layer and n_head and d_model) else None
        shape = model_config(seg.vocab_size, preset, context, n_layer=n_layer, n_head=n_head, d_model=d_model)
        custom = any(v is not None for v in (n_layer, n_head, d_model))
        name = f"L{shape.n_layer}-H{shape.n_head}-d{shape.d_model}" if custom or preset is None else preset
    out_path = Path(out) if out is not None else default_out(corpus, seg.spec, name, budget, seed=config.seed, context=_context_label(shape.context, context_bytes))
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
    if arch != "gpt":  # only then: a GPT run's run.json stays what earlier versions wrote
        run["arch"] = arch
    if world.distributed:  # likewise: a run of one process records no world size
        run["world_size"] = world.size
    if resume and (previous := read_run_file(out_path)) is not None and int(previous.get("world_size", 1)) != world.size:
        raise ToklabError(world_size_message(out_path, int(previous.get("world_size", 1)), world.size))
    run[AUDIT_KEY] = byte_audit  # recorded, not a setting: runs compare without it (see _settings)
    check_outside(out_path, corpus.input_roots())
    if not (resume or overwrite) and _finished(out_path, run):  # before the model is built: there is nothing to train
        result = read_run(out_path)
        result.notes.append(f"this run had already finished in {out_path} with the same settings: its result is shown again (pass --overwrite to train it again)")
        return result
    trainer = Trainer(data, shape, config, out_path, segmenter_spec=seg.spec)  # checks the budget and batch before anything is replaced
    if trainer.total_steps is not None:
        note = check_duration(trainer.total_steps * trainer.tokens_per_step * trainer.flops_per_token / world.size, config.device, yes, "this run")  # each process does its share
        if note and progress:
            from toklab.progress import stderr_console

            stderr_console.print(f"[yellow]note:[/] {note}")
    if config.compile and trainer.device_type == "cpu" and progress:
        from toklab.progress import stderr_console

        stderr_console.print("[yellow]note:[/] --compile on a CPU spends about a minute compiling before the first step, and rarely pays off here")
    if world.main:  # under DDP the other ranks write nothing: they wait for rank 0's folder
        if _prepare_out(out_path, run, resume, overwrite) is Plan.REPLACE and progress:
            from toklab.progress import stderr_console

            stderr_console.print(f"[yellow]note:[/] {replaced_note(out_path, 'run')}", soft_wrap=True)
        if not (out_path / SEGMENTER_DIR).is_dir():
            seg.save(out_path / SEGMENTER_DIR)  # the run folder alone is enough to sample from it
        if not resume:
            (out_path / LOG).unlink(missing_ok=True)
    distributed.barrier()
    if resume:
        trainer.load_checkpoint()
    with _progress_bar(trainer, enabled=progress) as on_step:
        trainer.run(on_step)
    if trainer.final_scores is None:  # resumed after the last checkpoint: score it again (deterministic)
        trainer.final_scores = trainer.evaluate(final=True)
    result = _result(trainer, seg, shape, config, out_path, trainer.wall_so_far())
    note = training_note(byte_audit)
    if note:
        result.notes.append(note)
    if world.main:
        write_run_report(result)
        write_document_scores(trainer, out_path)
    distributed.barrier()  # every rank returns once the report is there (a study reads it next)
    return result


@dataclass
class SeedsResult:
    """The same run with several seeds: every run, and the mean bits-per-byte with its 95% interval."""

    runs: list[RunResult]
    val_bits_per_byte: "Interval"


def pretrain_seeds(
    corpus: "str | Corpus" = "default", segmenter: "str | Segmenter" = "bytes", *, seeds: int = 1, seed: int = 0, out: str | os.PathLike | None = None,
    train: TrainConfig | None = None, progress: bool = False, **options: Any,
) -> SeedsResult:
    """`pretrain` with seeds `seed`, `seed + 1`, ...: each run in `<out>/seed-<k>`, and the mean
    validation bits-per-byte over them with its 95% t-interval (none for one seed). `options` are
    pretrain's; its training options (TrainConfig's fields) are gathered into one config first."""
    from toklab.corpus import open_corpus
    from toklab.gpt.train import TRAIN_OPTIONS
    from toklab.stats import mean_interval

    if seeds < 1:
        raise ToklabError(f"--seeds must be at least 1, got {seeds}")
    base = train_config(train, None, {k: options.pop(k) for k in list(options) if k in TRAIN_OPTIONS})
    shown = progress and distributed.init(base.device).main  # under torchrun rank 0 builds the caches and shows progress
    with distributed.main_first():
        if isinstance(corpus, str):
            corpus = open_corpus(corpus, progress=shown)
        seg = _segmenter_for(str(options.get("arch", "gpt")), segmenter, corpus, shown)
    if out is None:
        budget = _budget(options.get("flops"), options.get("tokens"), options.get("steps"), options.get("minutes"), default=train.budget if train is not None else None)
        context = _context_label(int(options.get("context") or 256), options.get("context_bytes"))
        out = default_out(corpus, seg.spec, str(options.get("model") or "tiny"), budget, seed=seed, context=context, seeds=seeds)
    runs = [pretrain(corpus, seg, train=replace(base, seed=k), out=Path(out) / f"seed-{k}", progress=progress, **options) for k in range(seed, seed + seeds)]
    return SeedsResult(runs, mean_interval([r.val_bits_per_byte for r in runs]))


def context_for_bytes(context_bytes: int, bytes_per_token: float) -> int:
    """The context in tokens nearest to `context_bytes` bytes at `bytes_per_token` (at least 2)."""
    return max(2, int(round(context_bytes / bytes_per_token)))


DOCUMENTS_FILE = "val_documents.parquet"
PER_SOURCE_FILE = "per_source.csv"


def write_document_scores(trainer: Trainer, out: Path) -> None:
    """Per-document losses of the final evaluation (so any two runs compare document by document)
    and bits-per-byte per source, beside the summary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from toklab.files import temp_name

    scores, index = trainer.final_scores, trainer.validation.index
    table = document_table(scores, index)
    tmp = temp_name(out / DOCUMENTS_FILE)
    try:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), tmp)
        os.replace(tmp, out / DOCUMENTS_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    write_text_atomic(out / PER_SOURCE_FILE, per_source_bits(table).to_csv(index=False))


def document_table(scores: Any, index: Any) -> "Any":
    """One row per scored document: id, source, bytes, tokens (targets, the <|endoftext|> included), loss in nats."""
    import pandas as pd

    rows = index.iloc[scores.doc]
    return pd.DataFrame({
        "id": rows["id"].to_numpy(), "source": rows["source"].to_numpy(), "bytes": scores.bytes, "tokens": scores.tokens, "loss_nats": scores.loss_nats,
    })  # fmt: skip


def per_source_bits(documents: Any) -> Any:
    """Bits-per-byte per source of a document table (largest source first)."""
    import math

    grouped = documents.groupby("source", sort=False).agg(documents=("bytes", "size"), bytes=("bytes", "sum"), loss_nats=("loss_nats", "sum"))
    grouped["bits_per_byte"] = grouped["loss_nats"] / (math.log(2) * grouped["bytes"])
    return grouped.reset_index().sort_values(["bytes", "source"], ascending=[False, True], kind="stable")[["source", "documents", "bytes", "bits_per_byte"]]


def read_document_scores(run_dir: str | os.PathLike) -> Any:
    """The per-document losses a run wrote (a DataFrame: id, source, bytes, tokens, loss_nats)."""
    import pandas as pd

    path = Path(run_dir) / DOCUMENTS_FILE
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise ToklabError(f"{run_dir} has no {DOCUMENTS_FILE}: it was not finished by this toklab") from None


class _progress_bar:
    """A rich bar over the budget showing loss, bits-per-byte and tokens/s (only on a terminal)."""

    def __init__(self, trainer: Trainer, enabled: bool) -> None:
        self.trainer, self.enabled, self.bar = trainer, enabled, None

    def __enter__(self) -> Any:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from toklab.progress import PlainLines, mode, stderr_console

        how = mode(self.enabled)
        if how is None:
            return None
        trainer = self.trainer
        total = trainer.total_steps if trainer.total_steps is not None else 1000
        if how == "lines":  # a log or a pipe: a plain line every few seconds and at every evaluation
            lines = PlainLines(f"training {trainer.segmenter_spec}", trainer.total_steps, " steps")
            state = {"bpb": "-"}

            def on_line(t: Trainer, entry: dict[str, Any] | None) -> None:
                if entry is not None:
                    state["bpb"] = f"{entry['val_bits_per_byte']:.3f}"
                speed = t.step * t.tokens_per_step / t.elapsed if t.elapsed else 0.0
                done = t.step if t.total_steps is not None else 0
                lines.show(done, f"loss {t.last_train_loss:.3f}, val bpb {state['bpb']}, {speed:,.0f} tok/s", force=entry is not None)

            return on_line
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


def _patch_figures(trainer: Trainer, seg: "Segmenter", shape: Any) -> dict[str, Any]:
    """What a BLT run's patches were: bytes per patch on the training split, the patcher, the FLOPs
    per byte by part, BLT's own logging figure, and the entropy model's FLOPs (apart)."""
    from toklab.gpt.blt import blt_logging_flops_per_byte

    per_patch = trainer.positions_per_patch
    patches = trainer.data.tokens("train") / per_patch
    return {
        "patcher": getattr(seg, "patcher_spec", seg.spec),
        "causal": bool(getattr(seg, "causal", True)),
        "bytes_per_patch": trainer.data.bytes("train") / max(patches, 1.0),
        "positions_per_patch": per_patch,
        "patch_bytes": trainer.data.patch_length_stats("train"),
        "flops_per_byte_by_part": shape.flops_breakdown(per_patch),
        "blt_logging_flops_per_byte": blt_logging_flops_per_byte(shape, per_patch),
        "entropy_flops_per_byte": getattr(seg, "entropy_flops_per_byte", None),
    }


def _result(trainer: Trainer, seg: "Segmenter", shape: Any, config: TrainConfig, out: Path, wall: float) -> RunResult:
    import torch

    last = trainer.history[-1]
    scores = trainer.final_scores
    tokens = trainer.step * trainer.tokens_per_step
    tokens_per_s = tokens / trainer.elapsed if trainer.elapsed else 0.0
    device = torch.cuda.get_device_name(trainer.device) if trainer.device_type == "cuda" else "cpu"
    peak = gpu_peak_flops(device) if trainer.device_type == "cuda" else None
    size = trainer.world.size
    mfu = trainer.flops_per_token * tokens_per_s / (peak * size) if peak else None  # against every GPU's peak
    parallel = None
    if size > 1:  # the whole job's figures are the run's own; each process did 1/size of them
        parallel = {
            "processes": size, "backend": distributed.backend(),
            "job": {"tokens_per_s": tokens_per_s, "flops": tokens * trainer.flops_per_token, "flops_per_s": trainer.flops_per_token * tokens_per_s},
            "per_process": {"tokens_per_s": tokens_per_s / size, "flops": tokens * trainer.flops_per_token / size, "flops_per_s": trainer.flops_per_token * tokens_per_s / size},
            "mfu_per_gpu": mfu,
        }  # fmt: skip
    patches = _patch_figures(trainer, seg, shape) if trainer.positions_per_patch is not None else None
    notes = [BLT_FLOPS_FORMULA if patches else FLOPS_FORMULA] + list(trainer.data.manifest.get("read_notes", []))
    if patches and not patches["causal"]:
        notes.append(f"the patcher {patches['patcher']} is not causal: a patch boundary can depend on later bytes of the same pre-token, so the model sees a little of the future and its bits-per-byte is optimistic")
    if patches and patches["entropy_flops_per_byte"]:
        notes.append(f"the entropy model's own forward FLOPs ({patches['entropy_flops_per_byte']:,.0f} per byte) are reported apart and not in the budget")
    if trainer.device_type == "cuda" and peak is None:
        notes.append(f"no MFU: {device} is not in toklab's table of GPU peaks")
    stream = trainer.stream
    if stream.epochs > 1:
        notes.append(f"the training data repeated: {stream.epochs:.2f} passes over the training split ({stream.unique_bytes:,} distinct bytes, {stream.bytes_seen:,} trained on)")
    stopped = config.budget.kind
    return RunResult(
        out=out,
        segmenter=seg.spec,
        model={"vocab_size": seg.vocab_size, **shape.to_dict(), "padded_vocab_size": shape.padded_vocab_size, "params": trainer.model.num_params(), "matmul_params": trainer.model.matmul_params()},
        train={**config.to_dict(), "accumulation": trainer.accumulation, "tokens_per_step": trainer.tokens_per_step},
        steps=trainer.step,
        tokens=tokens,
        flops=tokens * trainer.flops_per_token,
        flops_per_token=trainer.flops_per_token,
        flops_per_byte=trainer.flops_per_token / trainer.bytes_per_token,
        train_loss=last["train_loss"] if last["train_loss"] is not None else float("nan"),
        last_step_train_loss=trainer.last_train_loss,
        val_loss=scores.loss_sum / scores.n_tokens,
        val_bits_per_byte=bits_per_byte(scores.loss_sum, scores.n_bytes),
        val_docs_scored=len(scores.doc),
        val_bytes_scored=scores.n_bytes,
        val_tokens_scored=scores.n_tokens,
        epochs=stream.epochs,
        train_bytes_seen=stream.bytes_seen,
        unique_train_bytes=stream.unique_bytes,
        train_split_bytes=trainer.data.bytes("train"),
        tokens_per_s=tokens_per_s,
        bytes_per_s=tokens_per_s * trainer.bytes_per_token,
        mfu=mfu,
        peak_memory_bytes=peak_memory(trainer.device),
        device=device,
        wall_s=wall,
        stopped_by=stopped,
        history=list(trainer.history),
        notes=notes,
        arch="blt" if patches else "gpt",
        patches=patches,
        parallel=parallel,
    )


# --- report ------------------------------------------------------------------------------------


def describe_model(result: RunResult) -> str:
    """The model's shape in one line (a GPT's or a BLT's)."""
    m = result.model
    if result.arch == "blt":
        return (
            f"BLT: local width {m['local_d']} ({m['encoder_layers']} encoder + {m['decoder_layers']} decoder layers, window {m['local_window']} bytes), "
            f"global {m['global_layers']} layers of width {m['global_d']}, {m['pooling']} pooling, context {m['context']} bytes, {m['params']:,} parameters"
        )
    return f"{m['n_layer']} layers, {m['n_head']} heads, d_model {m['d_model']}, context {m['context']}, vocab {m['vocab_size']:,} (padded {m['padded_vocab_size']:,}), {m['params']:,} parameters"


def patch_lengths_text(patches: dict[str, Any]) -> str:
    stats = patches.get("patch_bytes") or {}
    return ", ".join(f"{name} {stats[key]:.3g}" for name, key in (("median", "median"), ("90th percentile", "p90"), ("longest", "max")) if key in stats)


def _patch_rows(patches: dict[str, Any]) -> list[tuple[str, str]]:
    parts = ", ".join(f"{k.replace('_', ' ')} {v:,.0f}" for k, v in patches["flops_per_byte_by_part"].items())
    entropy = patches.get("entropy_flops_per_byte")
    return [
        ("patches", f"{patches['patcher']}: {patches['bytes_per_patch']:.2f} bytes per patch on the training split" + ("" if patches["causal"] else " (not causal)")),
        ("patch lengths (bytes)", patch_lengths_text(patches)),
        ("FLOPs per byte position by part", parts),
        ("BLT's logging FLOPs per byte (6N + 7LTd)", f"{patches['blt_logging_flops_per_byte']:,.0f}"),
        ("entropy model FLOPs per byte (forward, not in the budget)", f"{entropy:,.0f}" if entropy else "none"),
    ]


def _parallel_rows(parallel: dict[str, Any]) -> list[tuple[str, str]]:
    job, each = parallel["job"], parallel["per_process"]
    mfu = parallel.get("mfu_per_gpu")
    return [
        ("processes (DDP)", f"{parallel['processes']} ({parallel['backend']}); tokens/s, FLOPs and MFU above are the whole job's, peak memory rank 0's"),
        ("tokens/s: job / per process", f"{job['tokens_per_s']:,.0f} / {each['tokens_per_s']:,.0f}"),
        ("FLOP/s: job / per process", f"{job['flops_per_s']:.4g} / {each['flops_per_s']:.4g}"),
        ("MFU per GPU", f"{100 * mfu:.1f}% (the job's FLOP/s over the sum of the GPUs' peaks)" if mfu is not None else "n/a"),
    ]


def summary_markdown(result: RunResult) -> str:
    m, t = result.model, result.train
    rows = [
        ("segmenter", result.segmenter),
        ("model", describe_model(result)),
        *(_patch_rows(result.patches) if result.patches else []),
        ("budget", f"{t['budget']['kind']} {t['budget']['value']:g}"),
        ("steps", f"{result.steps:,} ({t['tokens_per_step']:,} tokens per step: batch {t['batch_size']} x {t['accumulation']} accumulation)"),
        ("tokens seen", f"{result.tokens:,}"),
        ("training FLOPs", f"{result.flops:.4g}"),
        ("FLOPs per token", f"{result.flops_per_token:.4g}"),
        ("FLOPs per byte", f"{result.flops_per_byte:.4g}"),
        ("train loss (nats/token)", f"{result.train_loss:.4f} (mean since the previous evaluation; last step {result.last_step_train_loss:.4f})"),
        ("training data", f"{result.epochs:.3g} passes over the training split: {result.unique_train_bytes:,} distinct bytes of {result.train_split_bytes:,}, {result.train_bytes_seen:,} trained on" + (" (repeated)" if result.epochs > 1 else "")),
        ("validation loss (nats/token)", f"{result.val_loss:.4f}"),
        ("validation bits-per-byte", f"{result.val_bits_per_byte:.4f}"),
        ("scored on", f"{count(result.val_docs_scored, 'whole validation document')}, {result.val_bytes_scored:,} bytes ({result.val_tokens_scored:,} target tokens)"),
        ("tokens/s", f"{result.tokens_per_s:,.0f}"),
        ("bytes/s", f"{result.bytes_per_s:,.0f}"),
        ("MFU", f"{100 * result.mfu:.1f}%" if result.mfu is not None else "n/a (" + ("CPU" if result.device == "cpu" else "GPU not in the peak table") + ")"),
        ("peak memory", f"{result.peak_memory_bytes / 2**20:,.0f} MiB" + (" (GPU, allocated)" if result.device != "cpu" else " (process RSS)")),
        ("device", result.device),
        *(_parallel_rows(result.parallel) if result.parallel else []),
        ("wall time", f"{result.wall_s:,.1f} s"),
    ]
    lines = [f"# Pretrain run: {result.out.name}\n", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    lines += ["", f"{BLT_FLOPS_FORMULA if result.patches else FLOPS_FORMULA}.", "", SCORING_NOTE, ""]
    lines += ["![loss](loss.png)", "", "![bits per byte](bits_per_byte.png)", ""]
    return "\n".join(lines)


def plot_curves(history: list[dict[str, Any]], out: Path, title: str) -> None:
    """loss.png and bits_per_byte.png in `out`: each against steps and against training FLOPs."""
    from toklab import plots

    for key, name, label in (("val_loss", "loss.png", "loss (nats/token)"), ("val_bits_per_byte", "bits_per_byte.png", "validation bits-per-byte")):
        fig, axes = plots.figure(10, 3.8, 1, 2)
        for ax, x_key, x_label in ((axes[0], "step", "step"), (axes[1], "flops", "training FLOPs")):
            # the curve's points score the first --eval-bytes of the documents; the final point scores
            # all of them, so it is drawn apart rather than joined to the curve (a step that is not learning)
            curve = [h for h in history if not h.get("final")] or history
            xs = [h[x_key] for h in curve]
            ax.plot(xs, [h[key] for h in curve], marker="o", markersize=3, label="validation (first --eval-bytes)")
            final = [h for h in history if h.get("final")]
            if final and curve is not history:
                ax.plot([final[-1][x_key]], [final[-1][key]], marker="*", markersize=9, linestyle="none", color="black", label="final (all scored documents)")
            if key == "val_loss":
                train = [(h[x_key], h["train_loss"]) for h in history if h["train_loss"] is not None]
                if train:
                    ax.plot(*zip(*train), marker=".", markersize=3, label="train")
            ax.legend(fontsize=8)
            ax.set_xlabel(x_label)
            ax.set_ylabel(label)
            if x_key == "flops":
                # linear from 0 to the first evaluation, logarithmic after; linscale keeps that first
                # stretch to a third of a decade's width, so a short run's later points are not squeezed
                positive = [h[x_key] for h in history if h[x_key] > 0]
                ax.set_xscale("symlog", linthresh=max(min(positive, default=1.0), 1.0), linscale=0.3)
                plots.flops_axis(ax, "x")  # "0, 1e10, 3e10, 1e11", not 10^10 or an offset in the corner
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        plots.save(fig, out / name)


def write_run_report(result: RunResult) -> None:
    out = result.out
    payload = {**result.summary(), "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    write_text_atomic(out / "summary.json", json.dumps(payload, indent=2, default=str) + "\n")
    write_text_atomic(out / "summary.md", summary_markdown(result))
    plot_curves(result.history, out, f"{result.segmenter}: " + (f"BLT, global {result.model['global_layers']} layers, d {result.model['global_d']}" if result.arch == "blt" else f"{result.model['n_layer']} layers, d {result.model['d_model']}"))


def read_run(run_dir: str | os.PathLike) -> RunResult:
    """A finished run's result, from its summary.json and log (for `toklab report` and reruns)."""
    import dataclasses

    run_dir = Path(run_dir)
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToklabError(f"{run_dir} holds no finished pretrain run (no summary.json)") from None
    except (OSError, ValueError) as exc:
        raise ToklabError(f"{run_dir / 'summary.json'} is damaged ({one_line(exc)})") from None
    names = {f.name for f in dataclasses.fields(RunResult)}
    try:
        values = {k: v for k, v in summary.items() if k in names and k not in ("out", "history")}
        return RunResult(out=run_dir, history=read_history(run_dir), **values)
    except (AttributeError, TypeError) as exc:
        raise ToklabError(f"{run_dir / 'summary.json'} is not a pretrain summary this toklab can read ({one_line(exc)})") from None


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
    if not (run_dir / RUN_FILE).is_file():
        raise ToklabError(f"{run_dir} is not a pretrain run (no {RUN_FILE})")
    run = read_run_file(run_dir)
    if run is None or not isinstance(run.get("model"), dict):
        raise ToklabError(f"{run_dir / RUN_FILE} is damaged; it is not the run file toklab wrote")
    if run.get("arch", "gpt") != "gpt":
        raise ToklabError(f"{run_dir} holds a {run['arch']} run; sampling is for GPT runs only (a patch model's byte sampler is not built yet)")
    if not (run_dir / CHECKPOINT).is_file():
        raise ToklabError(f"{run_dir} has no {CHECKPOINT} yet")
    if max_new_tokens < 1:
        raise ToklabError(f"--max-tokens must be at least 1, got {max_new_tokens}")
    seg = load_segmenter(run_dir / SEGMENTER_DIR)
    device = pick_device(device)
    model = GPT(GPTConfig.from_dict(run["model"])).to(device)
    try:
        state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
    except Exception as exc:  # a truncated or foreign file: pickle, zip and shape errors alike
        raise ToklabError(f"cannot read {run_dir / CHECKPOINT}: {one_line(exc)}") from None
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise ToklabError(f"{run_dir / CHECKPOINT} holds non-finite weights (NaN or inf); it cannot generate text")
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
