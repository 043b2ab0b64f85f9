"""Filtering one input shard: read it in bounded batches through the corpus layer, measure, decide,
tally (a ShardTally) and write its kept and rejected rows."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from toklab.corpus.corpus import Input, shard_stem
from toklab.corpus.readers import CorpusOptions, ReadContext, ReadStats, parquet_batches, to_document
from toklab.filter.rule import REASON_COLUMN, FilterRule
from toklab.filter.tally import ShardTally
from toklab.filter.writer import ShardOut, with_columns

if TYPE_CHECKING:
    from toklab.corpus.document import Document
    from toklab.segmenters import Segmenter

BATCH_DOCS = 1024
BATCH_BYTES = 8 * 2**20
HIST_WIDTH = 0.005  # ratio histogram bins; the last bin holds everything from HIST_MAX up
HIST_MAX = 4.0
EXAMPLES = 4  # rejected examples kept of each kind (most extreme, nearest the threshold)
SNIPPET_CHARS = 400


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


def output_name(item: Input) -> str:
    """The output shard's path relative to --out: the input's own, in the output format."""
    suffix = ".parquet" if item.kind in ("parquet", "saved", "stream") else ".jsonl.zst"
    location = Path(item.location)
    return (location.parent / (shard_stem(location) + suffix)).as_posix()


def _parquet_batches(job: ShardJob, ctx: ReadContext) -> Iterator[tuple[Any, list["Document | None"]]]:
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


def _record_batches(job: ShardJob, ctx: ReadContext) -> Iterator[tuple[list[dict[str, Any]], list["Document | None"]]]:
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


def filter_shard(job: ShardJob, segmenter: "Segmenter | None", workers: int = 1, advance: Any = None) -> ShardTally:
    """Filter one input shard; returns its counts, per-source tallies, histogram and examples."""
    start = time.perf_counter()
    rule = job.rule
    stats = ReadStats()
    ctx = job.item.context(job.options, stats)
    tally = ShardTally(index=job.index, input=job.item.location)
    hist = np.zeros(int(round(HIST_MAX / HIST_WIDTH)) + 1, dtype=np.int64)
    examples: list[dict[str, Any]] = []
    parquet_in = job.item.kind == "parquet"
    fmt = "parquet" if output_name(job.item).endswith(".parquet") else "jsonl.zst"
    kept_out = ShardOut(job.kept_path, fmt) if job.kept_path else None
    rejected_out = ShardOut(job.rejected_path, fmt) if job.rejected_path else None
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
            keep_text = rule.keeps(numerators, denominators)
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
                reason_col[i] = rule.reason(ratio_col[i])  # type: ignore[arg-type]

            n_bytes = np.zeros(n, dtype=np.int64)  # empty and malformed rows: 0
            n_bytes[text_rows] = [len(d) for d in data]
            tally.documents += int(present.sum())
            tally.kept += int(keep.sum())
            tally.rejected += int(reject.sum())
            tally.empty += int(empty.sum())
            tally.bytes += int(n_bytes.sum())
            tally.kept_bytes += int(n_bytes[keep].sum())
            tally.rejected_bytes += int(n_bytes[reject].sum())
            bins = np.minimum((ratios / HIST_WIDTH).astype(np.int64), len(hist) - 1)
            hist += np.bincount(bins, minlength=len(hist))
            sweep_keep = {t: rule.keeps(numerators, denominators, t) for t in sweep}
            per_source = tally.per_source
            text_position = {row: k for k, row in enumerate(text_rows)}
            for i in np.flatnonzero(present):
                doc = docs[i]
                counts = per_source.setdefault(doc.source, {"docs": 0, "bytes": 0, "kept_docs": 0, "kept_bytes": 0, "empty": 0, "sweep": {}})  # type: ignore[union-attr]
                counts["docs"] += 1
                counts["bytes"] += int(n_bytes[i])
                if keep[i]:
                    counts["kept_docs"] += 1
                    counts["kept_bytes"] += int(n_bytes[i])
                if empty[i]:
                    counts["empty"] += 1
                    continue
                for t in sweep:
                    if sweep_keep[t][text_position[i]]:
                        cell = counts["sweep"].setdefault(repr(t), [0, 0])
                        cell[0] += 1
                        cell[1] += int(n_bytes[i])
            for i in np.flatnonzero(reject):
                doc = docs[i]
                examples.append({"id": doc.id, "source": doc.source, "ratio": ratio_col[i], "chars": len(doc.text), "bytes": int(n_bytes[i]), "snippet": doc.text[:SNIPPET_CHARS]})  # type: ignore[union-attr]
            examples = pick_examples(examples)
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
            tally.kept_file_bytes = kept_out.close(with_columns(schema, [rule.column]) if parquet_in else None)
            tally.kept_file = output_name(job.item) if tally.kept_file_bytes else None
        if rejected_out:
            tally.rejected_file_bytes = rejected_out.close(with_columns(schema, [rule.column, REASON_COLUMN]) if parquet_in else None)
            tally.rejected_file = output_name(job.item) if tally.rejected_file_bytes else None
    except BaseException:
        for out in (kept_out, rejected_out):
            if out is not None:
                out.abort()
        raise
    tally.malformed = stats.malformed_lines
    tally.malformed_examples = stats.malformed_examples
    tally.invalid_utf8 = stats.invalid_utf8
    tally.hist = hist.tolist()
    tally.examples = examples
    tally.seconds = round(time.perf_counter() - start, 3)
    return tally


def pick_examples(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The most extreme rejected documents and those nearest the threshold, ties broken by id."""
    ordered = sorted(examples, key=lambda e: (e["ratio"], e["id"]))
    picked = ordered[:EXAMPLES] + ordered[max(EXAMPLES, len(ordered) - EXAMPLES):]
    return picked
