"""A filter run's result: FilterResult, the sum of the shards' tallies into it, and the count check."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toklab.corpus.corpus import Corpus
from toklab.filter.rule import FilterRule
from toklab.filter.shards import pick_examples
from toklab.filter.tally import ShardTally

if TYPE_CHECKING:
    import pandas as pd

    from toklab.segmenters import Segmenter


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


def combine(corpus: Corpus, rule: FilterRule, seg: "Segmenter | None", tallies: list[ShardTally], out: Path | None, rejected: Path | None, sweep: tuple[float, ...]) -> FilterResult:
    """Sum the per-shard tallies into one result."""
    import pandas as pd

    def total(key: str) -> int:
        return sum(getattr(shard, key) for shard in tallies)

    sources: dict[str, dict[str, Any]] = {}
    for shard in tallies:
        for name, tally in shard.per_source.items():
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

    hist = np.sum([np.array(shard.hist, dtype=np.int64) for shard in tallies], axis=0).tolist() if tallies else []
    examples = pick_examples([e for shard in tallies for e in shard.examples])
    notes = []
    malformed = total("malformed")
    if malformed:
        where = ", ".join(e for shard in tallies for e in shard.malformed_examples)
        notes.append(f"{malformed:,} malformed line{'s' if malformed != 1 else ''} skipped (at {where})")
    invalid = total("invalid_utf8")
    if invalid:
        notes.append(f"{invalid:,} document{'s' if invalid != 1 else ''} with invalid UTF-8, decoded with replacement")
    emptied = per_source[(per_source["kept_docs"] == 0) & (per_source["docs"] > per_source["empty_docs"])]
    if len(emptied):
        names = ", ".join(emptied["source"].head(8)) + (", ..." if len(emptied) > 8 else "")
        notes.append(f"{len(emptied)} source{'s' if len(emptied) != 1 else ''} lost every document: {names}")
    shards = [{k: getattr(shard, k) for k in ("input", "kept_file", "rejected_file", "documents", "kept", "rejected", "empty", "seconds")} for shard in tallies]
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
    from toklab.corpus.readers import open_binary

    with open_binary(path) as stream:
        return sum(1 for _ in stream)


def count_check(result: FilterResult) -> None:
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
