"""Long documents as BLT flagged bytes (toklab/segmenters/patchers.py): a text over CUT_CHARS is
flagged piece by piece, and its ids are exactly those of the whole text. Every expected value comes
from `patcher.starts` on the whole text's bytes (which never goes through pieces), or by hand."""

from __future__ import annotations


import numpy as np
import pytest

import toklab
import toklab.segmenters.base as base
from conftest import long_corpus  # a jsonl corpus holding one long document
from toklab import split_of
from toklab.gpt.data import build_token_data, read_shard
from toklab.segmenters.base import CUT_STREAM
from toklab.segmenters.patchers import EOT_ID, FLAG, EntropyPatcher, PatchedBytes, SegmenterPatcher, SpacePatcher, StaticPatcher
from toklab.segmenters.patching import patch_lengths

EDGES = "\n" + "é中\U0001f600" * 2000 + " " + "x" * 200_000 + " end"  # multi-byte characters, a long run with no space


@pytest.fixture(scope="module")
def text(long_text) -> str:
    return long_text + EDGES


def whole_ids(patcher, text: str) -> np.ndarray:
    """The flagged bytes of the whole text, from the patcher's flags of all its bytes at once."""
    data = text.encode("utf-8")
    return np.frombuffer(data, dtype=np.uint8).astype(np.int64) + FLAG * patcher.starts(data)


def patched(patcher) -> PatchedBytes:
    return PatchedBytes(patcher, patcher.name)


def check_long(seg: PatchedBytes, text: str, expected: np.ndarray, min_pieces: int = 20, every_path: bool = False) -> None:
    """The pieces of a long text join to it, their ids to the whole ids, and encode_batch gives them
    (with every_path, encode, encode_chunks, exact_cuts, count_tokens and encode_arrays too)."""
    assert seg.cut_rule == CUT_STREAM and seg._long(text)
    pieces = list(seg._long_pieces(text))
    assert len(pieces) > min_pieces
    assert all(isinstance(p, str) and p for p, _ in pieces) and "".join(p for p, _ in pieces) == text
    assert np.array_equal(np.concatenate([ids for _, ids in pieces]), expected)
    batch = seg.encode_batch(["ab c", text, "é"])
    assert batch[0] == whole_ids(seg.patcher, "ab c").tolist() and batch[2] == whole_ids(seg.patcher, "é").tolist()
    assert np.array_equal(np.array(batch[1]), expected)
    if every_path:
        assert np.array_equal(np.array(seg.encode(text)), expected)
        assert np.array_equal(np.concatenate(list(seg.encode_chunks(text))), expected)
        assert list(seg.exact_cuts(text)) == [p for p, _ in pieces]
        assert seg.count_tokens([text, "ab"]).tolist() == [len(expected), 2]
        arrays = seg.encode_arrays(["ab c", text])
        assert np.array_equal(arrays[1], expected) and arrays[0].tolist() == batch[0]


# --- static: flags from the byte offset -------------------------------------------------------------


def test_static_flags_from_an_offset_by_hand():
    # floor(t / 2.5) for t = 2..6: 0 1 1 2 2 -> within bytes 3..6, starts at 3 and 5
    assert StaticPatcher(2.5).starts_at(4, 3).tolist() == [True, False, True, False]
    # floor(t / 4.5) for t = 8..14: 1 2 2 2 2 2 3 -> within bytes 9..14, starts at 9 and 14
    assert StaticPatcher(4.5).starts_at(6, 9).tolist() == [True, False, False, False, False, True]
    assert StaticPatcher(4.5).starts_at(3, 1).tolist() == [False, False, False]  # byte 1 starts no patch
    assert StaticPatcher(2.5).starts_at(3, 0).tolist() == [True, False, False]
    assert StaticPatcher(2.5).starts_at(0, 7).tolist() == []


@pytest.mark.parametrize("size", [4.5, 2.5, 3])
def test_static_long_text_ids_equal_the_whole(size, text, small_cut):
    patcher = StaticPatcher(size)
    pieces = list(patcher.pieces(text, 7_001))
    assert any(not starts[0] for _, _, starts in pieces)  # pieces do begin inside a patch
    check_long(patched(patcher), text, whole_ids(patcher, text), every_path=size == 4.5)


# --- space: pieces cut at patch starts ----------------------------------------------------------------


def test_space_pieces_by_hand():
    # max_len 3 over "abcdefgh ij": a b c | d e f | g h | ' ' i j (the cap, then the space)
    assert np.flatnonzero(SpacePatcher(3).starts(b"abcdefgh ij")).tolist() == [0, 3, 6, 8]
    # windows of 4 bytes, each piece ended at the last start in its window (capped starts too)
    pieces = [(p, np.flatnonzero(s).tolist()) for p, _, s in SpacePatcher(3).pieces("abcdefgh ij", 4)]
    assert pieces == [("abc", [0]), ("def", [0]), ("gh", [0]), (" ij", [0])]
    # a window with no start after its first byte is doubled until it has one
    pieces = [p for p, _, _ in SpacePatcher(16).pieces("hi there you all", 5)]
    assert pieces == ["hi", " there", " you", " all"]
    assert [p for p, _, _ in SpacePatcher(16).pieces("abcdefghij klm", 3)] == ["abcdefghij", " klm"]


