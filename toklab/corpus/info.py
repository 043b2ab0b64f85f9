"""`corpus_info`: size and shape of a corpus, overall and per source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from toklab.corpus.corpus import Corpus
from toklab.corpus.document import split_of
from toklab.corpus.readers import ReadStats
from toklab.progress import document_progress

if TYPE_CHECKING:
    import pandas as pd

PER_SOURCE_COLUMNS = ["source", "documents", "bytes", "chars", "mean_bytes", "max_bytes", "val_documents", "share_of_bytes"]


@dataclass
class CorpusInfo:
    """Totals for a corpus (after sampling and caps) and a per-source breakdown."""

    spec: str
    description: str
    documents: int
    bytes: int
    chars: int
    mean_bytes: float
    max_bytes: int
    max_doc_id: str
    train_documents: int
    val_documents: int
    per_source: pd.DataFrame
    stats: ReadStats = field(default_factory=ReadStats)

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k not in {"per_source", "stats"}}
        data["per_source"] = self.per_source.to_dict(orient="records")
        data["notes"] = self.stats.notes()
        return data


def corpus_info(corpus: Corpus, *, progress: bool = False) -> CorpusInfo:
    """One streaming pass over `corpus`, counting documents, bytes and code points per source."""
    import pandas as pd  # imported here so the CLI starts fast

    rows: dict[str, dict[str, int]] = {}
    longest, longest_id = 0, ""
    val = 0
    with document_progress("reading corpus", enabled=progress) as advance:
        for doc in corpus:
            n_bytes = doc.n_bytes
            row = rows.setdefault(doc.source, {"documents": 0, "bytes": 0, "chars": 0, "max_bytes": 0, "val_documents": 0})
            row["documents"] += 1
            row["bytes"] += n_bytes
            row["chars"] += len(doc.text)
            row["max_bytes"] = max(row["max_bytes"], n_bytes)
            if split_of(doc.id, corpus.options.val_fraction) == "val":
                row["val_documents"] += 1
                val += 1
            if n_bytes > longest:
                longest, longest_id = n_bytes, doc.id
            advance(n_bytes)
    table = pd.DataFrame([{"source": s, **r} for s, r in sorted(rows.items())], columns=[c for c in PER_SOURCE_COLUMNS if c not in {"mean_bytes", "share_of_bytes"}])
    total_docs = int(table["documents"].sum()) if len(table) else 0
    total_bytes = int(table["bytes"].sum()) if len(table) else 0
    table["mean_bytes"] = table["bytes"] / table["documents"].clip(lower=1)
    table["share_of_bytes"] = table["bytes"] / max(total_bytes, 1)
    table = table[PER_SOURCE_COLUMNS]
    return CorpusInfo(
        spec=corpus.spec,
        description=corpus.description,
        documents=total_docs,
        bytes=total_bytes,
        chars=int(table["chars"].sum()) if len(table) else 0,
        mean_bytes=total_bytes / total_docs if total_docs else 0.0,
        max_bytes=longest,
        max_doc_id=longest_id,
        train_documents=total_docs - val,
        val_documents=val,
        per_source=table,
        stats=corpus.stats,
    )
