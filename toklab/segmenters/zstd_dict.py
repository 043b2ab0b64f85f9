"""`zstd-dict:<V>`: a vocabulary derived from a trained zstd dictionary, with optimal parsing.

zstd's dictionary trainer (`zstandard.train_dictionary`, fastCOVER; k, d, f, steps and accel
exposed) picks the byte strings that recur in the train split. The vocabulary is the 256 single
bytes plus the V-257 substrings of the dictionary (2 to `max_len` bytes) that would save the most
bytes on the train split (occurrences x (length - 1)), plus <|endoftext|>. Occurrences are
counted for all candidates of one length at once with numpy (sorted fixed-width windows), never
by a quadratic scan.

Encoding is either optimal (the fewest tokens: dynamic programming over the text, each position
trying the vocabulary strings that start there, found by walking a prefix set, so the cost is
linear in text length x max_len) or greedy longest-match. Both are lossless: every byte is a token.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from toklab.errors import ToklabError
from toklab.segmenters.base import PieceSegmenter, take_bytes

OPTIONS = {"dict_size", "max_len", "parse", "k", "d", "f", "steps", "accel", "sample_bytes", "max_train_bytes"}
PARSES = ("optimal", "greedy")


def _size(text: str, name: str) -> int:
    from toklab.segmenters.registry import parse_vocab_size

    value = text.strip().lower()
    multiplier = 1024 if value.endswith("kib") else 1
    value = value[:-3] if value.endswith("kib") else value
    return parse_vocab_size(value, f"{name}={text}") * multiplier


def _windows(data: np.ndarray, length: int) -> np.ndarray:
    """Every `length`-byte window of `data` as one fixed-width void value, so numpy can sort them."""
    if len(data) < length:
        return np.zeros(0, dtype=f"V{length}")
    view = np.lib.stride_tricks.sliding_window_view(data, length)
    return np.ascontiguousarray(view).view(f"V{length}").ravel()


def candidate_savings(dictionary: bytes, sample: Sequence[bytes], max_len: int) -> list[tuple[int, bytes]]:
    """(bytes saved on `sample`, string) for every substring of `dictionary` of 2..max_len bytes."""
    content = np.frombuffer(dictionary, dtype=np.uint8)
    docs = [np.frombuffer(d, dtype=np.uint8) for d in sample if d]
    out: list[tuple[int, bytes]] = []
    for length in range(2, max_len + 1):
        candidates = np.unique(_windows(content, length))
        if not len(candidates):
            break
        windows = [_windows(d, length) for d in docs]
        seen, counts = np.unique(np.concatenate(windows) if windows else np.zeros(0, f"V{length}"), return_counts=True)
        hits = np.isin(seen, candidates, assume_unique=True)
        out += [(int(c) * (length - 1), bytes(s)) for s, c in zip(seen[hits], counts[hits])]
    return out


class ZstdDictSegmenter(PieceSegmenter):
    kind = "zstd-dict"
    trainable = True

    def __init__(self, dictionary: bytes, strings: list[bytes], parse: str = "optimal", params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        if parse not in PARSES:
            raise ToklabError(f"unknown parse '{parse}' (use optimal or greedy)")
        self.dictionary = dictionary
        self.parse = parse
        self._set_pieces(strings)
        self._ids = {piece: i for i, piece in enumerate(self._pieces[:-1])}
        self._prefixes = {s[:i] for s in strings for i in range(1, len(s) + 1)}
        self.max_len = max((len(s) for s in strings), default=1)

    # --- parsing ----------------------------------------------------------------------------------

    def _matches(self, data: bytes, i: int) -> list[int]:
        """Lengths of the vocabulary strings that start at data[i] (always 1: every byte is one)."""
        lengths = [1]
        for j in range(i + 2, min(i + self.max_len, len(data)) + 1):
            piece = data[i:j]
            if piece not in self._prefixes:
                break
            if piece in self._ids:
                lengths.append(j - i)
        return lengths

    def parse_lengths(self, data: bytes) -> list[int]:
        """Token lengths of `data` under the chosen parse."""
        n = len(data)
        if self.parse == "greedy":
            out, i = [], 0
            while i < n:
                step = self._matches(data, i)[-1]
                out.append(step)
                i += step
            return out
        best = [0] * (n + 1)  # fewest tokens for data[i:]
        choice = [1] * (n + 1)
        for i in range(n - 1, -1, -1):
            options = self._matches(data, i)
            step = min(options, key=lambda length: (best[i + length], -length))  # ties: the longest token
            best[i], choice[i] = best[i + step] + 1, step
        out, i = [], 0
        while i < n:
            out.append(choice[i])
            i += choice[i]
        return out

    # --- the segmenter interface ------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        ids, i = [], 0
        for length in self.parse_lengths(data):
            ids.append(self._ids[data[i : i + length]])
            i += length
        return ids

    def extra_measures(self, texts: Sequence[str]) -> dict[str, float]:
        """The dictionary's size and what zstd 19 with it achieves on each document alone."""
        import zstandard

        compressor = zstandard.ZstdCompressor(level=19, dict_data=zstandard.ZstdCompressionDict(self.dictionary))
        docs = [t.encode("utf-8") for t in texts]
        n_bytes = sum(map(len, docs))
        compressed = sum(len(compressor.compress(d)) for d in docs)
        return {"dict_bytes": float(len(self.dictionary)), "dict_zstd_bits_per_byte": 8 * compressed / n_bytes if n_bytes else float("nan")}

    # --- training ---------------------------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, **options: str) -> "ZstdDictSegmenter":
        import zstandard

        unknown = set(options) - OPTIONS
        if unknown:
            raise ToklabError(f"unknown zstd-dict option(s) {', '.join(sorted(unknown))} (valid: {', '.join(sorted(OPTIONS))})")
        if vocab_size < 258:
            raise ToklabError(f"zstd-dict vocabulary must be at least 258 (256 bytes, one string, <|endoftext|>), got {vocab_size}")
        parse = options.get("parse", "optimal")
        if parse not in PARSES:
            raise ToklabError(f"unknown parse '{parse}' (use optimal or greedy)")
        dict_size = _size(options.get("dict_size", "110kib"), "dict_size")
        max_len = int(options.get("max_len", 16))
        if not 2 <= max_len <= 64:
            raise ToklabError(f"max_len must be between 2 and 64, got {max_len}")
        cover = {k: int(options[k]) for k in ("k", "d", "f", "steps", "accel") if k in options}
        samples = take_bytes((t.encode("utf-8") for t in texts), _size(options.get("max_train_bytes", "64m"), "max_train_bytes"))
        if not samples:
            raise ToklabError("cannot train zstd-dict: no training text")
        try:
            trained = zstandard.train_dictionary(dict_size, samples, threads=-1, **cover)
        except zstandard.ZstdError as exc:
            raise ToklabError(f"zstd could not train a {dict_size:,}-byte dictionary on this text: {exc}") from None
        dictionary = trained.as_bytes()
        counted = take_bytes(samples, _size(options.get("sample_bytes", "8m"), "sample_bytes"))
        ranked = sorted(candidate_savings(dictionary, counted, max_len), key=lambda sv: (-sv[0], sv[1]))
        strings = [s for saving, s in ranked[: vocab_size - 257] if saving > 0]
        params = {"dict_size": dict_size, "max_len": max_len, "parse": parse, "k": trained.k, "d": trained.d, **cover, "strings": len(strings), "candidates": len(ranked)}
        return cls(dictionary, strings, parse, params=params)

    # --- saving -----------------------------------------------------------------------------------

    def _save_files(self, directory: Path) -> None:
        (directory / "dictionary.zstd").write_bytes(self.dictionary)
        (directory / "strings.txt").write_text("".join(base64.b64encode(p).decode() + "\n" for p in self._pieces[256:-1]))
        (directory / "zstd_dict.json").write_text(json.dumps({"parse": self.parse}) + "\n")

    @classmethod
    def _load(cls, directory: Path, manifest: dict[str, Any]) -> "ZstdDictSegmenter":
        config = json.loads((directory / "zstd_dict.json").read_text())
        strings = [base64.b64decode(line) for line in (directory / "strings.txt").read_text().split()]
        return cls((directory / "dictionary.zstd").read_bytes(), strings, config["parse"], params=manifest.get("params"))
