"""`compare`: compression tables for segmenters and classic compressors on the same held-out text.

Trainable segmenters train on the train split only; every figure is measured on the validation
split, the same bytes for every row. On parallel text (`parallel`) a fairness section is added
(toklab.fairness): parity across languages, measured on every document that has a language, of
both splits, since a validation split of 10% rarely holds the reference language.
"""

from __future__ import annotations

import datetime
import itertools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from toklab.errors import ToklabError
from toklab.fairness import DEFAULT_REFERENCE, Fairness, analyse, language_key, resolve_reference
from toklab.text import count
from toklab.gpt.flops import REFERENCE_SHAPE, ModelShape
from toklab.measures import TextStats, check_threshold, compressor_rows, counted_row

if TYPE_CHECKING:
    import pandas as pd

    from toklab.corpus import Corpus, CorpusOptions

DEFAULT_SEGMENTERS = ["bytes", "bpe:32k", "unigram:32k", "entropy:target=4.5", "zstd-dict:32k"]
TIKTOKEN_ENCODINGS = ["gpt2", "p50k_base", "cl100k_base", "o200k_base"]  # r50k_base is gpt2 under another name
COLUMNS = [
    "segmenter", "kind", "vocab_size", "tokens_per_char", "chars_per_token", "bytes_per_token", "tokens_per_word",
    "bits_per_byte", "renyi_efficiency", "vocab_utilisation", "keep_rate_docs", "keep_rate_bytes", "mb_per_s",
    "lossless", "train_flops_per_mb", "tokens",
]  # fmt: skip
ROUND_TRIP_SAMPLE = 200  # documents whose decode(encode(text)) is checked for every segmenter
COUNT_BATCH_IDS = 1 << 22  # ids gathered before they are counted into the per-id histogram
DICTIONARY_SAMPLE_BYTES = 8_000_000


@dataclass
class CompareResult:
    """A compare run: the main table, bytes/token per source, and what was measured how."""

    table: "pd.DataFrame"
    per_source: "pd.DataFrame"  # index: segmenter; columns: sources (largest first), worst_source, worst_bytes_per_token
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    inputs: list[Path] = field(default_factory=list, repr=False)  # the corpus's folders and files: no report goes inside them
    fairness: Fairness | None = None  # parallel text only: parity across languages (toklab.fairness)


def default_segmenters() -> list[str]:
    """bytes, bpe:32k, unigram:32k, entropy patches, zstd-dict:32k and every distinct tiktoken encoding (unavailable ones are skipped)."""
    return DEFAULT_SEGMENTERS + [f"tiktoken:{name}" for name in TIKTOKEN_ENCODINGS]


def default_out(corpus: "Corpus", segmenters: Sequence[str] | None = None, threshold: float = 0.3) -> Path:
    """The report folder when none is given: reports/compare-<corpus>, then the segmenters when
    they are not the default ones and the threshold when it is not 0.3, so that a run with other
    segmenters does not replace the default run's report."""
    from toklab.files import default_output

    specs = list(segmenters) if segmenters is not None else default_segmenters()
    named = "_".join(specs) if specs != default_segmenters() else ""
    return default_output("compare", corpus.label, named, f"t{threshold:g}" if threshold != 0.3 else "")


def _collapse_tiktoken_notes(notes: list[str]) -> list[str]:
    missing = [n.split(":", 2)[1] for n in notes if n.startswith("skipped tiktoken:")]
    rest = [n for n in notes if not n.startswith("skipped tiktoken:")]
    if missing:
        rest.append(f"skipped tiktoken encodings not available offline ({', '.join(missing)}); set TIKTOKEN_CACHE_DIR to a folder holding their files")
    return rest


