"""Long documents with the transformer entropy model: a long text is encoded in pieces whose ids,
joined, are the ids of the whole text. The expected ids come from the whole text: the model's
score_batch on all its bytes, patching.patch_starts, then the segmenter's dict lookup (`_ids_of`),
never from the piece path.

The transformer computes in float32: a window's numbers could in principle change in their last
bits with the batch it runs in, and a patch start then flip where an entropy lies that close to
the threshold. So these tests patch with thresholds picked away from every entropy of the text
(`far_threshold`); the entropies themselves are checked to 1e-6, and to the bit with one thread."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch

import toklab
import toklab.segmenters.base as base
from toklab import split_of
from toklab.segmenters.base import CUT_STREAM
from toklab.segmenters.entropy import EntropySegmenter
from toklab.segmenters.entropy_transformer import TransformerEntropyModel
from toklab.segmenters.patching import patch_starts

PIECE = 7_000  # bytes per piece in most tests: about 30 pieces, each of about 110 windows of 64


@pytest.fixture(scope="module")
def trained(long_text) -> EntropySegmenter:
    """A tiny transformer (context 64, so a long text has thousands of windows) trained for a few
    steps; a threshold at the 75th percentile of its entropies on its training text, and the 500
    most frequent multi-byte patches there as the vocabulary."""
    train = long_text[:60_000]
    model = TransformerEntropyModel.train([train], n_layer=1, n_head=2, d_model=32, context=64, steps=150, batch_size=16, lr=1e-2, seed=0, device="cpu")
    data = train.encode("utf-8")
    entropy = model.entropies(data)
    theta = float(np.percentile(entropy, 75))
    starts = np.flatnonzero(patch_starts(entropy, np.frombuffer(data, dtype=np.uint8), theta)).tolist()
    counts = collections.Counter(data[a:b] for a, b in zip(starts, starts[1:] + [len(data)]))
    patches = [p for p, _ in counts.most_common() if len(p) > 1][:500]
    return EntropySegmenter(model, theta, "global", patches)


@pytest.fixture(scope="module")
def text(long_text) -> str:
    return long_text[:200_000] + "é中\U0001f600 " * 1000  # multi-byte characters near the last cuts


@pytest.fixture(scope="module")
def whole(trained, text) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The text's bytes and their (entropy, surprisal) from one whole pass of the model."""
    data = text.encode("utf-8")
    entropy, surprisal = trained.model.score_batch([data])[0]
    return data, entropy, surprisal


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def far_threshold(values: np.ndarray, near: float) -> float:
    """A threshold within 0.25 of `near`, in the middle of the widest gap between the values there:
    no value lies within half that gap of it."""
    around = np.unique(values[np.abs(values - near) < 0.25])
    if len(around) < 2:
        return near
    gap = int(np.argmax(np.diff(around)))
    return float(around[gap] + around[gap + 1]) / 2


def variant(seg: EntropySegmenter, entropy: np.ndarray, **changes) -> EntropySegmenter:
    """The same model and vocabulary with other patching settings, the thresholds moved away from
    every entropy (global) and every rise of the entropy (monotonic) of the text."""
    settings = dict(theta=seg.theta, rule=seg.rule, relative=seg.relative, max_len=seg.max_len, split_utf8=seg.split_utf8)
    settings.update(changes)
    rise = np.diff(entropy, prepend=entropy[0])
    if settings["theta"] < 50:
        settings["theta"] = far_threshold(rise if settings["rule"] == "monotonic" else entropy, settings["theta"])
    if settings["rule"] == "both":
        settings["relative"] = far_threshold(rise, settings["relative"])
    theta, rule = settings.pop("theta"), settings.pop("rule")
    return EntropySegmenter(seg.model, theta, rule, list(seg._pieces[256:-1]), **settings)


def margin(seg: EntropySegmenter, entropy: np.ndarray) -> float:
    """How far the thresholds lie from the values they are compared with."""
    rise = np.diff(entropy, prepend=entropy[0])
    if seg.rule == "global":
        return float(np.abs(entropy - seg.theta).min())
    if seg.rule == "monotonic":
        return float(np.abs(rise - seg.theta).min())
    return float(min(np.abs(entropy - seg.theta).min(), np.abs(rise - seg.relative).min()))


def reference_ids(seg: EntropySegmenter, data: bytes, entropy: np.ndarray) -> list[int]:
    """The ids of the whole text: its entropies, patch_starts, the vocabulary's dict."""
    x = np.frombuffer(data, dtype=np.uint8)
    starts = patch_starts(entropy, x, seg.theta, seg.rule, relative=seg.relative, max_len=seg.max_len, split_utf8=seg.split_utf8)
    return seg._ids_of(data, starts)


CASES = [
    {},
    {"max_len": 4},  # the cap cuts inside many patches
    {"max_len": 5, "split_utf8": True},
    {"rule": "monotonic", "theta": 0.2},  # compares with the previous byte's entropy
    {"rule": "both", "relative": 0.5},
    {"theta": 100.0},  # no patch start after the first: one patch longer than any window
]


