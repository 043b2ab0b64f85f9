"""`study`: segmenters compared end to end at equal training FLOPs.

For every segmenter, FLOP budget and seed, one pretrain run with the same model shape; with a
Cramming threshold, also runs on the segmenter's own filtered training split. Every run is scored
on the same whole validation documents (the unfiltered validation split, or one byte-capped
sample of it chosen by id hash), so every row is on one scale, and keeps its per-document losses.
A row gives the mean over seeds with a 95% interval; a winner is named at a budget only when a
paired bootstrap over documents and seeds says the difference is not noise. Finished runs are
kept in the study folder, so a restarted study skips them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from toklab.audit import training_audit, training_note
from toklab.errors import ToklabError
from toklab.gpt.train import Budget, check_duration, given_options, train_config
from toklab.files import check_outside, remove_owned, slug, write_text_atomic
from toklab.outputs import OutputPolicy, Plan, plan_output, replaced_note
from toklab.text import count, short_number
from toklab.reports import markdown_table
from toklab.stats import Interval, mean_interval, paired_bootstrap_difference, verdict

if TYPE_CHECKING:
    import pandas as pd

    from toklab.corpus import Corpus, Document
    from toklab.gpt.train import TrainConfig
    from toklab.segmenters import Segmenter

STUDY_FILE = "study.json"
RUNS = "runs"
# The CPU smoke configuration; its validation sample is capped so scoring stays a small share of the time.
SMOKE = {
    "segmenters": ["bytes", "bpe:4k"], "flops": [3e10, 1e11], "model": "tiny", "context": 64, "seeds": 3, "batch_size": 8,
    "val_bytes": 65_536, "eval_bytes": 16_384, "eval_every": 100,
}  # fmt: skip
DEFAULTS = {"segmenters": ["bytes", "bpe:32k"], "flops": [1e16, 3e16, 1e17], "model": "small", "context": 256, "seeds": 3, "batch_size": 8}
RUN_COLUMNS = [
    "segmenter", "filtered", "budget_flops", "seed", "flops", "context", "vocab_size", "bytes_per_token", "flops_per_byte", "bytes_seen", "train_bytes_seen",
    "epochs", "val_bits_per_byte", "val_docs_scored", "val_bytes_scored", "val_loss", "steps", "tokens_seen", "wall_s", "run",
]  # fmt: skip
COLUMNS = [
    "segmenter", "filtered", "budget_flops", "seeds", "flops", "context", "vocab_size", "bytes_per_token", "flops_per_byte", "bytes_seen", "epochs",
    "val_bits_per_byte", "val_bpb_low", "val_bpb_high", "val_docs_scored", "val_bytes_scored", "wall_s", "train_keep_rate_bytes", "runs",
]  # fmt: skip
CAPTION = (
    "bytes/token, FLOPs/byte and bytes seen all come from the training split each row trained on (UTF-8 bytes ÷ tokens, the "
    "<|endoftext|> between documents counted as a token); bytes seen counts distinct bytes of training text, and epochs the "
    "passes over that split (above 1, the data repeated). Validation bits-per-byte is the mean over seeds with its 95% "
    "t-interval across seeds, on the same whole validation documents for every row."
)


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
            tokens = self.segmenter.count_tokens([d.text for d in docs]).tolist()  # a long document piece by piece
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

    @property
    def stats(self) -> Any:
        return self.base.stats

    def input_roots(self) -> list[Path]:
        return self.base.input_roots()


@dataclass
class StudyResult:
    """A study: one row per (segmenter, filtered or not, FLOP budget) over its seeds, and what it concludes."""

    out: Path
    table: "pd.DataFrame"  # one row per configuration: means over seeds and 95% intervals
    runs: "pd.DataFrame"  # one row per run (configuration and seed)
    summary: list[str]  # which segmenter wins at each budget, or that they are indistinguishable
    differences: "pd.DataFrame"  # at each budget, every row against the best, with a paired bootstrap interval
    per_source: "pd.DataFrame"  # validation bits-per-byte per source for every configuration
    histories: dict[str, list[dict[str, Any]]]  # run name -> its evaluations
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped_runs: int = 0  # runs found finished by an earlier, interrupted study


def default_out(corpus: "Corpus", *, smoke: bool = False, segmenters: Sequence[str] | None = None, flops: Sequence[float] | None = None,
                model: str | None = None, context: int | None = None, context_bytes: int | None = None, seeds: int | None = None,
                filter_t: float | None = None) -> Path:
    """The study folder when none is given: reports/study-<corpus>[-smoke], then every setting that
    differs from the (smoke) defaults, so that another study does not meet this one's folder."""
    from toklab.files import default_output

    base = SMOKE if smoke else DEFAULTS
    parts = ["smoke" if smoke else ""]
    if segmenters is not None and list(segmenters) != list(base["segmenters"]):
        parts.append("_".join(segmenters))
    if flops is not None and sorted(flops) != sorted(base["flops"]):
        parts.append("_".join(short_number(f) for f in sorted(flops)))
    if model is not None and model != base["model"]:
        parts.append(model)
    if context_bytes is not None:
        parts.append(f"ctx{context_bytes}bytes")
    elif context is not None and context != base["context"]:
        parts.append(f"ctx{context}")
    if seeds is not None and seeds != base["seeds"]:
        parts.append(f"{seeds}-seeds")
    if filter_t is not None:
        parts.append(f"filtered-t{filter_t:g}")
    return default_output("study", corpus.label, *parts)


