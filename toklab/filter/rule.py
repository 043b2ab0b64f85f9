"""The Cramming keep rule: what is measured (tokens per char, or zstd bytes per byte) and the keep decision."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from toklab.errors import ToklabError
from toklab.measures import at_most

if TYPE_CHECKING:
    from toklab.segmenters import Segmenter

MEASURES = ("tokens", "zstd")
DEFAULT_THRESHOLD = {"tokens": 0.3, "zstd": 0.5}  # tokens: Cramming's default; zstd: toklab's choice
RATIO_COLUMN = {"tokens": "tokens_per_char", "zstd": "zstd_ratio"}
REASON_COLUMN = "reject_reason"
ZSTD_LEVEL = 3


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
            # counted piece by piece: a long document's ids are never held whole (Segmenter.count_tokens)
            return segmenter.count_tokens(texts, workers=workers), np.array([len(t) for t in texts], dtype=np.int64)
        import zstandard

        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        if workers > 1 and len(data) > 1:  # one frame per document, the same bytes as compress(), on all cores
            sizes = [len(frame) for frame in compressor.multi_compress_to_buffer(data, threads=workers)]
        else:
            sizes = [len(compressor.compress(d)) for d in data]
        return np.array(sizes, dtype=np.int64), np.array([len(d) for d in data], dtype=np.int64)

    def keeps(self, numerators: np.ndarray, denominators: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """The keep decision per document at this rule's threshold (or `threshold`, for a sweep).
        measures.at_most is the one home of the exact test; this only names it for the filter."""
        return at_most(numerators, denominators, self.threshold if threshold is None else threshold)

    def reason(self, ratio: float) -> str:
        """The reject_reason written beside a rejected document."""
        return f"{self.column} {ratio:.4f} > {self.threshold:g}"


def positive_threshold(value: Any, option: str = "--t") -> float:
    """`value` as a float, or a ToklabError unless it is a finite number above 0."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ToklabError(f"{option} must be a positive number, got {value!r}") from None
    if not (math.isfinite(t) and t > 0):
        raise ToklabError(f"{option} must be positive and finite, got {t:g}")
    return t
