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
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import math
import os
import re
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from toklab.corpus.corpus import Corpus, Input, _stem, open_corpus
from toklab.corpus.readers import CorpusOptions, ReadStats, parquet_batches, to_document
from toklab.errors import ToklabError, one_line
from toklab.files import check_outside, pid_alive, temp_name
from toklab.measures import at_most

if TYPE_CHECKING:
    import pandas as pd

    from toklab.corpus.document import Document
    from toklab.segmenters import Segmenter

MEASURES = ("tokens", "zstd")
DEFAULT_THRESHOLD = {"tokens": 0.3, "zstd": 0.5}  # tokens: Cramming's default; zstd: toklab's choice
RATIO_COLUMN = {"tokens": "tokens_per_char", "zstd": "zstd_ratio"}
REASON_COLUMN = "reject_reason"
DEFAULT_SEGMENTER = "bpe:32k"  # Cramming's "self" tokeniser: trained on a sample of the input
DEFAULT_TRAIN_BYTES = 20_000_000
ZSTD_LEVEL = 3
STATE_FILE = ".toklab-filter.json"
STATE_VERSION = 1
LOCK_FILE = ".toklab-filter.lock"  # holds the pid of the run writing --out; see _OutLock
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.tmp$")  # files.temp_name's pattern
BATCH_DOCS = 1024
BATCH_BYTES = 8 * 2**20
HIST_WIDTH = 0.005  # ratio histogram bins; the last bin holds everything from HIST_MAX up
HIST_MAX = 4.0
EXAMPLES = 4  # rejected examples kept of each kind (most extreme, nearest the threshold)
SNIPPET_CHARS = 400
UNCOMPRESSED_GUESS = 4  # bytes of text per byte of a compressed shard, to size the training sample


@dataclass(frozen=True)
class FilterRule:
    """Keep a document iff numerator <= threshold * denominator (tokens/chars, or zstd bytes/raw bytes)."""

    by: str = "tokens"
    threshold: float = 0.3

    def __post_init__(self) -> None:
        if self.by not in MEASURES:
            raise ToklabError(f"--by must be one of {', '.join(MEASURES)}, got '{self.by}'")
        positive_threshold(self.threshold, "--t")

    @property
    def column(self) -> str:
        return RATIO_COLUMN[self.by]

    def measure(self, texts: Sequence[str], data: Sequence[bytes], segmenter: "Segmenter | None", workers: int) -> tuple[np.ndarray, np.ndarray]:
        """(numerators, denominators) for non-empty texts and their UTF-8 bytes: (tokens, chars) or (zstd bytes, bytes)."""
        if self.by == "tokens":
            assert segmenter is not None
            tokens = [len(ids) for ids in segmenter.encode_batch(texts, workers=workers)]
            return np.array(tokens, dtype=np.int64), np.array([len(t) for t in texts], dtype=np.int64)
        import zstandard

        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        if workers > 1 and len(data) > 1:  # one frame per document, the same bytes as compress(), on all cores
            sizes = [len(frame) for frame in compressor.multi_compress_to_buffer(data, threads=workers)]
        else:
            sizes = [len(compressor.compress(d)) for d in data]
        return np.array(sizes, dtype=np.int64), np.array([len(d) for d in data], dtype=np.int64)


def positive_threshold(value: Any, option: str = "--t") -> float:
    """`value` as a float, or a ToklabError unless it is a finite number above 0."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ToklabError(f"{option} must be a positive number, got {value!r}") from None
    if not (math.isfinite(t) and t > 0):
        raise ToklabError(f"{option} must be positive and finite, got {t:g}")
    return t


def _why(exc: OSError) -> str:
    """An OSError's reason in a few words: 'No space left on device', 'Read-only file system'."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or one_line(exc)


def _cannot_write(path: Path, exc: OSError) -> ToklabError:
    return ToklabError(f"cannot write {path}: {_why(exc)}")


# --- one shard ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs to filter one input shard (picklable)."""

    index: int
    item: Input
    options: CorpusOptions
    rule: FilterRule
    kept_path: Path | None  # None: measure only (dry run, sweep)
    rejected_path: Path | None
    sweep: tuple[float, ...] = ()


def _output_name(item: Input) -> str:
    """The output shard's path relative to --out: the input's own, in the output format."""
    suffix = ".parquet" if item.kind in ("parquet", "saved", "stream") else ".jsonl.zst"
    location = Path(item.location)
    return (location.parent / (_stem(location) + suffix)).as_posix()


