"""Byte-level entropy models for entropy patching: a smoothed byte n-gram model (the default).

A model gives, at every position t of a byte string, the entropy in bits of its predicted
distribution over byte t given the bytes before it (within the same document), and the
surprisal -log2 p(actual byte), whose sum is the model's cross-entropy.

The n-gram model counts every (context, next byte) pair of the training bytes with numpy,
contexts of up to order-1 bytes packed into integers. Its distributions use Witten-Bell
smoothing, level by level from a uniform distribution over 256 bytes:
- interpolated: P_k(b|c) = (C(c,b) + T(c) P_{k-1}(b|c')) / (C(c) + T(c))
- backoff:      P_k(b|c) = C(c,b) / (C(c) + T(c)) for seen b; the rest, T(c) / (C(c) + T(c)),
                spread over unseen bytes in proportion to P_{k-1}
where C(c) counts context c, T(c) the distinct bytes seen after it, and c' drops c's oldest byte.
Contexts unseen in training fall back to the shorter context.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from toklab.errors import ToklabError

MAX_ORDER = 7  # a context of 6 bytes and the next byte pack into 56 bits
SMOOTHINGS = ("interpolated", "backoff")
COUNT_CHUNK_BYTES = 16 * 2**20
SCORE_BATCH = 4096  # unique contexts whose 256-way distributions are built at once
DIRECT_CONTEXT_BYTES = 3  # contexts this long are looked up directly: an int32 table of 256**3 (64 MiB)
ENTROPY_CHUNK = 2**20  # positions whose contexts are packed at once
UNIQUE_CHUNK = 2**23  # the same, for orders above 4 (contexts made distinct with np.unique): ~0.5 GB of temporaries


def _as_array(data: bytes | np.ndarray) -> np.ndarray:
    return data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)


def _contexts(x: np.ndarray, k: int) -> np.ndarray:
    """For t in [k, n): the k bytes before t packed into an int64, the nearest byte lowest."""
    n = len(x)
    ctx = np.zeros(max(n - k, 0), dtype=np.int64)
    for i in range(1, k + 1):
        ctx |= x[k - i : n - i].astype(np.int64) << (8 * (i - 1))
    return ctx


def _packed(x: np.ndarray, lo: int, hi: int, k: int) -> np.ndarray:
    """For t in [lo, hi): the k bytes before t packed into an int64, the nearest byte lowest (bytes
    before the start of x count as 0)."""
    # The 8 bytes before t read big-endian put the nearest byte lowest; masked to k bytes (k <= 7).
    # One cast of an overlapping view: several times faster than shifting byte by byte.
    padded = np.zeros(hi - lo + 8, dtype=np.uint8)  # padded[j] is x[lo - 8 + j]
    first = max(lo - 8, 0)
    padded[first - (lo - 8) :] = x[first:hi]
    ctx = np.ndarray(hi - lo, dtype=">i8", buffer=padded, strides=(1,)).astype(np.int64)
    ctx &= (1 << (8 * k)) - 1
    return ctx


def _packed_at(x: np.ndarray, at: np.ndarray, k: int) -> np.ndarray:
    """_packed at the positions `at` (each with k bytes before it)."""
    ctx = np.zeros(len(at), dtype=np.int64)
    for i in range(1, k + 1):
        ctx |= x[at - i].astype(np.int64) << (8 * (i - 1))
    return ctx


def _entropy(dist: np.ndarray) -> np.ndarray:
    """Entropy in bits of each row."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(dist > 0, dist * np.log2(dist), 0.0).sum(axis=1)


