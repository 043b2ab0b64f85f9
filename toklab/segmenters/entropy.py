"""`entropy:...`: BLT-style entropy patches, with a patch vocabulary so they can also be token ids.

A byte-level model (a smoothed n-gram by default, `model=transformer` for a small causal
transformer) predicts every next byte; a patch starts where it is uncertain (see patching.py).
The threshold is given (`theta=1.3`) or calibrated by bisection so that patches on held-out
train-split text average `target` bytes (`target=4.5`, the default).

Patches are open-vocabulary. For token ids, the `V - 257` most frequent multi-byte patches of the
train split get ids of their own; any other patch is spelled with byte ids 0-255, so encoding
stays lossless. Spec: `entropy[:V][,target=4.5|theta=T][,rule=global|monotonic|both]
[,relative=R][,max_len=N][,split_utf8=1][,model=ngram|transformer][,order=4][,smoothing=...]`.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from toklab.errors import ToklabError
from toklab.segmenters import options as opt
from toklab.segmenters import base
from toklab.segmenters.base import CUT_STREAM, PieceSegmenter, check_vocab_size, cpu_count, reading, size_groups, take_bytes
from toklab.segmenters.base import ReportColumn, ReportGroup
from toklab.segmenters.entropy_models import MAX_ORDER, SMOOTHINGS, NgramEntropyModel
from toklab.segmenters.patching import RULES, calibrate, cap_lengths, patch_starts, patch_starts_batch, utf8_continuation

DEFAULT_TARGET = 4.5
SCORE_CHUNK_BYTES = 2**19  # documents scored together in one call (512 KiB: faster in cache than 4 MiB, and threads balance)
MODELS = ("ngram", "transformer")
TRANSFORMER_OPTIONS = ("steps", "context", "n_layer", "n_head", "d_model")
MAX_PATCH_BYTES = 2**20  # max_len and target: a patch of a mebibyte is no longer a token
TRANSFORMER_BOUNDS = {"steps": (1, 10**7), "context": (2, 2**16), "n_layer": (1, 256), "n_head": (1, 256), "d_model": (1, 2**16)}
# The transformer's own defaults (TransformerEntropyModel.train; importing it needs torch), shown by
# `toklab segmenters`; a test checks they agree.
TRANSFORMER_DEFAULTS = {"steps": 300, "context": 256, "n_layer": 2, "n_head": 4, "d_model": 128}
TRANSFORMER_HELP = {
    "steps": "training steps", "context": "bytes the model reads", "n_layer": "layers", "n_head": "attention heads",
    "d_model": "width (a multiple of n_head)",
}  # fmt: skip
OPTION_INFO = (
    opt.Option("target", "real", DEFAULT_TARGET, "calibrate the threshold so patches average this many bytes", low=1.0, high=MAX_PATCH_BYTES),
    opt.Option("theta", "real", None, "a fixed entropy threshold instead of target="),
    opt.Option("rule", "choice", "global", "a patch starts where entropy > theta (global), rises > theta (monotonic), or either", choices=RULES, what="patching rule"),
    opt.Option("relative", "real", 0.0, "the threshold of the monotonic test under rule=both"),
    opt.Option("max_len", "whole", None, "longest patch in bytes (default: no limit)", low=1, high=MAX_PATCH_BYTES),
    opt.Option("split_utf8", "bool", False, "let a patch start inside a UTF-8 character"),
    opt.Option("model", "choice", "ngram", "byte model: smoothed n-gram, or a small causal transformer", choices=MODELS, what="entropy model"),
    opt.Option("order", "whole", 4, "n-gram order (bytes of context + 1)", low=1, high=MAX_ORDER),
    opt.Option("smoothing", "choice", "interpolated", "n-gram smoothing", choices=SMOOTHINGS, what="smoothing"),
    opt.Option("calibration_bytes", "bytes", "8mib", "held-out train text used to calibrate the threshold", low=1),
    opt.Option("max_train_bytes", "bytes", "64mib", "train-split text read to fit the byte model", low=1),
    *(
        opt.Option(key, "whole", TRANSFORMER_DEFAULTS[key], f"transformer model: {TRANSFORMER_HELP[key]}", low=low, high=high)
        for key, (low, high) in TRANSFORMER_BOUNDS.items()
    ),
)
OPTIONS = opt.option_table(OPTION_INFO)


def check_options(options: dict[str, str]) -> dict[str, Any]:
    """Spec options -> typed options, each within its bounds (finite numbers only): a mistake is
    found when the spec is parsed, before any text is read."""
    kind = "entropy"
    opt.check_unknown(kind, options, OPTIONS)
    if "target" in options and "theta" in options:
        raise ToklabError("give entropy either target= (calibrated) or theta= (fixed), not both")
    def given(key: str) -> Any:
        """The option's checked value, or its default (a default written like `8mib` is typed too)."""
        option = OPTIONS[key]
        if key in options:
            return option.check(kind, options[key])
        return option.check(kind, option.default) if isinstance(option.default, str) else option.default

    out: dict[str, Any] = {
        key: given(key)
        for key in ("rule", "model", "relative", "max_len", "split_utf8", "order", "smoothing", "calibration_bytes", "max_train_bytes", "theta")
    }
    out["target"] = None
    if "target" in options:
        out["target"] = given("target")
    elif out["theta"] is None:
        out["target"] = DEFAULT_TARGET
    if out["target"] is not None and out["max_len"] is not None and out["target"] > out["max_len"]:
        given = f"target={options['target']}" if "target" in options else f"the default target={out['target']}"
        raise ToklabError(f"entropy {given} cannot be reached with max_len={options['max_len']}: patches are at most max_len bytes (give a smaller target or a theta)")
    transformer = {k: OPTIONS[k].check(kind, options[k]) for k in TRANSFORMER_OPTIONS if k in options}
    if out["model"] == "transformer":
        config = _transformer_config()
        check = config(**{k: v for k, v in transformer.items() if k != "steps"})
        try:
            check.check()
        except ToklabError as exc:
            raise ToklabError(f"entropy option(s) {', '.join(f'{k}={options[k]}' for k in transformer) or '(defaults)'}: {exc}") from None
    out["transformer"] = transformer
    return out