def _run_name(spec: str, filtered: bool, threshold: float | None, budget: float, seed: int) -> str:
    return slug(f"{spec}{f'-filtered-t{threshold:g}' if filtered else ''}-{budget:.0e}".replace("e+", "e") + f"-seed{seed}")  # 1e11, not 1e-11


STUDY_FILES = (
    STUDY_FILE, RUNS, "table.md", "table.csv", "table.json", "runs.csv", "differences.csv", "per_source.csv", "summary.md", "compare.csv",
    "bits_per_byte_vs_flops.png", "bytes_per_token_vs_bits_per_byte.png", "report.html",  # the last: toklab report --html
)  # fmt: skip  (everything a study writes: --overwrite removes these and nothing else)


OUTPUT = OutputPolicy("study", continues_same=True)


def _check_out(out: Path, config: dict[str, Any], overwrite: bool) -> bool:
    """Whether `out` can hold this study (toklab.outputs' policy: a new or empty folder, the same
    study, which carries on, or with --overwrite another study); True when the old study must be
    replaced. Changes nothing."""
    previous, damaged = None, None
    try:
        previous = json.loads((out / STUDY_FILE).read_text())
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        damaged = f"{STUDY_FILE} cannot be read"
    if previous is not None and not (isinstance(previous, dict) and isinstance(previous.get("config"), dict)):
        previous, damaged = None, f"{STUDY_FILE} is not what toklab wrote"
    previous_config = previous["config"] if previous is not None else None
    return plan_output(out, OUTPUT, previous=previous_config, settings=config, overwrite=overwrite, damaged=damaged) is Plan.REPLACE