def run_compare(
    corpus: "str | Corpus" = "default",
    segmenters: Sequence[str] | None = None,
    *,
    compressors: bool = True,
    threshold: float = 0.3,
    shape: ModelShape = REFERENCE_SHAPE,
    progress: bool = False,
    out: str | os.PathLike | None = None,
    parallel: bool | None = None,
    reference: str = DEFAULT_REFERENCE,
    **corpus_options: Any,
) -> CompareResult:
    """Measure every segmenter (and the compressors) on the validation split of `corpus`.

    Every spec is checked before any work (a mistake, or the same segmenter twice, is a
    ToklabError); `out`, the report folder the result will be written to, is checked against
    the corpus's inputs up front too.

    `parallel`: add the fairness section (parity of each language against `reference`, see
    toklab.fairness) over every document with a language, train and validation split alike;
    None adds it when every validation document has a language (a parallel corpus such as udhr).
    With `parallel=True` a corpus without languages, or without the reference, is a ToklabError."""
    import pandas as pd

    from toklab._version import __version__
    from toklab.corpus import open_corpus
    from toklab.files import check_outside
    from toklab.progress import document_progress, step_progress
    from toklab.segmenters import get_segmenters
    from toklab.segmenters.registry import check_specs

    threshold = check_threshold(threshold)
    specs = list(segmenters) if segmenters is not None else default_segmenters()
    check_specs(specs)
    if isinstance(corpus, str):
        corpus = open_corpus(corpus, progress=progress, **corpus_options)
    inputs = list(corpus.input_roots()) if hasattr(corpus, "input_roots") else []
    if out is not None:
        check_outside(out, inputs)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    with document_progress("reading the validation split", enabled=progress) as advance:
        val = []
        for doc in corpus.val():
            val.append(doc)
            advance(doc.n_bytes)
    if not val:
        raise ToklabError(
            f"the validation split of {corpus.spec} is empty ({count(corpus.stats.documents, 'document')} read, "
            f"--val-fraction {corpus.options.val_fraction}); raise --val-fraction or read more documents"
        )
    texts = [d.text for d in val]
    stats = TextStats.of(texts)
    timings["read"] = time.perf_counter() - start
    read_notes = corpus.stats.notes()  # the pass read every record: malformed lines, invalid UTF-8
    start = time.perf_counter()
    languages, reference_key, parallel_notes = _parallel_documents(corpus, val, parallel, reference, progress)
    read_notes += parallel_notes
    if languages is not None:
        timings["read_parallel"] = time.perf_counter() - start

    start = time.perf_counter()
    loaded, notes = get_segmenters(specs, corpus, progress=progress)
    notes = read_notes + notes
    if segmenters is None:
        notes = _collapse_tiktoken_notes(notes)
    timings["train_or_load"] = time.perf_counter() - start

    rows: list[dict[str, Any]] = []
    source_rows: list[dict[str, Any]] = []
    sources = [d.source for d in val]
    timings["encode"] = timings["measure"] = 0.0
    labels = _row_labels([s.spec for s in loaded])
    for name, label in zip([s.spec for s in loaded], labels):
        if label != name:
            notes.append(f"two segmenters are named {name}; the later one is shown as {label}")
    with step_progress("encoding the validation split", len(loaded), enabled=progress) as step:
        for segmenter, label in zip(loaded, labels):
            step(label)
            start = time.perf_counter()
            row, by_source, row_notes, encode_seconds = _measure_one(segmenter, texts, stats, sources, threshold, shape, label)
            timings["encode"] += encode_seconds
            timings["measure"] += time.perf_counter() - start - encode_seconds
            rows.append(row)
            source_rows += by_source
            notes += row_notes

    compressor_details: dict[str, str] = {}
    if compressors:
        start = time.perf_counter()
        samples, total = [], 0
        for doc in corpus.train():
            data = doc.text.encode("utf-8")
            samples.append(data)
            total += len(data)
            if total >= DICTIONARY_SAMPLE_BYTES:
                break
        compressed, compressor_notes = compressor_rows([t.encode("utf-8") for t in texts], samples)
        notes += compressor_notes
        for c in compressed:
            rows.append({"segmenter": c.name, "kind": "compressor", "bits_per_byte": c.bits_per_byte, "mb_per_s": c.mb_per_s, "lossless": True})
            compressor_details[c.name] = c.detail
        timings["compressors"] = time.perf_counter() - start

    fairness = None
    if languages is not None and reference_key is not None:
        start = time.perf_counter()
        fairness, fairness_notes = _fairness(loaded, labels, specs, languages, reference_key, progress)
        notes += fairness_notes
        timings["parallel"] = time.perf_counter() - start

    extras = [c for c in dict.fromkeys(k for row in rows for k in row) if c not in COLUMNS]
    table = pd.DataFrame(rows).reindex(columns=COLUMNS + extras)
    per_source = _per_source_table(pd.DataFrame(source_rows))
    meta = {
        "corpus": corpus.spec,
        "corpus_description": corpus.description,
        "corpus_fingerprint": corpus.fingerprint(),
        "val_fraction": corpus.options.val_fraction,
        "val_documents": len(val),
        "val_bytes": int(stats.bytes.sum()),
        "val_chars": int(stats.chars.sum()),
        **_words_meta(stats, sources),
        "threshold": threshold,
        "reference_model": shape.describe(),
        "compressors": compressor_details,
        "toklab_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    return CompareResult(table=table, per_source=per_source, meta=meta, notes=notes, inputs=inputs, fairness=fairness)


ParallelDoc = tuple[str, str, str]  # (language, split, text)


def _parallel_documents(corpus: "Corpus", val: list[Any], parallel: bool | None, reference: str, progress: bool) -> tuple[list[ParallelDoc] | None, str | None, list[str]]:
    """The documents the fairness section measures: every document with a language, of both
    splits (the train split is read here, before any training, so that a missing reference stops
    the run early); the reference's language key; notes. (None, None, notes) when it is off."""
    from toklab.progress import document_progress

    if parallel is False:
        return None, None, []
    val_keys = [language_key(d.id, d.meta) for d in val]
    if parallel is None and (not val or None in val_keys or len(set(val_keys)) < 2):
        return None, None, []  # not parallel text: no second pass over the corpus
    docs: list[ParallelDoc] = [(k, "val", d.text) for k, d in zip(val_keys, val) if k is not None]
    without = len(val) - len(docs)
    with document_progress("reading the parallel text of the train split", enabled=progress) as advance:
        for doc in corpus.train():
            key = language_key(doc.id, doc.meta)
            if key is None:
                without += 1
            else:
                docs.append((key, "train", doc.text))
            advance(doc.n_bytes)
    keys = {k for k, _, _ in docs}
    if len(keys) < 2:
        found = "no document" if not keys else f"only one language ({next(iter(keys))})"
        why = (
            f"--parallel needs documents in several languages, and {corpus.spec} has {found} with a language "
            "(a 'language' field, or an id such as ru_Cyrl or udhr:ru_Cyrl)"
        )
        if parallel:
            raise ToklabError(why)
        return None, None, []
    try:
        reference_key = resolve_reference(reference, keys)
    except ToklabError as exc:
        if parallel:
            raise
        return None, None, [f"parallel text found ({len(keys)} languages) but no fairness section: {exc}"]
    notes = []
    if without:
        notes.append(f"fairness: {count(without, 'document')} without a language left out of the parity figures")
    return docs, reference_key, notes


def _fairness(loaded: list[Any], labels: list[str], specs: list[str], docs: list[ParallelDoc], reference: str, progress: bool) -> tuple[Fairness, list[str]]:
    """Every segmenter's tokens per language over the same documents, then toklab.fairness."""
    import pandas as pd

    from toklab.progress import step_progress
    from toklab.segmenters.registry import needs_training_corpus

    texts = [text for _, _, text in docs]
    frame = pd.DataFrame({
        "language": [k for k, _, _ in docs],
        "split": [s for _, s, _ in docs],
        "bytes": [len(t.encode("utf-8")) for t in texts],
        "chars": [len(t) for t in texts],
    })  # fmt: skip
    rows: list[dict[str, Any]] = []
    with step_progress("encoding the parallel text", len(loaded), enabled=progress) as step:
        for segmenter, label in zip(loaded, labels):
            step(label)
            tokens = segmenter.count_tokens(texts)
            for language, group in frame.assign(tokens=tokens).groupby("language", sort=True):
                splits = sorted(set(group["split"]))
                rows.append({
                    "segmenter": label, "language": language, "documents": len(group), "bytes": int(group["bytes"].sum()),
                    "chars": int(group["chars"].sum()), "tokens": int(group["tokens"].sum()), "split": splits[0] if len(splits) == 1 else "both",
                })  # fmt: skip
    languages = frame.groupby("language")["split"].agg(lambda s: "both" if s.nunique() > 1 else s.iloc[0])
    meta = {
        "reference": reference,
        "split": "all",  # both splits: every document with a language
        "languages": int(languages.size),
        "val_languages": int((languages != "train").sum()),
        "documents": len(docs),
        "bytes": int(frame["bytes"].sum()),
        "chars": int(frame["chars"].sum()),
    }
    notes = []
    trained = [s for s in specs if needs_training_corpus(s)]
    if trained:
        seen = int((languages != "val").sum())
        notes.append(
            f"fairness: {', '.join(trained)} trained on the train split, which holds {seen} of the {languages.size} languages; "
            "their parity mixes seen and held-out text (parity.csv's split column says which)"
        )
    return analyse(rows, reference, meta=meta), notes


def _words_meta(stats: TextStats, sources: list[str]) -> dict[str, Any]:
    """What tokens/word covers: the spaced documents (see measures.is_spaced), their share of the
    bytes, and the sources without one (whose documents tokens/word leaves out whole)."""
    share = stats.spaced_bytes_share
    spaced_sources = {s for s, spaced in zip(sources, stats.spaced) if spaced}
    return {
        "tokens_per_word_documents": int(stats.spaced.sum()),
        "tokens_per_word_bytes_share": None if math.isnan(share) else share,
        "tokens_per_word_sources_left_out": sorted(set(sources) - spaced_sources),
    }


def _row_labels(names: list[str]) -> list[str]:
    """Row names, one per segmenter: a name met before (two specs that make segmenters of the same
    name, such as `bytes` and a saved copy of it) gets `#2`, `#3`, ..."""
    labels: list[str] = []
    for name in names:
        label, k = name, 1
        while label in labels:
            k += 1
            label = f"{name} #{k}"
        labels.append(label)
    return labels


def _measure_one(segmenter: Any, texts: list[str], stats: TextStats, sources: list[str], threshold: float, shape: ModelShape, label: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]], list[str], float]:
    """Encode the validation texts with one segmenter: its row, its per-source counts, notes, encode seconds."""
    import pandas as pd

    label = label or segmenter.spec
    start = time.perf_counter()
    tokens, counts, failed = _count_ids(segmenter, texts, segmenter.lossless)
    seconds = time.perf_counter() - start
    notes = []
    lossless = segmenter.lossless
    if lossless:
        failures = len(failed)
        if failures:
            lossless = False
            notes.append(f"{label} claims to be lossless but {failures} of the first {ROUND_TRIP_SAMPLE} validation documents do not round-trip")
    row = {"segmenter": label, "kind": segmenter.kind, "lossless": lossless}
    row.update(counted_row(tokens, counts, stats, segmenter.vocab_size, threshold=threshold, shape=shape))
    extra = getattr(segmenter, "extra_measures", None)  # kind-specific columns, e.g. patch lengths
    if extra is not None:
        row.update(extra(texts))
    row["mb_per_s"] = stats.bytes.sum() / 1e6 / seconds if seconds > 0 else float("nan")
    per_doc = pd.DataFrame({"source": sources, "bytes": stats.bytes, "tokens": tokens})
    by_source = [
        {"segmenter": label, "source": source, "documents": len(group), "bytes": int(group["bytes"].sum()), "tokens": int(group["tokens"].sum())}
        for source, group in per_doc.groupby("source", sort=False)
    ]
    return row, by_source, notes, seconds


