"""toklab on datatrove: pipeline steps for Hugging Face's datatrove, and `toklab filter --executor`.

Steps to drop into a datatrove pipeline (each task loads the segmenter from a saved folder; the
segmenter is trained or loaded once, in the process that builds the pipeline, never in a task):

- `CrammingFilter`: a `BaseFilter` keeping a document iff tokens <= t x chars (or zstd bytes <= t x
  bytes), decided by toklab.filter's `FilterRule`, the same rule `toklab filter` applies. It adds
  the ratio (`tokens_per_char` or `zstd_ratio`) to the metadata, sends rejects to an exclusion
  writer with `reject_reason`, and counts kept, rejected and empty documents and bytes, per source.
- `SegmenterStats`: each task writes the counts `toklab compare`'s figures follow from; after the
  run `merge_segmenter_stats` sums them and builds the compare table from the sums.
- `TokenShardWriter`: each task writes nanoGPT/llm.c `.bin` token shards; `finish_token_data`
  then writes the folder's manifest so `toklab.gpt.data.load_token_data` (and so `toklab pretrain`,
  when installed into the cache for the corpus) reads it.

`filter_on_datatrove` is `toklab filter` with datatrove running the shards: one step filters whole
input shards with toklab's own shard filter, so the kept (and rejected) shards are byte for byte
what `toklab filter` writes, and datatrove's completion markers let a rerun with --resume do only
the tasks that did not finish. Its logging folder is `<out>/.datatrove`.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from toklab.errors import ToklabError

NEEDS_DATATROVE = 'needs datatrove: pip install "toklab[datatrove]"'

try:
    from datatrove.data import Document, DocumentsPipeline
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.filters.base_filter import BaseFilter
except ImportError as exc:  # the CLI words this as its one-line error
    raise ImportError(f"toklab.datatrove {NEEDS_DATATROVE}") from exc

from toklab.filter.folders import ENGINE_FOLDER
from toklab.filter.rule import DEFAULT_THRESHOLD, REASON_COLUMN, FilterRule

if TYPE_CHECKING:
    from toklab.comparison import CompareResult
    from toklab.corpus import Corpus
    from toklab.filter import FilterResult, ShardJob
    from toklab.filter.tally import ShardTally
    from toklab.segmenters import Segmenter

EXECUTORS = ("local", "slurm", "ray")
SEGMENTER_ARCHIVE = "segmenter.tar"  # the saved folder, archived: no file of it can pass for a shard of --out
TALLIES = "tallies"
BATCH_DOCS = 256


# --- the segmenter, saved once and loaded in every task ------------------------------------------


def save_segmenter(segmenter: "str | Segmenter | os.PathLike", folder: str | os.PathLike | None = None, corpus: "str | Corpus | None" = None, train_bytes: int | None = None) -> Path:
    """A saved segmenter folder for the tasks: `segmenter` itself when it is one; else the spec is
    built (a trainable one trained on a sample of `corpus`, as `toklab filter` does, or on toklab's
    default corpus without one; the cache is used) and saved to `folder` (default: under the toklab
    cache). On a cluster, pass a `folder` every node can read."""
    from toklab.files import cache_dir, cache_key
    from toklab.segmenters import Segmenter, get_segmenter
    from toklab.segmenters.base import MANIFEST

    if not isinstance(segmenter, Segmenter):
        path = Path(segmenter).expanduser()
        if (path / MANIFEST).is_file():
            return path.resolve()
        sample = None
        if corpus is not None:
            from toklab.corpus import open_corpus
            from toklab.filter.sample import DEFAULT_TRAIN_BYTES, training_sample

            opened = open_corpus(corpus) if isinstance(corpus, str) else corpus
            sample = training_sample(opened, train_bytes or DEFAULT_TRAIN_BYTES)
        segmenter = get_segmenter(str(segmenter), sample)
    if folder is None:
        payload = json.dumps([segmenter.spec, segmenter.vocab_size, segmenter.corpus_fingerprint], default=str)
        folder = cache_dir() / "datatrove" / cache_key(segmenter.spec, payload)
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        segmenter.save(folder)
    return folder.resolve()


_loaded: dict[tuple[str, int, int], "Segmenter"] = {}  # per process: a worker that runs several tasks loads it once


def _load_segmenter(where: str) -> "Segmenter":
    """A task's segmenter: a saved folder, or the archive of one (unpacked into a temporary folder)."""
    path = Path(where)
    try:
        stat = path.stat()
    except OSError as exc:
        raise ToklabError(f"cannot read the saved segmenter {path}: {exc.strerror or exc}") from None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = _read_segmenter(path)
    return _loaded[key]