def _transformer_config() -> Any:
    try:
        from toklab.segmenters.entropy_transformer import TransformerConfig
    except ImportError as exc:
        raise ToklabError(f"the transformer entropy model is not available: {exc}") from None
    return TransformerConfig


def _transformer_model() -> Any:
    try:
        from toklab.segmenters.entropy_transformer import TransformerEntropyModel
    except ImportError as exc:
        raise ToklabError(f"the transformer entropy model is not available: {exc}") from None
    return TransformerEntropyModel


def _load_model(kind: str, directory: Path) -> Any:
    if kind == "ngram":
        return NgramEntropyModel.load(directory)
    return _transformer_model().load(directory)


class EntropySegmenter(PieceSegmenter):
    kind = "entropy"
    summary = "BLT-style entropy patches: a byte model's next-byte entropy cuts patches; a patch vocabulary gives ids"
    option_info = OPTION_INFO
    trainable = True
    default_vocab_size = 32000
    min_vocab_size = 258
    min_vocab_reason = "256 bytes, <|endoftext|>, a patch"
    report_groups = (
        ReportGroup(
            "entropy patches",
            (
                ReportColumn("mean_patch_bytes", "mean\npatch B", "2f"),
                ReportColumn("median_patch_bytes", "median\npatch B", "1f"),
                ReportColumn("max_patch_bytes", "max\npatch B", "int"),
                ReportColumn("model_bits_per_byte", "model\nbits/B", "3f"),
                ReportColumn("vocab_patch_coverage", "vocab covers\npatches", "percent"),
                ReportColumn("vocab_byte_coverage", "vocab covers\nbytes", "percent"),
            ),
            "model bits/B: the entropy model's own cross-entropy on the validation split",
        ),
    )

    def __init__(self, model: Any, theta: float, rule: str, patches: list[bytes], *, relative: float = 0.0,
                 max_len: int | None = None, split_utf8: bool = False, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.model, self.theta, self.rule = model, theta, rule
        self.relative, self.max_len, self.split_utf8 = relative, max_len, split_utf8
        self._set_pieces(patches)
        self._ids = {piece: 256 + i for i, piece in enumerate(patches)}
        self._table: _PatchTable | None = None  # built on the first encode_batch

    # --- patching ---------------------------------------------------------------------------------

    def _scores(self, docs: Sequence[bytes]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(entropy, surprisal) per document; both models score many documents per call."""
        return [score for batch in _groups(docs) for score in self.model.score_batch(batch)]

    def _starts(self, entropy: np.ndarray, data: bytes) -> np.ndarray:
        return patch_starts(entropy, np.frombuffer(data, dtype=np.uint8), self.theta, self.rule, relative=self.relative, max_len=self.max_len, split_utf8=self.split_utf8)

    def entropy_trace(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """(next-byte entropy of every byte, patch-start flags) of one text's bytes, as encode cuts it."""
        entropy = self._scores([data])[0][0]
        return entropy, self._starts(entropy, data)

    def patches(self, text: str) -> list[bytes]:
        """The raw (open-vocabulary) patches of `text`, as bytes."""
        data = text.encode("utf-8")
        return _cut(data, self.entropy_trace(data)[1])

    def _ids_of(self, data: bytes, starts: np.ndarray) -> list[int]:
        ids: list[int] = []
        for piece in _cut(data, starts):
            token = self._ids.get(piece)
            if token is None:
                ids.extend(piece)  # byte fallback keeps any patch representable
            else:
                ids.append(token)
        return ids

    # --- the segmenter interface ------------------------------------------------------------------

    @property
    def cut_rule(self) -> str | None:  # type: ignore[override]
        """Both models' entropy at a byte depends only on a stretch of bytes before it that its position
        decides (`model.context_start`: the n-gram model's order-1 bytes, the transformer's window), so a
        long text is encoded in pieces carrying that context across (`_long_pieces`)."""
        return CUT_STREAM if hasattr(self.model, "context_start") else None

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str], workers: int | None = None) -> list[list[int]]:
        return self._encode_batch_cut(texts, workers)

    arrays_native = True  # the ids come out of numpy (`_encode_group`)

    def _piece_arrays(self, pieces: list[str], workers: int | None = None) -> list[np.ndarray]:
        """Both models score many documents per call, so no process pool. The n-gram model's work is
        numpy calls that release the GIL: its groups run in `workers` threads. The transformer's torch
        calls use every core already. Groups are made by characters and encoded to UTF-8 in the
        threads, so one thread's encode (which holds the GIL) overlaps the other's numpy. A document's
        ids do not depend on its group."""
        workers = cpu_count() if workers is None else max(1, workers)
        if not hasattr(self.model, "flat_entropies"):
            workers = 1
        groups = list(size_groups(pieces, SCORE_CHUNK_BYTES, parts=workers))
        if workers == 1 or len(groups) == 1:
            return [ids for group in groups for ids in self._encode_texts(group)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return [ids for done in pool.map(self._encode_texts, groups) for ids in done]

    def _encode_texts(self, texts: list[str]) -> list[np.ndarray]:
        return self._encode_group([t.encode("utf-8") for t in texts])

    def _long_pieces(self, text: str, size: int | None = None, workers: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """A long text in pieces that end where a patch starts (`_windows`), with exactly the ids of
        the whole text."""
        data = text.encode("utf-8")
        x_all = np.frombuffer(data, dtype=np.uint8)
        if self._table is None:
            self._table = _PatchTable(self._pieces[256:-1], self._ids)
        for pos, cut, starts in self._windows(data, size):
            tokens, kept = self._table.tokens(x_all[pos:cut], starts)
            yield data[pos:cut].decode("utf-8"), tokens[kept].astype(np.int64)

    def _windows(self, data: bytes, size: int | None = None, capped: bool = True) -> Iterator[tuple[int, int, np.ndarray]]:
        """(start, end, patch starts of data[start:end]) for consecutive pieces of about `size` bytes
        (default CUT_CHARS), each ending where a patch starts, with the patches of the whole text:
        the entropies from a piece's first byte on are computed with the bytes before it that they
        read (`model.context_start`: the n-gram model's order-1 bytes, the start of the transformer's
        window), so they are the whole text's (the transformer's to float32 rounding: its windows may
        run in other batches); a patch start (before the length cap) depends only on its byte and the
        entropies at and just before it (the piece's first byte is a start already), and the cap only
        cuts inside a patch whose two ends are known. A patch longer than a window widens the window.
        capped=False leaves out the max_len cap (a caller that caps causally itself: every piece
        starts at an uncapped start)."""
        size = base.CUT_CHARS if size is None else max(1, size)
        x_all = np.frombuffer(data, dtype=np.uint8)
        one = np.zeros(1, dtype=np.int64)
        pos, n = 0, len(data)
        while pos < n:
            end = min(n, pos + size)
            lo = self.model.context_start(pos)  # the bytes the entropies from pos on read
            while True:
                entropy = self.model.entropies_from(x_all[lo:end], lo, pos)  # those of data[pos:end]
                starts = patch_starts_batch(entropy, x_all[pos:end], one, self.theta, self.rule, relative=self.relative, split_utf8=self.split_utf8)
                if end == n:
                    cut = n
                    break
                later = np.flatnonzero(starts[1:]) + pos + 1
                if self.split_utf8:  # pieces are text: end them at a character boundary
                    later = later[~utf8_continuation(x_all[later])]
                if len(later):
                    cut = int(later[-1])
                    break
                end = min(n, pos + 2 * (end - pos))
            mine = starts[: cut - pos].copy()
            mine[0] = True  # the text's start, or a start found in the window before
            if capped and self.max_len is not None:
                mine = cap_lengths(mine, x_all[pos:cut], self.max_len, self.split_utf8)
            yield pos, cut, mine
            pos = cut

    def _encode_group(self, docs: list[bytes]) -> list[np.ndarray]:
        """The ids (int64 arrays) of documents laid end to end: entropies, patch starts and ids in whole
        arrays; the same ids as _ids_of(d, _starts(entropy, d)) document by document."""
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        offsets = np.cumsum(lengths) - lengths
        x = np.frombuffer(b"".join(docs), dtype=np.uint8)
        firsts = offsets[lengths > 0]
        if hasattr(self.model, "flat_entropies"):
            entropy = self.model.flat_entropies(x, firsts, lengths[lengths > 0])
        else:
            entropy = np.concatenate([np.zeros(0)] + [e for e, _ in self.model.score_batch(docs)])
        starts = patch_starts_batch(entropy, x, firsts, self.theta, self.rule, relative=self.relative, max_len=self.max_len, split_utf8=self.split_utf8)
        if self._table is None:
            self._table = _PatchTable(self._pieces[256:-1], self._ids)
        tokens, kept = self._table.tokens(x, starts)
        # each document's first id: the kept bytes before its offset (a cumsum of the bools casts slowly)
        bounds = np.searchsorted(np.flatnonzero(kept), offsets[1:])
        return np.split(tokens[kept].astype(np.int64), bounds)

    def extra_measures(self, texts: Sequence[str]) -> dict[str, float]:
        """Raw patch lengths, the entropy model's own bits-per-byte (its cross-entropy), and the share
        of patches and of bytes whose patch is a single id of the patch vocabulary."""
        docs = [t.encode("utf-8") for t in texts]
        short = [d for t, d in zip(texts, docs) if not self._long(t)]
        scores = self._scores(short)
        patches = [p for d, (e, _) in zip(short, scores) for p in _cut(d, self._starts(e, d))]
        lengths = [np.array([len(p) for p in patches], dtype=np.int32)]
        n_patches, n_covered, covered_bytes = len(patches), 0, 0
        for p in patches:
            if len(p) == 1 or p in self._ids:  # a patch that is one token id
                n_covered, covered_bytes = n_covered + 1, covered_bytes + len(p)
        bits = sum(float(s.sum()) for _, s in scores)
        for data in (d for t, d in zip(texts, docs) if self._long(t)):  # window by window: bounded memory
            x_all = np.frombuffer(data, dtype=np.uint8)
            for pos, cut, starts in self._windows(data):
                pieces = _cut(data[pos:cut], starts)
                lengths.append(np.array([len(p) for p in pieces], dtype=np.int32))
                n_patches += len(pieces)
                for p in pieces:
                    if len(p) == 1 or p in self._ids:
                        n_covered, covered_bytes = n_covered + 1, covered_bytes + len(p)
                lo = self.model.context_start(pos)  # surprisals from pos on, with the bytes they read
                bits += float(self.model.score_from(x_all[lo:cut], lo, pos)[1].sum())
        all_lengths = np.concatenate(lengths)
        n_bytes = sum(len(d) for d in docs)
        return {
            "mean_patch_bytes": float(all_lengths.mean()) if n_patches else float("nan"),
            "median_patch_bytes": float(np.median(all_lengths)) if n_patches else float("nan"),
            "max_patch_bytes": float(all_lengths.max()) if n_patches else float("nan"),
            "model_bits_per_byte": bits / n_bytes if n_bytes else float("nan"),
            "vocab_patch_coverage": n_covered / n_patches if n_patches else float("nan"),
            "vocab_byte_coverage": covered_bytes / n_bytes if n_bytes else float("nan"),
        }

    # --- training ---------------------------------------------------------------------------------

    @classmethod
    def check_spec(cls, arg: str | None, options: dict[str, str]) -> None:
        check_options(options)

    @classmethod
    def training_revision(cls, options: dict[str, str]) -> int:
        """1 for the transformer model: its windows were anchored at the text's end before, which
        changed the entropies θ is calibrated on, so older cached ones are not reused."""
        return 1 if check_options(options)["model"] == "transformer" else 0

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, **options: str) -> "EntropySegmenter":
        opts = check_options(options)
        opt.vocab_size_range("entropy patch", vocab_size, cls.min_vocab_size, cls.max_vocab_size, cls.min_vocab_reason)
        model_kind, target = opts["model"], opts["target"]
        rule_options = {k: opts[k] for k in ("rule", "relative", "max_len", "split_utf8")}

        docs = take_bytes((t.encode("utf-8") for t in texts), opts["max_train_bytes"])
        if not docs:
            raise ToklabError("cannot train entropy patching: no training text")
        # Calibrate on every 10th document, held out from the entropy model, so that theta is set on
        # entropies like those of unseen text rather than on text the model has memorised.
        held_out = docs[::10] if len(docs) >= 10 else docs
        fit = [d for i, d in enumerate(docs) if i % 10] if len(docs) >= 10 else docs
        if model_kind == "ngram":
            model: Any = NgramEntropyModel.train(fit, order=opts["order"], smoothing=opts["smoothing"])
        else:
            model = _transformer_model().train((d.decode("utf-8", errors="replace") for d in fit), **opts["transformer"])
        segmenter = cls(model, 0.0, params={}, patches=[], **rule_options)
        sample = take_bytes(held_out, opts["calibration_bytes"])
        entropies = [e for e, _ in segmenter._scores(sample)]
        arrays = [np.frombuffer(d, dtype=np.uint8) for d in sample]
        if target is not None:
            theta, achieved = calibrate(entropies, arrays, target, **rule_options)
        else:
            theta = opts["theta"]
            achieved = sum(map(len, sample)) / sum(int(segmenter._starts(e, d).sum()) for e, d in zip(entropies, sample))
        segmenter.theta = theta

        counts: collections.Counter[bytes] = collections.Counter()
        for d, (e, _) in zip(docs, segmenter._scores(docs)):
            counts.update(_cut(d, segmenter._starts(e, d)))
        n_patches, n_bytes = sum(counts.values()), sum(len(p) * c for p, c in counts.items())
        multi = [(p, c) for p, c in counts.most_common() if len(p) > 1]
        chosen = [p for p, _ in multi[: vocab_size - 257]]
        chosen_set = set(chosen)
        covered = [(p, c) for p, c in counts.items() if len(p) == 1 or p in chosen_set]
        params = {
            "theta": theta,
            "target": target,
            "calibration_bytes_per_patch": achieved,
            "model": model_kind,
            **{k: v for k, v in model.params.items()},
            **rule_options,
            "patch_coverage": sum(c for _, c in covered) / n_patches,
            "byte_coverage": sum(len(p) * c for p, c in covered) / n_bytes,
            "distinct_patches": len(counts),
        }
        return cls(model, theta, patches=chosen, params=params, **rule_options)

    # --- saving -----------------------------------------------------------------------------------

    def _save_files(self, directory: Path) -> None:
        self.model.save(directory)
        config = {"model": self.model.kind, "theta": self.theta, "rule": self.rule, "relative": self.relative, "max_len": self.max_len, "split_utf8": self.split_utf8}
        (directory / "entropy.json").write_text(json.dumps(config) + "\n")
        patches = self._pieces[256:-1]
        (directory / "patches.txt").write_text("".join(base64.b64encode(p).decode() + "\n" for p in patches))

    @classmethod
    def _load(cls, directory: Path, manifest: dict[str, Any]) -> "EntropySegmenter":
        path = directory / "entropy.json"
        with reading(path):
            config = json.loads(path.read_text(encoding="utf-8"))
            model_kind, theta, rule = config.pop("model"), float(config.pop("theta")), config.pop("rule")
            if model_kind not in MODELS or rule not in RULES or set(config) - {"relative", "max_len", "split_utf8"}:
                raise ValueError("unknown settings")
        path = directory / "patches.txt"
        with reading(path):
            patches = [base64.b64decode(line, validate=True) for line in path.read_text(encoding="ascii").split()]
            if any(len(p) < 2 for p in patches):
                raise binascii.Error("a patch of fewer than 2 bytes")
        check_vocab_size(path, 256 + len(patches) + 1, manifest)
        model = _load_model(model_kind, directory)
        return cls(model, theta, rule, patches, params=manifest.get("params"), **config)


def _cut(data: bytes, starts: np.ndarray) -> list[bytes]:
    positions = np.flatnonzero(starts).tolist()
    return [data[s:e] for s, e in zip(positions, positions[1:] + [len(data)])]


def _groups(docs: Sequence[bytes], parts: int = 1) -> Iterable[list[bytes]]:
    """Consecutive documents, about SCORE_CHUNK_BYTES at a time, or `parts` equal groups when smaller."""
    return size_groups(docs, SCORE_CHUNK_BYTES, parts)


SHORT_PATCH = 7  # a patch of up to 7 bytes packs exactly into a uint64 key, with its length in the top byte
KEY_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(SHORT_PATCH + 1)], dtype=np.uint64)
SLOT_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
# A patch of 8 to 16 bytes is exactly its first 8 bytes, its last 8 (overlapping) and its length.
MEDIUM_PATCH = 16
MIX_MULTIPLIERS = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def _words(x: np.ndarray) -> np.ndarray:
    """The 8 bytes from each position of x as a little-endian uint64 (zeros past the end)."""
    padded = np.concatenate([x, np.zeros(8, dtype=np.uint8)])
    return np.ndarray(len(x), dtype="<u8", buffer=padded, strides=(1,))


