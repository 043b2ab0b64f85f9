"""`zstd-dict:<V>`: a vocabulary derived from a trained zstd dictionary, with optimal parsing.

zstd's dictionary trainer (`zstandard.train_dictionary`, fastCOVER; k, d, f, steps and accel
exposed) picks the byte strings that recur in the train split. The vocabulary is the 256 single
bytes plus the V-257 substrings of the dictionary (2 to `max_len` bytes) that would save the most
bytes on the train split (occurrences x (length - 1)), plus <|endoftext|>. Occurrences are
counted with numpy, one length after another, never by a quadratic scan: the rank of each
(length)-byte window among the dictionary's distinct windows follows from its (length-1)-byte
prefix's rank and its last byte, so only sample positions whose shorter window is still a
dictionary substring are looked up again.

Encoding is either optimal (the fewest tokens) or greedy longest-match. Both are lossless: every
byte is a token. The optimal parse is the Viterbi path of a unigram model in which every piece
scores -1 (so the best path is the one with the fewest pieces), computed by sentencepiece's C++
lattice (linear in text length x max_len) on the text reversed, bytes mapped one-to-one onto
characters. Among parses with equally few tokens it picks, scanning from the end of the text,
at each position the longest token that still leads to the fewest (sentencepiece keeps, at each
end position of the reversed text, the earliest-starting of the equally good pieces); the ids
are deterministic and the same as the reference dynamic programme's
(tests/segmenters/test_zstd_dict_speed.py keeps it).
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from toklab.errors import ToklabError
from toklab.segmenters import options as opt
from toklab.segmenters import base
from toklab.segmenters.base import CUT_STREAM, PieceSegmenter, Segmenter, check_vocab_size, cpu_count, reading, take_bytes
from toklab.segmenters.base import ReportColumn, ReportGroup

PARSES = ("optimal", "greedy")
CUT_SEARCH = 1 << 16  # bytes searched on each side of a long text's wanted cut for a place no string crosses
MAX_LOOKUP_TABLE = 2**25  # candidate keys counted through a dense table (int32: 128 MB) up to this many
# zstd's fastCOVER bounds (0 = let zstd choose or search): d is 6 or 8, f at most 31, accel at most
# 10, k at least d and at most the dictionary size. A dictionary needs at least 256 bytes.
MIN_DICT_SIZE, MAX_DICT_SIZE = 256, 2**30
MAX_F, MAX_ACCEL, MAX_STEPS = 31, 10, 10_000
D_VALUES = ("0", "6", "8")
OPTION_INFO = (
    opt.Option("parse", "choice", "optimal", "optimal: fewest tokens (dynamic programming); greedy: longest match", choices=PARSES, what="parse"),
    opt.Option("dict_size", "bytes", "110kib", "size of the zstd dictionary trained first", low=MIN_DICT_SIZE, high=MAX_DICT_SIZE),
    opt.Option("max_len", "whole", 16, "longest vocabulary string in bytes", low=2, high=64),
    opt.Option("max_train_bytes", "bytes", "64m", "train-split text read for the dictionary", low=1),
    opt.Option("sample_bytes", "bytes", "8m", "train-split text on which the strings' savings are counted", low=1),
    opt.Option("k", "whole", 0, "fastCOVER segment size (0: zstd searches; else at least d, at most dict_size)", low=0, high=MAX_DICT_SIZE),
    opt.Option("d", "choice", "0", "fastCOVER dmer size (0: zstd tries 6 and 8)", choices=D_VALUES),
    opt.Option("f", "whole", 0, "fastCOVER log2 of the frequency table size (0: zstd's default)", low=0, high=MAX_F),
    opt.Option("steps", "whole", 0, "fastCOVER parameter search steps (0: zstd's default)", low=0, high=MAX_STEPS),
    opt.Option("accel", "whole", 0, "fastCOVER acceleration (0: zstd's default)", low=0, high=MAX_ACCEL),
)
OPTIONS = opt.option_table(OPTION_INFO)


def check_options(options: dict[str, str]) -> dict[str, Any]:
    """Spec options -> typed options, each within what zstd's trainer accepts."""
    kind = "zstd-dict"
    opt.check_unknown(kind, options, OPTIONS)
    out: dict[str, Any] = {
        key: OPTIONS[key].check(kind, options.get(key, OPTIONS[key].default))
        for key in ("parse", "dict_size", "max_len", "max_train_bytes", "sample_bytes")
    }
    cover: dict[str, int] = {}
    if "d" in options:
        d = str(options["d"]).strip()
        if d not in D_VALUES:
            raise ToklabError(f"zstd-dict option d={options['d']} must be 6 or 8 (or 0: let zstd try both)")
        cover["d"] = int(d)
    if "k" in options:
        low = cover.get("d") or 8  # with d unset zstd tries d = 6 and 8, so k must reach 8
        cover["k"] = opt.whole(kind, "k", options["k"], 0, out["dict_size"])
        if 0 < cover["k"] < low:
            raise ToklabError(f"zstd-dict option k={options['k']} must be 0 (let zstd search) or between {low} and {out['dict_size']:,} (at least d, at most dict_size)")
    if "f" in options:
        cover["f"] = OPTIONS["f"].check(kind, options["f"])
    if "accel" in options:
        cover["accel"] = OPTIONS["accel"].check(kind, options["accel"])
    if "steps" in options:
        cover["steps"] = OPTIONS["steps"].check(kind, options["steps"])
    out["cover"] = cover
    return out