class _ShardOut:
    """One output shard, written under a temporary name and renamed into place when whole. An
    OSError while writing (a full disk, a read-only folder) becomes a ToklabError naming the shard."""

    def __init__(self, final: Path, fmt: str, schema: Any = None) -> None:
        self.final, self.fmt, self.schema = final, fmt, schema
        self.tmp = temp_name(final)
        self.rows = 0
        self._writer: Any = None
        self._file: Any = None
        with self._writing():
            final.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "jsonl.zst":
                import zstandard

                self._file = open(self.tmp, "wb")
                self._writer = zstandard.ZstdCompressor(level=3).stream_writer(self._file, closefd=False)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise _cannot_write(self.final, exc) from exc

    def write_arrow(self, batch: Any, take: np.ndarray, columns: dict[str, list[Any]]) -> None:
        """Rows of an arrow batch where `take`, with `columns` added (replacing same-named ones)."""
        import pyarrow as pa

        picked = batch.filter(pa.array(take))
        for name, values in columns.items():
            if name in picked.schema.names:
                picked = picked.drop_columns([name])
            chosen = [v for v, t in zip(values, take) if t]
            picked = picked.append_column(name, pa.array(chosen, type=pa.float64() if name != REASON_COLUMN else pa.string()))
        self._parquet(pa.Table.from_batches([picked]))

    def write_records(self, records: list[dict[str, Any]], take: np.ndarray, columns: dict[str, list[Any]]) -> None:
        rows = [{**r, **{k: v[i] for k, v in columns.items()}} for i, r in enumerate(records) if take[i]]
        if not rows:
            return
        if self.fmt == "jsonl.zst":
            with self._writing():
                self._writer.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows).encode("utf-8"))
            self.rows += len(rows)
            return
        import pyarrow as pa

        self._parquet(pa.Table.from_pylist(rows, schema=self._writer.schema if self._writer is not None else None))

    def _parquet(self, table: Any) -> None:
        import pyarrow.parquet as pq

        with self._writing():
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd", compression_level=6)
            if table.num_rows:
                self._writer.write_table(table)
                self.rows += table.num_rows

    def close(self, empty_schema: Any = None) -> int:
        """Finish and rename into place; returns the file's size (0 when nothing was written)."""
        with self._writing():
            if self.fmt == "jsonl.zst":
                self._writer.close()
                self._file.close()
            elif self._writer is None and empty_schema is not None:
                self._parquet(empty_schema.empty_table())
                self._writer.close()
            elif self._writer is not None:
                self._writer.close()
            else:  # a records-to-parquet shard with no rows and no known schema: no file
                return 0
            os.replace(self.tmp, self.final)
            return self.final.stat().st_size

    def abort(self) -> None:
        for close in (getattr(self._writer, "close", None), getattr(self._file, "close", None)):
            try:
                if close is not None:
                    close()
            except Exception:
                pass
        try:
            self.tmp.unlink(missing_ok=True)
        except OSError:
            pass  # removed at the next start


def _parquet_batches(job: ShardJob, ctx: Any) -> Iterator[tuple[Any, list["Document | None"]]]:
    """(arrow batch, one Document per row: None for a malformed row) for a parquet shard."""
    opts = job.options
    row = 0
    for batch in _bounded(parquet_batches(Path(job.item.target), ctx, BATCH_DOCS), opts.text_field):
        names = batch.schema.names
        wanted = [n for n in dict.fromkeys([opts.text_field, opts.id_field or "id", opts.source_field]) if n in names]
        columns = {n: batch.column(n).to_pylist() for n in wanted}
        docs = []
        for i in range(batch.num_rows):
            docs.append(to_document({n: columns[n][i] for n in wanted}, f"{job.item.location}:{row}", ctx, keep_empty=True))
            row += 1
        yield batch, docs


def _bounded(batches: Iterator[Any], text_field: str) -> Iterator[Any]:
    """Arrow batches cut so each holds about BATCH_BYTES of text at most, whatever the documents' size."""
    import pyarrow.compute as pc

    for batch in batches:
        column = batch.column(text_field)
        if not (_is_text(column.type)) or batch.num_rows <= 1:
            yield batch
            continue
        sizes = np.cumsum(np.nan_to_num(pc.binary_length(column).to_numpy(zero_copy_only=False).astype(np.float64)))
        start = 0
        while start < batch.num_rows:
            base = sizes[start - 1] if start else 0.0
            stop = max(start + 1, int(np.searchsorted(sizes, base + BATCH_BYTES, side="right")))
            yield batch.slice(start, stop - start)
            start = stop


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def _record_batches(job: ShardJob, ctx: Any) -> Iterator[tuple[list[dict[str, Any]], list["Document | None"]]]:
    """(records, documents) in batches, for every format read record by record."""
    records: list[dict[str, Any]] = []
    docs: list[Document | None] = []
    size = 0
    for location, line, record in job.item.records(ctx):
        doc = to_document(record, location, ctx, line=line, keep_empty=True)
        if doc is None:
            continue  # malformed: counted by the reader, and not a document
        if job.item.kind == "text":
            record = {"id": doc.id, "text": doc.text, "source": doc.source}
        records.append(record)
        docs.append(doc)
        size += len(doc.text)
        if len(docs) >= BATCH_DOCS or size >= BATCH_BYTES:
            yield records, docs
            records, docs, size = [], [], 0
    if docs:
        yield records, docs


def _new_outcome(job: ShardJob) -> dict[str, Any]:
    return {
        "index": job.index, "input": job.item.location, "kept_file": None, "rejected_file": None,
        "documents": 0, "kept": 0, "rejected": 0, "empty": 0, "malformed": 0, "invalid_utf8": 0,
        "bytes": 0, "kept_bytes": 0, "rejected_bytes": 0, "kept_file_bytes": 0, "rejected_file_bytes": 0,
        "per_source": {}, "sweep": {}, "hist": [], "examples": [], "seconds": 0.0,
    }  # fmt: skip


def _reason(rule: FilterRule, ratio: float) -> str:
    return f"{rule.column} {ratio:.4f} > {rule.threshold:g}"