def _count_ids(segmenter: Any, texts: list[str], round_trip: bool) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """Tokens per text, how often each id occurs, and (when `round_trip`) which of the first
    ROUND_TRIP_SAMPLE texts do not decode back to themselves. Long texts come in exact pieces
    (Segmenter.encode_pieces), so no long document's whole id list is held; a piece's round trip
    stands for its text's (exact pieces of a lossless kind decode to the pieces)."""
    tokens = np.zeros(len(texts), dtype=np.int64)
    counts = np.zeros(segmenter.vocab_size, dtype=np.int64)
    failed: set[int] = set()
    held: list[Any] = []
    n_held = 0
    for i, piece, ids in segmenter.encode_pieces(texts):
        tokens[i] += len(ids)
        held.append(ids)
        n_held += len(ids)
        if round_trip and i < ROUND_TRIP_SAMPLE and i not in failed and segmenter.decode(ids) != piece:
            failed.add(i)
        if n_held >= COUNT_BATCH_IDS:
            counts += _id_counts(held, n_held, segmenter.vocab_size)
            held, n_held = [], 0
    if held:
        counts += _id_counts(held, n_held, segmenter.vocab_size)
    return tokens, counts, failed


def _id_counts(held: list[Any], n: int, vocab_size: int) -> np.ndarray:
    """How often each id occurs in `held` (lists of short texts' ids, arrays of long texts' pieces)."""
    lists = [ids for ids in held if not isinstance(ids, np.ndarray)]
    arrays = [ids for ids in held if isinstance(ids, np.ndarray)]
    flat = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=n - sum(a.size for a in arrays))
    return np.bincount(np.concatenate([flat, *arrays]) if arrays else flat, minlength=vocab_size)


