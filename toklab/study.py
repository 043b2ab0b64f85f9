"""`study`: segmenters compared end to end at equal training FLOPs.

For every segmenter and FLOP budget, one pretrain run with the same model shape; with a Cramming
threshold, also one on the segmenter's own filtered training split. Validation bits-per-byte is
always measured on the same held-out text (the unfiltered validation split), so every row is on
one scale. Finished runs are kept in the study folder, so a restarted study skips them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from toklab.errors import ToklabError
from toklab.files import write_text_atomic
from toklab.reports import markdown_table

if TYPE_CHECKING:
    import pandas as pd

    from toklab.corpus import Corpus, Document
    from toklab.segmenters import Segmenter

STUDY_FILE = "study.json"
RUNS = "runs"
# Finishes in a few minutes on a 2-core CPU on the default corpus.
SMOKE = {"segmenters": ["bytes", "bpe:4k"], "flops": [3e10, 1e11], "model": "tiny", "context": 64, "batch_size": 8, "eval_tokens": 16_384}
DEFAULTS = {"segmenters": ["bytes", "bpe:32k"], "flops": [1e16, 3e16, 1e17], "model": "small", "context": 256, "batch_size": 8, "eval_tokens": 65_536}
COLUMNS = [
    "segmenter", "filtered", "budget_flops", "flops", "bytes_per_token", "flops_per_byte", "bytes_seen", "val_bits_per_byte", "wall_s",
    "val_loss", "steps", "tokens_seen", "train_keep_rate_bytes", "run",
]  # fmt: skip


class CrammingFiltered:
    """A corpus whose train split keeps only documents with tokens <= t * chars under `segmenter`;
    its validation split is the original one, so filtered and unfiltered runs are scored alike."""

    def __init__(self, corpus: "Corpus", segmenter: "Segmenter", threshold: float, batch_docs: int = 256) -> None:
        self.base, self.segmenter, self.threshold, self.batch_docs = corpus, segmenter, threshold, batch_docs
        self.spec = f"{corpus.spec} (train split filtered: {segmenter.spec}, t={threshold:g})"
        self.options = corpus.options
        self.description = corpus.description

    def fingerprint(self) -> str:
        payload = json.dumps([self.base.fingerprint(), "cramming", self.segmenter.spec, self.segmenter.corpus_fingerprint, self.threshold])
        return hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()

    def train(self) -> Iterator["Document"]:
        from toklab.measures import at_most

        batch: list[Document] = []

        def kept(docs: list["Document"]) -> Iterator["Document"]:
            tokens = [len(ids) for ids in self.segmenter.encode_batch([d.text for d in docs])]
            for doc, keep in zip(docs, at_most(tokens, [len(d.text) for d in docs], self.threshold)):
                if keep:
                    yield doc

        for doc in self.base.train():
            batch.append(doc)
            if len(batch) >= self.batch_docs:
                yield from kept(batch)
                batch = []
        if batch:
            yield from kept(batch)

    def val(self) -> Iterator["Document"]:
        return self.base.val()


@dataclass
class StudyResult:
    """A study: one row per (segmenter, filtered or not, FLOP budget), and what it concludes."""

    out: Path
    table: "pd.DataFrame"
    summary: list[str]  # which segmenter wins at each budget, and by how much
    histories: dict[str, list[dict[str, Any]]]  # run name -> its evaluations
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped_runs: int = 0  # runs found finished by an earlier, interrupted study


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _run_name(spec: str, filtered: bool, threshold: float | None, budget: float) -> str:
    return _slug(f"{spec}{f'-filtered-t{threshold:g}' if filtered else ''}-{budget:.0e}")


def _prepare(out: Path, config: dict[str, Any], overwrite: bool) -> None:
    """A new or empty folder starts a study; the same study continues; another needs --overwrite."""
    if out.exists() and not out.is_dir():
        raise ToklabError(f"--out {out} is a file; choose a folder")
    previous = None
    if (out / STUDY_FILE).is_file():
        try:
            previous = json.loads((out / STUDY_FILE).read_text())
        except ValueError:
            previous = None
    if out.exists() and any(out.iterdir()):
        if previous is None:
            raise ToklabError(f"--out {out} is not empty and holds no toklab study; choose a new or empty folder")
        if previous.get("config") != config:
            if not overwrite:
                changed = sorted(k for k in set(config) | set(previous["config"]) if config.get(k) != previous["config"].get(k))
                raise ToklabError(f"--out {out} holds a study with other settings ({', '.join(changed)} differ); pass --overwrite to replace it, or choose another --out")
            shutil.rmtree(out)
        elif overwrite:
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / STUDY_FILE, {"config": config})


def _write_json(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


def run_study(
    corpus: "str | Corpus" = "default",
    segmenters: Sequence[str] | None = None,
    flops: Sequence[float] | None = None,
    *,
    model: str | None = None,
    context: int | None = None,
    filter_t: float | None = None,
    smoke: bool = False,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
    **train_options: Any,
) -> StudyResult:
    """Pretrain every segmenter at every FLOP budget with one model shape; with `filter_t`, also on
    each segmenter's Cramming-filtered train split. `smoke` picks a CPU configuration of a few
    minutes (tiny model, tiny budgets) for anything not given. Other options go to `pretrain`.
    """
    import pandas as pd

    from toklab import __version__
    from toklab.comparison import run_compare
    from toklab.corpus import open_corpus
    from toklab.gpt.data import build_token_data
    from toklab.pretrain import pretrain
    from toklab.segmenters import get_segmenters

    base = SMOKE if smoke else DEFAULTS
    specs = list(segmenters) if segmenters else list(base["segmenters"])
    budgets = sorted(float(f) for f in (flops or base["flops"]))
    if any(not b > 0 for b in budgets):
        raise ToklabError("--flops budgets must be positive")
    if filter_t is not None and not filter_t > 0:
        raise ToklabError(f"--filter-t must be positive, got {filter_t}")
    model = model or base["model"]
    context = context or base["context"]
    for key in ("batch_size", "eval_tokens"):
        train_options.setdefault(key, base[key])
    if isinstance(corpus, str):
        corpus = open_corpus(corpus, progress=progress)
    out_path = Path(out) if out is not None else Path("reports") / _slug(f"study-{Path(corpus.spec.rstrip('/*')).stem or 'corpus'}{'-smoke' if smoke else ''}")
    config = {
        "corpus": corpus.spec, "corpus_fingerprint": corpus.fingerprint(), "val_fraction": corpus.options.val_fraction,
        "segmenters": specs, "flops": budgets, "model": model, "context": context, "filter_t": filter_t,
        "train": {k: v for k, v in sorted(train_options.items())},
    }  # fmt: skip
    _prepare(out_path, config, overwrite)
    warning = _cpu_warning(budgets, len(specs) * (2 if filter_t is not None else 1), train_options.get("device", "auto"))
    if warning and progress:
        from toklab.progress import stderr_console

        stderr_console.print(f"[yellow]note:[/] {warning}")

    start = time.perf_counter()
    compared = run_compare(corpus, specs, compressors=False, progress=progress)
    compared.table.to_csv(out_path / "compare.csv", index=False)
    bytes_per_token = dict(zip(compared.table["segmenter"], compared.table["bytes_per_token"]))
    loaded, skipped_notes = get_segmenters(specs, corpus, progress=progress)  # unavailable ones are skipped, with a note
    notes = list(dict.fromkeys(compared.notes + skipped_notes + ([warning] if warning else [])))
    if not loaded:
        raise ToklabError("none of the segmenters could be loaded or trained: " + "; ".join(notes))
    rows: list[dict[str, Any]] = []
    histories: dict[str, list[dict[str, Any]]] = {}
    skipped = 0
    for seg in loaded:
        variants: list[tuple[bool, Any]] = [(False, corpus)]
        keep_rate = None
        if filter_t is not None:
            filtered = CrammingFiltered(corpus, seg, filter_t)
            train_bytes = build_token_data(corpus, seg, progress=progress).bytes("train")
            try:
                kept_bytes = build_token_data(filtered, seg, progress=progress).bytes("train")
            except ToklabError:  # the threshold leaves no training document
                kept_bytes = 0
            keep_rate = kept_bytes / train_bytes if train_bytes else 0.0
            if kept_bytes:
                variants.append((True, filtered))
            else:
                notes.append(f"no filtered runs for {seg.spec}: at t={filter_t:g} no training document has tokens <= t x chars")
        for is_filtered, train_corpus in variants:
            for budget in budgets:
                name = _run_name(seg.spec, is_filtered, filter_t, budget)
                run_dir = out_path / RUNS / name
                summary, history, was_done = _run_or_reuse(pretrain, train_corpus, seg, budget, run_dir, model, context, progress, train_options)
                skipped += was_done
                histories[name] = history
                rows.append({
                    "segmenter": seg.spec, "filtered": is_filtered, "budget_flops": budget, "flops": summary["flops"],
                    "bytes_per_token": bytes_per_token.get(seg.spec, float("nan")),
                    "flops_per_byte": summary["flops_per_byte"], "bytes_seen": summary["flops"] / summary["flops_per_byte"],
                    "val_bits_per_byte": summary["val_bits_per_byte"], "wall_s": summary["wall_s"], "val_loss": summary["val_loss"],
                    "steps": summary["steps"], "tokens_seen": summary["tokens"], "train_keep_rate_bytes": keep_rate if is_filtered else None, "run": name,
                })  # fmt: skip
    table = pd.DataFrame(rows, columns=COLUMNS)
    result = StudyResult(
        out=out_path, table=table, summary=conclusions(table), histories=histories, notes=notes, skipped_runs=skipped,
        meta={
            **config, "toklab_version": __version__, "wall_s": round(time.perf_counter() - start, 1),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    )  # fmt: skip
    write_study_report(result)
    return result


CPU_FLOPS_PER_S = 1e11  # what the tiny and small presets reach on a laptop-class CPU (reports/benchmarks/pretrain_throughput.md)


def _cpu_warning(budgets: list[float], variants: int, device: str) -> str | None:
    """A warning when the study would run for hours on a CPU."""
    from toklab.gpt.train import pick_device

    if pick_device(device) != "cpu":
        return None
    seconds = variants * sum(budgets) / CPU_FLOPS_PER_S
    if seconds < 600:
        return None
    return (
        f"this study trains {variants * len(budgets)} runs, {variants * sum(budgets):.2g} FLOPs in all, on a CPU: at about "
        f"{CPU_FLOPS_PER_S / 1e12:.1f} TFLOP/s that is roughly {seconds / 3600:,.0f} hours; use a GPU, smaller --flops, or --smoke"
    )


def _run_or_reuse(pretrain: Any, corpus: Any, seg: "Segmenter", budget: float, run_dir: Path, model: str, context: int, progress: bool, options: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """A finished run's summary as it is; an interrupted one resumed; anything else (re)started."""
    from toklab.gpt.train import CHECKPOINT, RUN_FILE
    from toklab.pretrain import read_history

    if (run_dir / "summary.json").is_file():
        return json.loads((run_dir / "summary.json").read_text()), read_history(run_dir), True
    resume = (run_dir / RUN_FILE).is_file() and (run_dir / CHECKPOINT).is_file()
    result = pretrain(corpus, seg, model=model, context=context, flops=budget, out=run_dir, resume=resume, overwrite=not resume, progress=progress, **options)
    return result.summary(), result.history, False