def filter_shard(job: ShardJob, segmenter: "Segmenter | None", workers: int = 1, advance: Any = None) -> dict[str, Any]:
    """Filter one input shard; returns its counts, per-source tallies, histogram and examples."""
    start = time.perf_counter()
    rule = job.rule
    stats = ReadStats()
    ctx = job.item.context(job.options, stats)
    outcome = _new_outcome(job)
    hist = np.zeros(int(round(HIST_MAX / HIST_WIDTH)) + 1, dtype=np.int64)
    examples: list[dict[str, Any]] = []
    parquet_in = job.item.kind == "parquet"
    fmt = "parquet" if _output_name(job.item).endswith(".parquet") else "jsonl.zst"
    kept_out = _ShardOut(job.kept_path, fmt) if job.kept_path else None
    rejected_out = _ShardOut(job.rejected_path, fmt) if job.rejected_path else None
    sweep = sorted(set(job.sweep))
    schema = None
    try:
        batches = _parquet_batches(job, ctx) if parquet_in else _record_batches(job, ctx)
        for payload, docs in batches:
            n = len(docs)
            present = np.array([d is not None for d in docs], dtype=bool)
            text_rows = [i for i, d in enumerate(docs) if d is not None and d.text]
            texts = [docs[i].text for i in text_rows]  # type: ignore[union-attr]
            data = [t.encode("utf-8", "surrogatepass") for t in texts]
            numerators, denominators = rule.measure(texts, data, segmenter, workers) if texts else (np.zeros(0, np.int64), np.zeros(0, np.int64))
            ratios = numerators / np.maximum(denominators, 1)
            keep_text = at_most(numerators, denominators, rule.threshold)
            keep = np.zeros(n, dtype=bool)
            keep[text_rows] = keep_text
            empty = present.copy()
            empty[text_rows] = False
            reject = present & ~keep & ~empty
            ratio_col: list[float | None] = [None] * n
            reason_col: list[str | None] = [None] * n
            for i, r in zip(text_rows, ratios.tolist()):
                ratio_col[i] = r
            for i in np.flatnonzero(empty):
                reason_col[i] = "empty"
            for i in np.flatnonzero(reject):
                reason_col[i] = _reason(rule, ratio_col[i])  # type: ignore[arg-type]

            n_bytes = np.zeros(n, dtype=np.int64)  # empty and malformed rows: 0
            n_bytes[text_rows] = [len(d) for d in data]
            outcome["documents"] += int(present.sum())
            outcome["kept"] += int(keep.sum())
            outcome["rejected"] += int(reject.sum())
            outcome["empty"] += int(empty.sum())
            outcome["bytes"] += int(n_bytes.sum())
            outcome["kept_bytes"] += int(n_bytes[keep].sum())
            outcome["rejected_bytes"] += int(n_bytes[reject].sum())
            bins = np.minimum((ratios / HIST_WIDTH).astype(np.int64), len(hist) - 1)
            hist += np.bincount(bins, minlength=len(hist))
            sweep_keep = {t: at_most(numerators, denominators, t) for t in sweep}
            per_source = outcome["per_source"]
            text_position = {row: k for k, row in enumerate(text_rows)}
            for i in np.flatnonzero(present):
                doc = docs[i]
                tally = per_source.setdefault(doc.source, {"docs": 0, "bytes": 0, "kept_docs": 0, "kept_bytes": 0, "empty": 0, "sweep": {}})  # type: ignore[union-attr]
                tally["docs"] += 1
                tally["bytes"] += int(n_bytes[i])
                if keep[i]:
                    tally["kept_docs"] += 1
                    tally["kept_bytes"] += int(n_bytes[i])
                if empty[i]:
                    tally["empty"] += 1
                    continue
                for t in sweep:
                    if sweep_keep[t][text_position[i]]:
                        cell = tally["sweep"].setdefault(repr(t), [0, 0])
                        cell[0] += 1
                        cell[1] += int(n_bytes[i])
            for i in np.flatnonzero(reject):
                doc = docs[i]
                examples.append({"id": doc.id, "source": doc.source, "ratio": ratio_col[i], "chars": len(doc.text), "bytes": int(n_bytes[i]), "snippet": doc.text[:SNIPPET_CHARS]})  # type: ignore[union-attr]
            examples = _pick_examples(examples)
            if kept_out or rejected_out:
                columns = {rule.column: ratio_col}
                if parquet_in:
                    schema = payload.schema
                    if kept_out:
                        kept_out.write_arrow(payload, keep, columns)
                    if rejected_out:
                        rejected_out.write_arrow(payload, reject | empty, {**columns, REASON_COLUMN: reason_col})
                else:
                    records = payload
                    if kept_out:
                        kept_out.write_records(records, keep, columns)
                    if rejected_out:
                        rejected_out.write_records(records, reject | empty, {**columns, REASON_COLUMN: reason_col})
            if advance is not None:
                advance(int(n_bytes.sum()), int(present.sum()))
        if parquet_in and schema is None:
            import pyarrow.parquet as pq

            schema = pq.ParquetFile(job.item.target).schema_arrow
        if kept_out:
            outcome["kept_file_bytes"] = kept_out.close(_with_columns(schema, [rule.column]) if parquet_in else None)
            outcome["kept_file"] = _output_name(job.item) if outcome["kept_file_bytes"] else None
        if rejected_out:
            outcome["rejected_file_bytes"] = rejected_out.close(_with_columns(schema, [rule.column, REASON_COLUMN]) if parquet_in else None)
            outcome["rejected_file"] = _output_name(job.item) if outcome["rejected_file_bytes"] else None
    except BaseException:
        for out in (kept_out, rejected_out):
            if out is not None:
                out.abort()
        raise
    outcome["malformed"] = stats.malformed_lines
    outcome["malformed_examples"] = stats.malformed_examples
    outcome["invalid_utf8"] = stats.invalid_utf8
    outcome["hist"] = hist.tolist()
    outcome["examples"] = examples
    outcome["seconds"] = round(time.perf_counter() - start, 3)
    return outcome


def _with_columns(schema: Any, names: list[str]) -> Any:
    import pyarrow as pa

    for name in names:
        if name in schema.names:
            schema = schema.remove(schema.get_field_index(name))
        schema = schema.append(pa.field(name, pa.string() if name == REASON_COLUMN else pa.float64()))
    return schema