def candidate_savings(dictionary: bytes, sample: Sequence[bytes], max_len: int) -> list[tuple[int, bytes]]:
    """(bytes saved on `sample`, string) for every substring of `dictionary` of 2..max_len bytes that
    occurs in `sample` (windows never cross a document's end), by length, then in byte order."""
    content = np.frombuffer(dictionary, dtype=np.uint8)
    docs = [d for d in sample if d]
    text = np.frombuffer(b"".join(docs), dtype=np.uint8)
    sizes = np.array([len(d) for d in docs], dtype=np.int64)
    # A window's rank among the dictionary's distinct windows of its length, in byte order, is the
    # rank of (its prefix's rank, its last byte): ranks grow one byte at a time.
    d_rank = content.astype(np.int64)
    s_pos = np.arange(len(text), dtype=np.int64)
    s_end = np.repeat(np.cumsum(sizes), sizes)  # where each position's document ends
    s_rank = text.astype(np.int64)
    out: list[tuple[int, bytes]] = []
    keys_below = 256 * 256  # every key of this length is below it
    for length in range(2, max_len + 1):
        if len(content) < length:
            break
        keys = d_rank[: len(content) - length + 1] * 256 + content[length - 1 :]
        candidates, first, d_rank = np.unique(keys, return_index=True, return_inverse=True)
        fits = s_pos + length <= s_end
        s_pos, s_end, s_rank = s_pos[fits], s_end[fits], s_rank[fits]
        s_keys = s_rank * 256 + text[s_pos + length - 1]
        if keys_below <= MAX_LOOKUP_TABLE:  # a table of every possible key: one gather
            table = np.full(keys_below, -1, dtype=np.int32)
            table[candidates] = np.arange(len(candidates), dtype=np.int32)
            found = table[s_keys]
            hits = found >= 0
        else:
            found = np.minimum(np.searchsorted(candidates, s_keys), len(candidates) - 1)
            hits = candidates[found] == s_keys
        # only the hits can go on to the next length
        s_pos, s_end, s_rank = s_pos[hits], s_end[hits], found[hits].astype(np.int64)
        counts = np.bincount(s_rank, minlength=len(candidates))
        seen = np.flatnonzero(counts)
        saved, starts = (counts[seen] * (length - 1)).tolist(), first[seen].tolist()
        out += [(v, dictionary[i : i + length]) for v, i in zip(saved, starts)]
        keys_below = len(candidates) * 256
    return out


# --- the optimal parse through sentencepiece ------------------------------------------------------
# Bytes become characters one-to-one (latin-1, with NUL, which sentencepiece's trie cannot hold,
# moved to U+0100); pieces and text are reversed (see the module docstring on ties).
_NUL = "\u0100"