def _read_segmenter(path: Path) -> "Segmenter":
    from toklab.segmenters.registry import load_segmenter

    if path.is_dir():
        return load_segmenter(path)
    # unpacked for the life of this process: a kind may read its files after loading
    tmp = tempfile.mkdtemp(prefix="toklab-segmenter-")
    atexit.register(shutil.rmtree, tmp, True)
    with tarfile.open(path) as archive:
        try:
            archive.extractall(tmp, filter="data")
        except TypeError:  # a Python without tarfile's extraction filters (before 3.10.12/3.11.4); the archive is toklab's own
            archive.extractall(tmp)
    return load_segmenter(Path(tmp) / "segmenter")


def _archive_segmenter(segmenter: "Segmenter", path: Path) -> None:
    """Save `segmenter` and archive the folder at `path` (written whole, then renamed)."""
    from toklab.files import temp_name

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    with tempfile.TemporaryDirectory(prefix="toklab-segmenter-") as folder:
        saved = segmenter.save(Path(folder) / "segmenter")
        with tarfile.open(tmp, "w") as archive:
            archive.add(saved, arcname="segmenter")
    os.replace(tmp, path)


def _source(doc: Document, key: str) -> str:
    value = doc.metadata.get(key)
    return str(value) if value is not None else "unknown"


# --- CrammingFilter ---------------------------------------------------------------------------------


class CrammingFilter(BaseFilter):
    """Keep a document iff tokens <= threshold x chars (`by="tokens"`), or zstd bytes <= threshold x
    raw bytes (`by="zstd"`): toklab filter's rule (toklab.filter.rule.FilterRule), decided exactly.

    `segmenter`: a spec (a trainable one is trained once, here, on a sample of `corpus` or on
    toklab's default corpus), a Segmenter, or a saved folder. The ratio goes into each document's
    metadata (`tokens_per_char` or `zstd_ratio`); a rejected one carries `reject_reason` (the same
    text `toklab filter` writes, or "empty") and datatrove's `filter_reason` ("cramming" or "empty").
    Stats: kept, rejected, empty (documents) and *_bytes (UTF-8 bytes), and the same per source
    (`<source>/kept`, ...) from the `source_key` metadata field."""

    name = "toklab Cramming filter"

    def __init__(
        self,
        segmenter: "str | Segmenter | os.PathLike" = "bpe:32k",
        threshold: float | None = None,
        by: str = "tokens",
        exclusion_writer: Any = None,
        batch_size: int = BATCH_DOCS,
        corpus: "str | Corpus | None" = None,
        segmenter_folder: str | os.PathLike | None = None,
        source_key: str = "source",
    ) -> None:
        super().__init__(exclusion_writer, batch_size)
        self.rule = FilterRule(by, threshold if threshold is not None else DEFAULT_THRESHOLD.get(by, 0.3))
        self.segmenter_dir = str(save_segmenter(segmenter, segmenter_folder, corpus)) if by == "tokens" else None
        self.source_key = source_key
        self._segmenter: "Segmenter | None" = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_segmenter": None}  # tasks load it from the folder

    def _seg(self) -> "Segmenter | None":
        if self._segmenter is None and self.segmenter_dir is not None:
            self._segmenter = _load_segmenter(self.segmenter_dir)
        return self._segmenter

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        rule = self.rule
        rows = [i for i, d in enumerate(batch) if d.text]
        texts = [batch[i].text for i in rows]
        data = [t.encode("utf-8", "surrogatepass") for t in texts]
        if texts:
            numerators, denominators = rule.measure(texts, data, self._seg(), workers=1)
        else:
            numerators = denominators = np.zeros(0, dtype=np.int64)
        ratios = (numerators / np.maximum(denominators, 1)).tolist()  # what toklab filter writes
        keeps = rule.keeps(numerators, denominators).tolist()
        results: list[bool | tuple[bool, str]] = [(False, "empty")] * len(batch)
        for doc in batch:
            if not doc.text:
                doc.metadata[REASON_COLUMN] = "empty"
                self._count(doc, "empty", 0)
        for i, ratio, keep, size in zip(rows, ratios, keeps, (len(d) for d in data)):
            doc = batch[i]
            doc.metadata[rule.column] = ratio
            if keep:
                results[i] = True
                self._count(doc, "kept", size)
            else:
                doc.metadata[REASON_COLUMN] = rule.reason(ratio)
                results[i] = (False, "cramming")
                self._count(doc, "rejected", size)
        return results

    def _count(self, doc: Document, what: str, size: int) -> None:
        source = _source(doc, self.source_key)
        self.stat_update(what, f"{source}/{what}")
        self.stat_update("bytes", f"{what}_bytes", f"{source}/bytes", f"{source}/{what}_bytes", value=size, unit="bytes")


