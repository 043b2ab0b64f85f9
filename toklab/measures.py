"""Measures over segmentations, and classic compressors on the same bytes.

Each function is small and pure so that it can be checked against a hand computation.
Key formulas (see DESIGN.md):
- order-0 bits-per-byte = (-sum_t c_t log2(c_t / N)) / bytes: what an ideal per-token entropy
  coder that knows the token frequencies would reach;
- Renyi efficiency (alpha) = H_alpha(p) / log2(V), with H_alpha = log2(sum p^alpha) / (1 - alpha)
  (Zouhar et al. 2023);
- Cramming keep rule: keep a document iff tokens <= t * chars (chars = code points);
- tokens/word (fertility) = tokens / whitespace-separated words, summed over the "spaced" documents
  only: those in which fewer than half of the letters (Unicode category L*) are in a script written
  without spaces between words (UNSPACED_SCRIPTS); tokens/word is NaN where no document is spaced.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np

from toklab.errors import ToklabError
from toklab.gpt.flops import ModelShape, flops_per_token


MAX_KEEP_THRESHOLD = 2**20


def check_threshold(threshold: Any, option: str = "--threshold") -> float:
    """A Cramming threshold t (keep iff tokens <= t x chars): a positive finite number."""
    ok = isinstance(threshold, (int, float, np.integer, np.floating)) and not isinstance(threshold, bool)
    if not ok or not math.isfinite(threshold) or threshold <= 0:
        raise ToklabError(f"{option} must be positive and finite (tokens <= t x chars), got {threshold!r}")
    return float(threshold)


def order0_bits(counts: np.ndarray) -> float:
    """Total bits to code a token stream with its own empirical unigram distribution."""
    counts = np.asarray(counts, dtype=np.float64)
    counts = counts[counts > 0]
    total = counts.sum()
    if total == 0:
        return 0.0
    return float(-(counts * np.log2(counts / total)).sum())


def renyi_efficiency(counts: np.ndarray, vocab_size: int, alpha: float = 2.5) -> float:
    """Renyi entropy of order alpha of the token distribution, over log2 of the vocabulary size."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0 or vocab_size < 2:
        return 0.0
    p = counts[counts > 0] / total
    entropy = float(np.log2((p**alpha).sum()) / (1.0 - alpha))
    return entropy / float(np.log2(vocab_size))


def at_most(numerators: np.ndarray, denominators: np.ndarray, threshold: float) -> np.ndarray:
    """numerators <= threshold * denominators, decided exactly for the decimal `threshold` as written.

    In floats 0.35 * 180 is 62.99999999999999, which would drop a document of 63 tokens and 180 chars
    that sits exactly on the line; with the threshold as a fraction (7/20) the test is exact.
    A threshold that is not a finite number of at least 0 is a ToklabError.
    """
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ToklabError(f"a keep threshold must be a finite number of at least 0, got {threshold!r}")
    # No text has 2**20 tokens per char (a token of encoded text spans at least one byte, a char at
    # most four), so a larger threshold keeps all the same; the cap keeps the exact test within int64.
    fraction = Fraction(repr(min(value, float(MAX_KEEP_THRESHOLD)))).limit_denominator(10**6)
    numerators = np.asarray(numerators, dtype=np.int64)
    denominators = np.asarray(denominators, dtype=np.int64)
    return numerators * fraction.denominator <= denominators * fraction.numerator


def keep_rates(tokens: np.ndarray, chars: np.ndarray, n_bytes: np.ndarray, threshold: float) -> tuple[float, float]:
    """Cramming keep rates: the share of documents, and of bytes, with tokens <= threshold * chars."""
    n_bytes = np.asarray(n_bytes, dtype=np.float64)
    if len(n_bytes) == 0:
        return 0.0, 0.0
    kept = at_most(tokens, chars, threshold)
    return float(kept.mean()), float(n_bytes[kept].sum() / max(n_bytes.sum(), 1.0))


