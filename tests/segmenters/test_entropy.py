"""Entropy patching: the n-gram model by hand, the patching rules, calibration, the segmenter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import toklab
from toklab import ToklabError
from toklab.segmenters import get_segmenter, load_segmenter
from toklab.segmenters.entropy_models import NgramEntropyModel
from toklab.segmenters.patching import calibrate, patch_lengths, patch_starts

U = 1 / 256


def entropy_of(probs: list[float]) -> float:
    return -sum(p * math.log2(p) for p in probs if p > 0)


# --- the n-gram model against a hand computation --------------------------------------------------
# Training text "abab" and "abc", order 2. Level 0: a 3, b 3, c 1 (C = 7, T = 3).
# Level 1 (one byte of context): after a: b 3 (C = 3, T = 1); after b: a 1, c 1 (C = 2, T = 2).


def test_interpolated_ngram_by_hand():
    model = NgramEntropyModel.train([b"abab", b"abc"], order=2, smoothing="interpolated")
    p0 = {"a": (3 + 3 * U) / 10, "b": (3 + 3 * U) / 10, "c": (1 + 3 * U) / 10}
    other0 = 3 * U / 10  # each of the 253 unseen bytes
    entropy, surprisal = model.score(b"ab")
    assert entropy[0] == pytest.approx(entropy_of(list(p0.values()) + [other0] * 253))
    assert surprisal[0] == pytest.approx(-math.log2(p0["a"]))
    # after "a": (C(a,x) + T(a) p0(x)) / (C(a) + T(a)) = (3 [x = b] + p0(x)) / 4
    p1 = {x: (3 * (x == "b") + p0[x]) / 4 for x in "abc"}
    assert entropy[1] == pytest.approx(entropy_of(list(p1.values()) + [other0 / 4] * 253))
    assert surprisal[1] == pytest.approx(-math.log2(p1["b"]))
    assert model.bits(b"ab") == pytest.approx(-math.log2(p0["a"]) - math.log2(p1["b"]))


def test_backoff_ngram_by_hand():
    model = NgramEntropyModel.train([b"abab", b"abc"], order=2, smoothing="backoff")
    # level 0: seen bytes C(x) / (C + T); the unseen mass T / (C + T) = 0.3 spread evenly over 253 bytes
    p0 = {"a": 0.3, "b": 0.3, "c": 0.1}
    other0 = 0.3 / 253
    entropy, _ = model.score(b"ab")
    assert entropy[0] == pytest.approx(entropy_of(list(p0.values()) + [other0] * 253))
    # after "a": b gets 3/4; the unseen mass 1/4 goes to the rest in proportion to level 0
    rest = 1 - p0["b"]
    p1 = [3 / 4, 0.25 * p0["a"] / rest, 0.25 * p0["c"] / rest] + [0.25 * other0 / rest] * 253
    assert entropy[1] == pytest.approx(entropy_of(p1))
    assert sum(p1) == pytest.approx(1.0)


def test_unseen_context_falls_back_and_documents_keep_their_own_context():
    model = NgramEntropyModel.train([b"abab", b"abc"], order=3)
    one = model.score(b"zab")
    two = model.score(b"q")
    batch = model.score_batch([b"zab", b"q"])
    assert np.allclose(batch[0][0], one[0]) and np.allclose(batch[1][0], two[0])
    # the first byte of every document is predicted with no context at all
    assert batch[1][0][0] == pytest.approx(one[0][0])


@pytest.mark.parametrize("order, smoothing, message", [(0, "interpolated", "between 1 and 7"), (8, "interpolated", "between 1 and 7"), (3, "kneser", "unknown smoothing")])
def test_bad_ngram_settings(order, smoothing, message):
    with pytest.raises(ToklabError, match=message):
        NgramEntropyModel.train([b"abc"], order=order, smoothing=smoothing)


# --- patching rules on a hand-made entropy sequence -----------------------------------------------

H = np.array([5.0, 1.0, 3.0, 2.5, 0.5, 4.0, 1.0])
ASCII = np.frombuffer(b"abcdefg", dtype=np.uint8)


def starts_at(starts: np.ndarray) -> list[int]:
    return np.flatnonzero(starts).tolist()


def test_global_rule():
    # H > 2.0 at positions 0, 2, 3, 5; position 0 always starts
    assert starts_at(patch_starts(H, ASCII, 2.0, "global")) == [0, 2, 3, 5]


def test_monotonic_rule():
    # rises: -, -4, +2, -0.5, -2, +3.5, -3  ->  > 1.0 at 2 and 5
    assert starts_at(patch_starts(H, ASCII, 1.0, "monotonic")) == [0, 2, 5]


def test_both_rules_combined():
    # global H > 4.5: position 0 only; monotonic rise > 1.0: 2 and 5
    assert starts_at(patch_starts(H, ASCII, 4.5, "both", relative=1.0)) == [0, 2, 5]


def test_utf8_characters_are_never_split_unless_asked():
    data = np.frombuffer("aé漢b".encode(), dtype=np.uint8)  # a | c3 a9 | e6 bc a2 | b
    high = np.full(len(data), 9.0)
    assert starts_at(patch_starts(high, data, 1.0)) == [0, 1, 3, 6]
    assert starts_at(patch_starts(high, data, 1.0, split_utf8=True)) == list(range(len(data)))


def test_max_len_caps_patches_at_character_boundaries():
    low = np.zeros(10)
    assert starts_at(patch_starts(low, np.frombuffer(b"abcdefghij", dtype=np.uint8), 1.0, max_len=4)) == [0, 4, 8]
    data = np.frombuffer("ab漢字".encode(), dtype=np.uint8)  # a b | e6 bc a2 | e5 ad 97
    assert starts_at(patch_starts(np.zeros(len(data)), data, 1.0, max_len=4)) == [0, 2, 5]
    assert patch_lengths(patch_starts(np.zeros(len(data)), data, 1.0, max_len=4)).tolist() == [2, 3, 3]


def test_calibration_bisection_on_synthetic_entropies():
    rng = np.random.default_rng(0)
    entropies = [rng.uniform(0, 8, size=2000) for _ in range(5)]
    docs = [np.full(2000, 97, dtype=np.uint8) for _ in range(5)]
    theta, achieved = calibrate(entropies, docs, 4.0)
    assert achieved == pytest.approx(4.0, rel=0.02)
    n_patches = sum(int(patch_starts(e, d, theta).sum()) for e, d in zip(entropies, docs))
    assert 10000 / n_patches == pytest.approx(achieved)
    with pytest.raises(ToklabError, match="out of reach"):
        calibrate(entropies, docs, 5000.0)


# --- the segmenter ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_corpus(default_corpus_build):
    return toklab.open_corpus("default", max_bytes=2_000_000)


@pytest.fixture(scope="module")
def entropy_seg(small_corpus):
    return get_segmenter("entropy:4k,target=4", small_corpus)


TRICKY = ["", "plain words and more words", "héllo wörld 漢字 👩‍👩‍👧 שלום", "\x00\x01\n\n\t", "<|endoftext|>", "e\u0301" * 30, "x" * 500]


@pytest.mark.parametrize("text", TRICKY)
def test_patches_tile_the_bytes_and_round_trip(entropy_seg, text):
    data = text.encode()
    assert b"".join(entropy_seg.patches(text)) == data
    ids = entropy_seg.encode(text)
    assert entropy_seg.decode(ids) == text
    spans = entropy_seg.byte_spans(ids)
    assert b"".join(data[s:e] for s, e in spans) == data
    for patch in entropy_seg.patches(text):  # no patch splits a character
        patch.decode("utf-8")


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_entropy_segmenter_is_lossless_on_any_unicode(entropy_seg, text):
    ids = entropy_seg.encode(text)
    assert entropy_seg.decode(ids) == text
    assert int(entropy_seg.token_byte_lengths()[ids].sum()) == len(text.encode())


def test_vocabulary_and_coverage(entropy_seg):
    assert entropy_seg.vocab_size == 4000 and entropy_seg.special_tokens == {"<|endoftext|>": 3999}
    params = entropy_seg.params
    assert 0 < params["byte_coverage"] <= params["patch_coverage"] <= 1
    assert params["model"] == "ngram" and params["order"] == 4 and params["rule"] == "global"
    lengths = entropy_seg.token_byte_lengths()
    assert lengths[:256].tolist() == [1] * 256 and (lengths[256:3999] >= 2).all() and lengths[3999] == 0


def test_batch_equals_single(entropy_seg):
    assert entropy_seg.encode_batch(TRICKY) == [entropy_seg.encode(t) for t in TRICKY]


def test_save_load_is_identical(entropy_seg, tmp_path):
    entropy_seg.save(tmp_path / "ent")
    loaded = load_segmenter(tmp_path / "ent")
    texts = [d.text for d in toklab.open_corpus("default", max_docs=40)]
    assert loaded.encode_batch(texts) == entropy_seg.encode_batch(texts)
    assert loaded.theta == entropy_seg.theta and loaded.vocab_size == entropy_seg.vocab_size
    assert loaded.extra_measures(texts) == entropy_seg.extra_measures(texts)
    assert loaded.spec == entropy_seg.spec == "entropy:4k,target=4"


def test_fixed_theta(small_corpus):
    seg = get_segmenter("entropy:1k,theta=2.5", small_corpus)
    assert seg.theta == 2.5 and seg.params["target"] is None
    text = "The same threshold gives the same cuts."
    entropy = seg.model.entropies(text.encode())
    expected = np.flatnonzero(patch_starts(entropy, np.frombuffer(text.encode(), dtype=np.uint8), 2.5)).tolist()
    assert [0] + np.cumsum([len(p) for p in seg.patches(text)])[:-1].tolist() == expected


def test_calibration_hits_its_target_on_the_default_corpus(default_corpus_build):
    corpus = toklab.open_corpus("default")
    seg = get_segmenter("entropy:target=4.5", corpus)
    assert seg.params["calibration_bytes_per_patch"] == pytest.approx(4.5, rel=0.02)
    # calibrated on held-out train text, so it transfers to the validation split
    measured = seg.extra_measures([d.text for d in corpus.val()])
    assert measured["mean_patch_bytes"] == pytest.approx(4.5, rel=0.1)
    assert 0 < measured["model_bits_per_byte"] < 8


@pytest.mark.parametrize(
    "spec, message",
    [
        ("entropy:target=4,theta=1", "either target= .* or theta="),
        ("entropy:rule=wobbly", "unknown patching rule"),
        ("entropy:model=lstm", "unknown entropy model"),
        ("entropy:order=9", "between 1 and 7"),
        ("entropy:target=abc", "target=abc must be a finite number"),
        ("entropy:100", "at least 258"),
        ("entropy:target=1000000", "out of reach"),
        ("entropy:colour=red", "unknown entropy option"),
    ],
)
def test_bad_entropy_specs(small_corpus, spec, message):
    with pytest.raises(ToklabError, match=message):
        get_segmenter(spec, small_corpus, cache=False)


def test_compare_adds_patch_columns(small_corpus):
    from toklab.comparison import run_compare

    result = run_compare(small_corpus, ["bytes", "entropy:4k,target=4"], compressors=False)
    table = result.table.set_index("segmenter")
    for column in ("mean_patch_bytes", "median_patch_bytes", "max_patch_bytes", "model_bits_per_byte"):
        assert column in table.columns
        assert math.isnan(table.loc["bytes", column]) and table.loc["entropy:4k,target=4", column] > 0
    assert table.loc["entropy:4k,target=4", "bytes_per_token"] <= table.loc["entropy:4k,target=4", "mean_patch_bytes"]
    # coverage on the measured text, by hand from the raw patches
    seg = get_segmenter("entropy:4k,target=4", small_corpus)
    patches = [p for d in small_corpus.val() for p in seg.patches(d.text)]
    single = [p for p in patches if len(p) == 1 or p in seg._ids]
    assert table.loc["entropy:4k,target=4", "vocab_patch_coverage"] == pytest.approx(len(single) / len(patches))
    assert table.loc["entropy:4k,target=4", "vocab_byte_coverage"] == pytest.approx(sum(map(len, single)) / sum(map(len, patches)))


def test_transformer_entropy_model_through_the_segmenter(small_corpus, tmp_path):
    spec = "entropy:1k,target=3,model=transformer,steps=40,context=32,d_model=32,n_layer=1,n_head=2"
    seg = get_segmenter(spec, toklab.open_corpus("default", max_bytes=300_000), cache=False)
    assert seg.params["model"] == "transformer" and seg.params["calibration_bytes_per_patch"] == pytest.approx(3, rel=0.02)
    texts = TRICKY + ["A longer sentence, so that the transformer has to slide its window over it. " * 3]
    ids = seg.encode_batch(texts)
    assert [seg.decode(i) for i in ids] == texts
    measured = seg.extra_measures(texts)
    assert 0 < measured["model_bits_per_byte"] < 9 and measured["mean_patch_bytes"] > 1
    seg.save(tmp_path / "t")
    assert load_segmenter(tmp_path / "t").encode_batch(texts) == ids