def conclusions(table: "pd.DataFrame") -> list[str]:
    """One line per budget: the winner by validation bits-per-byte, and its margin over the runner-up."""
    lines = []
    for budget, group in table.groupby("budget_flops", sort=True):
        ranked = group.sort_values("val_bits_per_byte", kind="stable")
        name = [_label(r) for r in ranked.itertuples()]
        best = ranked.iloc[0]
        if len(ranked) == 1:
            lines.append(f"At {budget:.0e} FLOPs only {name[0]} ran: {best.val_bits_per_byte:.4f} bits/byte.")
            continue
        second = ranked.iloc[1]
        margin = second.val_bits_per_byte - best.val_bits_per_byte
        lines.append(
            f"At {budget:.0e} FLOPs {name[0]} wins with {best.val_bits_per_byte:.4f} bits/byte, {margin:.4f} "
            f"({100 * margin / second.val_bits_per_byte:.1f}%) below {name[1]} ({second.val_bits_per_byte:.4f}); "
            f"it saw {best.bytes_seen / max(second.bytes_seen, 1):.2f}x the text of {name[1]} for the same compute."
        )
    return lines


def _label(row: Any) -> str:
    return f"{row.segmenter}{' (filtered)' if row.filtered else ''}"


# --- report -------------------------------------------------------------------------------------


