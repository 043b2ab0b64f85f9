"""Uncertainty for `toklab study`: t intervals across seeds and a paired bootstrap over documents.

A study trains each (segmenter, FLOP budget) with several seeds and scores every run on the same
validation documents. Two sources of noise matter when comparing two configurations: which seed
was used, and which documents happened to be in the validation set. `mean_interval` covers the
first; `paired_bootstrap_difference` covers both at once.

numpy only: scipy is not a dependency, so the t critical values are a hard-coded table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Interval",
    "bits_per_byte_of",
    "mean_interval",
    "paired_bootstrap_difference",
    "t_quantile",
    "verdict",
]

LN2 = math.log(2.0)

# Default bound on the document-weight cells held at once. The resampling step keeps about four
# arrays of this many 8-byte cells alive (indices, flat indices, counts, float weights), so 2**22
# cells peak at roughly 160 MiB, whatever the number of documents.
DEFAULT_MAX_CELLS = 2**22


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval at `level`; the ends are nan when unknown."""

    estimate: float
    low: float
    high: float
    n: int
    method: str
    level: float = 0.95

    def excludes_zero(self) -> bool:
        """True only when the interval is known and lies entirely on one side of zero."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return False
        return self.low > 0 or self.high < 0

    def half_width(self) -> float:
        return (self.high - self.low) / 2  # nan propagates when an end is unknown


# Two-sided Student t critical values, keyed by level, then df; math.inf is the normal limit.
# Textbook values to 3 decimals.
_T_TABLE: dict[float, dict[float, float]] = {
    0.90: {
        1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860,
        9: 1.833, 10: 1.812, 11: 1.796, 12: 1.782, 13: 1.771, 14: 1.761, 15: 1.753,
        16: 1.746, 17: 1.740, 18: 1.734, 19: 1.729, 20: 1.725, 21: 1.721, 22: 1.717,
        23: 1.714, 24: 1.711, 25: 1.708, 26: 1.706, 27: 1.703, 28: 1.701, 29: 1.699,
        30: 1.697, 40: 1.684, 60: 1.671, 120: 1.658, math.inf: 1.645,
    },
    0.95: {
        1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
        16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074,
        23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045,
        30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980, math.inf: 1.960,
    },
    0.99: {
        1: 63.657, 2: 9.925, 3: 5.841, 4: 4.604, 5: 4.032, 6: 3.707, 7: 3.499, 8: 3.355,
        9: 3.250, 10: 3.169, 11: 3.106, 12: 3.055, 13: 3.012, 14: 2.977, 15: 2.947,
        16: 2.921, 17: 2.898, 18: 2.878, 19: 2.861, 20: 2.845, 21: 2.831, 22: 2.819,
        23: 2.807, 24: 2.797, 25: 2.787, 26: 2.779, 27: 2.771, 28: 2.763, 29: 2.756,
        30: 2.750, 40: 2.704, 60: 2.660, 120: 2.617, math.inf: 2.576,
    },
}


def _table_for(level: float) -> dict[float, float]:
    for known, table in _T_TABLE.items():
        if math.isclose(level, known, abs_tol=1e-9):
            return table
    supported = ", ".join(f"{known:g}" for known in _T_TABLE)
    raise ValueError(f"level must be one of {supported}, got {level!r}")


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided Student t critical value: P(|T| <= t) == level for T with `df` degrees of freedom.

    Exact table rows for df 1..30, 40, 60, 120; between rows (and beyond 120, towards the normal
    limit) linear interpolation in 1/df, which is the standard way to read such tables and is
    accurate to about 1e-3 here.
    """
    if isinstance(df, bool) or int(df) != df or df < 1:
        raise ValueError(f"df must be a positive integer, got {df!r}")
    table = _table_for(level)
    if df in table:
        return table[df]
    rows = sorted(table)  # ..., 30, 40, 60, 120, inf
    upper = next(row for row in rows if row > df)
    lower = max(row for row in rows if row < df)
    x, x_lo, x_hi = 1 / df, 1 / lower, 1 / upper  # 1 / inf == 0.0
    share = (x - x_hi) / (x_lo - x_hi)
    return table[upper] + share * (table[lower] - table[upper])


