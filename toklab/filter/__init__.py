"""`filter`: Cramming-style compressibility filtering of a corpus, shard by shard and resumable.

Rule (Geiping & Goldstein 2022): keep a document iff tokens <= t * chars, chars being Unicode code
points, with the tokeniser itself as the judge (by default a BPE trained on a sample of the input).
`by="zstd"` judges by zstd-compressed bytes / raw bytes instead. Empty documents are dropped and
counted on their own, so kept + rejected + empty = documents read, which the run checks at the end.

Every input shard becomes one output shard of the same relative path, in the input's format
(parquet stays parquet with its schema and every column; jsonl and text become .jsonl.zst, every
field kept), plus one column holding the document's ratio. Each output shard is written under a
temporary name and renamed when whole, and a state file in the output folder records the shards
done, so a killed run continues where it stopped and ends with byte-identical output.

One run at a time writes an output folder (a lock file in it holds the run's pid); --overwrite
removes only what an earlier run wrote (the shards its state lists, the state, temporaries) and
refuses a folder holding anything else; a failed or interrupted run removes its temporaries and
stops its workers, and workers end when their parent dies.

This package splits that by job: rule (the keep rule), shards (filtering one shard), writer (one
output shard), folders and lock (--out), state and tally (the resume state), workers (the process
pool), sample (the segmenter's training sample), result (sums and the count check), report (the
report). This module runs the whole: filter_corpus, and it re-exports every name toklab.filter had.
"""

from __future__ import annotations

import datetime
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from toklab.corpus.corpus import Corpus, open_corpus
from toklab.errors import ToklabError
from toklab.filter import workers as pool_workers
from toklab.filter.folders import REJECTED_LABEL, TEMPORARY, OutputFolders, check_paths, make_folder, rejected_folder, remove_if_empty
from toklab.filter.lock import LOCK_FILE, OutLock
from toklab.filter.result import FilterResult, combine, count_check, count_rows
from toklab.filter.rule import DEFAULT_THRESHOLD, MEASURES, RATIO_COLUMN, REASON_COLUMN, ZSTD_LEVEL, FilterRule, positive_threshold
from toklab.filter.sample import DEFAULT_TRAIN_BYTES, UNCOMPRESSED_GUESS, TrainingSample, training_sample
from toklab.filter.shards import BATCH_BYTES, BATCH_DOCS, EXAMPLES, HIST_MAX, HIST_WIDTH, SNIPPET_CHARS, ShardJob, filter_shard, output_name
from toklab.filter.state import STATE_FILE, STATE_VERSION
from toklab.filter.state import write_state as _write_state  # looked up here at each call, so tests can stop a run mid-way
from toklab.filter.tally import ShardTally
from toklab.filter.workers import init_worker, stop_pool

if TYPE_CHECKING:
    from toklab.segmenters import Segmenter

DEFAULT_SEGMENTER = "bpe:32k"  # Cramming's "self" tokeniser: trained on a sample of the input

__all__ = [
    "BATCH_BYTES", "BATCH_DOCS", "DEFAULT_SEGMENTER", "DEFAULT_THRESHOLD", "DEFAULT_TRAIN_BYTES", "EXAMPLES", "HIST_MAX", "HIST_WIDTH",
    "LOCK_FILE", "MEASURES", "RATIO_COLUMN", "REASON_COLUMN", "REJECTED_LABEL", "SNIPPET_CHARS", "STATE_FILE", "STATE_VERSION", "TEMPORARY",
    "UNCOMPRESSED_GUESS", "ZSTD_LEVEL", "FilterResult", "FilterRule", "ShardJob", "ShardTally", "TrainingSample", "count_rows",
    "filter_corpus", "filter_shard", "open_corpus", "positive_threshold", "rejected_folder", "training_sample",
]  # fmt: skip