@pytest.mark.parametrize("max_len", [16, 3])
def test_space_long_text_ids_equal_the_whole(max_len, text, small_cut):
    patcher = SpacePatcher(max_len)
    check_long(patched(patcher), text, whole_ids(patcher, text))


def test_space_cuts_a_run_with_no_space_at_its_capped_starts(small_cut):
    run = "y" + "x" * 300_000 + " z"
    patcher = SpacePatcher(16)
    pieces = list(patcher.pieces(run, 10_000))
    assert len(pieces) >= 30 and max(len(p) for p, _, _ in pieces) <= 10_000
    expected = whole_ids(patcher, run)
    assert np.array_equal(np.concatenate([x.astype(np.int64) + FLAG * s for _, x, s in pieces]), expected)
    assert np.array_equal(np.array(patched(patcher).encode(run)), expected)


# --- entropy: the entropy segmenter's own windows -------------------------------------------------


@pytest.fixture(scope="module")
def entropy_models(long_text):
    from toklab.segmenters.entropy import EntropySegmenter

    train = long_text[:300_000]
    return {order: EntropySegmenter.train([train], 600, order=str(order), theta="3") for order in (2, 4)}


def entropy_variant(seg, **changes):
    """The same model and vocabulary with other patching settings."""
    from toklab.segmenters.entropy import EntropySegmenter

    settings = dict(theta=seg.theta, rule=seg.rule, relative=seg.relative, max_len=seg.max_len, split_utf8=seg.split_utf8)
    settings.update(changes)
    theta, rule = settings.pop("theta"), settings.pop("rule")
    return EntropySegmenter(seg.model, theta, rule, list(seg._pieces[256:-1]), **settings)


ENTROPY_CASES = [
    (4, {}),
    (2, {}),
    (4, {"max_len": 6}),  # capped causally, piece by piece
    (2, {"max_len": 3}),  # the cap cuts inside most patches
    (4, {"max_len": 5, "split_utf8": True}),  # the segmenter's own cap, starts inside characters
    (4, {"split_utf8": True}),
    (4, {"rule": "monotonic", "theta": 0.2, "max_len": 8}),
]


@pytest.mark.parametrize("order, changes", ENTROPY_CASES)
def test_entropy_long_text_ids_equal_the_whole(order, changes, entropy_models, long_text, small_cut, monkeypatch):
    monkeypatch.setattr(base, "CUT_CHARS", 7_000)  # a shorter text in as many pieces: faster
    text = long_text[:150_000] + EDGES
    patcher = EntropyPatcher(entropy_variant(entropy_models[order], **changes))
    expected = whole_ids(patcher, text)
    assert (expected >= FLAG).sum() > len(expected) / 20  # it does patch
    check_long(patched(patcher), text, expected)


def test_entropy_that_does_not_stream_is_flagged_whole(entropy_models, long_text, small_cut):
    seg = entropy_variant(entropy_models[4], max_len=6)

    class Whole:  # the model without its streaming entry point, as a model without context_start
        def __init__(self, model):
            self.model = model
            self.order, self.kind = model.order, model.kind

        def score_batch(self, docs):
            return self.model.score_batch(docs)

    seg.model = Whole(seg.model)
    assert seg.cut_rule is None
    patcher = EntropyPatcher(seg)
    flagged = patched(patcher)
    text = long_text[:60_000]
    assert flagged.cut_rule is None and not flagged._long(text)
    assert list(flagged.exact_cuts(text)) == [text]
    assert np.array_equal(np.array(flagged.encode(text)), whole_ids(patcher, text))
    assert [i for i, _, _ in flagged.encode_pieces(["ab", text])] == [0, 1]


# --- a segmenter's tokens: its own exact pieces ------------------------------------------------------


@pytest.fixture(scope="module")
def small_bpe(long_text):
    from toklab.segmenters.bpe import BPESegmenter

    return BPESegmenter.train([long_text[:300_000]], 600)


def test_bpe_tokens_long_text_ids_equal_the_whole(small_bpe, long_text, small_cut):
    text = long_text + "\n" + "é中\U0001f600" * 2000 + " " + "x" * 20_000 + " end"
    patcher = SegmenterPatcher(small_bpe)
    check_long(patched(patcher), text, whole_ids(patcher, text))