def _prepare(out: Path, config: dict[str, Any], replace: bool) -> None:
    if replace:
        remove_owned(out, STUDY_FILES)
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
    context_bytes: int | None = None,
    seeds: int | None = None,
    filter_t: float | None = None,
    smoke: bool = False,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    yes: bool = False,
    allow_lossy: bool = False,
    train: "TrainConfig | None" = None,
    progress: bool = False,
    nproc: int = 1,
    **train_options: Any,
) -> StudyResult:
    """Pretrain every segmenter at every FLOP budget with `seeds` seeds and one model shape; with
    `filter_t`, also on each segmenter's Cramming-filtered train split. `context_bytes` gives every
    segmenter the context in tokens that covers that many bytes at its own bytes/token. `smoke`
    picks a CPU configuration of about a minute (tiny model, tiny budgets) for anything not given.
    How to train is a `TrainConfig` (`train`), with keyword options setting its fields on top of it
    (seed is the first seed; val_bytes caps the scoring set); each run gets it with its own seed
    and budget. A study estimated at over 24 hours on this machine is refused unless `yes`.
    Every row's byte accounting is audited before anything trains (toklab.audit; a blt: row's only
    when its patches are a segmenter's tokens): a failing one is refused unless `allow_lossy`.
    `nproc` > 1 trains each run with DDP in that many processes (torchrun's launcher, one job per
    run: toklab.gpt.distributed.run_function); the study itself stays in this process.
    """
    import pandas as pd

    from toklab._version import __version__
    from toklab.comparison import run_compare
    from toklab.corpus import open_corpus
    from toklab.gpt.data import build_token_data
    from toklab.pretrain import pretrain

    if nproc > 1:
        import functools

        from toklab.gpt.distributed import run_function

        pretrain = functools.partial(run_function, nproc, pretrain)  # type: ignore[assignment]
    from toklab.gpt.distributed import world

    if world().distributed:  # every rank would write the study's own files
        raise ToklabError("toklab study does not run under torchrun; use toklab study --nproc N, which runs each of its runs in N processes")
    base = SMOKE if smoke else DEFAULTS
    specs = list(segmenters) if segmenters else list(base["segmenters"])
    budgets = sorted(float(f) for f in (flops or base["flops"]))
    if any(not b > 0 for b in budgets):
        raise ToklabError("--flops budgets must be positive")
    if filter_t is not None and not filter_t > 0:
        raise ToklabError(f"--filter-t must be positive, got {filter_t}")
    seeds = int(seeds if seeds is not None else base["seeds"])
    if seeds < 1:
        raise ToklabError(f"--seeds must be at least 1, got {seeds}")
    if context_bytes is not None and context_bytes < 2:
        raise ToklabError(f"--context-bytes must be at least 2, got {context_bytes}")
    if isinstance(corpus, str):
        corpus = open_corpus(corpus, progress=progress)
    out_path = Path(out) if out is not None else default_out(
        corpus, smoke=smoke, segmenters=segmenters, flops=flops, model=model, context=context, context_bytes=context_bytes, seeds=seeds, filter_t=filter_t,
    )  # fmt: skip
    model = model or base["model"]
    context = context or base["context"]
    for key in ("batch_size", "val_bytes", "eval_bytes", "eval_every"):
        if key in base and (train is None or key not in given_options(train)):
            train_options.setdefault(key, base[key])
    first_seed = int(train_options.pop("seed", train.seed if train is not None else 0))
    recorded = {**given_options(train), **train_options}  # what the caller set, for study.json
    recorded.pop("seed", None)
    train = train_config(train, Budget("flops", budgets[0]), train_options)  # checked here, before anything runs
    config = {
        "corpus": corpus.spec, "corpus_fingerprint": corpus.fingerprint(), "val_fraction": corpus.options.val_fraction,
        "segmenters": specs, "flops": budgets, "model": model, "context": None if context_bytes else context, "context_bytes": context_bytes,
        "seeds": list(range(first_seed, first_seed + seeds)), "filter_t": filter_t, "train": {k: v for k, v in sorted(recorded.items())},
    }  # fmt: skip
    check_outside(out_path, corpus.input_roots())
    replacing = _check_out(out_path, config, overwrite)
    runs = seeds * len(specs) * (2 if filter_t is not None else 1)
    warning = check_duration(runs * sum(budgets), train.device, yes, f"this study trains {count(runs * len(budgets), 'run')}")
    if warning and progress:
        from toklab.progress import stderr_console

        stderr_console.print(f"[yellow]note:[/] {warning}")

    start = time.perf_counter()
    from toklab.segmenters import get_segmenters

    from toklab.segmenters.patchers import ROW_PREFIX, load_patcher

    token_specs = [spec for spec in specs if not spec.startswith(ROW_PREFIX)]
    loaded, skipped_notes = get_segmenters(token_specs, corpus, progress=progress) if token_specs else ([], [])  # unavailable ones are skipped, with a note
    # (row label, segmenter, architecture): a token GPT per segmenter, a patch model per blt: row
    rows = [(seg.spec, seg, "gpt") for seg in loaded]
    rows += [(spec, load_patcher(spec, corpus, progress=progress), "blt") for spec in specs if spec.startswith(ROW_PREFIX)]
    if not rows:
        raise ToklabError("none of the segmenters could be loaded or trained: " + "; ".join(skipped_notes))
    audits = [training_audit(seg, corpus, allow_lossy) for _, seg, _ in rows]  # a wrong byte count is refused before anything trains
    _check_budgets(corpus, rows, budgets, model, context, context_bytes, train, progress)
    compared = run_compare(corpus, token_specs or ["bytes"], compressors=False, progress=progress)
    _prepare(out_path, config, replacing)  # only now, with every setting checked, is an old study replaced
    if replacing and progress:
        from toklab.progress import stderr_console

        stderr_console.print(f"[yellow]note:[/] {replaced_note(out_path, 'study')}", soft_wrap=True)
    compared.table.to_csv(out_path / "compare.csv", index=False)
    notes = list(dict.fromkeys(compared.notes + skipped_notes + ([warning] if warning else []) + _audit_notes(audits)))
    runs: list[dict[str, Any]] = []
    keep_rates: dict[tuple[str, bool], float | None] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    documents: dict[str, "pd.DataFrame"] = {}
    skipped = 0
    for label, seg, arch in rows:
        notes += [n for n in build_token_data(corpus, seg, progress=progress).manifest.get("read_notes", []) if n not in notes]
        variants: list[tuple[bool, Any]] = [(False, corpus)]
        keep_rates[(label, False)] = None
        if filter_t is not None and arch == "blt":
            notes.append(f"no filtered runs for {label}: the Cramming rule counts tokens, and a patch model reads bytes")
        elif filter_t is not None:
            filtered = CrammingFiltered(corpus, seg, filter_t)
            train_bytes = build_token_data(corpus, seg, progress=progress).bytes("train")
            try:
                kept_bytes = build_token_data(filtered, seg, progress=progress).bytes("train")
            except ToklabError:  # the threshold leaves no training document
                kept_bytes = 0
            keep_rates[(label, True)] = kept_bytes / train_bytes if train_bytes else 0.0
            if kept_bytes:
                variants.append((True, filtered))
            else:
                notes.append(f"no filtered runs for {label}: at t={filter_t:g} no training document has tokens <= t x chars")
        for is_filtered, train_corpus in variants:
            for budget in budgets:
                for seed in config["seeds"]:
                    name = _run_name(label, is_filtered, filter_t, budget, seed)
                    run_dir = out_path / RUNS / name
                    summary, history, was_done = _run_or_reuse(
                        pretrain, train_corpus, seg, run_dir, model, context, context_bytes, progress, replace(train, seed=seed, budget=Budget("flops", budget)), arch, yes,
                        allow_lossy,
                    )
                    patches = summary.get("patches")
                    if patches and budget == budgets[0] and seed == config["seeds"][0]:
                        notes.append(_patch_note(label, patches))
                    skipped += was_done
                    histories[name] = history
                    documents[name] = _documents(run_dir)
                    runs.append({
                        "segmenter": label, "filtered": is_filtered, "budget_flops": budget, "seed": seed, "flops": summary["flops"],
                        "context": summary["model"]["context"], "vocab_size": summary["model"]["vocab_size"],
                        # a patch model's unit is the patch its global transformer reads
                        "bytes_per_token": patches["bytes_per_patch"] if patches else summary["flops_per_token"] / summary["flops_per_byte"],
                        "flops_per_byte": summary["flops_per_byte"], "bytes_seen": summary["unique_train_bytes"],
                        "train_bytes_seen": summary["train_bytes_seen"], "epochs": summary["epochs"], "val_bits_per_byte": summary["val_bits_per_byte"],
                        "val_docs_scored": summary["val_docs_scored"], "val_bytes_scored": summary["val_bytes_scored"], "val_loss": summary["val_loss"],
                        "steps": summary["steps"], "tokens_seen": summary["tokens"], "wall_s": summary["wall_s"], "run": name,
                    })  # fmt: skip
    run_table = pd.DataFrame(runs, columns=RUN_COLUMNS)
    _check_same_documents(documents)
    table = aggregate(run_table, keep_rates)
    for r in table[table.epochs > 1].itertuples():
        notes.append(f"{row_label(r.segmenter, r.filtered)} at {r.budget_flops:.0e} FLOPs repeated its training data: {r.epochs:.2f} passes over the training split (bytes seen counts each byte once)")
    differences = pairwise_differences(run_table, documents)
    per_source = per_source_table(run_table, documents)
    result = StudyResult(
        out=out_path, table=table, runs=run_table, summary=conclusions(table, differences), differences=differences, per_source=per_source,
        histories=histories, notes=notes, skipped_runs=skipped,
        meta={
            **config, "toklab_version": __version__, "wall_s": round(time.perf_counter() - start, 1),
            "val_docs_scored": int(run_table["val_docs_scored"].iloc[0]), "val_bytes_scored": int(run_table["val_bytes_scored"].iloc[0]),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    )  # fmt: skip
    write_study_report(result)
    return result


def _check_budgets(corpus: Any, rows: list[tuple[str, Any, str]], budgets: list[float], model: str, context: int, context_bytes: int | None, train: "TrainConfig", progress: bool) -> None:
    """Every run's budget must allow at least one step: checked before anything is written."""
    from toklab.gpt.blt import blt_config
    from toklab.gpt.data import build_token_data
    from toklab.gpt.model import model_config
    from toklab.gpt.train import pick_device, step_size
    from toklab.pretrain import context_for_bytes

    pick_device(train.device)
    batch_size = train.batch_size
    for _, seg, arch in rows:
        if arch == "blt":  # context in bytes; FLOPs per byte at the training split's patch length
            tokens = context_bytes or context
            per_token = blt_config(model, tokens).flops_per_byte(build_token_data(corpus, seg, progress=progress).positions_per_patch("train"))
        else:
            tokens = context
            if context_bytes is not None:
                tokens = context_for_bytes(context_bytes, build_token_data(corpus, seg, progress=progress).bytes_per_token("train"))
            per_token = model_config(seg.vocab_size, model, tokens).flops_per_token()
        _, per_step = step_size(batch_size, tokens, train.batch_tokens)
        Budget("flops", min(budgets)).total_steps(per_step, per_token)


def _audit_notes(audits: list[dict[str, Any]]) -> list[str]:
    """One note naming the segmenters whose byte accounting passed the audit, and one per segmenter
    let through by --allow-lossy with what failed."""
    from toklab.audit import TRAINING_BYTES, TRAINING_DOCS

    passed = list(dict.fromkeys(a["segmenter"] for a in audits if a.get("passed") and "documents" in a))
    notes = [f"byte-accounting audit passed for {', '.join(passed)} (the first {TRAINING_DOCS} validation documents, up to about {TRAINING_BYTES:,} bytes)"] if passed else []
    return notes + [n for n in (training_note(a) for a in audits) if n]


def _patch_note(label: str, patches: dict[str, Any]) -> str:
    """What a patch model's row means: its patches, and the FLOPs the budget leaves out."""
    from toklab.pretrain import patch_lengths_text

    entropy = patches.get("entropy_flops_per_byte")
    return (
        f"{label}: {patches['bytes_per_patch']:.2f} bytes per patch on the training split (its bytes/token column; patch lengths: {patch_lengths_text(patches)})"
        + ("" if entropy is None else f"; its entropy model costs {entropy:,.0f} FLOPs per byte (forward; not in the budget)" if entropy else "; its n-gram entropy model is table lookups (no matmul FLOPs)")
        + ("" if patches["causal"] else "; its patcher is not causal (token boundaries can depend on later bytes), so its bits-per-byte is optimistic")
    )


def _run_or_reuse(
    pretrain: Any, corpus: Any, seg: "Segmenter", run_dir: Path, model: str, context: int, context_bytes: int | None, progress: bool,
    train: "TrainConfig", arch: str, yes: bool, allow_lossy: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """A finished run's summary as it is; an interrupted one resumed; anything else (re)started.
    `train` carries the run's seed and FLOP budget."""
    from toklab.gpt.train import CHECKPOINT, RUN_FILE
    from toklab.pretrain import DOCUMENTS_FILE, read_history

    if (run_dir / "summary.json").is_file() and (run_dir / DOCUMENTS_FILE).is_file():
        return json.loads((run_dir / "summary.json").read_text()), read_history(run_dir), True
    resume = (run_dir / RUN_FILE).is_file() and (run_dir / CHECKPOINT).is_file()
    result = pretrain(
        corpus, seg, model=model, context=context, context_bytes=context_bytes, arch=arch, train=train, out=run_dir, resume=resume, overwrite=not resume,
        yes=yes, allow_lossy=allow_lossy, progress=progress,
    )  # fmt: skip
    return result.summary(), result.history, False


def _documents(run_dir: Path) -> "pd.DataFrame":
    from toklab.pretrain import read_document_scores

    return read_document_scores(run_dir).sort_values("id", kind="stable").reset_index(drop=True)


def _check_same_documents(documents: dict[str, "pd.DataFrame"]) -> None:
    """Every run must have scored the same documents, byte for byte, or no row compares with another."""
    names = list(documents)
    first = documents[names[0]]
    for name in names[1:]:
        other = documents[name]
        if not (first["id"].equals(other["id"]) and first["bytes"].equals(other["bytes"])):
            raise ToklabError(f"runs {names[0]} and {name} scored different validation documents; start the study again with --overwrite")


def _key(row: Any) -> tuple[str, bool, float]:
    return (row.segmenter, bool(row.filtered), float(row.budget_flops))


def aggregate(runs: "pd.DataFrame", keep_rates: dict[tuple[str, bool], float | None]) -> "pd.DataFrame":
    """One row per (segmenter, filtered, budget): means over seeds and the 95% t-interval of bits-per-byte."""
    import pandas as pd

    rows = []
    for (spec, filtered, budget), group in runs.groupby(["segmenter", "filtered", "budget_flops"], sort=False):
        bpb = mean_interval(group["val_bits_per_byte"].tolist())
        rows.append({
            "segmenter": spec, "filtered": bool(filtered), "budget_flops": budget, "seeds": len(group), "flops": group["flops"].mean(),
            "context": int(group["context"].iloc[0]), "vocab_size": int(group["vocab_size"].iloc[0]), "bytes_per_token": group["bytes_per_token"].iloc[0], "flops_per_byte": group["flops_per_byte"].iloc[0],
            "bytes_seen": group["bytes_seen"].mean(), "epochs": group["epochs"].mean(), "val_bits_per_byte": bpb.estimate,
            "val_bpb_low": bpb.low, "val_bpb_high": bpb.high, "val_docs_scored": int(group["val_docs_scored"].iloc[0]),
            "val_bytes_scored": int(group["val_bytes_scored"].iloc[0]), "wall_s": group["wall_s"].sum(),
            "train_keep_rate_bytes": keep_rates.get((spec, bool(filtered))), "runs": ",".join(group["run"]),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def _losses(runs: "pd.DataFrame", documents: dict[str, "pd.DataFrame"], key: tuple[str, bool, float]) -> "Any":
    import numpy as np

    names = [r.run for r in runs.itertuples() if _key(r) == key]
    return np.stack([documents[n]["loss_nats"].to_numpy(np.float64) for n in names])


def pairwise_differences(runs: "pd.DataFrame", documents: dict[str, "pd.DataFrame"], *, replicates: int = 2000) -> "pd.DataFrame":
    """At each budget, every configuration against the best one (lowest mean bits-per-byte): the
    difference (other - best) with a paired bootstrap interval over documents and seeds."""
    import numpy as np
    import pandas as pd

    doc_bytes = next(iter(documents.values()))["bytes"].to_numpy(np.int64)
    rows = []
    for budget, group in runs.groupby("budget_flops", sort=True):
        means = group.groupby(["segmenter", "filtered"], sort=False)["val_bits_per_byte"].mean()
        ranked = means.sort_values(kind="stable")
        (best_spec, best_filtered) = ranked.index[0]
        best = _losses(runs, documents, (best_spec, bool(best_filtered), float(budget)))
        for (spec, filtered) in ranked.index[1:]:
            other = _losses(runs, documents, (spec, bool(filtered), float(budget)))
            diff = paired_bootstrap_difference(other, best, doc_bytes, replicates=replicates)
            rows.append({
                "budget_flops": budget, "best": row_label(best_spec, best_filtered), "other": row_label(spec, filtered),
                "difference": diff.estimate, "low": diff.low, "high": diff.high, "distinguishable": diff.excludes_zero(), "method": diff.method,
            })  # fmt: skip
    return pd.DataFrame(rows, columns=["budget_flops", "best", "other", "difference", "low", "high", "distinguishable", "method"])


def per_source_table(runs: "pd.DataFrame", documents: dict[str, "pd.DataFrame"]) -> "pd.DataFrame":
    """Validation bits-per-byte per source (prose, code, markup, each script) for every configuration:
    the mean over seeds and its 95% t-interval."""
    import math

    import pandas as pd

    rows = []
    for (spec, filtered, budget), group in runs.groupby(["segmenter", "filtered", "budget_flops"], sort=False):
        per_seed: dict[str, list[float]] = {}
        sizes: dict[str, tuple[int, int]] = {}
        for name in group["run"]:
            by_source = documents[name].groupby("source", sort=False).agg(documents=("bytes", "size"), bytes=("bytes", "sum"), loss=("loss_nats", "sum"))
            for source, r in by_source.iterrows():
                per_seed.setdefault(source, []).append(r["loss"] / (math.log(2) * r["bytes"]))
                sizes[source] = (int(r["documents"]), int(r["bytes"]))
        for source, values in per_seed.items():
            interval = mean_interval(values)
            rows.append({
                "segmenter": spec, "filtered": bool(filtered), "budget_flops": budget, "source": source, "documents": sizes[source][0],
                "bytes": sizes[source][1], "val_bits_per_byte": interval.estimate, "low": interval.low, "high": interval.high,
            })  # fmt: skip
    table = pd.DataFrame(rows, columns=["segmenter", "filtered", "budget_flops", "source", "documents", "bytes", "val_bits_per_byte", "low", "high"])
    return table.sort_values(["budget_flops", "segmenter", "filtered", "bytes", "source"], ascending=[True, True, True, False, True], kind="stable").reset_index(drop=True)


def conclusions(table: "pd.DataFrame", differences: "pd.DataFrame") -> list[str]:
    """One line per budget: the best configuration, and whether its lead over the runner-up is more
    than noise (the paired interval excludes 0) or the two are indistinguishable; then a line per
    budget where training data repeated."""
    lines = []
    for budget, group in table.groupby("budget_flops", sort=True):
        ranked = group.sort_values("val_bits_per_byte", kind="stable")
        best = ranked.iloc[0]
        name = row_label(best.segmenter, best.filtered)
        seeds = f"{int(best.seeds)} seed{'s' if best.seeds != 1 else ''}"
        spread = f" (95% interval {best.val_bpb_low:.4f} to {best.val_bpb_high:.4f} over {seeds})" if best.val_bpb_low == best.val_bpb_low else f" ({seeds})"
        if len(ranked) == 1:
            lines.append(f"At {budget:.0e} FLOPs only {name} ran: {best.val_bits_per_byte:.4f} bits/byte{spread}.")
            continue
        runner_up = ranked.iloc[1]
        other = row_label(runner_up.segmenter, runner_up.filtered)
        row = differences[(differences.budget_flops == budget) & (differences.other == other)].iloc[0]
        diff = Interval(row.difference, row.low, row.high, 0, row.method)  # other - best
        best_text = f"{name}: {best.val_bits_per_byte:.4f} bits/byte{spread}; {row.method}."
        if diff.excludes_zero():
            lines.append(f"At {budget:.0e} FLOPs: {verdict(other, name, diff)} {best_text}")
        else:
            lines.append(f"At {budget:.0e} FLOPs: no winner. {verdict(other, name, diff)} Lowest mean: {best_text}")
        repeated = group[group.epochs > 1]
        if len(repeated):
            what = ", ".join(f"{row_label(r.segmenter, r.filtered)} {r.epochs:.1f}x" for r in repeated.itertuples())
            lines.append(f"At {budget:.0e} FLOPs the training data repeated ({what} passes over the training split): these runs saw no new text after the first pass.")
    return lines


def row_label(spec: str, filtered: Any) -> str:
    return f"{spec}{' (filtered)' if filtered else ''}"


# --- report -------------------------------------------------------------------------------------


def _interval_text(low: float, high: float) -> str:
    return f"{low:.4f}–{high:.4f}" if low == low else "n/a (1 seed)"


def _has_patch_rows(table: "pd.DataFrame") -> bool:
    return bool(table["segmenter"].astype(str).str.startswith("blt:").any())


def markdown(result: StudyResult) -> str:
    meta, table = result.meta, result.table
    header = ["segmenter", "filtered", "budget FLOPs", "seeds", "context", "vocab", "bytes/token", "FLOPs/byte", "bytes seen", "epochs", "val bits/byte", "95% interval", "wall s"]
    rows = [
        [r.segmenter, "yes" if r.filtered else "no", f"{r.budget_flops:.0e}", f"{r.seeds}", f"{r.context}", f"{r.vocab_size:,}", f"{r.bytes_per_token:.3f}", f"{r.flops_per_byte:.3g}",
         f"{r.bytes_seen:,.0f}", f"{r.epochs:.2f}", f"{r.val_bits_per_byte:.4f}", _interval_text(r.val_bpb_low, r.val_bpb_high), f"{r.wall_s:.1f}"]
        for r in table.itertuples()
    ]  # fmt: skip
    context = f"{meta['context_bytes']:,} bytes per window, each segmenter's context in tokens set from its bytes/token" if meta.get("context_bytes") else f"a fixed {meta['context']} tokens"
    lines = [
        f"# Study: {meta['corpus']}\n",
        f"Model `{meta['model']}`, context {context}; every row trains to the same FLOP budget (6N + 12·L·T·d per token"
        + ("; blt: rows are byte-latent patch models, counted in full per byte, their context in bytes and their bytes/token column bytes per patch" if _has_patch_rows(table) else "")
        + ") with "
        f"seeds {', '.join(str(s) for s in meta['seeds'])}. Every run is scored on the same {count(meta['val_docs_scored'], 'whole validation document')} "
        f"({meta['val_bytes_scored']:,} bytes) of the unfiltered validation split. {CAPTION}\n",
        markdown_table(header, rows),
    ]
    lines += ["## Summary", ""] + [f"- {line}" for line in result.summary] + [""]
    if len(result.differences):
        diff_rows = [
            [f"{d.budget_flops:.0e}", d.other, d.best, f"{d.difference:+.4f}", f"{d.low:+.4f} to {d.high:+.4f}", "yes" if d.distinguishable else "no"]
            for d in result.differences.itertuples()
        ]
        lines += ["## Differences from the best row at each budget", "", "Paired bootstrap over validation documents and seeds (bits/byte, other − best).", ""]
        lines += [markdown_table(["budget", "row", "best", "difference", "95% interval", "distinguishable"], diff_rows)]
    lines += _per_source_markdown(result.per_source)
    lines += ["![bits per byte against FLOPs](bits_per_byte_vs_flops.png)", "", "![compression against learnability](bytes_per_token_vs_bits_per_byte.png)", ""]
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    return "\n".join(lines)


def _per_source_markdown(per_source: "pd.DataFrame", top: int = 8) -> list[str]:
    """Bits-per-byte per source at the largest budget, for the largest sources (all in per_source.csv)."""
    if per_source.empty:
        return []
    last = per_source[per_source.budget_flops == per_source.budget_flops.max()]
    sources = last.groupby("source", sort=False)["bytes"].first().sort_values(ascending=False, kind="stable").index[:top]
    header = ["segmenter", "filtered"] + [str(s) for s in sources]
    rows = []
    for (spec, filtered), group in last.groupby(["segmenter", "filtered"], sort=False):
        values = dict(zip(group.source, group.val_bits_per_byte))
        rows.append([spec, "yes" if filtered else "no"] + [f"{values[s]:.3f}" if s in values else "" for s in sources])
    budget = last.budget_flops.iloc[0]
    return [f"## Bits-per-byte per source at {budget:.0e} FLOPs", "", f"Mean over seeds; the {len(sources)} largest sources of the scoring set (every source and budget, with intervals, in per_source.csv).", "", markdown_table(header, rows)]


def plot(result: StudyResult, path: Path) -> None:
    """Bits-per-byte against training FLOPs: each configuration's mean over seeds with its 95% band,
    each run's earlier evaluations as faint lines, and a caption on the figure saying which is which."""
    import textwrap

    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from toklab import plots

    fig, ax = plots.figure(8, 6)
    table = result.table
    faint = False
    for i, ((spec, filtered), group) in enumerate(table.groupby(["segmenter", "filtered"], sort=False)):
        color = f"C{i % 10}"
        for runs in group["runs"]:  # one faint line per run (a seed at a budget)
            for run in runs.split(","):
                # Only the evaluations before the last: they score a prefix of the documents, and joining
                # them to the final score (all documents, part of the point) drew a kink that is not there.
                history = [h for h in result.histories.get(run, []) if h["flops"] > 0 and not h.get("final")]
                if history:
                    faint = True
                    ax.plot([h["flops"] for h in history], [h["val_bits_per_byte"] for h in history], color=color, alpha=0.25, linewidth=0.8)
        group = group.sort_values("flops")  # where runs actually stopped: a whole number of steps within the budget
        ax.plot(group["flops"], group["val_bits_per_byte"], marker="o", color=color, linestyle="--" if filtered else "-", label=row_label(spec, filtered))
        if group["val_bpb_low"].notna().any():
            ax.fill_between(group["flops"], group["val_bpb_low"], group["val_bpb_high"], color=color, alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    plots.flops_axis(ax, "x")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("validation bits-per-byte (lower is better)")
    meta = result.meta
    ax.set_title(f"{meta.get('corpus', '')}: model {meta.get('model', '')}, bits-per-byte against training compute", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    banded = bool(table["val_bpb_low"].notna().any())  # one seed: no interval, no band
    if banded:
        handles.append(Patch(facecolor="grey", alpha=0.3, linewidth=0))
        labels.append("95% interval over seeds")
    if faint:
        handles.append(Line2D([], [], color="grey", alpha=0.5, linewidth=1.5))  # wider than on the plot, to be seen in the key
        labels.append("one seed's run during training (faint)")
    ax.legend(handles, labels, fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    seeds = len(meta.get("seeds") or [])
    documents = meta.get("val_docs_scored")
    eval_bytes, scored = (meta.get("train") or {}).get("eval_bytes"), meta.get("val_bytes_scored")
    if isinstance(eval_bytes, int) and isinstance(scored, int) and eval_bytes >= scored:
        during = "on the same documents"
    else:
        during = f"on only the first {eval_bytes:,} bytes of the same documents" if isinstance(eval_bytes, int) else "on only the first --eval-bytes of the same documents"
    caption = (
        ("Points: mean over " + (f"{seeds} seeds" if seeds else "seeds") + " of each configuration's" if seeds != 1 else "Points: each configuration's")
        + " final validation bits-per-byte on all " + (f"{documents:,} " if isinstance(documents, int) else "") + "scored documents, at the FLOPs where its runs stopped"
        + ("; band: 95% interval over seeds" if banded else "")
        + ("; dashed: trained on the Cramming-filtered split. " if table["filtered"].astype(bool).any() else ". ")
        + (f"Faint lines: each seed's validation curve during training, one per run (seed and budget), scored {during}, so a faint line need not end at its point." if faint else "")
    )  # fmt: skip
    text = textwrap.fill(caption, 130)
    fig.text(0.01, 0.01, text, fontsize=7.5, ha="left", va="bottom")
    lines = text.count("\n") + 1
    fig.tight_layout(rect=(0, (lines * 7.5 * 1.4 / 72 + 0.1) / fig.get_figheight(), 1, 1))  # room for the caption
    plots.save(fig, path)


def plot_compression(result: StudyResult, path: Path) -> None:
    """Compression against learnability: bytes/token (x) against validation bits-per-byte (y), one
    point per configuration at each budget, with its 95% interval over seeds."""
    from toklab import plots

    fig, ax = plots.figure(8, 5)
    table = result.table
    for i, (budget, group) in enumerate(table.groupby("budget_flops", sort=True)):
        color = f"C{i % 10}"
        low = (group["val_bits_per_byte"] - group["val_bpb_low"]).fillna(0).clip(lower=0)
        high = (group["val_bpb_high"] - group["val_bits_per_byte"]).fillna(0).clip(lower=0)
        ax.errorbar(group["bytes_per_token"], group["val_bits_per_byte"], yerr=[low, high], fmt="o", color=color, capsize=3, label=f"{plots.flops_label(budget)} FLOPs")
        for r in group.itertuples():
            ax.annotate(row_label(r.segmenter, r.filtered), (r.bytes_per_token, r.val_bits_per_byte), fontsize=7, xytext=(4, 3), textcoords="offset points")
    unit = "bytes per token, or per patch for blt: rows" if _has_patch_rows(table) else "bytes per token"
    ax.set_xlabel(f"{unit} (training split; right: denser tokenisation)")
    ax.set_ylabel("validation bits-per-byte (lower is better)")
    ax.set_title("Does denser tokenisation buy quality per FLOP?\neach point: a segmenter at one budget, mean over seeds; bars: 95% interval over seeds", fontsize=9)
    ax.legend(fontsize=8, title="training budget (colour)", title_fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    plots.save(fig, path)


def to_json(result: StudyResult) -> dict[str, Any]:
    """The study as plain JSON data: what table.json holds and `study --json` prints."""
    return {
        "meta": result.meta, "caption": CAPTION, "rows": json.loads(result.table.to_json(orient="records")),
        "runs": json.loads(result.runs.to_json(orient="records")), "differences": json.loads(result.differences.to_json(orient="records")),
        "summary": result.summary, "notes": result.notes,
    }  # fmt: skip


def read_study(folder: str | os.PathLike) -> StudyResult:
    """A finished study, from its folder (for `toklab report`)."""
    import pandas as pd

    from toklab.errors import one_line
    from toklab.pretrain import read_history

    out = Path(folder)
    try:
        saved = json.loads((out / "table.json").read_text(encoding="utf-8"))
        frames = {name: pd.read_csv(out / f"{name}.csv") for name in ("table", "runs", "differences", "per_source")}
        histories = {}
        for name in frames["runs"]["run"]:
            try:
                histories[name] = read_history(out / RUNS / name)
            except ToklabError:
                pass  # a run folder moved away: its curve is missing from a re-drawn plot, nothing else
        return StudyResult(
            out=out, table=frames["table"], runs=frames["runs"], summary=list(saved["summary"]), differences=frames["differences"],
            per_source=frames["per_source"], histories=histories, meta=dict(saved["meta"]), notes=list(saved.get("notes") or []),
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise ToklabError(f"{out} holds no finished study ({Path(exc.filename or '').name or 'a file'} is missing)") from None
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ToklabError(f"{out}: the study is damaged ({one_line(exc)})") from None


def write_study_report(result: StudyResult) -> None:
    out = result.out
    write_text_atomic(out / "table.csv", result.table.to_csv(index=False))
    write_text_atomic(out / "runs.csv", result.runs.to_csv(index=False))
    write_text_atomic(out / "differences.csv", result.differences.to_csv(index=False))
    write_text_atomic(out / "per_source.csv", result.per_source.to_csv(index=False))
    _write_json(out / "table.json", to_json(result))
    write_text_atomic(out / "table.md", markdown(result))
    write_text_atomic(out / "summary.md", "\n".join(["# Which segmenter wins", ""] + [f"- {line}" for line in result.summary]) + "\n")
    plot(result, out / "bits_per_byte_vs_flops.png")
    plot_compression(result, out / "bytes_per_token_vs_bits_per_byte.png")