def _config(corpus: Corpus, rule: FilterRule, segmenter: "Segmenter | None", keep_rejected: bool) -> dict[str, Any]:
    """What decides the output; a resumed run must match it exactly."""
    from toklab._version import __version__

    opts = corpus.options
    reading = {k: getattr(opts, k) for k in ("text_field", "id_field", "source_field", "lines", "name", "split", "strict")}
    identity = None
    if segmenter is not None:
        identity = {"spec": segmenter.spec, "vocab_size": segmenter.vocab_size, "trained_on": segmenter.corpus_fingerprint}
    return {
        "inputs": [item.signature() for item in corpus.inputs],
        "reading": reading,
        "by": rule.by,
        "threshold": rule.threshold,
        "segmenter": identity,
        "keep_rejected": keep_rejected,
        "toklab_version": __version__,
    }


def filter_corpus(
    corpus: "str | Corpus" = "default",
    out: str | os.PathLike | None = None,
    *,
    threshold: float | None = None,
    by: str = "tokens",
    segmenter: "str | Segmenter | None" = None,
    keep_rejected: bool = False,
    dry_run: bool = False,
    sweep: Sequence[float] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    train_bytes: int = DEFAULT_TRAIN_BYTES,
    progress: bool = False,
    runner: Any = None,
    **corpus_options: Any,
) -> FilterResult:
    """Filter `corpus` into `out`: keep a document iff tokens <= threshold * chars.

    `segmenter` is any spec (default: a BPE trained on about `train_bytes` of the input, cached),
    or a Segmenter. `by="zstd"` uses zstd bytes / raw bytes instead. `dry_run` or `sweep` (a list
    of thresholds to tabulate) measure only and write no shards. `keep_rejected` writes rejected
    and empty documents, with the reason, to `rejected_folder(out)`. An interrupted run continues
    with `resume=True`; `overwrite=True` replaces an earlier filter's output.

    `runner` hands the shards to another engine instead of the process pool (toklab.datatrove):
    an object with `settings` (a dict recorded in the run's config, so --resume must match it) and
    `run(jobs, segmenter, record, out)`, which calls `record(tally)` for every shard it finishes.
    """
    if runner is not None and (out is None or dry_run or sweep):
        raise ToklabError("--executor writes shards: give --out, and drop --dry-run and --sweep")
    from toklab.segmenters.base import cpu_count

    if threshold is None:
        threshold = DEFAULT_THRESHOLD.get(by, 0.3)
    rule = FilterRule(by, positive_threshold(threshold, "--t"))
    sweep = tuple(positive_threshold(t, "--sweep") for t in sweep) if sweep else ()
    measure_only = dry_run or bool(sweep)
    if out is None and not measure_only:
        raise ToklabError("--out is required (or pass --dry-run or --sweep to only measure)")
    if train_bytes <= 0:
        raise ToklabError(f"--train-bytes must be positive, got {train_bytes}")
    if isinstance(corpus, str):
        corpus = open_corpus(corpus, progress=progress, **corpus_options)
    elif corpus_options:
        raise TypeError("pass corpus options to open_corpus when giving a Corpus")
    opts = corpus.options
    if opts.max_docs is not None or opts.max_bytes is not None or opts.sample < 1.0:
        raise ToklabError("filter reads every document of its input; --max-docs, --max-bytes and --sample do not apply (pass a smaller input instead)")
    workers = cpu_count() if workers is None else max(1, workers)

    out_path = Path(out).expanduser().resolve() if out is not None and not measure_only else None
    rejected_path = rejected_folder(out_path) if out_path is not None and keep_rejected else None
    folders = lock = None
    created: list[Path] = []
    if out_path is not None:
        check_paths(corpus, out_path, rejected_path)
        planned = [output_name(item) for item in corpus.inputs]
        if len(set(planned)) < len(planned):
            raise ToklabError("two input shards would map to the same output shard (e.g. a.jsonl and a.jsonl.gz); filter them separately")
        folders = OutputFolders(out_path, rejected_path, sorted(planned), resume, overwrite)
        lock = OutLock(out_path)
    try:
        if folders is not None and lock is not None:
            created = make_folder(out_path)  # type: ignore[arg-type]
            lock.acquire()
            folders.inspect()  # refuses a folder holding anything else before any work
        return _filter(corpus, rule, out_path, rejected_path, folders, segmenter, keep_rejected, sweep, workers, train_bytes, progress, runner)
    except BaseException:
        if folders is not None:
            folders.remove_temporaries()  # a failed or interrupted run leaves its folder resumable
        raise
    finally:
        if lock is not None:
            lock.release()
        if created:
            remove_if_empty(created)  # only when this run made --out and wrote nothing in it


