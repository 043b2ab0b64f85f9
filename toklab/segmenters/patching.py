"""Entropy patching rules (as in the Byte Latent Transformer paper) and threshold calibration.

Given the next-byte entropy H(x_t) at every byte position, a new patch starts at t when
- global:    H(x_t) > theta
- monotonic: H(x_t) - H(x_{t-1}) > theta
- both:      either of the two, the monotonic one with its own threshold `relative`.
The first byte always starts a patch. A patch never starts on a UTF-8 continuation byte
(so never splits a character) unless `split_utf8` is set, and `max_len` forces a new patch
once a patch would grow past that many bytes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from toklab.errors import ToklabError

RULES = ("global", "monotonic", "both")


def utf8_continuation(data: np.ndarray) -> np.ndarray:
    return (data & 0xC0) == 0x80


def patch_starts(
    entropy: np.ndarray,
    data: np.ndarray,
    theta: float,
    rule: str = "global",
    *,
    relative: float = 0.0,
    max_len: int | None = None,
    split_utf8: bool = False,
) -> np.ndarray:
    """Boolean array: True where a patch starts."""
    return patch_starts_batch(entropy, data, np.zeros(min(len(entropy), 1), dtype=np.int64), theta, rule, relative=relative, max_len=max_len, split_utf8=split_utf8)


def patch_starts_batch(
    entropy: np.ndarray,
    data: np.ndarray,
    firsts: np.ndarray,
    theta: float,
    rule: str = "global",
    *,
    relative: float = 0.0,
    max_len: int | None = None,
    split_utf8: bool = False,
) -> np.ndarray:
    """patch_starts of documents laid end to end (document i starts at firsts[i], none empty), at once:
    the same starts as patching each alone, since every document's first byte starts a patch."""
    if rule not in RULES:
        raise ToklabError(f"unknown patching rule '{rule}' (use {', '.join(RULES)})")
    n = len(entropy)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if rule == "global":
        starts = entropy > theta
    else:
        rise = np.diff(entropy, prepend=entropy[0])
        starts = rise > theta if rule == "monotonic" else (entropy > theta) | (rise > relative)
    if not split_utf8:
        starts &= ~utf8_continuation(data)
    starts[firsts] = True
    if max_len is not None:
        starts = cap_lengths(starts, data, max_len, split_utf8)
    return starts


def cap_lengths(starts: np.ndarray, data: np.ndarray, max_len: int, split_utf8: bool) -> np.ndarray:
    """Add starts so that no patch is longer than max_len (longer only where one character is)."""
    positions = np.flatnonzero(starts)
    ends = np.append(positions[1:], len(starts))
    if (ends - positions).max() <= max_len:
        return starts
    starts = starts.copy()
    allowed = np.ones(len(starts), dtype=bool) if split_utf8 else ~utf8_continuation(data)
    long = np.flatnonzero(ends - positions > max_len)  # only these patches need cuts
    for begin, end in zip(positions[long].tolist(), ends[long].tolist()):
        cut = begin
        while end - cut > max_len:
            nxt = cut + max_len
            while nxt > cut + 1 and not allowed[nxt]:  # step back to a character boundary
                nxt -= 1
            if not allowed[nxt]:  # one character longer than max_len: cut after it instead
                nxt = cut + max_len
                while nxt < end and not allowed[nxt]:
                    nxt += 1
                if nxt >= end:
                    break
            starts[nxt] = True
            cut = nxt
    return starts


def patch_lengths(starts: np.ndarray) -> np.ndarray:
    positions = np.flatnonzero(starts)
    return np.diff(np.append(positions, len(starts)))


def count_patches(entropies: Sequence[np.ndarray], docs: Sequence[np.ndarray], theta: float, **rule: object) -> int:
    return int(sum(patch_starts(e, d, theta, **rule).sum() for e, d in zip(entropies, docs)))  # type: ignore[arg-type]


def calibrate(
    entropies: Sequence[np.ndarray],
    docs: Sequence[np.ndarray],
    target: float,
    *,
    tolerance: float = 0.02,
    iterations: int = 60,
    **rule: object,
) -> tuple[float, float]:
    """Bisect theta so that bytes per patch over `docs` is within `tolerance` of `target`.

    The patch count only falls as theta rises, so bisection converges. Returns (theta,
    achieved mean patch length); an unreachable target is a ToklabError naming the range.
    """
    n_bytes = sum(len(d) for d in docs)
    if n_bytes == 0:
        raise ToklabError("cannot calibrate entropy patching: no calibration text")
    flat = np.concatenate([e for e in entropies if len(e)])
    spread = float(flat.max() - flat.min()) + 1.0
    lo, hi = float(flat.min()) - spread, float(flat.max()) + spread  # every byte starts / nothing does
    if rule.get("rule") == "monotonic":
        lo, hi = -spread, spread
    shortest = n_bytes / count_patches(entropies, docs, lo, **rule)
    longest = n_bytes / count_patches(entropies, docs, hi, **rule)
    if not shortest * (1 - tolerance) <= target <= longest * (1 + tolerance):
        raise ToklabError(f"target {target} bytes/patch is out of reach: this patching gives {shortest:.2f} to {longest:.2f} bytes/patch")
    best = (lo, shortest)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        mean = n_bytes / count_patches(entropies, docs, mid, **rule)
        if abs(mean - target) < abs(best[1] - target):
            best = (mid, mean)
        if abs(mean - target) <= tolerance * target:
            return mid, mean
        if mean < target:
            lo = mid
        else:
            hi = mid
    theta, mean = best
    if abs(mean - target) > tolerance * target:
        raise ToklabError(f"could not reach {target} bytes/patch within {tolerance:.0%} (closest: {mean:.2f} at theta {theta:.4f}); the entropies may have too few distinct values")
    return theta, mean