def _short_keys(words: np.ndarray, begins: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The key of each x[begin : begin + length] (length <= SHORT_PATCH; words = _words(x)): its bytes
    little-endian, and the length times 2**56."""
    return (words[begins] & KEY_MASKS[lengths]) | (lengths.astype(np.uint64) << np.uint64(56))


def _medium_keys(words: np.ndarray, begins: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first 8 bytes, last 8 bytes, hash of both and the length) of each x[begin : begin + length],
    8 <= length <= MEDIUM_PATCH (words = _words(x)): the two words and the length are the patch exactly."""
    first, last = words[begins], words[begins + lengths - 8]
    return first, last, _mix(first ^ _mix(last + lengths.astype(np.uint64)))


def _mix(h: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (xor-shifts and odd multipliers): every input bit moves every output bit, so
    keys that differ in one byte, wherever it is, get unrelated hashes."""
    h = (h ^ (h >> np.uint64(30))) * MIX_MULTIPLIERS[0]
    h = (h ^ (h >> np.uint64(27))) * MIX_MULTIPLIERS[1]
    return h ^ (h >> np.uint64(31))


class _PatchTable:
    """The patch vocabulary for vectorised lookup. Patches of up to SHORT_PATCH bytes go by exact
    uint64 keys in a hash table (slots by multiplicative hashing; keys sharing a slot are searched in a
    sorted array); longer ones by the dict."""

    def __init__(self, patches: Sequence[bytes], ids: dict[bytes, int]) -> None:
        short = [i for i, p in enumerate(patches) if len(p) <= SHORT_PATCH]
        data = np.frombuffer(b"".join(patches[i] for i in short), dtype=np.uint8)
        lengths = np.array([len(patches[i]) for i in short], dtype=np.int64)
        self.keys = _short_keys(_words(data), np.cumsum(lengths) - lengths, lengths)
        self.ids = np.array([256 + i for i in short], dtype=np.int64)
        self.bits = max(10, int(len(short) * 8).bit_length())
        slots = self._slots(self.keys)
        unique, counts = np.unique(slots, return_counts=True)
        self.table = np.full(2**self.bits, -1, dtype=np.int64)
        self.table[unique[counts > 1]] = -2  # a shared slot: look in the sorted keys
        alone = np.isin(slots, unique[counts == 1])
        self.table[slots[alone]] = np.flatnonzero(alone)
        order = np.argsort(self.keys)
        self.sorted_keys, self.sorted_ids = self.keys[order], self.ids[order]
        self.long = {p: t for p, t in ids.items() if len(p) > SHORT_PATCH}
        self.longest = max(map(len, patches), default=0)
        # Every dict patch hashed once (first 8 bytes, last 8, length): a text's patch goes to the dict
        # only on a hash hit. Those of up to MEDIUM_PATCH bytes are looked up by their sorted hashes,
        # the key checked on a hit; if two of them shared a hash (never seen), the dict does it all.
        longer = list(self.long)
        data = np.frombuffer(b"".join(longer), dtype=np.uint8)
        lengths = np.array([len(p) for p in longer], dtype=np.int64)
        first, last, hashes = _medium_keys(_words(data), np.cumsum(lengths) - lengths, lengths)
        self.long_hashes = np.sort(hashes)
        medium = np.flatnonzero(lengths <= MEDIUM_PATCH)
        order = medium[np.argsort(hashes[medium])]
        self.medium = len(np.unique(hashes[medium])) == len(medium)
        self.medium_hashes, self.medium_first, self.medium_last = hashes[order], first[order], last[order]
        self.medium_lengths = lengths[order]
        self.medium_ids = np.array([self.long[longer[i]] for i in order.tolist()], dtype=np.int64)

    def _medium_ids(self, words: np.ndarray, begins: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The id of each x[begin : begin + length] (8 <= length <= MEDIUM_PATCH; words = _words(x)),
        -1 where it is none."""
        first, last, hashes = _medium_keys(words, begins, lengths)
        if not len(self.medium_hashes):
            return np.full(len(begins), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.medium_hashes, hashes), len(self.medium_hashes) - 1)
        same = (self.medium_hashes[at] == hashes) & (self.medium_first[at] == first) & (self.medium_last[at] == last) & (self.medium_lengths[at] == lengths)
        return np.where(same, self.medium_ids[at], -1)

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        return ((keys * SLOT_MULTIPLIER) >> np.uint64(64 - self.bits)).astype(np.int64)

    def _ids_of_keys(self, keys: np.ndarray) -> np.ndarray:
        """The id of each key, -1 where it is no vocabulary patch."""
        slot = self.table[self._slots(keys)]
        found = np.where((slot >= 0) & (self.keys[np.maximum(slot, 0)] == keys), self.ids[np.maximum(slot, 0)], -1)
        shared = np.flatnonzero(slot == -2)
        if len(shared):
            at = np.minimum(np.searchsorted(self.sorted_keys, keys[shared]), len(self.sorted_keys) - 1)
            found[shared] = np.where(self.sorted_keys[at] == keys[shared], self.sorted_ids[at], -1)
        return found

    def tokens(self, x: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, kept): at the first byte of a vocabulary patch its id, elsewhere the byte; kept is
        False on the other bytes of vocabulary patches, so tokens[kept] are the ids."""
        tokens = x.astype(np.int32)
        positions = np.flatnonzero(starts)
        lengths = np.diff(np.append(positions, len(x)))
        short = np.flatnonzero((lengths >= 2) & (lengths <= SHORT_PATCH))
        words = _words(x)  # once for both lookups: a padded copy of x
        ids = self._ids_of_keys(_short_keys(words, positions[short], lengths[short]))
        hit = short[ids >= 0]
        begins, sizes, ids = positions[hit], lengths[hit], ids[ids >= 0]
        if self.medium:
            medium = np.flatnonzero((lengths > SHORT_PATCH) & (lengths <= min(MEDIUM_PATCH, self.longest)))
            found = self._medium_ids(words, positions[medium], lengths[medium])
            hit = medium[found >= 0]
            begins, sizes, ids = np.concatenate([begins, positions[hit]]), np.concatenate([sizes, lengths[hit]]), np.concatenate([ids, found[found >= 0]])
        long = np.flatnonzero((lengths > (MEDIUM_PATCH if self.medium else SHORT_PATCH)) & (lengths <= self.longest))
        if len(long) and len(self.long_hashes):
            hashes = _medium_keys(words, positions[long], lengths[long])[2]
            at = np.minimum(np.searchsorted(self.long_hashes, hashes), len(self.long_hashes) - 1)
            long = long[self.long_hashes[at] == hashes]  # the dict confirms (a hash may collide)
            data = x.tobytes()
            found = np.array([self.long.get(data[b : b + n], -1) for b, n in zip(positions[long].tolist(), lengths[long].tolist())], dtype=np.int64)
            hit = long[found >= 0]
            begins, sizes, ids = np.concatenate([begins, positions[hit]]), np.concatenate([sizes, lengths[hit]]), np.concatenate([ids, found[found >= 0]])
        inside = np.zeros(len(x) + 1, dtype=np.int8)  # +1 after a vocabulary patch's first byte, -1 at its end
        tokens[begins] = ids
        inside[begins + 1] = 1
        inside[begins + sizes] = -1
        return tokens, np.cumsum(inside[:-1], dtype=np.int8) == 0