def _filter(
    corpus: Corpus,
    rule: FilterRule,
    out_path: Path | None,
    rejected_path: Path | None,
    folders: "OutputFolders | None",
    segmenter: "str | Segmenter | None",
    keep_rejected: bool,
    sweep: tuple[float, ...],
    workers: int,
    train_bytes: int,
    progress: bool,
    runner: Any = None,
) -> FilterResult:
    """filter_corpus once its arguments are checked and --out is locked and checked."""
    from toklab._version import __version__
    from toklab.progress import document_progress, step_progress

    opts = corpus.options
    seg = None
    notes = []
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if rule.by == "tokens":
        from toklab.segmenters import Segmenter, get_segmenter

        if isinstance(segmenter, Segmenter):
            seg = segmenter
        else:
            sample = training_sample(corpus, train_bytes)
            seg = get_segmenter(segmenter or DEFAULT_SEGMENTER, sample, progress=progress)
            if isinstance(sample, TrainingSample) and getattr(seg, "corpus_fingerprint", None) == sample.fingerprint():
                oversized = sample.oversized()
                if oversized is not None:
                    notes.append(f"{seg.spec} was trained on one document of {oversized:,} bytes, more than --train-bytes ({train_bytes:,}): the sample holds at least one whole document")
    elif segmenter is not None:
        raise ToklabError("--segmenter applies to --by tokens only; --by zstd uses no segmenter")
    timings["segmenter"] = time.perf_counter() - start

    config = _config(corpus, rule, seg, keep_rejected)
    if runner is not None:
        config["executor"] = runner.settings
    state: dict[str, Any] = {"done": {}}
    if folders is not None and out_path is not None:
        state = folders.start(config)
    resumed = len(state["done"])
    jobs = [
        ShardJob(
            index=i,
            item=item,
            options=opts,
            rule=rule,
            kept_path=out_path / output_name(item) if out_path is not None else None,
            rejected_path=rejected_path / output_name(item) if rejected_path is not None else None,
            sweep=sweep,
        )
        for i, item in enumerate(corpus.inputs)
        if str(i) not in state["done"]
    ]

    def record(tally: ShardTally) -> None:
        state["done"][str(tally.index)] = tally
        if out_path is not None:
            _write_state(out_path, state)

    start = time.perf_counter()
    if runner is not None:
        runner.run(jobs, seg, record, out_path)
    elif len(jobs) > 1 and workers > 1:
        with step_progress("filtering shards", len(jobs), enabled=progress) as step:
            pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), initializer=init_worker, initargs=(seg, os.getpid()))
            try:
                futures = {pool.submit(_run_job, job): job for job in jobs}
                for future in as_completed(futures):
                    step(futures[future].item.location)
                    record(future.result())
            except BaseException:
                stop_pool(pool)
                raise
            pool.shutdown()
    else:
        with document_progress("filtering", enabled=progress) as advance:
            for job in jobs:
                record(filter_shard(job, seg, workers=workers, advance=advance))
    timings["filter"] = time.perf_counter() - start

    tallies = [state["done"][str(i)] for i in range(len(corpus.inputs))]
    result = combine(corpus, rule, seg, tallies, out_path, rejected_path, sweep)
    result.resumed_shards = resumed
    result.notes += notes
    result.input_roots = corpus.input_roots()
    count_check(result)
    if out_path is not None:
        state["complete"] = result.conserved
        _write_state(out_path, state)
    result.meta = {
        "corpus": corpus.spec,
        "corpus_description": corpus.description,
        "by": rule.by,
        "threshold": rule.threshold,
        "ratio_column": rule.column,
        "segmenter": seg.spec if seg is not None else None,
        "workers": workers,
        "toklab_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    return result


def _run_job(job: ShardJob) -> ShardTally:
    """A pool worker's task. It calls this module's `filter_shard`, which tests replace to slow a run down."""
    return filter_shard(job, pool_workers.worker_segmenter, workers=1)