def mean_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean across seeds with the t interval mean ± t * s / sqrt(n); nan ends for a single value."""
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError("values must all be finite (found nan or inf)")
    n = int(data.size)
    mean = float(data.mean())
    seeds = "seed" if n == 1 else "seeds"
    if n == 1:
        # One seed says nothing about seed-to-seed spread; refuse to invent an interval.
        return Interval(mean, math.nan, math.nan, n, f"t, {n} {seeds}", level)
    half = t_quantile(n - 1, level) * float(data.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, f"t, {n} {seeds}", level)


def bits_per_byte_of(losses_nats: np.ndarray, doc_bytes: np.ndarray) -> float:
    """Bits per byte of a set of documents: total loss in nats over ln 2 times total bytes."""
    losses = np.asarray(losses_nats, dtype=np.float64)
    sizes = np.asarray(doc_bytes, dtype=np.float64)
    if losses.shape != sizes.shape:
        raise ValueError(f"losses shape {losses.shape} does not match doc_bytes shape {sizes.shape}")
    if not (np.all(np.isfinite(losses)) and np.all(np.isfinite(sizes))):
        raise ValueError("losses and doc_bytes must be finite")
    total_bytes = float(sizes.sum())
    if total_bytes <= 0:
        raise ValueError(f"doc_bytes must sum to a positive number, got {total_bytes}")
    return float(losses.sum()) / (LN2 * total_bytes)


def _as_seed_matrix(losses: np.ndarray, name: str, docs: int) -> np.ndarray:
    matrix = np.asarray(losses, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[np.newaxis, :]  # a 1-D array is one seed
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"{name} must have shape [seeds, docs] or [docs], got {np.shape(losses)}")
    if matrix.shape[1] != docs:
        raise ValueError(
            f"{name} covers {matrix.shape[1]} documents but doc_bytes has {docs}; "
            "a and b must be scored on the same documents in the same order"
        )
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name} must be finite (found nan or inf)")
    return matrix


def paired_bootstrap_difference(
    losses_a: np.ndarray,
    losses_b: np.ndarray,
    doc_bytes: np.ndarray,
    *,
    replicates: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    max_cells: int = DEFAULT_MAX_CELLS,
) -> Interval:
    """Bits-per-byte of a minus b (each averaged over its seeds), with a hierarchical paired bootstrap.

    losses_a: [seeds_a, docs] per-document losses in nats (1-D means one seed); losses_b likewise;
    doc_bytes: [docs] UTF-8 byte counts, the same documents in the same order for a and b.

    Each replicate draws documents with replacement, the same draw for a and b (paired: a hard
    document is hard for both, so that shared noise cancels), and draws seeds with replacement for
    a and for b independently. The interval is the percentile interval of the replicates.
    Deterministic for a given `seed`, and independent of `max_cells`, which only bounds memory.
    """
    sizes = np.asarray(doc_bytes, dtype=np.float64)
    if sizes.ndim != 1 or sizes.size == 0:
        raise ValueError(f"doc_bytes must be a non-empty 1-D array, got shape {sizes.shape}")
    if not np.all(np.isfinite(sizes)) or np.any(sizes < 0):
        raise ValueError("doc_bytes must be finite and non-negative")
    if sizes.sum() <= 0:
        raise ValueError("doc_bytes must sum to a positive number")
    docs = int(sizes.size)
    a = _as_seed_matrix(losses_a, "losses_a", docs)
    b = _as_seed_matrix(losses_b, "losses_b", docs)
    if isinstance(replicates, bool) or int(replicates) != replicates or replicates < 1:
        raise ValueError(f"replicates must be a positive integer, got {replicates!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    if max_cells < 1:
        raise ValueError(f"max_cells must be positive, got {max_cells!r}")
    replicates = int(replicates)

    total_bytes = LN2 * sizes.sum()
    estimate = float((a.sum(axis=1) / total_bytes).mean() - (b.sum(axis=1) / total_bytes).mean())
    seeds_a, seeds_b = a.shape[0], b.shape[0]
    method = (
        f"paired bootstrap over {docs} documents and {seeds_a} vs {seeds_b} seeds, "
        f"{replicates} replicates"
    )
    if docs == 1:
        # Resampling one document always gives that document: no information about spread.
        return Interval(estimate, math.nan, math.nan, docs, method + " (one document: no interval)", level)

    # Separate streams for seeds and documents, so chunking the document draws cannot shift them.
    seed_stream, doc_stream = (np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(2))
    pick_a = seed_stream.integers(0, seeds_a, size=(replicates, seeds_a))
    pick_b = seed_stream.integers(0, seeds_b, size=(replicates, seeds_b))

    diffs = np.empty(replicates)
    rows_per_chunk = max(1, int(max_cells) // docs)
    for start in range(0, replicates, rows_per_chunk):
        rows = min(rows_per_chunk, replicates - start)
        # Multinomial document counts: draw `docs` documents with replacement per replicate and
        # count them (a flat bincount is several times faster than Generator.multinomial here).
        drawn = doc_stream.integers(0, docs, size=(rows, docs))
        flat = (drawn + (np.arange(rows) * docs)[:, np.newaxis]).ravel()
        weights = np.bincount(flat, minlength=rows * docs).reshape(rows, docs).astype(np.float64)
        del drawn, flat
        drawn_bytes = LN2 * (weights @ sizes)  # [rows]
        chunk = slice(start, start + rows)
        with np.errstate(divide="ignore", invalid="ignore"):  # zero drawn bytes: see below
            bpb_a = (weights @ a.T) / drawn_bytes[:, np.newaxis]  # [rows, seeds_a]
            bpb_b = (weights @ b.T) / drawn_bytes[:, np.newaxis]
            diffs[chunk] = (
                np.take_along_axis(bpb_a, pick_a[chunk], axis=1).mean(axis=1)
                - np.take_along_axis(bpb_b, pick_b[chunk], axis=1).mean(axis=1)
            )

    # A replicate that drew only zero-byte documents has no bits-per-byte; leave it out and say so.
    usable = diffs[np.isfinite(diffs)]
    skipped = replicates - usable.size
    if skipped:
        method += f" ({skipped} drew no bytes and were skipped)"
    if usable.size == 0:
        return Interval(estimate, math.nan, math.nan, docs, method, level)
    tail = (1 - level) / 2
    low, high = np.quantile(usable, [tail, 1 - tail])
    return Interval(estimate, float(low), float(high), docs, method, level)


def verdict(name_a: str, name_b: str, diff: Interval, unit: str = "bits/byte") -> str:
    """One English sentence about `diff`, an interval for (a - b) where lower is better."""
    pct = f"{diff.level:.0%}"
    if diff.excludes_zero():
        if diff.high < 0:  # the whole interval says a is lower
            better, worse, amount, lo, hi = name_a, name_b, -diff.estimate, -diff.high, -diff.low
        else:
            better, worse, amount, lo, hi = name_b, name_a, diff.estimate, diff.low, diff.high
        return (
            f"{better} is better: lower than {worse} by {amount:.4f} {unit} "
            f"({pct} interval {lo:.4f} to {hi:.4f})."
        )
    if math.isfinite(diff.low) and math.isfinite(diff.high):
        return (
            f"{name_a} and {name_b} are indistinguishable: the difference ({name_a} - {name_b}) is "
            f"{diff.estimate:+.4f} {unit}, but its {pct} interval ({diff.low:+.4f} to "
            f"{diff.high:+.4f}) includes zero."
        )
    return (
        f"{name_a} and {name_b} cannot be told apart: the difference ({name_a} - {name_b}) is "
        f"{diff.estimate:+.4f} {unit}, but no {pct} interval can be computed from {diff.method}."
    )