# Scripts conventionally written without spaces between words, as code-point ranges (first, last,
# the Unicode blocks). Python's unicodedata has no script property, so the blocks stand in for the
# scripts; only the letters (category L*) in them are counted, so the marks, digits and punctuation a
# block also holds do not matter. Not here: Hangul (Korean puts spaces between words), and scripts
# such as Tai Le, Tai Viet or Balinese whose text is mostly found with spaces (the udhr specimens).
UNSPACED_SCRIPTS: tuple[tuple[int, int, str], ...] = (
    (0x0E00, 0x0E7F, "Thai"),
    (0x0E80, 0x0EFF, "Lao"),
    (0x0F00, 0x0FFF, "Tibetan"),
    (0x1000, 0x109F, "Myanmar"),
    (0x1780, 0x17FF, "Khmer"),
    (0x1A20, 0x1AAF, "Tai Tham"),
    (0x3000, 0x303F, "CJK Symbols and Punctuation (iteration marks such as U+3005)"),
    (0x3040, 0x30FF, "Hiragana, Katakana"),
    (0x3100, 0x312F, "Bopomofo"),
    (0x31A0, 0x31BF, "Bopomofo Extended"),
    (0x31F0, 0x31FF, "Katakana Phonetic Extensions"),
    (0x3400, 0x4DBF, "CJK Unified Ideographs Extension A"),
    (0x4E00, 0x9FFF, "CJK Unified Ideographs"),
    (0xA000, 0xA4CF, "Yi Syllables, Yi Radicals"),
    (0xA980, 0xA9DF, "Javanese"),
    (0xA9E0, 0xA9FF, "Myanmar Extended-B"),
    (0xAA60, 0xAA7F, "Myanmar Extended-A"),
    (0xF900, 0xFAFF, "CJK Compatibility Ideographs"),
    (0xFF66, 0xFF9F, "the halfwidth katakana of Halfwidth and Fullwidth Forms"),
    (0x12000, 0x1254F, "Cuneiform, Cuneiform Numbers and Punctuation, Early Dynastic Cuneiform"),
    (0x13000, 0x1345F, "Egyptian Hieroglyphs, Egyptian Hieroglyph Format Controls"),
    (0x16FE0, 0x16FFF, "Ideographic Symbols and Punctuation"),
    (0x17000, 0x18D7F, "Tangut, Tangut Components, Khitan Small Script, Tangut Supplement"),
    (0x1AFF0, 0x1B16F, "Kana Extended-B, Kana Supplement, Kana Extended-A, Small Kana Extension"),
    (0x1B170, 0x1B2FF, "Nushu"),
    (0x20000, 0x323AF, "CJK Unified Ideographs Extensions B to I, CJK Compatibility Ideographs Supplement"),
)
_UNSPACED = re.compile("[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b, _ in UNSPACED_SCRIPTS) + "]+")


def unspaced_letters(text: str) -> tuple[int, int]:
    """(letters in scripts written without spaces between words, all letters) of `text`;
    letters are the characters of Unicode category L* (str.isalpha)."""
    unspaced = sum(sum(map(str.isalpha, run)) for run in _UNSPACED.findall(text))
    return unspaced, sum(map(str.isalpha, text))


def is_spaced(text: str) -> bool:
    """Whether whitespace separates the words of `text`: fewer than half of its letters are in a
    script written without spaces (UNSPACED_SCRIPTS). A text with no letter in such a script is
    spaced, letters or none (digits, braille, a script newer than Python's Unicode tables)."""
    if _UNSPACED.search(text) is None:  # the common case, decided without counting
        return True
    unspaced, letters = unspaced_letters(text)
    return 2 * unspaced < letters


WORD_CHUNK_CHARS = 1 << 20  # a longer text's words are counted slice by slice


