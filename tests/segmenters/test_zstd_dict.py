"""zstd-dict: candidate counting, optimal parsing against brute force, losslessness, determinism."""

from __future__ import annotations

import functools
import random

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

import toklab
from toklab import ToklabError
from toklab.segmenters import get_segmenter, load_segmenter
from toklab.segmenters.zstd_dict import ZstdDictSegmenter, candidate_savings

SMALL = "zstd-dict:2k,dict_size=16kib,k=200,d=8"  # fixed k and d: no parameter search, fast


def brute_force_fewest(data: bytes, vocab: set[bytes]) -> int:
    @functools.lru_cache(maxsize=None)
    def fewest(i: int) -> int:
        if i == len(data):
            return 0
        return min(1 + fewest(j) for j in range(i + 1, len(data) + 1) if j == i + 1 or data[i:j] in vocab)

    return fewest(0)


def test_optimal_parse_is_minimal_against_brute_force():
    strings = [b"ab", b"abc", b"bc", b"cab", b"ca", b"aab", b"abca", b"bcab"]
    optimal = ZstdDictSegmenter(b"", strings, "optimal")
    greedy = ZstdDictSegmenter(b"", strings, "greedy")
    rng = random.Random(0)
    for _ in range(300):
        data = bytes(rng.choice(b"abc") for _ in range(rng.randint(0, 14)))
        text = data.decode()
        want = brute_force_fewest(data, set(strings))
        assert len(optimal.encode(text)) == want
        assert len(greedy.encode(text)) >= want
        assert optimal.decode(optimal.encode(text)) == text == greedy.decode(greedy.encode(text))


def test_greedy_can_lose_to_optimal():
    seg = {p: ZstdDictSegmenter(b"", [b"aab", b"abcd"], p) for p in ("optimal", "greedy")}
    # greedy: aab|c|d (3 tokens); optimal: a|abcd (2 tokens)
    assert [seg["greedy"].token_bytes(i) for i in seg["greedy"].encode("aabcd")] == [b"aab", b"c", b"d"]
    assert [seg["optimal"].token_bytes(i) for i in seg["optimal"].encode("aabcd")] == [b"a", b"abcd"]


def test_candidate_savings_by_hand():
    # dictionary substrings of length 2..3: ab, bc, abc; in the sample "abcab": ab x2, bc x1, abc x1
    savings = dict((s, v) for v, s in candidate_savings(b"abc", [b"abcab"], 3))
    assert savings == {b"ab": 2 * 1, b"bc": 1 * 1, b"abc": 1 * 2}


@pytest.fixture(scope="module")
def corpus(default_corpus_build):
    return toklab.open_corpus("default", max_bytes=800_000)


@pytest.fixture(scope="module")
def seg(corpus):
    return get_segmenter(SMALL, corpus)


def test_vocabulary(seg):
    assert seg.vocab_size == 2000 and seg.special_tokens == {"<|endoftext|>": 1999}
    strings = [seg.token_bytes(i) for i in range(256, 1999)]
    assert all(2 <= len(s) <= 16 for s in strings) and len(set(strings)) == len(strings)
    assert all(s in seg.dictionary for s in strings)  # every string comes from the dictionary's content
    assert seg.token_byte_lengths()[1999] == 0


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_lossless_on_any_unicode(seg, text):
    ids = seg.encode(text)
    assert seg.decode(ids) == text
    data = text.encode()
    assert b"".join(data[s:e] for s, e in seg.byte_spans(ids)) == data


def test_training_is_deterministic(corpus, seg):
    again = get_segmenter(SMALL, corpus, cache=False)
    assert again.dictionary == seg.dictionary and again._pieces == seg._pieces


def test_save_load_is_identical(seg, tmp_path):
    seg.save(tmp_path / "z")
    loaded = load_segmenter(tmp_path / "z")
    texts = [d.text for d in toklab.open_corpus("default", max_docs=30)]
    assert loaded.encode_batch(texts) == seg.encode_batch(texts)
    assert loaded.dictionary == seg.dictionary and loaded.parse == seg.parse and loaded.spec == seg.spec == "zstd-dict:2k,d=8,dict_size=16kib,k=200"  # options sorted


def test_optimal_never_uses_more_tokens_than_greedy(corpus, seg):
    greedy = get_segmenter(SMALL + ",parse=greedy", corpus)
    texts = [d.text for d in corpus.val()]
    assert sum(map(len, seg.encode_batch(texts))) <= sum(map(len, greedy.encode_batch(texts)))


def test_compare_adds_dictionary_columns(corpus, seg):
    from toklab.comparison import run_compare

    table = run_compare(corpus, ["bytes", SMALL], compressors=False).table.set_index("segmenter")
    texts = [d.text.encode() for d in corpus.val()]
    compressor = zstandard.ZstdCompressor(level=19, dict_data=zstandard.ZstdCompressionDict(seg.dictionary))
    expected = 8 * sum(len(compressor.compress(t)) for t in texts) / sum(map(len, texts))
    assert table.loc[seg.spec, "dict_bytes"] == len(seg.dictionary)
    assert table.loc[seg.spec, "dict_zstd_bits_per_byte"] == pytest.approx(expected)
    assert np.isnan(table.loc["bytes", "dict_bytes"])


@pytest.mark.parametrize(
    "spec, message",
    [
        ("zstd-dict:100", "at least 258"),
        ("zstd-dict:2k,parse=lazy", "unknown parse"),
        ("zstd-dict:2k,max_len=1", "between 2 and 64"),
        ("zstd-dict:2k,shape=round", "unknown zstd-dict option"),
        ("zstd-dict:2k,dict_size=lots", "dict_size=lots"),
    ],
)
def test_bad_specs(corpus, spec, message):
    with pytest.raises(ToklabError, match=message):
        get_segmenter(spec, corpus, cache=False)