def filter_stats(stats: dict[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """CrammingFilter's counts from a datatrove stats file (or its JSON): documents, kept, rejected,
    empty and their bytes, overall and {"per_source": {source: ...}}."""
    if not isinstance(stats, dict) and not isinstance(stats, list):
        stats = json.loads(Path(stats).read_text())
    steps = stats if isinstance(stats, list) else [stats]
    found = [s for s in steps if isinstance(s, dict) and CrammingFilter.name in str(s.get("name", ""))]
    if not found:
        raise ToklabError("the stats hold no toklab Cramming filter step")
    counters = found[0]["stats"]
    out: dict[str, Any] = {"per_source": {}}
    for key, value in counters.items():
        total = int(value["total"]) if isinstance(value, dict) else int(value)
        if "/" in key:
            source, what = key.rsplit("/", 1)
            out["per_source"].setdefault(source, {})[what] = total
        elif key in ("kept", "rejected", "empty", "bytes", "kept_bytes", "rejected_bytes", "empty_bytes"):
            out[key] = total
    for into in [out, *out["per_source"].values()]:
        for key in ("kept", "rejected", "empty", "bytes", "kept_bytes", "rejected_bytes"):
            into.setdefault(key, 0)
        into["documents"] = into["kept"] + into["rejected"] + into["empty"]
    return out


# --- SegmenterStats -------------------------------------------------------------------------------


class SegmenterStats(PipelineStep):
    """Per-task compression counts of each segmenter over the documents passing through (which it
    passes on unchanged): tokens, chars, bytes and words (spaced documents apart, as tokens/word
    needs), how often each id occurs, the Cramming keep counts at `threshold`, and per source.
    Each task writes `<output_folder>/<rank>.json` and `.npz`; `merge_segmenter_stats` sums them into
    the table `toklab compare` prints."""

    name = "toklab segmenter stats"
    type = "📊 - STATS"

    def __init__(
        self,
        segmenters: Sequence["str | Segmenter | os.PathLike"],
        output_folder: str | os.PathLike,
        threshold: float = 0.3,
        corpus: "str | Corpus | None" = None,
        source_key: str = "source",
        batch_size: int = BATCH_DOCS,
    ) -> None:
        from toklab.measures import check_threshold

        super().__init__()
        if not segmenters:
            raise ToklabError("SegmenterStats needs at least one segmenter")
        self.folders = [str(save_segmenter(s, corpus=corpus)) for s in segmenters]
        self.output_folder = str(output_folder)
        self.threshold = check_threshold(threshold)
        self.source_key, self.batch_size = source_key, batch_size

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from toklab.comparison import _count_ids  # compare's own counting: the same ids, counted the same way
        from toklab.measures import TextStats, at_most

        segs = [_load_segmenter(f) for f in self.folders]
        sums = [_empty_sums(seg) for seg in segs]
        seconds = [0.0] * len(segs)
        batch: list[Document] = []

        def measure(docs: list[Document]) -> None:
            texts = [d.text for d in docs]
            stats = TextStats.of(texts)
            sources = [_source(d, self.source_key) for d in docs]
            for k, seg in enumerate(segs):
                start = time.perf_counter()
                tokens, counts, _ = _count_ids(seg, texts, round_trip=False)
                seconds[k] += time.perf_counter() - start
                into = sums[k]
                into["counts"] += counts
                for spaced in (True, False):
                    pick = stats.spaced == spaced
                    cell = into["spaced" if spaced else "unspaced"]
                    for name, values in (("tokens", tokens), ("chars", stats.chars), ("bytes", stats.bytes), ("words", stats.words)):
                        cell[name] += int(values[pick].sum())
                kept = at_most(tokens, stats.chars, self.threshold)
                into["documents"] += len(docs)
                into["kept_docs"] += int(kept.sum())
                into["kept_bytes"] += int(stats.bytes[kept].sum())
                for source, n_tokens, n_bytes in zip(sources, tokens.tolist(), stats.bytes.tolist()):
                    cell = into["per_source"].setdefault(source, {"documents": 0, "bytes": 0, "tokens": 0})
                    cell["documents"] += 1
                    cell["bytes"] += n_bytes
                    cell["tokens"] += n_tokens
            self.stat_update("documents", value=len(docs))

        for doc in data or ():
            batch.append(doc)
            if len(batch) >= self.batch_size:
                with self.track_time("batch"):
                    measure(batch)
                yield from batch
                batch = []
        if batch:
            with self.track_time("batch"):
                measure(batch)
            yield from batch
        _write_task_stats(Path(self.output_folder), rank, segs, sums, seconds, self.threshold)


def _empty_sums(seg: "Segmenter") -> dict[str, Any]:
    zero = {"tokens": 0, "chars": 0, "bytes": 0, "words": 0}
    return {"documents": 0, "kept_docs": 0, "kept_bytes": 0, "spaced": dict(zero), "unspaced": dict(zero), "per_source": {}, "counts": np.zeros(seg.vocab_size, dtype=np.int64)}


def _write_task_stats(folder: Path, rank: int, segs: list["Segmenter"], sums: list[dict[str, Any]], seconds: list[float], threshold: float) -> None:
    from toklab.files import temp_name

    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "threshold": threshold,
        "segmenters": [
            {"spec": seg.spec, "kind": seg.kind, "vocab_size": seg.vocab_size, "lossless": seg.lossless, "seconds": s, **{k: v for k, v in into.items() if k != "counts"}}
            for seg, into, s in zip(segs, sums, seconds)
        ],
    }
    counts = folder / f"{rank:05d}.npz"
    tmp = temp_name(counts)
    with open(tmp, "wb") as f:
        np.savez(f, *[into["counts"] for into in sums])
    os.replace(tmp, counts)
    path = folder / f"{rank:05d}.json"  # written last: a task's stats count once both files are whole
    tmp = temp_name(path)
    tmp.write_text(json.dumps(meta) + "\n")
    os.replace(tmp, path)


def merge_segmenter_stats(folder: str | os.PathLike, tasks: int | None = None) -> "CompareResult":
    """Sum every task's SegmenterStats in `folder` into the table `toklab compare` prints (a
    CompareResult: `table` and `per_source`, for toklab.reports). Every figure follows from the sums
    through compare's own functions (measures.counted_row, comparison's per-source table); mb_per_s
    is the summed bytes over the summed encode seconds of the tasks. `tasks`: refuse fewer files.
    Not as compare: `lossless` is the segmenter's claim (compare also round-trips its first 200
    documents), and no kind-specific extra columns (a patcher's patch lengths) are added."""
    import pandas as pd

    from toklab.comparison import COLUMNS, CompareResult, _per_source_table
    from toklab.gpt.flops import REFERENCE_SHAPE
    from toklab.measures import TextStats, counted_row

    folder = Path(folder)
    files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    if not files or (tasks is not None and len(files) < tasks):
        raise ToklabError(f"{folder} holds the stats of {len(files)} tasks" + (f", not {tasks}" if tasks is not None else ""))
    merged: list[dict[str, Any]] | None = None
    threshold = None
    for path in files:
        meta = json.loads(path.read_text())
        with np.load(path.with_suffix(".npz")) as arrays:
            counts = [arrays[f"arr_{k}"] for k in range(len(meta["segmenters"]))]
        if merged is None:
            merged = [{**s, "counts": c.astype(np.int64)} for s, c in zip(meta["segmenters"], counts)]
            threshold = meta["threshold"]
            continue
        if [s["spec"] for s in meta["segmenters"]] != [s["spec"] for s in merged] or meta["threshold"] != threshold:
            raise ToklabError(f"{path} was written by another SegmenterStats (other segmenters or threshold)")
        for into, s, c in zip(merged, meta["segmenters"], counts):
            into["counts"] = into["counts"] + c
            for key in ("documents", "kept_docs", "kept_bytes", "seconds"):
                into[key] += s[key]
            for part in ("spaced", "unspaced"):
                for key, value in s[part].items():
                    into[part][key] += value
            for source, cell in s["per_source"].items():
                target = into["per_source"].setdefault(source, {"documents": 0, "bytes": 0, "tokens": 0})
                for key, value in cell.items():
                    target[key] += value
    assert merged is not None and threshold is not None
    rows, long = [], []
    for s in merged:
        # Two summed "documents", the spaced ones and the rest: every figure of counted_row is a ratio
        # of sums over documents (tokens/word over the spaced ones only), so these give the same values.
        parts = [s["spaced"], s["unspaced"]]
        stats = TextStats(
            chars=np.array([p["chars"] for p in parts], dtype=np.int64), bytes=np.array([p["bytes"] for p in parts], dtype=np.int64),
            words=np.array([p["words"] for p in parts], dtype=np.int64), spaced=np.array([True, False]),
        )  # fmt: skip
        tokens = np.array([p["tokens"] for p in parts], dtype=np.int64)
        row: dict[str, Any] = {"segmenter": s["spec"], "kind": s["kind"], "lossless": s["lossless"]}
        row.update(counted_row(tokens, s["counts"], stats, s["vocab_size"], threshold=threshold, shape=REFERENCE_SHAPE))
        n_bytes = int(stats.bytes.sum())
        # the keep rates are per document: the tasks counted them with the same exact test
        row["keep_rate_docs"] = s["kept_docs"] / s["documents"] if s["documents"] else 0.0
        row["keep_rate_bytes"] = s["kept_bytes"] / max(n_bytes, 1) if s["documents"] else 0.0
        row["mb_per_s"] = n_bytes / 1e6 / s["seconds"] if s["seconds"] > 0 else float("nan")
        rows.append(row)
        long += [{"segmenter": s["spec"], "source": source, **cell} for source, cell in s["per_source"].items()]
    table = pd.DataFrame(rows)
    table = table[[c for c in COLUMNS if c in table.columns] + [c for c in table.columns if c not in COLUMNS]]
    long_frame = pd.DataFrame(long, columns=["segmenter", "source", "documents", "bytes", "tokens"])
    meta = {"corpus": str(folder), "documents": merged[0]["documents"], "bytes": int(merged[0]["spaced"]["bytes"] + merged[0]["unspaced"]["bytes"]), "threshold": threshold, "tasks": len(files)}
    return CompareResult(table=table, per_source=_per_source_table(long_frame), meta=meta)


# --- TokenShardWriter -------------------------------------------------------------------------------


class TokenShardWriter(PipelineStep):
    """Write each task's documents as toklab token shards (nanoGPT/llm.c `.bin`, toklab.gpt.data's
    `write_shard`): <|endoftext|> first and after every document, train and val split by toklab's
    hash of the document id (`split_of`, the split `toklab pretrain` uses), at most `shard_tokens`
    a shard. Files: `<split>_<rank>_<n>.bin` and `task_<rank>.json`. After the run,
    `finish_token_data` writes the manifest, byte-length table and validation index."""

    name = "toklab token shards"
    type = "💽 - WRITER"

    def __init__(self, output_folder: str | os.PathLike, segmenter: "str | Segmenter | os.PathLike", val_fraction: float = 0.1, shard_tokens: int = 100_000_000, corpus: "str | Corpus | None" = None, source_key: str = "source") -> None:
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise ToklabError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if shard_tokens < 1:
            raise ToklabError(f"shard_tokens must be positive, got {shard_tokens}")
        self.output_folder, self.segmenter_dir = str(output_folder), str(save_segmenter(segmenter, corpus=corpus))
        self.val_fraction, self.shard_tokens, self.source_key = val_fraction, shard_tokens, source_key

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from toklab.corpus.document import split_of
        from toklab.gpt.data import ShardWriter, check_byte_contract, eot_id

        seg = _load_segmenter(self.segmenter_dir)
        eot = np.array([eot_id(seg)], dtype=np.int64)
        lengths = np.asarray(seg.token_byte_lengths(), dtype=np.int64)
        folder = Path(self.output_folder)
        folder.mkdir(parents=True, exist_ok=True)
        writers = {s: ShardWriter(folder, s, self.shard_tokens, seg.vocab_size, prefix=f"{s}_{rank:05d}") for s in ("train", "val")}
        counts = {s: {"documents": 0, "bytes": 0} for s in writers}
        for writer in writers.values():
            writer.add(eot)  # the first document gets the same context start as the rest
        index: list[dict[str, Any]] = []

        def add(docs: list[Document]) -> None:
            parts: dict[int, list[np.ndarray]] = {}
            for i, _, piece in seg.encode_pieces([d.text for d in docs]):
                parts.setdefault(i, []).append(np.asarray(piece, dtype=np.int64))
            for i, doc in enumerate(docs):
                ids = np.concatenate(parts[i]) if i in parts else np.zeros(0, dtype=np.int64)
                split = split_of(doc.id, self.val_fraction)
                writer = writers[split]
                size = len(doc.text.encode("utf-8", "surrogatepass"))
                if split == "val":
                    check_byte_contract(seg, doc.id, int(lengths[ids].sum()) if ids.size else 0, size)
                    index.append({"id": doc.id, "source": _source(doc, self.source_key), "bytes": size, "tokens": int(ids.size), "start": writer.tokens})
                writer.add(ids)
                writer.add(eot)
                counts[split]["documents"] += 1
                counts[split]["bytes"] += size
            self.stat_update("documents", value=len(docs))

        batch: list[Document] = []
        for doc in data or ():
            batch.append(doc)
            if len(batch) >= BATCH_DOCS:
                add(batch)
                yield from batch
                batch = []
        if batch:
            add(batch)
            yield from batch
        splits = {s: {**counts[s], "tokens": writer.tokens, "shards": writer.close()} for s, writer in writers.items()}
        from toklab.files import temp_name

        summary = {"rank": rank, "splits": {s: {k: c[k] for k in ("documents", "tokens", "bytes", "shards")} for s, c in splits.items()}, "val_index": index}
        path = folder / f"task_{rank:05d}.json"
        tmp = temp_name(path)
        tmp.write_text(json.dumps(summary) + "\n")
        os.replace(tmp, path)


def finish_token_data(folder: str | os.PathLike, segmenter: "str | Segmenter | os.PathLike", corpus: "str | Corpus | None" = None) -> Path:
    """Join the tasks' token shards in `folder` into one token folder (`manifest.json`,
    `byte_lengths.npy`, `val_documents.parquet`, as toklab.gpt.data writes them), which
    `load_token_data(folder)` reads. With `corpus` (the input the pipeline read, opened by toklab
    with the same val fraction), the folder is also installed where `toklab pretrain <corpus>` looks
    for that corpus's token data with this segmenter, so pretrain trains on these shards. Returns
    the folder (or the installed copy)."""
    from toklab.gpt.data import BYTE_LENGTHS, DTYPES, FORMAT, MANIFEST, VAL_INDEX, eot_id, load_token_data, read_header, write_val_index

    folder = Path(folder)
    seg = _load_segmenter(str(save_segmenter(segmenter)))
    tasks = sorted(folder.glob("task_*.json"))
    if not tasks:
        raise ToklabError(f"{folder} holds no TokenShardWriter task files")
    splits: dict[str, dict[str, Any]] = {s: {"documents": 0, "tokens": 0, "bytes": 0, "shards": []} for s in ("train", "val")}
    index: list[dict[str, Any]] = []
    for path in tasks:  # in rank order: the split's stream is the tasks' streams one after another
        task = json.loads(path.read_text())
        offset = splits["val"]["tokens"]
        index += [{**row, "start": row["start"] + offset} for row in task["val_index"]]
        for split, cell in task["splits"].items():
            for key in ("documents", "tokens", "bytes"):
                splits[split][key] += cell[key]
            splits[split]["shards"] += cell["shards"]
    val_fraction = None
    if corpus is not None:
        from toklab.corpus import open_corpus

        corpus = open_corpus(corpus) if isinstance(corpus, str) else corpus
        val_fraction = corpus.options.val_fraction
    manifest = {
        "format": FORMAT, "segmenter": seg.spec, "segmenter_corpus_fingerprint": seg.corpus_fingerprint, "vocab_size": seg.vocab_size,
        "eot": eot_id(seg), "dtype": DTYPES[read_header(folder / splits["val"]["shards"][0])[1]].name, "corpus": str(getattr(corpus, "spec", folder)),
        "corpus_fingerprint": corpus.fingerprint() if corpus is not None else None, "val_fraction": val_fraction,
        "shard_tokens": None, "splits": splits, "read_notes": [], "written_by": "toklab.datatrove.TokenShardWriter", "tasks": len(tasks),
    }  # fmt: skip
    write_val_index(folder / VAL_INDEX, index)
    np.save(folder / BYTE_LENGTHS, np.asarray(seg.token_byte_lengths(), dtype=np.int64))
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    load_token_data(folder)  # checks every shard against the manifest
    if corpus is None:
        return folder
    from toklab.files import atomic_dir, cache_dir
    from toklab.gpt.data import token_data_key

    target = cache_dir() / "tokens" / token_data_key(corpus, seg)
    with atomic_dir(target) as tmp:
        for name in [*splits["train"]["shards"], *splits["val"]["shards"], VAL_INDEX, BYTE_LENGTHS, MANIFEST]:
            shutil.copy2(folder / name, tmp / name)
    return target


# --- toklab filter on a datatrove executor -----------------------------------------------------------


class FilterShards(PipelineStep):
    """`toklab filter`'s work as one datatrove step: each task filters the input shards whose index
    is its rank modulo the tasks, with toklab's own shard filter (so its output shards are the ones
    `toklab filter` writes), and leaves each shard's tally in `tallies/<index>.json`. A shard whose
    tally is there is done (an earlier attempt of the task got that far)."""

    name = "toklab filter shards"
    type = "🔻 - FILTER"

    def __init__(self, jobs: Sequence["ShardJob"], segmenter: str | None, tallies: str) -> None:
        super().__init__()
        self.jobs, self.segmenter, self.tallies = list(jobs), segmenter, tallies

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import toklab.filter as toklab_filter  # looked up at each call, so tests can stop a task
        from toklab.files import temp_name

        if data:
            yield from data
        mine = [job for job in self.jobs if job.index % world_size == rank]
        if not mine:
            return
        seg = _load_segmenter(self.segmenter) if self.segmenter else None
        folder = Path(self.tallies)
        folder.mkdir(parents=True, exist_ok=True)
        for job in mine:
            path = folder / f"{job.index:06d}.json"
            if path.is_file():
                continue
            with self.track_time("shard"):
                tally = toklab_filter.filter_shard(job, seg, workers=1)
            tmp = temp_name(path)
            tmp.write_text(json.dumps(tally.to_json(), default=str) + "\n")
            os.replace(tmp, path)
            self.stat_update("shards")
            for key in ("documents", "kept", "rejected", "empty"):
                self.stat_update(key, value=getattr(tally, key))
            for key in ("bytes", "kept_bytes", "rejected_bytes"):
                self.stat_update(key, value=getattr(tally, key), unit="bytes")


@dataclass
class ExecutorOptions:
    """Which datatrove executor runs the filter, and its settings."""

    executor: str = "local"
    tasks: int = 1
    workers: int = -1  # tasks at once (local, ray, slurm's array limit); -1: one per core (local), all (ray, slurm)
    partition: str | None = None  # slurm
    time: str | None = None  # slurm, e.g. "4:00:00"
    ray_address: str | None = None  # ray: the cluster to join (default: a running or new local instance)
    cpus_per_task: int = 1
    mem_per_cpu_gb: float = 2.0
    poll_s: float = 30.0  # slurm: how often the run looks for finished tasks
    extra: dict[str, Any] = field(default_factory=dict)  # more keyword arguments for the executor

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ToklabError(f"--executor must be one of {', '.join(EXECUTORS)} (or pool, the default), got '{self.executor}'")
        if self.tasks < 1:
            raise ToklabError(f"--tasks must be at least 1, got {self.tasks}")
        if self.executor == "slurm" and not (self.partition and self.time):
            raise ToklabError("--executor slurm needs --partition and --time (e.g. --time 4:00:00)")


def build_executor(pipeline: list[Any], options: ExecutorOptions, logging_dir: str | os.PathLike) -> Any:
    """The datatrove executor `options` names, over `pipeline`, logging to `logging_dir`."""
    logging_dir = str(logging_dir)
    if options.executor == "local":
        from datatrove.executor import LocalPipelineExecutor

        # fork, as toklab's own pool: forkserver (datatrove's default) re-imports the caller's __main__
        # in every task, which re-runs a script that has no `if __name__ == "__main__"` guard
        extra = {"start_method": "fork", **options.extra}
        workers = options.workers if options.workers > 0 else min(options.tasks, os.cpu_count() or 1)  # default: one task per core
        return LocalPipelineExecutor(pipeline, tasks=options.tasks, workers=workers, logging_dir=logging_dir, **extra)
    if options.executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(
            pipeline, tasks=options.tasks, time=options.time, partition=options.partition, workers=options.workers,
            cpus_per_task=options.cpus_per_task, mem_per_cpu_gb=options.mem_per_cpu_gb, logging_dir=logging_dir, job_name="toklab-filter", **options.extra,
        )  # fmt: skip
    from datatrove.executor import RayPipelineExecutor

    return RayPipelineExecutor(pipeline, tasks=options.tasks, workers=options.workers, cpus_per_task=options.cpus_per_task, mem_per_cpu_gb=options.mem_per_cpu_gb, logging_dir=logging_dir, **options.extra)


_forking_for: list[int] = []  # the pid of a run whose local executor is forking its processes


def _after_fork() -> None:
    """In a process the local executor forks (its task pool, its multiprocess Manager): set up as
    toklab's own pool workers are, so the --out lock stays the run's alone and the process ends when
    the run dies (killed, say) instead of living on and holding the lock's copy."""
    if _forking_for and os.getppid() == _forking_for[0]:
        from toklab.filter.workers import init_worker

        init_worker(None, _forking_for[0])


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class DatatroveRunner:
    """filter_corpus's `runner`: the shards go to a datatrove executor instead of the process pool."""

    def __init__(self, options: ExecutorOptions) -> None:
        self.options = options

    @property
    def settings(self) -> dict[str, Any]:
        # what decides which task filters which shard, so a --resume must keep it
        return {"engine": "datatrove", "tasks": self.options.tasks}

    def run(self, jobs: list["ShardJob"], seg: "Segmenter | None", record: Callable[["ShardTally"], None], out: Path) -> None:
        from toklab.filter.tally import ShardTally

        logs = out / ENGINE_FOLDER
        tallies = logs / TALLIES
        archive = logs / SEGMENTER_ARCHIVE
        if seg is not None and not archive.is_file():  # a resumed run kept it: the config says it is the same segmenter
            _archive_segmenter(seg, archive)
        tasks = self.options.tasks
        for job in jobs:  # a tally whose shard is gone (removed by hand since) is done again, with its task
            path = tallies / f"{job.index:06d}.json"
            if path.is_file() and not _intact(out, job, ShardTally.from_json(json.loads(path.read_text()))):
                path.unlink()
                (logs / "completions" / f"{job.index % tasks:05d}").unlink(missing_ok=True)
        step = FilterShards(jobs, str(archive) if seg is not None else None, str(tallies))
        executor = build_executor([step], self.options, logs)
        recorded: set[int] = set()

        def collect() -> None:
            for job in jobs:
                path = tallies / f"{job.index:06d}.json"
                if job.index not in recorded and path.is_file():
                    record(ShardTally.from_json(json.loads(path.read_text())))
                    recorded.add(job.index)

        try:
            if self.options.executor == "ray":
                import ray

                if not ray.is_initialized():
                    ray.init(address=self.options.ray_address)
            _forking_for[:] = [os.getpid()]
            try:
                executor.run()
            finally:
                _forking_for.clear()
            if self.options.executor == "slurm":
                self._wait(executor)
        finally:
            collect()  # what finished counts, even when a task failed: --resume starts from there
        missing = [job.item.location for job in jobs if job.index not in recorded]
        if missing:
            raise ToklabError(f"{len(missing)} shard{'s' if len(missing) != 1 else ''} not filtered (e.g. {missing[0]}); see {logs / 'logs'} and rerun with --resume")

    def _wait(self, executor: Any) -> None:
        """Slurm: datatrove submits and returns; wait for the tasks' completion markers, and stop
        when the job has left the queue without them."""
        while executor.get_incomplete_ranks():
            job_id = getattr(executor, "job_id", None)
            if job_id:
                try:
                    queued = subprocess.run(["squeue", "-h", "-j", str(job_id)], capture_output=True, text=True)
                except OSError:  # no squeue here: wait for the markers alone
                    queued = None
                if queued is not None and queued.returncode == 0 and not queued.stdout.strip() and executor.get_incomplete_ranks():
                    return  # the job ended: the shards without a tally are reported as not filtered
            time.sleep(self.options.poll_s)


def _intact(out: Path, job: "ShardJob", tally: "ShardTally") -> bool:
    for path, name, size in ((job.kept_path, tally.kept_file, tally.kept_file_bytes), (job.rejected_path, tally.rejected_file, tally.rejected_file_bytes)):
        if path is not None and name is not None and not (path.is_file() and path.stat().st_size == size):
            return False
    return True


def filter_on_datatrove(corpus: "str | Corpus", out: str | os.PathLike, *, executor: str = "local", tasks: int = 1, workers: int = -1, partition: str | None = None, time: str | None = None, ray_address: str | None = None, **filter_options: Any) -> "FilterResult":
    """`toklab.filter.filter_corpus` with the shards filtered by a datatrove executor (`executor`:
    local, slurm or ray) in `tasks` tasks, `workers` at once: the same kept shards, state file and
    result. The segmenter is trained (or loaded from the cache) here, once, and shipped to the
    tasks saved in `<out>/.datatrove`, where datatrove also keeps its logs and completion markers;
    an interrupted run continues with `resume=True`, running only the tasks that did not finish."""
    from toklab.filter import filter_corpus

    import importlib.util

    options = ExecutorOptions(executor=executor, tasks=tasks, workers=workers, partition=partition, time=time, ray_address=ray_address)
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise ToklabError("--executor slurm needs sbatch on the PATH: run it where jobs are submitted (a Slurm login node)")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ToklabError("--executor ray needs ray: pip install ray")
    result = filter_corpus(corpus, out, runner=DatatroveRunner(options), **filter_options)
    logs = Path(out).expanduser().resolve() / ENGINE_FOLDER
    result.meta["executor"] = {"engine": "datatrove", "executor": executor, "tasks": tasks, "workers": workers, "logging_dir": str(logs)}
    result.notes.append(f"filtered on datatrove's {executor} executor in {tasks} task{'s' if tasks != 1 else ''}; its logs, stats and completion markers are in {logs}")
    return result


def documents(texts: Iterable[tuple[str, str, str]]) -> list[Document]:
    """datatrove Documents from (id, text, source) triples: a helper for small pipelines and tests."""
    return [Document(text=text, id=doc_id, metadata={"source": source}) for doc_id, text, source in texts]