def count_words(text: str) -> int:
    """len(text.split()), without making the list (a 50 MB document's words take GBs as strings)."""
    if len(text) <= WORD_CHUNK_CHARS:
        return len(text.split())
    n = 0
    for i in range(0, len(text), WORD_CHUNK_CHARS):
        n += len(text[i : i + WORD_CHUNK_CHARS].split())
        if i and not text[i].isspace() and not text[i - 1].isspace():
            n -= 1  # a word across the slice boundary was counted in both slices
    return n


def tokens_per_word(tokens: np.ndarray, words: np.ndarray, spaced: np.ndarray) -> float:
    """Tokens per whitespace-separated word, summed over the spaced documents only; NaN without one."""
    spaced = np.asarray(spaced, dtype=bool)
    n_words = int(np.asarray(words, dtype=np.int64)[spaced].sum())
    return int(np.asarray(tokens, dtype=np.int64)[spaced].sum()) / n_words if n_words else float("nan")


@dataclass(frozen=True)
class TextStats:
    """Per-document sizes of the measured texts, computed once and shared by every row.
    `spaced` marks the documents whose whitespace-separated words count for tokens/word."""

    chars: np.ndarray
    bytes: np.ndarray
    words: np.ndarray
    spaced: np.ndarray

    @classmethod
    def of(cls, texts: Sequence[str]) -> "TextStats":
        return cls(
            chars=np.array([len(t) for t in texts], dtype=np.int64),
            bytes=np.array([len(t.encode("utf-8")) for t in texts], dtype=np.int64),
            words=np.array([count_words(t) for t in texts], dtype=np.int64),
            spaced=np.array([is_spaced(t) for t in texts], dtype=bool),
        )

    @property
    def spaced_bytes_share(self) -> float:
        """The share of the bytes in spaced documents (what tokens/word covers); NaN for no bytes."""
        total = int(self.bytes.sum())
        return int(self.bytes[self.spaced].sum()) / total if total else float("nan")


def segmentation_row(
    ids: Sequence[Sequence[int]],
    stats: TextStats,
    vocab_size: int,
    *,
    threshold: float = 0.3,
    shape: ModelShape,
    alpha: float = 2.5,
) -> dict[str, float]:
    """Every per-segmenter column that follows from the ids of the measured documents."""
    tokens_per_doc = np.array([len(x) for x in ids], dtype=np.int64)
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(tokens_per_doc.sum()))
    return counted_row(tokens_per_doc, np.bincount(flat, minlength=vocab_size), stats, vocab_size, threshold=threshold, shape=shape, alpha=alpha)


def counted_row(
    tokens_per_doc: np.ndarray, counts: np.ndarray, stats: TextStats, vocab_size: int, *, threshold: float = 0.3, shape: ModelShape, alpha: float = 2.5
) -> dict[str, float]:
    """`segmentation_row` from what it needs of the ids: the tokens of each document and how often
    each id occurs (so a long document's ids can be counted piece by piece)."""
    n_tokens = int(tokens_per_doc.sum())
    n_chars, n_bytes = int(stats.chars.sum()), int(stats.bytes.sum())
    docs_kept, bytes_kept = keep_rates(tokens_per_doc, stats.chars, stats.bytes, threshold)
    tokens_per_byte = n_tokens / n_bytes if n_bytes else float("nan")
    return {
        "vocab_size": vocab_size,
        "tokens": n_tokens,
        "tokens_per_char": n_tokens / n_chars if n_chars else float("nan"),
        "chars_per_token": n_chars / n_tokens if n_tokens else float("nan"),
        "bytes_per_token": n_bytes / n_tokens if n_tokens else float("nan"),
        "tokens_per_word": tokens_per_word(tokens_per_doc, stats.words, stats.spaced),
        "bits_per_byte": order0_bits(counts) / n_bytes if n_bytes else float("nan"),
        "renyi_efficiency": renyi_efficiency(counts, vocab_size, alpha),
        "vocab_utilisation": float((counts > 0).sum() / vocab_size),
        "keep_rate_docs": docs_kept,
        "keep_rate_bytes": bytes_kept,
        "train_flops_per_mb": flops_per_token(shape, vocab_size) * tokens_per_byte * 1e6,
    }


