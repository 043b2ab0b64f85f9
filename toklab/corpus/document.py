"""The one document type every stage passes around, and the deterministic split and sampling."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

Part = Literal["train", "val"]


@dataclass(frozen=True)
class Document:
    """One text with a stable id, the kind of text it is (`source`) and any other fields."""

    id: str
    text: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def n_bytes(self) -> int:
        return len(self.text.encode("utf-8"))

    def to_record(self) -> dict[str, Any]:
        """The flat record a writer stores: id, text, source, then the original extra fields."""
        return {"id": self.id, "text": self.text, "source": self.source, **self.meta}


def unit_hash(key: str, salt: str) -> float:
    """Map `key` to a uniform number in [0, 1) that depends on nothing but `key` and `salt`."""
    digest = hashlib.blake2b(f"{salt}\0{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of(doc_id: str, val_fraction: float = 0.1) -> Part:
    """The split a document belongs to, decided by a hash of its id alone.

    A document lands in the same split whatever else changes (corpus order, other documents,
    sampling, caps); raising `val_fraction` only ever moves documents from train to val.
    """
    return "val" if unit_hash(doc_id, "toklab-split") < val_fraction else "train"


def in_sample(doc_id: str, fraction: float, seed: int = 0) -> bool:
    """Deterministic Bernoulli sampling by a hash of (seed, id), independent of the split."""
    if fraction >= 1.0:
        return True
    return unit_hash(doc_id, f"sample{seed}") < fraction