def markdown(result: StudyResult) -> str:
    meta = result.meta
    header = ["segmenter", "filtered", "budget FLOPs", "bytes/token", "FLOPs/byte", "bytes seen", "val bits/byte", "wall s"]
    rows = [
        [r.segmenter, "yes" if r.filtered else "no", f"{r.budget_flops:.0e}", f"{r.bytes_per_token:.3f}", f"{r.flops_per_byte:.3g}",
         f"{r.bytes_seen:,.0f}", f"{r.val_bits_per_byte:.4f}", f"{r.wall_s:.1f}"]
        for r in result.table.itertuples()
    ]  # fmt: skip
    lines = [
        f"# Study: {meta['corpus']}\n",
        f"Model `{meta['model']}`, context {meta['context']}; every row trains to the same FLOP budget (6N + 12·L·T·d per token) "
        "and is scored on the same unfiltered validation split.\n",
        markdown_table(header, rows),
    ]
    lines += ["## Summary", ""] + [f"- {line}" for line in result.summary] + ["", "![bits per byte against FLOPs](bits_per_byte_vs_flops.png)", ""]
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    return "\n".join(lines)


def plot(result: StudyResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    table = result.table
    for i, ((spec, filtered), group) in enumerate(table.groupby(["segmenter", "filtered"], sort=False)):
        color = f"C{i % 10}"
        label = f"{spec}{' (filtered)' if filtered else ''}"
        for run in group["run"]:  # each run's own curve, faint
            history = [h for h in result.histories.get(run, []) if h["flops"] > 0]
            if history:
                ax.plot([h["flops"] for h in history], [h["val_bits_per_byte"] for h in history], color=color, alpha=0.25, linewidth=1)
        group = group.sort_values("flops")  # where each run actually stopped: a whole number of steps within its budget
        ax.plot(group["flops"], group["val_bits_per_byte"], marker="o", color=color, linestyle="--" if filtered else "-", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("validation bits-per-byte")
    ax.set_title(f"{result.meta['corpus']}: model {result.meta['model']}, context {result.meta['context']}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_study_report(result: StudyResult) -> None:
    out = result.out
    result.table.to_csv(out / "table.csv", index=False)
    _write_json(out / "table.json", {"meta": result.meta, "rows": json.loads(result.table.to_json(orient="records")), "summary": result.summary, "notes": result.notes})
    write_text_atomic(out / "table.md", markdown(result))
    write_text_atomic(out / "summary.md", "\n".join(["# Which segmenter wins", ""] + [f"- {line}" for line in result.summary]) + "\n")
    plot(result, out / "bits_per_byte_vs_flops.png")