def _per_source_table(long: "pd.DataFrame") -> "pd.DataFrame":
    """Bytes/token per segmenter (rows) and source (columns, largest first); the worst source flagged."""
    import pandas as pd

    if long.empty:
        return pd.DataFrame(columns=["worst_source", "worst_bytes_per_token"])
    long = long.assign(bytes_per_token=long["bytes"] / long["tokens"].clip(lower=1))
    order = long.groupby("source")["bytes"].first().sort_values(ascending=False, kind="stable").index
    wide = long.pivot(index="segmenter", columns="source", values="bytes_per_token").reindex(columns=order)
    wide = wide.reindex(list(dict.fromkeys(long["segmenter"])))  # segmenters in run order
    wide["worst_source"] = wide[list(order)].idxmin(axis=1)
    wide["worst_bytes_per_token"] = wide[list(order)].min(axis=1)
    wide.index.name = "segmenter"
    wide.columns.name = None
    return wide


def compare(
    corpus: "str | Corpus" = "default", segmenters: Sequence[str] | None = None, *, compressors: bool = True, threshold: float = 0.3,
    options: "CorpusOptions | None" = None, progress: bool = False, **corpus_options: Any,
) -> "pd.DataFrame":
    """The compare table as a DataFrame (one row per segmenter, then one per compressor). A corpus
    given by name is opened with `options` (a CorpusOptions) and keyword overrides of its fields."""
    from toklab.corpus import open_corpus

    if isinstance(corpus, str):
        corpus = open_corpus(corpus, options, progress=progress, **corpus_options)
    elif options is not None or corpus_options:
        raise TypeError("pass corpus options to open_corpus when giving a Corpus")
    return run_compare(corpus, segmenters, compressors=compressors, threshold=threshold, progress=progress).table