def _pick_examples(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The most extreme rejected documents and those nearest the threshold, ties broken by id."""
    ordered = sorted(examples, key=lambda e: (e["ratio"], e["id"]))
    picked = ordered[:EXAMPLES] + ordered[max(EXAMPLES, len(ordered) - EXAMPLES):]
    return picked


_worker_segmenter: "Segmenter | None" = None  # set once per worker process, not pickled per shard
_held_locks: set[int] = set()  # descriptors of the --out locks this process holds (see _OutLock)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _init_worker(segmenter: "Segmenter | None", main_pid: int | None = None) -> None:
    """A pool worker's setup: the segmenter; no inherited --out lock; Ctrl-C left to the main process,
    which stops its workers itself; and an exit as soon as the main process is gone."""
    global _worker_segmenter
    _worker_segmenter = segmenter
    for fd in list(_held_locks):  # a forked copy of the main process's lock: the lock stays the main's
        try:
            os.close(fd)
        except OSError:
            pass
    _held_locks.clear()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if main_pid is not None:
        _exit_with_parent(main_pid)


def _exit_with_parent(main_pid: int) -> None:
    """End this worker when its parent dies (killed, say), instead of finishing its shards as an
    orphan and then waiting for work for ever: PR_SET_PDEATHSIG on Linux, else a watching thread."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0:
                if os.getppid() != parent or not pid_alive(main_pid):  # it died before the call
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch_parent, args=(parent,), name="toklab-watch-parent", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _run_job(job: ShardJob) -> dict[str, Any]:
    return filter_shard(job, _worker_segmenter, workers=1)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop at once: cancel the queued shards and end the running ones (their temporary files are
    removed afterwards), rather than letting every queued shard finish after an interrupt."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        try:
            process.terminate()
        except Exception:
            pass
    for process in processes:
        try:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        except Exception:
            pass
    try:
        pool.shutdown(wait=True)
    except Exception:
        pass


# --- the run ------------------------------------------------------------------------------------


@dataclass
class FilterResult:
    """A filter run: the counts, per-source keep rates, the ratio histogram and rejected examples."""

    corpus: str
    rule: FilterRule
    segmenter: str | None  # the segmenter's spec; None for --by zstd
    out: Path | None  # None for a dry run or a sweep
    rejected_out: Path | None
    documents: int
    kept: int
    rejected: int
    empty: int
    bytes: int
    kept_bytes: int
    rejected_bytes: int
    malformed: int
    per_source: "pd.DataFrame"  # one row per source, largest first
    histogram: list[int]  # documents per ratio bin of width HIST_WIDTH; the last bin is "HIST_MAX and up"
    examples: list[dict[str, Any]]  # rejected documents: the most extreme and those nearest the threshold
    sweep: "pd.DataFrame | None" = None  # keep rates for each t of --sweep
    conserved: bool = True  # kept + rejected + empty == documents, and the shards hold what was counted
    count_check: str = ""
    shards: list[dict[str, Any]] = field(default_factory=list)  # per input shard: files and counts
    resumed_shards: int = 0  # shards found done by an earlier, interrupted run
    vocab_size: int | None = None  # the ids the segmenter delivered (a small corpus gives bpe:32k fewer)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    input_roots: list[Path] = field(default_factory=list)  # what the input reads: no report may go inside

    @property
    def keep_rate_docs(self) -> float:
        return self.kept / self.documents if self.documents else 0.0

    @property
    def keep_rate_bytes(self) -> float:
        return self.kept_bytes / self.bytes if self.bytes else 0.0

    @property
    def dry_run(self) -> bool:
        return self.out is None


def rejected_folder(out: str | os.PathLike) -> Path:
    """Where --keep-rejected puts rejected documents: a sibling of --out, so --out holds kept ones only."""
    out = Path(out)
    return out.with_name(out.name + "-rejected")


REJECTED_LABEL = "the --keep-rejected folder"
_OUTCOME_KEYS = frozenset(("index", "input", "kept_file", "rejected_file", "documents", "kept", "rejected", "empty", "malformed", "invalid_utf8", "bytes",
                           "kept_bytes", "rejected_bytes", "kept_file_bytes", "rejected_file_bytes", "per_source", "sweep", "hist", "examples", "seconds"))  # fmt: skip


def _check_paths(corpus: Corpus, out: Path, rejected: Path | None) -> None:
    """Refuse an output inside the input or holding it (one rule for every command), or a file."""
    roots = corpus.input_roots()
    check_outside(out, roots)
    if rejected is not None:
        check_outside(rejected, roots, REJECTED_LABEL)
    for label, target in (("--out", out), (REJECTED_LABEL, rejected)):
        if target is not None and target.exists() and not target.is_dir():
            raise ToklabError(f"{label} {target} is a file; choose a folder")


def _make_folder(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; returns those it created, deepest first."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write(folder, exc) from exc
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            return


class _OutLock:
    """One run at a time writes an output folder: it holds a lock on a file in it that records its
    pid. The lock is an flock, so the kernel lets go of it when its process dies, however it dies,
    and a later run takes over the stale file; without fcntl the file itself is the lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX
            fcntl = None  # type: ignore[assignment]
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | (0 if fcntl is not None else os.O_EXCL), 0o644)
            except FileExistsError:
                owner = self.owner()
                if owner is None or owner == os.getpid() or pid_alive(owner):
                    raise self._busy(owner, hint=True) from None
                self._unlink(None)  # a stale lock of a process that is gone
                continue
            except OSError as exc:
                raise _cannot_write(self.folder, exc) from exc
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    os.close(fd)
                    if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise self._busy(self.owner()) from None
                    raise ToklabError(f"cannot lock {self.path}: {_why(exc)}") from exc
                if not self._is(fd):  # its last holder removed it as we opened it: lock the new one
                    os.close(fd)
                    continue
            self.fd = fd
            _held_locks.add(fd)
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError as exc:
                self.release()
                raise _cannot_write(self.path, exc) from exc
            return
        raise self._busy(self.owner())

    def owner(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _busy(self, owner: int | None, hint: bool = False) -> ToklabError:
        who = f"process {owner}" if owner is not None else "another process"
        extra = f" (if no toklab run is writing there, delete {self.path})" if hint else ""
        return ToklabError(f"--out {self.folder} is in use by {who}; wait for it to end or stop it{extra}")

    def _is(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def _unlink(self, fd: int | None) -> None:
        try:
            if fd is None or self._is(fd):
                self.path.unlink()
        except OSError:
            pass

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        _held_locks.discard(fd)
        self._unlink(fd)  # while still holding it, so no one takes a file that is about to go
        os.close(fd)


def _entries(folder: Path | None) -> list[str]:
    """Every file (or link) below `folder`, as a relative posix path; folders themselves aside."""
    if folder is None or not folder.is_dir():
        return []
    found = []
    for root, dirs, files in os.walk(folder):
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        found += [Path(root, name).relative_to(folder).as_posix() for name in files + links]
    return sorted(found)


def _is_temporary(name: str, of: set[str]) -> bool:
    """Whether `name` (relative) is the temporary file toklab writes one of `of` under."""
    path = Path(name)
    match = TEMPORARY.match(path.name)
    return bool(match) and (path.parent / match["name"]).as_posix() in of


def _load_state(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the state, None), or (None, why it is damaged)."""
    try:
        text = path.read_text(encoding="utf-8")
    except ValueError:
        return None, "not text"
    except OSError as exc:
        raise ToklabError(f"cannot read {path}: {_why(exc)}") from exc
    try:
        state = json.loads(text)
    except ValueError:
        return None, "cut off or not JSON"
    if not isinstance(state, dict):
        return None, "not a JSON object"
    if state.get("version") != STATE_VERSION:
        return None, f"version {state.get('version')!r}, not {STATE_VERSION}"
    done, outputs = state.get("done"), state.get("outputs", [])
    if not isinstance(state.get("config"), dict) or not isinstance(done, dict) or not isinstance(outputs, list):
        return None, "incomplete"
    if not all(isinstance(o, dict) and _OUTCOME_KEYS <= o.keys() for o in done.values()) or not all(isinstance(n, str) for n in outputs):
        return None, "incomplete"
    return state, None


def _read_state(out: Path) -> dict[str, Any] | None:
    path = out / STATE_FILE
    return _load_state(path)[0] if path.is_file() else None


def _write_state(out: Path, state: dict[str, Any]) -> None:
    """Write the state under a temporary name, then rename it into place (never half a file)."""
    path = out / STATE_FILE
    tmp = temp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(state, indent=1, default=str) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise _cannot_write(path, exc) from exc


class _OutputFolders:
    """--out and the rejected folder of one run. `inspect` refuses, before anything is written or
    removed, a folder that holds anything but filter output; `start` then removes only what an
    earlier filter run wrote (with --overwrite) and the temporaries a killed run left."""

    def __init__(self, out: Path, rejected: Path | None, planned: list[str], resume: bool, overwrite: bool) -> None:
        self.out, self.rejected, self.planned = out, rejected, planned
        self.resume, self.overwrite = resume, overwrite
        self.state: dict[str, Any] | None = None
        self.owned = False  # both folders are this run's to write (temporaries in them are its to remove)
        self.ours_out = {STATE_FILE, *planned}  # names whose temporaries toklab wrote
        self.ours_rejected = set(planned)
        self.remove: list[Path] = []  # an earlier run's files, removed by --overwrite
        self.rejected_ours = rejected is not None  # whether rejected_folder(out) is a filter run's
        self.drop_rejected = False  # the earlier run's rejected folder, removed when it ends up empty

    def inspect(self) -> None:
        out, rejected = self.out, self.rejected
        state_file = out / STATE_FILE
        damaged = None
        if state_file.is_file() or state_file.is_symlink():
            self.state, damaged = _load_state(state_file)
        if self.state is None and damaged is None:  # no earlier run: both folders empty (bar toklab's own)
            strays = [n for n in _entries(out) if n != LOCK_FILE and not _is_temporary(n, {STATE_FILE})]
            for label, folder, found in (("--out", out, strays), (REJECTED_LABEL, rejected, _entries(rejected))):
                if found:
                    raise ToklabError(
                        f"{label} {folder} is not empty and holds no toklab filter output; choose a new or empty folder"
                        + (" (--overwrite only ever replaces an earlier filter's own output)" if self.overwrite or self.resume else "")
                    )
            self.owned = True
            return
        if damaged is not None and not self.overwrite:
            raise ToklabError(f"--out {out} holds a damaged filter state ({STATE_FILE}: {damaged}); pass --overwrite to start again")
        if self.state is not None:
            state = self.state
            done = state["done"].values()
            earlier = set(state.get("outputs") or [])
            kept = earlier | {o["kept_file"] for o in done if o.get("kept_file")}
            had_rejected = bool(state["config"].get("keep_rejected"))
            rejected_names = (earlier | {o["rejected_file"] for o in done if o.get("rejected_file")}) if had_rejected else set()
            if not self.overwrite:
                if not self.resume:
                    what = "a complete" if state.get("complete") else f"an interrupted ({len(state['done'])} of {len(self.planned)} shards done)"
                    raise ToklabError(f"--out {out} already holds {what} filter run; pass --resume to continue it or --overwrite to start again")
                self.ours_out |= kept
                self.ours_rejected |= rejected_names
                self.rejected_ours = rejected is not None and had_rejected
                self.owned = True
                return  # the settings are compared in start()
        else:  # damaged, and --overwrite: the shards this run writes are the ones it may replace
            kept = set(self.planned)
            had_rejected = rejected is not None
            rejected_names = set(self.planned) if had_rejected else set()
        # --overwrite: the earlier run's own files go, and nothing else may be in the way
        self.ours_out |= kept
        self.ours_rejected |= rejected_names
        old_rejected = rejected_folder(out)
        ours = self.ours_out | {LOCK_FILE}
        out_strays = [n for n in _entries(out) if n not in ours and not _is_temporary(n, self.ours_out)]
        rejected_strays = [n for n in _entries(old_rejected) if n not in rejected_names and not _is_temporary(n, self.ours_rejected)]
        if out_strays:
            self._refuse_strays("--out", out, out_strays, damaged)
        if rejected_strays and rejected is not None:
            self._refuse_strays(REJECTED_LABEL, rejected, rejected_strays, damaged)
        self.remove = [out / n for n in _entries(out) if n in kept or n == STATE_FILE]
        self.remove += [old_rejected / n for n in _entries(old_rejected) if n in rejected_names]
        self.drop_rejected = had_rejected and rejected is None
        self.rejected_ours = had_rejected or rejected is not None
        self.owned = True

    def _refuse_strays(self, label: str, folder: Path, strays: list[str], damaged: str | None) -> None:
        more = f" and {len(strays) - 1} more" if len(strays) > 1 else ""
        which = "the earlier filter run (its state file is damaged) did not write" if damaged else "no filter run wrote"
        raise ToklabError(
            f"{label} {folder} is not empty: it holds {strays[0]}{more}, which {which}; "
            "--overwrite only replaces a filter run's own output, so move them away or choose another --out"
        )

    def start(self, config: dict[str, Any]) -> dict[str, Any]:
        """The run's state: an earlier run's, to resume, or a fresh one (after --overwrite's removals)."""
        state = self.state
        if state is not None and not self.overwrite:  # --resume
            if state["config"] != config:
                changed = sorted(k for k in set(config) | set(state["config"]) if config.get(k) != state["config"].get(k))
                raise ToklabError(
                    f"--out {self.out} holds a filter run with other settings ({', '.join(changed)} differ); rerun with the same arguments, or pass --overwrite to start again"
                )
            state["done"] = {k: v for k, v in state["done"].items() if _outputs_intact(self.out, self.rejected, v)}
            state["outputs"] = sorted(set(state.get("outputs") or []) | set(self.planned))
        else:
            for path in self.remove:
                _remove_file(path, stop=self.out if path.is_relative_to(self.out) else rejected_folder(self.out))
            if self.drop_rejected:
                _remove_if_empty([rejected_folder(self.out)])
            state = {"version": STATE_VERSION, "config": config, "outputs": list(self.planned), "done": {}, "complete": False}
        self.remove_temporaries()
        if self.rejected is not None:
            _make_folder(self.rejected)
        _write_state(self.out, state)
        return state

    def remove_temporaries(self) -> None:
        """The temporary files of the shards and state toklab writes here (a killed run's, or a failed one's)."""
        if not self.owned:
            return
        folders = [(self.out, self.ours_out)] + ([(rejected_folder(self.out), self.ours_rejected)] if self.rejected_ours else [])
        for folder, names in folders:
            for name in _entries(folder):
                if _is_temporary(name, names):
                    _remove_file(folder / name, stop=folder, quiet=True)


def _remove_file(path: Path, stop: Path, quiet: bool = False) -> None:
    """Remove a file toklab wrote, then the folders it leaves empty, up to `stop` (kept)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        if quiet:
            return
        raise ToklabError(f"cannot remove {path}: {_why(exc)}") from exc
    parent = path.parent
    while parent != stop and parent.is_relative_to(stop):
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


def _outputs_intact(out: Path, rejected: Path | None, outcome: dict[str, Any]) -> bool:
    for folder, name, size in ((out, outcome.get("kept_file"), outcome.get("kept_file_bytes")), (rejected, outcome.get("rejected_file"), outcome.get("rejected_file_bytes"))):
        if folder is not None and name is not None and not ((folder / name).is_file() and (folder / name).stat().st_size == size):
            return False
    return True


def _estimate_bytes(item: Input) -> int | None:
    """Roughly how many bytes of text an input holds, without reading it."""
    path = Path(item.target)
    if item.kind == "parquet":
        try:
            import pyarrow.parquet as pq

            metadata = pq.ParquetFile(path).metadata
            return sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        except Exception:
            return None
    if item.kind in ("jsonl", "text") and path.is_file():
        compressed = path.name.lower().endswith((".gz", ".zst"))
        return path.stat().st_size * (UNCOMPRESSED_GUESS if compressed else 1)
    return None


class TrainingSample(Corpus):
    """A corpus capped at `max_bytes` that always holds at least one document: when the first
    sampled document alone is over the cap (or none is sampled at all), it is that document."""

    def _first(self) -> "Document | None":
        for sample in (self.options.sample, 1.0):
            first = Corpus(self.spec, self.inputs, replace(self.options, sample=sample, max_bytes=None, max_docs=1), self.description)
            for doc in first.documents():
                self.stats = first.stats
                return doc
        return None

    def documents(self, part: Any = None) -> Iterator["Document"]:
        yield from super().documents(part)
        if self.stats.documents == 0 and self.options.max_bytes is not None:
            doc = self._first()
            if doc is not None:
                yield doc

    def oversized(self) -> int | None:
        """The bytes of the one document the sample holds when that is over the cap, else None."""
        cap = self.options.max_bytes
        if cap is None:
            return None
        first = Corpus(self.spec, self.inputs, replace(self.options, max_bytes=None, max_docs=1), self.description)
        doc = next(iter(first.documents()), None)
        if doc is None:
            doc = self._first()
        return doc.n_bytes if doc is not None and doc.n_bytes > cap else None


def training_sample(corpus: Corpus, train_bytes: int) -> Corpus:
    """A hash-sampled part of `corpus` of about `train_bytes`, drawn from every shard, all in the
    train part; at least one document, even one larger than `train_bytes`."""
    sizes = [_estimate_bytes(item) for item in corpus.inputs]
    total = sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None
    fraction = min(1.0, 1.25 * train_bytes / total) if total else 1.0  # a little over, then capped
    options = replace(corpus.options, sample=max(fraction, 1e-6), max_bytes=train_bytes, max_docs=None, val_fraction=0.0)
    return TrainingSample(corpus.spec, corpus.inputs, options, corpus.description)


def _config(corpus: Corpus, rule: FilterRule, segmenter: "Segmenter | None", keep_rejected: bool) -> dict[str, Any]:
    """What decides the output; a resumed run must match it exactly."""
    from toklab import __version__

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
    **corpus_options: Any,
) -> FilterResult:
    """Filter `corpus` into `out`: keep a document iff tokens <= threshold * chars.

    `segmenter` is any spec (default: a BPE trained on about `train_bytes` of the input, cached),
    or a Segmenter. `by="zstd"` uses zstd bytes / raw bytes instead. `dry_run` or `sweep` (a list
    of thresholds to tabulate) measure only and write no shards. `keep_rejected` writes rejected
    and empty documents, with the reason, to `rejected_folder(out)`. An interrupted run continues
    with `resume=True`; `overwrite=True` replaces an earlier filter's output.
    """
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
        _check_paths(corpus, out_path, rejected_path)
        planned = [_output_name(item) for item in corpus.inputs]
        if len(set(planned)) < len(planned):
            raise ToklabError("two input shards would map to the same output shard (e.g. a.jsonl and a.jsonl.gz); filter them separately")
        folders = _OutputFolders(out_path, rejected_path, sorted(planned), resume, overwrite)
        lock = _OutLock(out_path)
    try:
        if folders is not None and lock is not None:
            created = _make_folder(out_path)  # type: ignore[arg-type]
            lock.acquire()
            folders.inspect()  # refuses a folder holding anything else before any work
        return _filter(corpus, rule, out_path, rejected_path, folders, segmenter, keep_rejected, sweep, workers, train_bytes, progress)
    except BaseException:
        if folders is not None:
            folders.remove_temporaries()  # a failed or interrupted run leaves its folder resumable
        raise
    finally:
        if lock is not None:
            lock.release()
        if created:
            _remove_if_empty(created)  # only when this run made --out and wrote nothing in it


def _filter(
    corpus: Corpus,
    rule: FilterRule,
    out_path: Path | None,
    rejected_path: Path | None,
    folders: "_OutputFolders | None",
    segmenter: "str | Segmenter | None",
    keep_rejected: bool,
    sweep: tuple[float, ...],
    workers: int,
    train_bytes: int,
    progress: bool,
) -> FilterResult:
    """filter_corpus once its arguments are checked and --out is locked and checked."""
    from toklab import __version__
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
            kept_path=out_path / _output_name(item) if out_path is not None else None,
            rejected_path=rejected_path / _output_name(item) if rejected_path is not None else None,
            sweep=sweep,
        )
        for i, item in enumerate(corpus.inputs)
        if str(i) not in state["done"]
    ]

    def record(outcome: dict[str, Any]) -> None:
        state["done"][str(outcome["index"])] = outcome
        if out_path is not None:
            _write_state(out_path, state)

    start = time.perf_counter()
    if len(jobs) > 1 and workers > 1:
        with step_progress("filtering shards", len(jobs), enabled=progress) as step:
            pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), initializer=_init_worker, initargs=(seg, os.getpid()))
            try:
                futures = {pool.submit(_run_job, job): job for job in jobs}
                for future in as_completed(futures):
                    step(futures[future].item.location)
                    record(future.result())
            except BaseException:
                _stop_pool(pool)
                raise
            pool.shutdown()
    else:
        with document_progress("filtering", enabled=progress) as advance:
            for job in jobs:
                record(filter_shard(job, seg, workers=workers, advance=advance))
    timings["filter"] = time.perf_counter() - start

    outcomes = [state["done"][str(i)] for i in range(len(corpus.inputs))]
    result = _combine(corpus, rule, seg, outcomes, out_path, rejected_path, sweep)
    result.resumed_shards = resumed
    result.notes += notes
    result.input_roots = corpus.input_roots()
    _count_check(result)
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


def _combine(corpus: Corpus, rule: FilterRule, seg: "Segmenter | None", outcomes: list[dict[str, Any]], out: Path | None, rejected: Path | None, sweep: tuple[float, ...]) -> FilterResult:
    """Sum the per-shard outcomes into one result."""
    import pandas as pd

    def total(key: str) -> int:
        return sum(o[key] for o in outcomes)

    sources: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        for name, tally in o["per_source"].items():
            into = sources.setdefault(name, {"docs": 0, "bytes": 0, "kept_docs": 0, "kept_bytes": 0, "empty": 0, "sweep": {}})
            for key in ("docs", "bytes", "kept_docs", "kept_bytes", "empty"):
                into[key] += tally[key]
            for t, (docs, n_bytes) in tally["sweep"].items():
                cell = into["sweep"].setdefault(t, [0, 0])
                cell[0] += docs
                cell[1] += n_bytes
    rows = []
    for name, s in sources.items():
        rejected_docs = s["docs"] - s["kept_docs"] - s["empty"]
        rows.append({
            "source": name, "docs": s["docs"], "bytes": s["bytes"], "kept_docs": s["kept_docs"], "kept_bytes": s["kept_bytes"],
            "rejected_docs": rejected_docs, "empty_docs": s["empty"], "dropped_bytes": s["bytes"] - s["kept_bytes"],
            "keep_rate_docs": s["kept_docs"] / s["docs"], "keep_rate_bytes": s["kept_bytes"] / s["bytes"] if s["bytes"] else 0.0,
        })  # fmt: skip
    columns = ["source", "docs", "bytes", "kept_docs", "kept_bytes", "rejected_docs", "empty_docs", "dropped_bytes", "keep_rate_docs", "keep_rate_bytes"]
    per_source = pd.DataFrame(rows, columns=columns).sort_values(["bytes", "source"], ascending=[False, True], kind="stable").reset_index(drop=True)

    sweep_table = None
    if sweep:
        documents, n_bytes = total("documents"), total("bytes")
        sweep_rows = []
        for t in sorted(sweep):
            kept_docs = sum(s["sweep"].get(repr(t), [0, 0])[0] for s in sources.values())
            kept_bytes = sum(s["sweep"].get(repr(t), [0, 0])[1] for s in sources.values())
            worst = min(sources.items(), key=lambda kv: (kv[1]["sweep"].get(repr(t), [0, 0])[1] / max(kv[1]["bytes"], 1), kv[0]))
            sweep_rows.append({
                "t": t, "kept_docs": kept_docs, "kept_bytes": kept_bytes,
                "keep_rate_docs": kept_docs / documents if documents else 0.0, "keep_rate_bytes": kept_bytes / n_bytes if n_bytes else 0.0,
                "sources_emptied": sum(1 for s in sources.values() if s["bytes"] and not s["sweep"].get(repr(t), [0, 0])[0]),
                "worst_source": worst[0], "worst_source_keep_rate_bytes": worst[1]["sweep"].get(repr(t), [0, 0])[1] / max(worst[1]["bytes"], 1),
            })  # fmt: skip
        sweep_table = pd.DataFrame(sweep_rows)

    hist = np.sum([np.array(o["hist"], dtype=np.int64) for o in outcomes], axis=0).tolist() if outcomes else []
    examples = _pick_examples([e for o in outcomes for e in o["examples"]])
    notes = []
    malformed = total("malformed")
    if malformed:
        where = ", ".join(e for o in outcomes for e in o.get("malformed_examples", []))
        notes.append(f"{malformed:,} malformed line{'s' if malformed != 1 else ''} skipped (at {where})")
    invalid = total("invalid_utf8")
    if invalid:
        notes.append(f"{invalid:,} document{'s' if invalid != 1 else ''} with invalid UTF-8, decoded with replacement")
    emptied = per_source[(per_source["kept_docs"] == 0) & (per_source["docs"] > per_source["empty_docs"])]
    if len(emptied):
        names = ", ".join(emptied["source"].head(8)) + (", ..." if len(emptied) > 8 else "")
        notes.append(f"{len(emptied)} source{'s' if len(emptied) != 1 else ''} lost every document: {names}")
    shards = [{k: o[k] for k in ("input", "kept_file", "rejected_file", "documents", "kept", "rejected", "empty", "seconds")} for o in outcomes]
    return FilterResult(
        corpus=corpus.spec, rule=rule, segmenter=seg.spec if seg is not None else None, vocab_size=seg.vocab_size if seg is not None else None, out=out, rejected_out=rejected,
        documents=total("documents"), kept=total("kept"), rejected=total("rejected"), empty=total("empty"),
        bytes=total("bytes"), kept_bytes=total("kept_bytes"), rejected_bytes=total("rejected_bytes"), malformed=malformed,
        per_source=per_source, histogram=hist, examples=examples, sweep=sweep_table, shards=shards, notes=notes,
    )  # fmt: skip


def count_rows(path: Path) -> int:
    """Rows in an output shard, read back from the file itself."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    from toklab.corpus.readers import _open_binary

    with _open_binary(path) as stream:
        return sum(1 for _ in stream)


def _count_check(result: FilterResult) -> None:
    """kept + rejected + empty == documents read, and the written shards hold exactly those rows."""
    problems = []
    if result.kept + result.rejected + result.empty != result.documents:
        problems.append(f"{result.kept:,} kept + {result.rejected:,} rejected + {result.empty:,} empty != {result.documents:,} read")
    if result.out is not None:
        kept_rows = sum(count_rows(result.out / s["kept_file"]) for s in result.shards if s["kept_file"])
        if kept_rows != result.kept:
            problems.append(f"the kept shards hold {kept_rows:,} rows, not {result.kept:,}")
    if result.rejected_out is not None:
        rejected_rows = sum(count_rows(result.rejected_out / s["rejected_file"]) for s in result.shards if s["rejected_file"])
        if rejected_rows != result.rejected + result.empty:
            problems.append(f"the rejected shards hold {rejected_rows:,} rows, not {result.rejected + result.empty:,}")
    result.conserved = not problems
    if problems:
        result.count_check = "count check FAILED: " + "; ".join(problems)
    else:
        where = " (the written shards were counted again)" if result.out is not None else ""
        result.count_check = f"count check passed: {result.documents:,} read = {result.kept:,} kept + {result.rejected:,} rejected + {result.empty:,} empty{where}"