class NgramEntropyModel:
    """A smoothed byte n-gram model: order n uses contexts of up to n-1 bytes."""

    kind = "ngram"

    def __init__(self, order: int, smoothing: str, tables: list[dict[str, np.ndarray]]) -> None:
        self.order = order
        self.smoothing = smoothing
        self.tables = tables  # per context length k: keys (ctx<<8|byte), counts, contexts, totals, types
        self._lookup: tuple[list[np.ndarray], np.ndarray] | None = None  # see _direct_tables

    @property
    def params(self) -> dict[str, Any]:
        return {"order": self.order, "smoothing": self.smoothing}

    @classmethod
    def train(cls, docs: Iterable[bytes], order: int = 4, smoothing: str = "interpolated") -> "NgramEntropyModel":
        if not 1 <= order <= MAX_ORDER:
            raise ToklabError(f"n-gram order must be between 1 and {MAX_ORDER}, got {order}")
        if smoothing not in SMOOTHINGS:
            raise ToklabError(f"unknown smoothing '{smoothing}' (use {' or '.join(SMOOTHINGS)})")
        partial: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(order)]
        chunk: list[bytes] = []
        size = 0

        def count(chunk: list[bytes]) -> None:
            for k in range(order):
                keys = [(_contexts(x, k) << 8) | x[k:].astype(np.int64) for x in map(_as_array, chunk) if len(x) > k]
                if keys:
                    unique, counts = np.unique(np.concatenate(keys), return_counts=True)
                    partial[k].append((unique, counts))
                if len(partial[k]) > 8:  # merge now and then so memory follows the distinct n-grams, not the text
                    partial[k] = [_merge(partial[k])]

        for doc in docs:
            chunk.append(doc)
            size += len(doc)
            if size >= COUNT_CHUNK_BYTES:
                count(chunk)
                chunk, size = [], 0
        if chunk:
            count(chunk)
        if not partial[0]:
            raise ToklabError("cannot train an n-gram entropy model: no training text")
        tables = []
        for k in range(order):
            keys, counts = _merge(partial[k]) if partial[k] else (np.zeros(0, np.int64), np.zeros(0, np.int64))
            contexts, first, types = np.unique(keys >> 8, return_index=True, return_counts=True)
            totals = np.add.reduceat(counts, first) if len(counts) else np.zeros(0, np.int64)
            tables.append({"keys": keys, "counts": counts, "contexts": contexts, "totals": totals, "types": types})
        return cls(order, smoothing, tables)

    # --- scoring --------------------------------------------------------------------------------

    def score(self, data: bytes | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(entropy, surprisal) in bits at every position of one document."""
        return self.score_batch([data])[0] if len(data) else (np.zeros(0), np.zeros(0))

    def entropies(self, data: bytes | np.ndarray) -> np.ndarray:
        return self.score(data)[0]

    def bits(self, data: bytes | np.ndarray) -> float:
        """Cross-entropy of `data` under the model, in bits."""
        return float(self.score(data)[1].sum())

    def score_batch(self, docs: Sequence[bytes | np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Score many documents at once; each keeps its own context (none crosses a document start)."""
        arrays = [_as_array(d) for d in docs]
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        if lengths.sum() == 0:
            return [(np.zeros(0), np.zeros(0)) for _ in arrays]
        x = np.concatenate(arrays)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        level = np.minimum(np.arange(len(x)) - starts, self.order - 1)  # context bytes available at t
        ctx = np.zeros(len(x), dtype=np.int64)
        for i in range(1, self.order):
            shifted = np.zeros(len(x), dtype=np.int64)
            shifted[i:] = x[:-i].astype(np.int64)
            ctx |= np.where(level >= i, shifted, 0) << (8 * (i - 1))
        unique, inverse = np.unique((ctx << 3) | level, return_inverse=True)
        entropy = np.empty(len(unique))
        surprisal = np.empty(len(x))
        order_rows = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order_rows], np.arange(len(unique) + 1))
        for lo in range(0, len(unique), SCORE_BATCH):
            hi = min(lo + SCORE_BATCH, len(unique))
            dist = self._distributions(unique[lo:hi] >> 3, (unique[lo:hi] & 7).astype(np.int64))
            entropy[lo:hi] = _entropy(dist)
            rows = order_rows[bounds[lo] : bounds[hi]]
            surprisal[rows] = -np.log2(dist[inverse[rows] - lo, x[rows]])
        ent = entropy[inverse]
        out, offset = [], 0
        for n in lengths:
            out.append((ent[offset : offset + n], surprisal[offset : offset + n]))
            offset += n
        return out

    def _distributions(self, ctx: np.ndarray, level: np.ndarray) -> np.ndarray:
        """Next-byte distributions (rows of 256) for packed contexts with `level` bytes each."""
        dist = np.full((len(ctx), 256), 1.0 / 256)
        for k in range(self.order):
            table = self.tables[k]
            contexts = table["contexts"]
            if len(contexts) == 0:
                continue
            sub = ctx & ((1 << (8 * k)) - 1)
            where = np.minimum(np.searchsorted(contexts, sub), len(contexts) - 1)
            found = (level >= k) & (contexts[where] == sub)
            if not found.any():
                continue
            rows = np.flatnonzero(found)
            dist[rows] = self._smooth(table, where[rows], dist[rows])
        return dist

    def _smooth(self, table: dict[str, np.ndarray], at: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """One level of smoothing: the distributions after the contexts at rows `at` of `table`, given
        `lower`, the distributions after their shorter contexts."""
        total = table["totals"][at].astype(np.float64)
        types = table["types"][at].astype(np.float64)
        counts = np.zeros((len(at), 256))
        lo = np.searchsorted(table["keys"], table["contexts"][at] << 8)
        n_seen = table["types"][at]
        idx = np.repeat(lo - np.cumsum(n_seen) + n_seen, n_seen) + np.arange(n_seen.sum())
        counts[np.repeat(np.arange(len(at)), n_seen), table["keys"][idx] & 255] = table["counts"][idx]
        denominator = (total + types)[:, None]
        if self.smoothing == "interpolated":
            return (counts + types[:, None] * lower) / denominator
        seen = counts > 0
        unseen_lower = np.where(seen, 0.0, lower)
        leftover = unseen_lower.sum(axis=1, keepdims=True)
        spread = np.divide(unseen_lower, leftover, out=np.zeros_like(lower), where=leftover > 0) * (types[:, None] / denominator)
        return np.where(seen, counts / denominator, spread)

    # --- entropies alone: one value per distinct context -----------------------------------------
    # The entropy at t depends only on the deepest context before t (within its document) that was
    # seen in training, so it is computed once per context. Contexts of up to DIRECT_CONTEXT_BYTES
    # bytes are looked up in tables indexed by the packed context itself, built on first use; longer
    # ones (orders above 4) are made distinct with np.unique, chunk by chunk.

    def entropies_batch(self, docs: Sequence[bytes | np.ndarray]) -> list[np.ndarray]:
        """The entropy at every position of each document (as score_batch gives it), without surprisals."""
        arrays = [_as_array(d) for d in docs]
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        offsets = np.cumsum(lengths) - lengths
        x = np.concatenate(arrays) if arrays else np.zeros(0, np.uint8)
        ent = self.flat_entropies(x, offsets[lengths > 0], lengths[lengths > 0])
        return [ent[o : o + n] for o, n in zip(offsets.tolist(), lengths.tolist())]

    def flat_entropies(self, x: np.ndarray, firsts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Entropies over documents laid end to end in `x` (uint8): document i starts at firsts[i] and
        has lengths[i] > 0 bytes; no context crosses a document start."""
        out = np.empty(len(x))
        top = self.order - 1
        direct = top <= DIRECT_CONTEXT_BYTES
        # temporaries stay bounded for a long document; without tables, larger chunks repeat fewer contexts
        chunk = ENTROPY_CHUNK if direct else UNIQUE_CHUNK
        for lo in range(0, len(x), chunk):
            hi = min(lo + chunk, len(x))
            ctx = _packed(x, lo, hi, top)  # positions fewer than `top` bytes into a document are redone below
            if direct:
                index, entropy = self._direct_tables()
                out[lo:hi] = entropy[index[top][ctx]]
            else:
                out[lo:hi] = self._unique_entropies(ctx, np.full(hi - lo, top, dtype=np.int64))
        for j in range(min(top, int(lengths.max()) if len(lengths) else 0)):  # j bytes into a document
            at = (firsts + j)[lengths > j]
            ctx = _packed_at(x, at, j)
            if direct:
                index, entropy = self._direct_tables()
                out[at] = entropy[index[j][ctx]]
            else:
                out[at] = self._unique_entropies(ctx, np.full(len(at), j, dtype=np.int64))
        return out

    def _unique_entropies(self, ctx: np.ndarray, level: np.ndarray) -> np.ndarray:
        unique, inverse = np.unique((ctx.astype(np.int64) << 3) | level, return_inverse=True)
        entropy = np.empty(len(unique))
        for lo in range(0, len(unique), SCORE_BATCH):
            hi = min(lo + SCORE_BATCH, len(unique))
            entropy[lo:hi] = _entropy(self._distributions(unique[lo:hi] >> 3, unique[lo:hi] & 7))
        return entropy[inverse]

    def _direct_tables(self) -> tuple[list[np.ndarray], np.ndarray]:
        """index[L][c]: for the packed context c of L bytes, the row in `entropy` of its longest suffix
        seen in training (row 0: the uniform distribution). Built once, level by level: a context's
        distribution is its smoothing step applied to the distribution of its longest shorter seen suffix,
        exactly the rows _distributions builds, so the entropies are the same to the bit."""
        if self._lookup is None:
            top = min(self.order - 1, DIRECT_CONTEXT_BYTES)
            uniform = np.full((1, 256), 1.0 / 256)
            dists, entropies, index = [uniform], [_entropy(uniform)], []
            rows = 1
            for k in range(top + 1):
                table = self.tables[k]
                contexts = table["contexts"]
                deepest = np.zeros(1, dtype=np.int32) if k == 0 else np.tile(index[k - 1], 256)
                if len(contexts):
                    lower = np.concatenate(dists)
                    entropy = np.empty(len(contexts))
                    kept = np.empty((len(contexts), 256)) if k < top else None
                    for lo in range(0, len(contexts), SCORE_BATCH):
                        at = np.arange(lo, min(lo + SCORE_BATCH, len(contexts)))
                        dist = self._smooth(table, at, lower[deepest[contexts[at]]])
                        entropy[at] = _entropy(dist)
                        if kept is not None:
                            kept[at] = dist
                    deepest[contexts] = rows + np.arange(len(contexts), dtype=np.int32)
                    rows += len(contexts)
                    entropies.append(entropy)
                    if kept is not None:
                        dists.append(kept)
                index.append(deepest)
            self._lookup = (index, np.concatenate(entropies))
        return self._lookup

    # --- scoring a long text piece by piece (the transformer model has the same three methods) -----

    def context_start(self, pos: int) -> int:
        """The first byte that the scores from position `pos` on read: the order-1 bytes before it."""
        return max(0, pos - (self.order - 1))

    def entropies_from(self, x: bytes | np.ndarray, lo: int, pos: int) -> np.ndarray:
        """The entropies of data[pos:lo + len(x)] for x = data[lo:lo + len(x)], a part of a longer text
        `data` with lo <= context_start(pos): exactly the whole text's there."""
        part, skip = self._from(x, lo, pos, "entropies_from")
        return self.flat_entropies(part, np.zeros(1, dtype=np.int64), np.array([len(part)], dtype=np.int64))[skip:] if len(part) else np.zeros(0)

    def score_from(self, x: bytes | np.ndarray, lo: int, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """(entropy, surprisal) of data[pos:lo + len(x)], as `entropies_from`."""
        part, skip = self._from(x, lo, pos, "score_from")
        if not len(part):
            return np.zeros(0), np.zeros(0)
        entropy, surprisal = self.score_batch([part])[0]
        return entropy[skip:], surprisal[skip:]

    def _from(self, x: bytes | np.ndarray, lo: int, pos: int, caller: str) -> tuple[np.ndarray, int]:
        """(the bytes from context_start(pos) on, how many of them come before pos), or an empty part
        when pos is past x. Its first byte reads as a document start: only positions with their full
        context are kept."""
        x = _as_array(x)
        if pos >= lo + len(x):
            return x[:0], 0
        first = self.context_start(pos)
        if not 0 <= lo <= first:
            raise ValueError(f"{caller}: position {pos} needs the bytes from {first} on, not from {lo}")
        return x[first - lo :], pos - first

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_lookup": None}  # the lookup tables are rebuilt, not copied

    # --- saving ---------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        arrays = {f"{name}_{k}": table[name] for k, table in enumerate(self.tables) for name in table}
        np.savez_compressed(directory / "ngram.npz", **arrays)
        (directory / "ngram.json").write_text(json.dumps(self.params) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "NgramEntropyModel":
        from toklab.segmenters.base import reading

        with reading(directory / "ngram.json"):
            params = json.loads((directory / "ngram.json").read_text(encoding="utf-8"))
            order, smoothing = params["order"], params["smoothing"]
            if not (isinstance(order, int) and 1 <= order <= MAX_ORDER) or smoothing not in SMOOTHINGS:
                raise ValueError(f"order {order!r}, smoothing {smoothing!r}")
        with reading(directory / "ngram.npz"):
            with np.load(directory / "ngram.npz") as arrays:
                tables = [{name: arrays[f"{name}_{k}"] for name in ("keys", "counts", "contexts", "totals", "types")} for k in range(order)]
        return cls(order, smoothing, tables)


def _merge(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    keys = np.concatenate([k for k, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.int64)