def test_tokens_of_a_segmenter_that_cannot_be_cut_are_flagged_whole(small_bpe, long_text, small_cut, monkeypatch):
    monkeypatch.setattr(type(small_bpe), "cut_rule", None)
    patcher = SegmenterPatcher(small_bpe)
    flagged = patched(patcher)
    text = long_text[:120_000]
    assert flagged.cut_rule is None and list(flagged.exact_cuts(text)) == [text]
    assert np.array_equal(np.array(flagged.encode(text)), whole_ids(patcher, text))


# --- patch_stats, encode_pieces, shards ---------------------------------------------------------------


def expected_stats(patcher, texts: list[str]) -> dict:
    lengths = np.concatenate([patch_lengths(patcher.starts(t.encode("utf-8"))) for t in texts])
    return {
        "documents": len(texts), "bytes": int(lengths.sum()), "patches": len(lengths), "max_patch_bytes": int(lengths.max()),
        "mean_patch_bytes": float(lengths.mean()), "median_patch_bytes": float(np.median(lengths)), "p90_patch_bytes": float(np.percentile(lengths, 90)),
    }  # fmt: skip


@pytest.mark.parametrize("which", ["static", "space", "entropy"])
def test_patch_stats_of_a_long_text_are_the_whole_figures(which, entropy_models, text, small_cut, monkeypatch):
    patcher = {"static": StaticPatcher(2.5), "space": SpacePatcher(3), "entropy": EntropyPatcher(entropy_variant(entropy_models[4], max_len=6))}[which]
    monkeypatch.setattr(base, "CUT_CHARS", 10_000)
    texts = ["ab c", text[:200_000], "", "é" * 7, text[-150_000:]]
    seg = patched(patcher)
    assert seg._long(texts[1]) and seg._long(texts[4])
    stats = seg.patch_stats(texts)
    for key, value in expected_stats(patcher, texts).items():
        assert stats[key] == pytest.approx(value, rel=1e-12, abs=0), key
    assert stats["bytes_per_patch"] == stats["bytes"] / stats["patches"] and stats["causal"] is True


def test_patch_stats_by_hand_across_pieces(small_cut, monkeypatch):
    monkeypatch.setattr(base, "CUT_CHARS", 4)
    # static 2.5 over "0123456789": patches 3 2 3 2; pieces of 4 bytes cut the patches at 3..5 and 8..10
    seg = patched(StaticPatcher(2.5))
    stats = seg.patch_stats(["0123456789"])
    assert (stats["patches"], stats["bytes"], stats["median_patch_bytes"], stats["max_patch_bytes"]) == (4, 10, 2.5, 3)
    assert stats["p90_patch_bytes"] == pytest.approx(3.0) and stats["mean_patch_bytes"] == 2.5


def test_encode_pieces_of_a_long_document_give_the_whole_ids(entropy_models, long_text, small_cut, monkeypatch):
    monkeypatch.setattr(base, "CUT_CHARS", 15_000)
    patcher = EntropyPatcher(entropy_variant(entropy_models[2], max_len=4))
    seg = patched(patcher)
    texts = ["first", long_text[:300_000] + EDGES, "last one"]
    got: dict[int, list[np.ndarray]] = {}
    for i, _, ids in seg.encode_pieces(texts):
        got.setdefault(i, []).append(np.asarray(ids, dtype=np.int64))
    assert len(got[1]) > 20 and len(got[0]) == len(got[2]) == 1
    for i, t in enumerate(texts):
        assert np.array_equal(np.concatenate(got[i]), whole_ids(patcher, t)), i


@pytest.mark.parametrize("which", ["static", "space"])
def test_pretrain_shards_of_a_long_document_are_the_whole_ids(which, text, tmp_path, small_cut, monkeypatch):
    import toklab.gpt.data as data_module

    monkeypatch.setattr(data_module, "PIECE_FLUSH_TOKENS", 10_000)  # the writer gets the long document in many parts
    patcher = StaticPatcher(4.5) if which == "static" else SpacePatcher(16)
    seg = patched(patcher)
    document = text[:700_000] + EDGES
    path, records = long_corpus(tmp_path, document, "val")
    calls = []
    original = PatchedBytes._long_pieces
    monkeypatch.setattr(PatchedBytes, "_long_pieces", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    data = build_token_data(toklab.open_corpus(str(path), val_fraction=0.5), seg, cache=False, shard_tokens=70_000)
    assert calls  # the long document went through pieces
    for part in ("train", "val"):
        stream = [np.array([EOT_ID])]
        for r in records:
            if split_of(r["id"], 0.5) == part:
                stream += [whole_ids(patcher, r["text"]), np.array([EOT_ID])]
        shards = data.train_shards if part == "train" else data.val_shards
        assert np.array_equal(np.concatenate([read_shard(p) for p in shards]), np.concatenate(stream)), part
    index = data.val_documents()
    assert index["tokens"].tolist() == [len(r["text"].encode()) for r in records if split_of(r["id"], 0.5) == "val"]