# --- compressors --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Compressed:
    name: str
    compressed_bytes: int
    raw_bytes: int
    seconds: float
    detail: str

    @property
    def bits_per_byte(self) -> float:
        return 8.0 * self.compressed_bytes / self.raw_bytes if self.raw_bytes else float("nan")

    @property
    def mb_per_s(self) -> float:
        return self.raw_bytes / 1e6 / self.seconds if self.seconds > 0 else float("nan")


def _timed(fn: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    size = fn()
    return size, time.perf_counter() - start


def zstd_size(data: bytes, level: int) -> int:
    import zstandard

    return len(zstandard.ZstdCompressor(level=level).compress(data))


def zstd_dict_size(docs: Sequence[bytes], dictionary: Any, level: int = 19) -> int:
    """Each document compressed on its own with a shared dictionary (how dictionaries are used)."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=level, dict_data=dictionary)
    return sum(len(compressor.compress(d)) for d in docs)


def sevenzip_size(data: bytes, filters: list[dict[str, Any]]) -> int:
    """The size of the stream py7zr's compressor writes for `data` (the .7z container's header,
    which holds a timestamp and so varies by a few bytes, is left out)."""
    from py7zr.compressor import SevenZipCompressor

    compressor, out = SevenZipCompressor(filters=filters), io.BytesIO()
    compressor.compress(io.BytesIO(data), out)
    compressor.flush(out)
    return len(out.getvalue())


def sevenzip_filters() -> dict[str, tuple[list[dict[str, Any]], str]]:
    """Row name -> (py7zr filters, description)."""
    import py7zr

    return {
        "7z-lzma2": ([{"id": py7zr.FILTER_LZMA2, "preset": 9}], "py7zr, LZMA2 preset 9 (compressed stream, without the .7z header)"),
        "7z-ppmd": ([{"id": py7zr.FILTER_PPMD}], "py7zr, PPMd with py7zr's defaults: order 8 and 16 MiB of model memory (7-Zip's own default order is 6); compressed stream, without the .7z header"),
    }


def train_zstd_dictionary(samples: Sequence[bytes], dict_size: int = 112_640) -> Any:
    """A zstd dictionary (default 110 KiB, zstd's own default size) trained on sample documents."""
    import zstandard

    return zstandard.train_dictionary(dict_size, list(samples))


def compressor_rows(docs: Sequence[bytes], dictionary_samples: Sequence[bytes]) -> tuple[list[Compressed], list[str]]:
    """zstd 3 and 19, zstd 19 with a dictionary per document, 7z LZMA2 and PPMd, on the same bytes."""
    data = b"".join(docs)
    rows, notes = [], []
    for level in (3, 19):
        size, seconds = _timed(lambda level=level: zstd_size(data, level))
        rows.append(Compressed(f"zstd-{level}", size, len(data), seconds, f"zstandard level {level}, whole text as one frame"))
    try:
        start = time.perf_counter()
        dictionary = train_zstd_dictionary(dictionary_samples)
        train_seconds = time.perf_counter() - start
        size, seconds = _timed(lambda: zstd_dict_size(docs, dictionary))
        detail = f"zstandard level 19, each document alone, {len(dictionary.as_bytes()):,}-byte dictionary trained on the train split in {train_seconds:.1f} s"
        rows.append(Compressed("zstd-19-dict", size, len(data), seconds, detail))
    except Exception as exc:  # zstd refuses too few or too small samples
        notes.append(f"skipped zstd-19-dict: cannot train a dictionary on this train split ({str(exc).strip() or type(exc).__name__})")
    for name, (filters, description) in sevenzip_filters().items():
        size, seconds = _timed(lambda filters=filters: sevenzip_size(data, filters))
        rows.append(Compressed(name, size, len(data), seconds, description))
    return rows, notes