@pytest.mark.parametrize("changes", CASES)
def test_long_text_pieces_have_the_ids_of_the_whole(changes, trained, text, whole):
    data, entropy, _ = whole
    seg = variant(trained, entropy, **changes)
    assert seg.cut_rule == CUT_STREAM and seg.model.context == 64
    assert margin(seg, entropy) > 1e-5  # a patch start flips only if an entropy moves that far
    expected = reference_ids(seg, data, entropy)
    pieces = list(seg._long_pieces(text, PIECE))
    assert "".join(p for p, _ in pieces) == text
    assert len(pieces) >= (1 if changes.get("theta") == 100.0 else 25)
    assert [int(i) for _, ids in pieces for i in ids] == expected
    assert seg.decode(expected) == text


def test_piece_entropies_equal_the_whole_pass(trained, whole, one_thread):
    """Each piece scored from the first byte its windows read (context_start) has the whole pass's
    entropies and surprisals: on this CPU to the bit, and in any case to float32 rounding."""
    data, entropy, surprisal = whole
    model = trained.model
    seg = variant(trained, entropy)
    n_pieces = 0
    for pos, cut, _ in seg._windows(data, PIECE):
        n_pieces += 1
        lo = model.context_start(pos)
        assert pos - lo >= model.context // 2 or lo == 0  # the window that scores pos starts before it
        for end in (cut, min(len(data), pos + PIECE)):
            e, s = model.score_from(data[lo:end], lo, pos)
            np.testing.assert_allclose(e, entropy[pos:end], rtol=0, atol=1e-6)
            np.testing.assert_allclose(s, surprisal[pos:end], rtol=0, atol=1e-6)
            assert np.array_equal(e, entropy[pos:end]) and np.array_equal(s, surprisal[pos:end]), (pos, end)
    assert n_pieces >= 25


def test_long_documents_go_through_pieces(trained, text, whole, monkeypatch):
    data, entropy, _ = whole
    seg = variant(trained, entropy)
    expected = reference_ids(seg, data, entropy)
    short = reference_ids(seg, b"ab", trained.model.score_batch([b"ab"])[0][0])
    monkeypatch.setattr(base, "CUT_CHARS", 20_000)
    assert seg._long(text) and len(list(seg.exact_cuts(text))) >= 9
    assert seg.encode_batch(["ab", text]) == [short, expected]
    assert seg.count_tokens([text, "ab"]).tolist() == [len(expected), len(short)]
    pieces = [(i, piece, list(ids)) for i, piece, ids in seg.encode_pieces(["ab", text, "ab"])]
    assert [i for i, _, _ in pieces].count(1) >= 9
    assert "".join(p for i, p, _ in pieces if i == 1) == text
    assert [int(t) for i, _, ids in pieces if i == 1 for t in ids] == expected


def test_measures_of_a_long_text_equal_the_whole_pass(trained, text, whole, monkeypatch):
    data, entropy, surprisal = whole
    seg = variant(trained, entropy, max_len=6)
    x = np.frombuffer(data, dtype=np.uint8)
    starts = patch_starts(entropy, x, seg.theta, seg.rule, max_len=6)
    lengths = np.diff(np.append(np.flatnonzero(starts), len(data)))
    monkeypatch.setattr(base, "CUT_CHARS", PIECE)
    assert seg._long(text)
    measured = seg.extra_measures([text])
    assert measured["mean_patch_bytes"] == pytest.approx(lengths.mean(), rel=1e-12)
    assert measured["max_patch_bytes"] == lengths.max() == 6
    assert measured["model_bits_per_byte"] == pytest.approx(surprisal.sum() / len(data), rel=1e-9)


def test_compare_counts_a_long_document_through_pieces(trained, text, whole, tmp_path, monkeypatch):
    from toklab.comparison import run_compare

    data, entropy, surprisal = whole
    seg = variant(trained, entropy)
    folder = seg.save(tmp_path / "seg")
    long_id = next(f"long-{k}" for k in range(1000) if split_of(f"long-{k}", 0.5) == "val")
    records = [{"id": f"short-{k}", "text": f"short document {k}\nwith two lines /{k}"} for k in range(12)]
    records.insert(5, {"id": long_id, "text": text})
    (tmp_path / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    val = [r["text"] for r in records if split_of(r["id"], 0.5) == "val"]
    expected = 0
    for t in val:
        d = t.encode("utf-8")
        expected += len(reference_ids(seg, d, entropy if t == text else trained.model.score_batch([d])[0][0]))
    monkeypatch.setattr(base, "CUT_CHARS", 20_000)
    calls = []
    real = EntropySegmenter._long_pieces
    monkeypatch.setattr(EntropySegmenter, "_long_pieces", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    corpus = toklab.open_corpus(str(tmp_path / "long.jsonl"), val_fraction=0.5)
    table = run_compare(corpus, [str(folder)], compressors=False).table.set_index("segmenter")
    row = table.iloc[0]
    assert calls and bool(row["lossless"])  # the long document went through pieces
    assert row["tokens"] == expected
