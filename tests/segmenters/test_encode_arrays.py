"""`encode_arrays`: the ids as int64 arrays, built without Python lists by the kinds that make their
ids in numpy (bytes, entropy), in threads for the n-gram entropy kind; the patch vocabulary's
lookup by exact keys for patches of 8 to 16 bytes. Expected ids come from str.encode, from a dict
lookup of each patch written out here, or from encode_batch of a kind that is not array-native."""

from __future__ import annotations

import numpy as np
import pytest

import toklab
from toklab.segmenters import entropy as entropy_module
from toklab.segmenters.bytes import ByteSegmenter
from toklab.segmenters.entropy import EntropySegmenter
from toklab.segmenters.entropy_models import NgramEntropyModel
from toklab.segmenters.patching import patch_starts


@pytest.fixture(scope="module")
def texts(shared_corpora) -> list[str]:
    out: list[str] = []
    for name in ("sotu", "email", "code", "udhr"):
        docs = iter(toklab.open_corpus(str(shared_corpora / name), val_fraction=0.0).documents())
        out += [next(docs).text[:20_000] for _ in range(12)]
    return out + ["", "a", "é中\U0001f600", "x" * 40]


@pytest.fixture(scope="module")
def segmenter(texts) -> EntropySegmenter:
    """An order-3 model with a high θ (long patches) and a vocabulary holding the patches of the texts
    of every length from 2 to 24 bytes, so that short, medium (8-16) and long lookups all occur."""
    docs = [t.encode("utf-8") for t in texts]
    model = NgramEntropyModel.train(docs[::2], order=3, smoothing="interpolated")
    probe = EntropySegmenter(model, 3.5, "global", [])
    patches: dict[bytes, int] = {}
    for d in docs:
        x = np.frombuffer(d, dtype=np.uint8)
        starts = patch_starts(model.entropies(d), x, probe.theta, probe.rule)
        for s, e in zip(np.flatnonzero(starts), [*np.flatnonzero(starts)[1:], len(d)]):
            piece = d[s:e]
            if 2 <= len(piece) <= 24:
                patches[piece] = patches.get(piece, 0) + 1
    vocab = sorted(patches, key=lambda p: (-patches[p], p))[:20_000:2]  # every other one: some patches miss
    return EntropySegmenter(model, probe.theta, probe.rule, vocab)


def by_hand(seg: EntropySegmenter, text: str) -> list[int]:
    """Each patch's id from a dict of the vocabulary, else its bytes."""
    data = text.encode("utf-8")
    starts = patch_starts(seg.model.entropies(data), np.frombuffer(data, dtype=np.uint8), seg.theta, seg.rule)
    ids = {p: 256 + i for i, p in enumerate(seg._pieces[256:-1])}
    bounds = [*np.flatnonzero(starts).tolist(), len(data)]
    out: list[int] = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        piece = data[s:e]
        out += [ids[piece]] if piece in ids else list(piece)
    return out


def test_entropy_arrays_equal_the_dict_lookup_for_every_patch_length(segmenter, texts):
    expected = [by_hand(segmenter, t) for t in texts]
    vocab = set(segmenter._pieces[256:-1])
    lengths = {len(segmenter._pieces[i]) for ids in expected for i in ids if i >= 256}
    assert {3, 8, 12, 16, 17}.issubset(lengths) and any(len(p) > 20 for p in vocab)  # every lookup is used
    for workers in (1, 2):
        arrays = segmenter.encode_arrays(texts, workers=workers)
        assert all(a.dtype == np.int64 for a in arrays)
        assert [a.tolist() for a in arrays] == expected
        assert segmenter.encode_batch(texts, workers=workers) == expected


def test_medium_lookup_and_the_dict_give_the_same_ids(segmenter, texts):
    table = entropy_module._PatchTable(segmenter._pieces[256:-1], segmenter._ids)
    assert table.medium and len(table.medium_hashes) > 50
    x = np.frombuffer("".join(texts).encode("utf-8"), dtype=np.uint8)
    starts = np.zeros(len(x), dtype=bool)
    starts[::11] = True  # arbitrary patches of 11 bytes: most are no vocabulary patch
    starts[5::23] = True
    fast = table.tokens(x, starts)
    table.medium = False  # as if two vocabulary patches had shared a hash: all through the dict
    slow = table.tokens(x, starts)
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])


def test_medium_patches_that_differ_in_one_byte_have_their_own_hashes():
    # 8-byte patches are one word twice; a hash that multiplied and xor-ed the words gave these
    # (they differ only in their last byte) the same hash, and the whole medium lookup fell back
    # to the dict on the default corpus's vocabulary.
    patches = [b"compare/", b"compare_", b"passing\n", b"passing ", b"12345678", b"123456789abcdef0"]
    ids = {p: 256 + i for i, p in enumerate(patches)}
    table = entropy_module._PatchTable(patches, ids)
    assert table.medium
    text = b"".join(patches) + b"compare!"
    starts = np.zeros(len(text), dtype=bool)
    starts[np.cumsum([0] + [len(p) for p in patches])] = True
    tokens, kept = table.tokens(np.frombuffer(text, dtype=np.uint8), starts)
    assert tokens[kept].tolist() == [256, 257, 258, 259, 260, 261, *b"compare!"]


def test_threads_split_the_batch_and_keep_the_order(segmenter, texts, monkeypatch):
    monkeypatch.setattr(entropy_module, "SCORE_CHUNK_BYTES", 30_000)  # many groups
    groups = list(entropy_module._groups([t.encode() for t in texts], parts=2))
    assert len(groups) > 4 and [d for g in groups for d in g] == [t.encode() for t in texts]
    one = [a.tolist() for a in segmenter.encode_arrays(texts, workers=1)]
    assert [a.tolist() for a in segmenter.encode_arrays(texts, workers=2)] == one
    assert len(list(entropy_module._groups([b"ab"] * 10, parts=2))) == 2  # a small batch still splits


def test_bytes_arrays_are_the_utf8_bytes(texts):
    seg = ByteSegmenter()
    for text, ids in zip(texts, seg.encode_arrays(texts)):
        assert ids.dtype == np.int64 and ids.tolist() == list(text.encode("utf-8"))


def test_encode_pieces_hands_arrays_only_from_array_native_kinds(segmenter, texts, small_bpe_for_arrays):
    native = [ids for _, _, ids in segmenter.encode_pieces(texts)]
    assert all(isinstance(ids, np.ndarray) for ids in native)
    listed = [ids for _, _, ids in small_bpe_for_arrays.encode_pieces(texts)]
    assert all(isinstance(ids, list) for ids in listed)
    assert [a.tolist() for a in small_bpe_for_arrays.encode_arrays(texts)] == small_bpe_for_arrays.encode_batch(texts)
    assert segmenter.count_tokens(texts).tolist() == [len(by_hand(segmenter, t)) for t in texts]


@pytest.fixture(scope="module")
def small_bpe_for_arrays(texts):
    from toklab.segmenters.bpe import BPESegmenter

    return BPESegmenter.train(texts[:20], 400)
