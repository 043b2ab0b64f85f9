"""zstd-dict's fast paths against copies of the slow code they replaced (kept here, not in the
package): the optimal parse (sentencepiece's Viterbi on reversed text) against the pure-Python
dynamic programme, ids included; greedy; and candidate counting. The benchmark
reports/benchmarks/zstd_dict_vs_bpe.py times the same references for its "before" figures."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import toklab
from toklab.segmenters import get_segmenter
from toklab.segmenters.zstd_dict import ZstdDictSegmenter, candidate_savings

CORPORA = ("sotu", "email", "code", "udhr")
# small and quick to train: fixed k and d, 1 MB read for the dictionary, 256 KB for the counts
SPEC = "zstd-dict:4k,dict_size=32kib,k=200,d=8,max_train_bytes=1m,sample_bytes=256k"


# --- the reference: today's code before the speed-up, copied ---------------------------------------


def reference_matches(seg: ZstdDictSegmenter, data: bytes, i: int, prefixes: set[bytes], ids: dict[bytes, int]) -> list[int]:
    lengths = [1]
    for j in range(i + 2, min(i + seg.max_len, len(data)) + 1):
        piece = data[i:j]
        if piece not in prefixes:
            break
        if piece in ids:
            lengths.append(j - i)
    return lengths


@functools.lru_cache(maxsize=8)
def reference_vocab(seg: ZstdDictSegmenter) -> tuple[set[bytes], dict[bytes, int]]:
    """The prefix set and the id of every piece, as the original constructor made them."""
    strings = seg._pieces[256:-1]
    return {s[:i] for s in strings for i in range(1, len(s) + 1)}, {piece: i for i, piece in enumerate(seg._pieces[:-1])}


def reference_lengths(seg: ZstdDictSegmenter, data: bytes, parse: str = "optimal") -> list[int]:
    """Token lengths by the original dynamic programme (optimal) or longest match (greedy)."""
    prefixes, ids = reference_vocab(seg)
    n = len(data)
    if parse == "greedy":
        out, i = [], 0
        while i < n:
            step = reference_matches(seg, data, i, prefixes, ids)[-1]
            out.append(step)
            i += step
        return out
    best = [0] * (n + 1)
    choice = [1] * (n + 1)
    for i in range(n - 1, -1, -1):
        options = reference_matches(seg, data, i, prefixes, ids)
        step = min(options, key=lambda length: (best[i + length], -length))  # ties: the longest token
        best[i], choice[i] = best[i + step] + 1, step
    out, i = [], 0
    while i < n:
        out.append(choice[i])
        i += choice[i]
    return out


def reference_ids(seg: ZstdDictSegmenter, text: str, parse: str = "optimal") -> list[int]:
    data = text.encode("utf-8")
    ids = reference_vocab(seg)[1]
    out, i = [], 0
    for length in reference_lengths(seg, data, parse):
        out.append(ids[data[i : i + length]])
        i += length
    return out


def _windows(data: np.ndarray, length: int) -> np.ndarray:
    if len(data) < length:
        return np.zeros(0, dtype=f"V{length}")
    view = np.lib.stride_tricks.sliding_window_view(data, length)
    return np.ascontiguousarray(view).view(f"V{length}").ravel()


def reference_candidate_savings(dictionary: bytes, sample: list[bytes], max_len: int) -> list[tuple[int, bytes]]:
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


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seg(shared_corpora):
    corpus = toklab.open_corpus(str(shared_corpora), sample=0.5, max_bytes=3_000_000)
    return get_segmenter(SPEC, corpus, cache=False)


@pytest.fixture(scope="module")
def greedy(seg):
    return ZstdDictSegmenter(seg.dictionary, seg._pieces[256:-1], "greedy")


@pytest.fixture(scope="module")
def texts(shared_corpora):
    """About 80 KB of real documents from each of the four shared corpora."""
    out = []
    for name in CORPORA:
        total = 0
        for doc in toklab.open_corpus(str(shared_corpora / name)):
            out.append(doc.text)
            total += len(doc.text.encode())
            if total > 80_000:
                break
    return out


# --- the tests -------------------------------------------------------------------------------------


def test_optimal_ids_equal_the_reference_dynamic_programme(seg, texts):
    assert seg.parse == "optimal" and seg.vocab_size == 4000
    want = [reference_ids(seg, t) for t in texts]
    got = seg.encode_batch(texts)
    assert [len(ids) for ids in got] == [len(ids) for ids in want]  # the fewest tokens
    assert got == want  # the same tie-break: from the end, the longest among equally good tokens
    assert [seg.encode(t) for t in texts[:20]] == want[:20]
    assert seg.encode_batch(texts, workers=1) == want
    assert all(seg.decode(ids) == t for ids, t in zip(got, texts))
    assert sum(map(len, got)) < 0.7 * sum(len(t.encode()) for t in texts)  # the vocabulary is used


def test_parse_lengths_on_raw_bytes_and_edges(seg):
    rng = np.random.default_rng(0)
    strings = seg._pieces[256:-1]
    for n in range(40):  # vocabulary strings glued together with random bytes, NUL and 0xff included
        parts = [strings[i] for i in rng.integers(0, len(strings), n)] + [bytes(rng.integers(0, 256, n % 7, dtype=np.uint8))]
        data = b"".join(parts[i] for i in rng.permutation(len(parts)))
        assert seg.parse_lengths(data) == reference_lengths(seg, data)
    assert seg.encode("") == [] and seg.encode_batch(["", "a"]) == [[], [ord("a")]]
    assert seg.encode("\0\0\x7f") == [0, 0, 127]


def test_greedy_unchanged(greedy, texts):
    subset = texts[::4]
    assert greedy.encode_batch(subset, workers=1) == [reference_ids(greedy, t, "greedy") for t in subset]


def test_candidate_savings_equal_the_reference(seg, texts):
    sample = [t.encode() for t in texts] + [b"", b"x"]
    for dictionary in (seg.dictionary, seg.dictionary[:3000], b"ab", b""):
        assert candidate_savings(dictionary, sample, 16) == reference_candidate_savings(dictionary, sample, 16)
    assert candidate_savings(seg.dictionary, [], 16) == [] == reference_candidate_savings(seg.dictionary, [], 16)
    assert candidate_savings(b"abc", [b"abcab", b"ab"], 3) == [(3, b"ab"), (1, b"bc"), (2, b"abc")]  # never across documents


def test_a_2_mb_document_matches_the_reference_count(seg, texts):
    text = "".join(texts)
    text = (text * (2_000_000 // len(text) + 1))[:2_000_000]
    ids = seg.encode(text)
    assert len(ids) == len(reference_lengths(seg, text.encode()))
    assert seg.decode(ids) == text
