"""ShardTally: what filtering one input shard counted, and its JSON form in the resume state file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class ShardTally:
    """One input shard's counts, per-source tallies, ratio histogram and rejected examples.

    The fields, in this order, are the keys each shard has under "done" in the state file, so a
    state written by an earlier toklab (when this was a plain dict) still resumes."""

    index: int
    input: str
    kept_file: str | None = None  # relative to --out; None when nothing was kept (or nothing written)
    rejected_file: str | None = None
    documents: int = 0
    kept: int = 0
    rejected: int = 0
    empty: int = 0
    malformed: int = 0
    invalid_utf8: int = 0
    bytes: int = 0
    kept_bytes: int = 0
    rejected_bytes: int = 0
    kept_file_bytes: int = 0
    rejected_file_bytes: int = 0
    per_source: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> docs, bytes, kept_docs, kept_bytes, empty, sweep
    sweep: dict[str, Any] = field(default_factory=dict)  # kept in the file format; the sweep is tallied per source
    hist: list[int] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    malformed_examples: list[str] = field(default_factory=list)  # the newest key: absent from older state files

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ShardTally":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# The keys a state file's shard entry must hold to be resumed (malformed_examples may be missing).
REQUIRED_KEYS = frozenset(f.name for f in fields(ShardTally)) - {"malformed_examples"}
