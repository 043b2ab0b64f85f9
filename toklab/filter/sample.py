"""The sample of the input that the default segmenter (a BPE, Cramming's "self" tokeniser) trains on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from toklab.corpus.corpus import Corpus, Input

if TYPE_CHECKING:
    from toklab.corpus.document import Document

DEFAULT_TRAIN_BYTES = 20_000_000
UNCOMPRESSED_GUESS = 4  # bytes of text per byte of a compressed shard, to size the training sample


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