def _chars(data: bytes) -> str:
    text = data.decode("latin-1")
    return text.replace("\0", _NUL) if "\0" in text else text


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32s are ten bytes, as protobuf writes them
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _unigram_proto(pieces: Sequence[bytes]) -> bytes:
    """A sentencepiece ModelProto (written by hand: no protobuf dependency): a unigram model whose
    pieces are `pieces` reversed, ids in order, every score -1; <unk> (never produced, as every
    byte is a piece) last; no normalisation, no dummy prefix, no whitespace escaping."""
    score = _varint(2 << 3 | 5) + struct.pack("<f", -1.0)
    out = [_field(1, _field(1, _chars(p[::-1]).encode("utf-8")) + score + _int_field(3, 1)) for p in pieces]
    out.append(_field(1, _field(1, b"<unk>") + _varint(2 << 3 | 5) + struct.pack("<f", 0.0) + _int_field(3, 2)))
    trainer = _int_field(3, 1) + _int_field(40, len(pieces)) + _int_field(41, -1) + _int_field(42, -1) + _int_field(43, -1)
    normalizer = _field(1, b"identity") + _int_field(3, 0) + _int_field(4, 0) + _int_field(5, 0)
    return b"".join(out) + _field(2, trainer) + _field(3, normalizer)


class ZstdDictSegmenter(PieceSegmenter):
    kind = "zstd-dict"
    summary = "the 256 bytes plus the substrings of a trained zstd dictionary that save the most bytes"
    option_info = OPTION_INFO
    trainable = True
    train_in_child = True  # zstd's dictionary trainer (C) never looks at Ctrl-C: 35-50 s on 30 MB here
    min_vocab_size = 258
    min_vocab_reason = "256 bytes, one string, <|endoftext|>"
    report_groups = (
        ReportGroup(
            "zstd dictionary",
            (ReportColumn("dict_bytes", "dictionary\nbytes", "int"), ReportColumn("dict_zstd_bits_per_byte", "zstd-19 + dict\nbits/byte", "3f")),
            "zstd-19 + dict: each validation document compressed alone with the segmenter's dictionary",
        ),
    )

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
        self._viterbi: Any = None  # the sentencepiece processor, made on first use

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_viterbi": None}  # sentencepiece's processor does not pickle

    def _processor(self) -> Any:
        if self._viterbi is None:
            import sentencepiece

            processor = sentencepiece.SentencePieceProcessor()
            processor.LoadFromSerializedProto(_unigram_proto(self._pieces[:-1]))
            self._viterbi = processor
        return self._viterbi

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
        if self.parse == "optimal":
            return [len(self._pieces[i]) for i in self._optimal_ids([data])[0]]
        out, i, n = [], 0, len(data)
        while i < n:
            step = self._matches(data, i)[-1]
            out.append(step)
            i += step
        return out

    def _optimal_ids(self, docs: Sequence[bytes], workers: int = 1) -> list[list[int]]:
        """The fewest-token ids of each of `docs` (sentencepiece's Viterbi on the reversed text)."""
        reversed_ids = self._processor().encode([_chars(d[::-1]) for d in docs], num_threads=max(1, workers))
        return [ids[::-1] for ids in reversed_ids]

    # --- the segmenter interface ------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        if self._long(text):
            return self._encode_cut(text)
        data = text.encode("utf-8")
        if self.parse == "optimal":
            return self._optimal_ids([data])[0]
        ids, i = [], 0
        for length in self.parse_lengths(data):
            ids.append(self._ids[data[i : i + length]])
            i += length
        return ids

    def encode_batch(self, texts: Sequence[str], workers: int | None = None) -> list[list[int]]:
        return self._encode_batch_cut(texts, workers)

    def _encode_pieces(self, pieces: list[str], workers: int | None = None) -> list[list[int]]:
        """The optimal parse runs in sentencepiece's threads on all cores; greedy in a process pool."""
        if self.parse != "optimal":
            return Segmenter.encode_batch(self, pieces, workers)
        workers = cpu_count() if workers is None else workers
        return self._optimal_ids([t.encode("utf-8") for t in pieces], workers)

    # --- long texts: cut where no vocabulary string can reach across -------------------------------

    cut_rule = CUT_STREAM

    def _free(self, data: bytes, p: int) -> bool:
        """Whether no vocabulary string of two or more bytes can cover both data[p - 1] and data[p]:
        then every parse, the fewest-tokens one and the greedy one included, has a token boundary at
        p, and the parse of what follows p does not depend on what precedes it. (The optimal parse's
        ties are broken the same way too: sentencepiece compares path scores that are whole numbers
        of -1s, exact in float32, and a constant added to all of them changes no comparison.)"""
        if (data[p] & 0xC0) == 0x80:  # inside a character: a piece must be text
            return False
        for a in range(max(0, p - self.max_len + 1), p):
            for j in range(a + 2, min(a + self.max_len, len(data)) + 1):
                piece = data[a:j]
                if piece not in self._prefixes:
                    break
                if j > p and piece in self._ids:
                    return False
        return True

    def _cuts(self, data: bytes, size: int) -> Iterator[int]:
        """Byte offsets, about `size` apart, where `_free` holds: the nearest one before each
        target, else the nearest after it (up to CUT_SEARCH bytes away); none further on when neither."""
        start, n = 0, len(data)
        while n - start > size:
            target = start + size
            cut = next((p for p in range(target, max(start, target - CUT_SEARCH), -1) if self._free(data, p)), None)
            if cut is None:
                cut = next((p for p in range(target + 1, min(n, target + CUT_SEARCH)) if self._free(data, p)), None)
            if cut is None:
                return
            yield cut
            start = cut

    def _long_pieces(self, text: str, size: int | None = None, workers: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """A long text in pieces cut where `_free` holds (the ids of the whole text), encoded
        PIECE_GROUP at a time."""
        data = text.encode("utf-8")
        bounds = [0, *self._cuts(data, base.CUT_CHARS if size is None else max(1, size)), len(data)]
        pieces = (data[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:]))
        while group := list(itertools.islice(pieces, base.PIECE_GROUP)):
            yield from zip(group, (np.array(ids, dtype=np.int64) for ids in self._encode_pieces(group, workers)))

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
    def check_spec(cls, arg: str | None, options: dict[str, str]) -> None:
        check_options(options)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, **options: str) -> "ZstdDictSegmenter":
        import zstandard

        opts = check_options(options)
        opt.vocab_size_range("zstd-dict", vocab_size, cls.min_vocab_size, cls.max_vocab_size, cls.min_vocab_reason)
        parse, dict_size, max_len, cover = opts["parse"], opts["dict_size"], opts["max_len"], opts["cover"]
        samples = take_bytes((t.encode("utf-8") for t in texts), opts["max_train_bytes"])
        if not samples:
            raise ToklabError("cannot train zstd-dict: no training text")
        try:
            trained = zstandard.train_dictionary(dict_size, samples, threads=-1, **cover)
        except zstandard.ZstdError as exc:
            raise ToklabError(f"zstd could not train a {dict_size:,}-byte dictionary on this text: {exc}") from None
        dictionary = trained.as_bytes()
        counted = take_bytes(samples, opts["sample_bytes"])
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
        path = directory / "zstd_dict.json"
        with reading(path):
            parse = json.loads(path.read_text(encoding="utf-8"))["parse"]
            if parse not in PARSES:
                raise ValueError(f"unknown parse {parse!r}")
        path = directory / "strings.txt"
        with reading(path):
            strings = [base64.b64decode(line, validate=True) for line in path.read_text(encoding="ascii").split()]
            if any(len(s) < 2 for s in strings):
                raise ValueError("a string of fewer than 2 bytes")
        check_vocab_size(path, 256 + len(strings) + 1, manifest)
        path = directory / "dictionary.zstd"
        with reading(path):
            dictionary = path.read_bytes()
        return cls(dictionary, strings, parse, params=manifest.get("params"))
