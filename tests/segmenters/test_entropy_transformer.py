"""The byte transformer entropy model: scores checked against the torch module run by hand."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from toklab.errors import ToklabError
from toklab.gpt import model as gpt_model
from toklab.segmenters.entropy_transformer import (
    LEGACY_NAMES,
    START_BYTE,
    ByteTransformer,
    TransformerConfig,
    TransformerEntropyModel,
    _windows,
)

TINY = dict(n_layer=1, n_head=2, d_model=32, context=32, steps=100, batch_size=16, lr=1e-2, seed=0, device="cpu")
SENTENCE = "the cat sat on the mat. "
TEXT = SENTENCE * 40
VARIED = b"Entropy patches: a byte model predicts each next byte; new patch where it is unsure. 0123456789!"


@pytest.fixture(scope="module")
def model() -> TransformerEntropyModel:
    return TransformerEntropyModel.train([TEXT], **TINY)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # more threads split sums differently (~1e-6 apart)
    yield
    torch.set_num_threads(threads)


def direct_log_probs(model: TransformerEntropyModel, data: bytes, start: int = 0, end: int | None = None) -> torch.Tensor:
    """log p(data[t] | ...) for t in [start, end), from one forward pass of the module over the
    inputs START_BYTE + data[:-1] in that range (float64 log-softmax of its logits)."""
    inputs = [START_BYTE, *data[:-1]]
    end = len(data) if end is None else end
    x = torch.tensor(inputs[start:end], dtype=torch.long)[None]
    with torch.no_grad():
        logits = model.model(x)[0].double()
    return F.log_softmax(logits, dim=-1)


def entropy_bits(logp: torch.Tensor) -> np.ndarray:
    return (-(logp.exp() * logp).sum(-1) / math.log(2)).numpy()


# --- scores -------------------------------------------------------------------------------------


def test_entropies_shape_and_range(model: TransformerEntropyModel) -> None:
    for data in (b"a", VARIED, TEXT.encode() * 3, "héllo wörld ✓".encode()):
        e = model.entropies(data)
        assert e.dtype == np.float64 and e.shape == (len(data),)
        assert np.isfinite(e).all() and (e >= 0).all() and (e <= 8).all()


def test_empty_input(model: TransformerEntropyModel) -> None:
    e = model.entropies(b"")
    assert e.dtype == np.float64 and e.shape == (0,)
    assert model.bits(b"") == 0.0
    assert [len(x) for x in model.entropies_batch([b"", b"ab", b""])] == [0, 2, 0]
    assert model.entropies_batch([]) == []


def test_entropies_match_a_direct_forward_pass(model: TransformerEntropyModel) -> None:
    data = VARIED[: model.context - 1]
    expected = entropy_bits(direct_log_probs(model, data))
    np.testing.assert_allclose(model.entropies(data), expected, atol=1e-4)


def test_bits_match_a_direct_forward_pass(model: TransformerEntropyModel) -> None:
    data = VARIED[: model.context]
    logp = direct_log_probs(model, data)
    expected = -logp[torch.arange(len(data)), torch.tensor(list(data))].sum().item() / math.log(2)
    assert model.bits(data) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(model.surprisals(data).sum(), model.bits(data), rtol=1e-12)


def test_position_zero_sees_only_the_start_byte(model: TransformerEntropyModel) -> None:
    # causal: a prefix scores like the start of the longer text; data[0] depends on nothing
    full = model.entropies(VARIED[:20])
    for k in (1, 2, 7):
        np.testing.assert_allclose(model.entropies(VARIED[:k]), full[:k], atol=1e-5)
    assert model.entropies(b"x")[0] == pytest.approx(model.entropies(b"q")[0], abs=1e-6)


def test_str_input_is_utf8(model: TransformerEntropyModel) -> None:
    np.testing.assert_array_equal(model.entropies("naïve ✓"), model.entropies("naïve ✓".encode()))
    with pytest.raises(ToklabError):
        model.entropies([1, 2, 3])  # type: ignore[arg-type]


def test_learns_a_repetitive_text(model: TransformerEntropyModel) -> None:
    data = TEXT.encode()[:600]
    assert model.bits(data) / len(data) < 2.0
    assert model.entropies(data)[100:500].mean() < 1.5
    untrained = TransformerEntropyModel(ByteTransformer(TransformerConfig(n_layer=1, n_head=2, d_model=32, context=32)), {}, torch.device("cpu"))
    assert untrained.bits(data) / len(data) > 7.0
    assert model.params["final_train_bits_per_byte"] < 2.0


# --- windowing ------------------------------------------------------------------------------------


def test_long_input_windows(model: TransformerEntropyModel) -> None:
    C, S = model.context, model.context // 2
    data = (VARIED * 3)[: 7 * C + 5]  # not a multiple of the stride: the last window is cut short
    n = len(data)
    e = model.entropies(data)
    s = model.surprisals(data)
    assert e.shape == (n,) and np.isfinite(e).all() and np.isfinite(s).all()
    # the first window: the positions before `context`, read from the text's start
    np.testing.assert_allclose(e[:C], entropy_bits(direct_log_probs(model, data, 0, C)), atol=1e-4)
    for t in (C, C + 1, C + S - 1, C + S, 3 * C + 7, n - S - 1, n - 2, n - 1):
        start = ((t - C) // S + 1) * S  # windows start at k S and own from the previous one's end
        end = min(start + C, n)  # the last one: [208, 229), cut short at the text's end
        assert t - start >= C // 2 and t < end  # at least context/2 bytes to the left
        logp = direct_log_probs(model, data, start, end)
        assert e[t] == pytest.approx(entropy_bits(logp)[t - start], abs=1e-4)
        assert s[t] == pytest.approx(-logp[t - start, data[t]].item() / math.log(2), abs=1e-4)


def test_windows_by_hand() -> None:
    # rows: (start, length, first owned column, end of owned columns); context 32, stride 16
    rows = _windows(np.array([70]), np.array([0, 70]), 32)
    assert rows.tolist() == [[0, 32, 0, 32], [16, 32, 16, 32], [32, 32, 16, 32], [48, 22, 16, 22]]
    # anchored at the start: a longer text has the same windows, the last not cut short
    assert _windows(np.array([200]), np.array([0, 200]), 32)[:3].tolist() == rows[:3].tolist()
    # odd context 5, stride 2: later windows own their last 2 columns; two texts side by side
    rows = _windows(np.array([9, 3]), np.array([10, 19, 22]), 5)
    assert rows.tolist() == [[10, 5, 0, 5], [12, 5, 3, 5], [14, 5, 3, 5], [19, 3, 0, 3]]
    for n, context in ((1, 4), (64, 32), (65, 32), (1000, 32), (999, 7), (50, 2), (51, 3)):
        rows = _windows(np.array([n]), np.array([0, n]), context)
        owned = np.concatenate([np.arange(a + f, a + t) for a, _, f, t in rows.tolist()])
        assert owned.tolist() == list(range(n))  # every position scored once, in order
        assert (rows[:, 1] <= context).all() and (rows[1:, 2] >= context // 2).all()


def test_strictly_causal(model: TransformerEntropyModel) -> None:
    """The entropy at t is a function of data[:t]: a prefix scores like the start of the whole text,
    and what follows t changes nothing up to t, across the window borders too."""
    C, S = model.context, model.context // 2
    data = (VARIED * 4)[: 6 * C + 3]
    n = len(data)
    entropy, surprisal = model.score(data)
    for k in (1, 2, C - 1, C, C + 1, C + S - 1, C + S, C + S + 1, 2 * C, 3 * C + 7, n - S, n - 1, n):
        e, s = model.score(data[:k])
        np.testing.assert_allclose(e, entropy[:k], atol=1e-5, rtol=0, err_msg=str(k))
        np.testing.assert_allclose(s, surprisal[:k], atol=1e-5, rtol=0, err_msg=str(k))
        changed = model.entropies(data[:k] + b"#zq" * 50)  # entry k reads data[:k] only
        m = min(k + 1, n)
        np.testing.assert_allclose(changed[:m], entropy[:m], atol=1e-5, rtol=0, err_msg=str(k))


def test_context_start_by_hand(model: TransformerEntropyModel) -> None:
    assert model.context == 32  # windows start at 0, 16, 32, ...; window k > 0 scores [16 k + 16, 16 k + 32)
    expected = {0: 0, 31: 0, 32: 15, 47: 15, 48: 31, 63: 31, 64: 47, 1000: 16 * 61 - 1}
    assert {pos: model.context_start(pos) for pos in expected} == expected


def test_score_from_equals_the_whole_pass(model: TransformerEntropyModel, one_thread) -> None:
    """A part of a text, from the first byte its windows read, scores like the whole text there.
    Past the first window the numbers are equal to the bit on this CPU (a tail window always runs
    at the full context width, its head on its whole tail, so only the batch's size changes; before
    that, a part ending one byte into a window differed by up to 2.4e-6). A text within its first
    window runs at its own length, so its numbers may differ in the last bits from a longer text's."""
    C = model.context
    data = (VARIED + TEXT.encode()) * 2
    entropy, surprisal = model.score(data)
    for pos in (0, 1, C - 1, C, C + 1, 47, 48, 100, 333, len(data) - 1):
        for end in (pos + 1, pos + 2, pos + C, pos + 5 * C + 3, len(data)):
            end = min(end, len(data))
            for lo in {model.context_start(pos), max(0, model.context_start(pos) - 5), 0}:
                e, s = model.score_from(data[lo:end], lo, pos)
                np.testing.assert_allclose(e, entropy[pos:end], atol=1e-5, rtol=0)
                np.testing.assert_allclose(s, surprisal[pos:end], atol=1e-5, rtol=0)
                assert np.array_equal(model.entropies_from(data[lo:end], lo, pos), e)
                if pos >= C or end >= C:  # a part longer than the first window: to the bit
                    assert np.array_equal(e, entropy[pos:end]) and np.array_equal(s, surprisal[pos:end]), (pos, end, lo)
    assert [len(x) for x in model.score_from(data[40:50], 40, 50)] == [0, 0]
    with pytest.raises(ValueError, match="from 15"):
        model.score_from(data[16:100], 16, 40)  # position 40 reads data[15] (window 1's first input)


@pytest.mark.parametrize("kind", ["ngram", "transformer"])
def test_both_models_score_a_part_like_the_whole(kind, model: TransformerEntropyModel) -> None:
    """The interface EntropySegmenter._windows uses: the first byte the scores from pos on read, and
    the scores of a part from there (the n-gram model's to the bit)."""
    from toklab.segmenters.entropy_models import NgramEntropyModel

    m = model if kind == "transformer" else NgramEntropyModel.train([TEXT.encode(), VARIED], order=4)
    data = (VARIED + TEXT.encode()[:500]) * 3
    entropy, surprisal = m.score(data)
    for pos in (0, 1, 2, 3, 4, 31, 32, 33, 48, 500, len(data) - 1):
        lo = m.context_start(pos)
        assert lo == (max(0, pos - 3) if kind == "ngram" else 0 if pos < 32 else (pos - 32) // 16 * 16 + 15)
        for end in (pos + 1, pos + 40, len(data)):
            end = min(end, len(data))
            e, s = m.score_from(data[lo:end], lo, pos)
            np.testing.assert_allclose(e, entropy[pos:end], rtol=0, atol=1e-5 if kind == "transformer" else 0)
            np.testing.assert_allclose(s, surprisal[pos:end], rtol=0, atol=1e-5 if kind == "transformer" else 0)
            np.testing.assert_array_equal(m.entropies_from(data[lo:end], lo, pos), e)
    with pytest.raises(ValueError):
        m.entropies_from(data[40:80], 40, 41)  # position 41 reads bytes before 40


def test_segmenter_pieces_have_the_ids_of_the_whole_text(model: TransformerEntropyModel) -> None:
    """The entropy segmenter cuts a text into pieces with this model too (quick; the long test is
    test_long_entropy_transformer.py); the expected ids come from one whole pass of the model."""
    from toklab.segmenters.base import CUT_STREAM
    from toklab.segmenters.entropy import EntropySegmenter
    from toklab.segmenters.patching import patch_starts

    text = (SENTENCE * 3 + VARIED.decode() + " naïve ✓ 中文 ") * 90  # about 19 kB
    data = text.encode()
    entropy = model.entropies(data)
    around = np.unique(entropy[np.abs(entropy - np.median(entropy)) < 0.5])
    gap = int(np.argmax(np.diff(around)))
    theta = float(around[gap] + around[gap + 1]) / 2  # no entropy within half the widest gap of it
    assert np.abs(entropy - theta).min() > 1e-5
    starts = patch_starts(entropy, np.frombuffer(data, dtype=np.uint8), theta)
    bounds = np.append(np.flatnonzero(starts), len(data)).tolist()
    patches = sorted({data[a:b] for a, b in zip(bounds, bounds[1:]) if b - a > 1})[:50]
    seg = EntropySegmenter(model, theta, "global", patches)
    assert seg.cut_rule == CUT_STREAM
    expected = seg._ids_of(data, starts)
    assert 200 < len(expected) < len(data) and max(expected) >= 256
    pieces = list(seg._long_pieces(text, 1_500))
    assert len(pieces) >= 10 and "".join(p for p, _ in pieces) == text
    assert [int(i) for _, ids in pieces for i in ids] == expected


def test_batch_equals_one_by_one(model: TransformerEntropyModel) -> None:
    texts = [VARIED[:5], b"", TEXT.encode()[:3 * model.context + 1], VARIED, b"z"]
    for one, many in zip(map(model.entropies, texts), model.entropies_batch(texts)):
        np.testing.assert_allclose(many, one, atol=1e-5)


# --- saving, loading, pickling, determinism -------------------------------------------------------


def test_save_load_roundtrip(model: TransformerEntropyModel, tmp_path) -> None:
    model.save(tmp_path)
    assert (tmp_path / "transformer.pt").is_file() and (tmp_path / "transformer.json").is_file()
    loaded = TransformerEntropyModel.load(tmp_path, device="cpu")
    assert loaded.params == model.params and loaded.kind == "transformer"
    data = TEXT.encode()[:200]
    np.testing.assert_allclose(loaded.entropies(data), model.entropies(data), atol=1e-6)
    assert loaded.bits(data) == pytest.approx(model.bits(data), abs=1e-6)


def test_load_errors(model: TransformerEntropyModel, tmp_path) -> None:
    with pytest.raises(ToklabError, match="no transformer"):
        TransformerEntropyModel.load(tmp_path)
    model.save(tmp_path)
    (tmp_path / "transformer.json").write_text("{not json")
    with pytest.raises(ToklabError):
        TransformerEntropyModel.load(tmp_path)
    (tmp_path / "transformer.json").write_text('{"n_layer": 2, "n_head": 2, "d_model": 32, "context": 32}')
    with pytest.raises(ToklabError, match="do not match"):
        TransformerEntropyModel.load(tmp_path)
    (tmp_path / "transformer.pt").write_bytes(b"garbage")
    with pytest.raises(ToklabError):
        TransformerEntropyModel.load(tmp_path)


def test_pickle(model: TransformerEntropyModel) -> None:
    copy = pickle.loads(pickle.dumps(model))
    assert copy.params == model.params
    np.testing.assert_array_equal(copy.entropies(VARIED), model.entropies(VARIED))


def test_training_is_deterministic() -> None:
    opts = {**TINY, "steps": 20}
    a = TransformerEntropyModel.train([TEXT, VARIED.decode()], **opts)
    b = TransformerEntropyModel.train([TEXT, VARIED.decode()], **opts)
    c = TransformerEntropyModel.train([TEXT, VARIED.decode()], **{**opts, "seed": 1})
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    np.testing.assert_array_equal(a.entropies(VARIED), b.entropies(VARIED))
    assert not np.array_equal(a.entropies(VARIED), c.entropies(VARIED))


def test_params_record_the_training(model: TransformerEntropyModel) -> None:
    p = model.params
    for key, value in TINY.items():
        if key != "device":
            assert p[key] == value
    assert p["dropout"] == 0.0 and p["train_bytes"] == len(TEXT) and p["train_docs"] == 1
    small = TransformerEntropyModel.train(["abcdef" * 100, "more text"], **{**TINY, "steps": 1, "max_train_bytes": 50})
    assert small.params["train_bytes"] == 50 and small.params["train_docs"] == 1


def test_text_shorter_than_the_context_trains() -> None:
    m = TransformerEntropyModel.train(["hi"], **{**TINY, "steps": 2})
    assert m.entropies(b"hi there").shape == (8,)


@pytest.mark.parametrize(
    "texts, options",
    [
        ([TEXT], {"context": 1}),
        ([TEXT], {"n_head": 3}),  # does not divide d_model 32
        ([TEXT], {"n_layer": 0}),
        ([TEXT], {"d_model": 0}),
        ([TEXT], {"steps": 0}),
        ([TEXT], {"batch_size": 0}),
        ([TEXT], {"lr": 0.0}),
        ([TEXT], {"lr": float("nan")}),
        ([TEXT], {"max_train_bytes": 0}),
        ([TEXT], {"steps": 2.5}),
        ([TEXT], {"device": "no-such-device"}),
        ([], {}),
        (["", ""], {}),
        ([123], {}),
    ],
)
def test_bad_configs(texts, options) -> None:
    with pytest.raises(ToklabError) as info:
        TransformerEntropyModel.train(texts, **{**TINY, **options})
    assert "\n" not in str(info.value)


def test_bad_module_config() -> None:
    with pytest.raises(ToklabError):
        ByteTransformer(TransformerConfig(d_model=30, n_head=4))


# --- built from gpt/model.py's parts; numerics pinned ------------------------------------------


def test_uses_the_gpts_blocks(model: TransformerEntropyModel) -> None:
    blocks = model.model.blocks
    assert len(blocks) == TINY["n_layer"] and all(type(b) is gpt_model.Block for b in blocks)
    attn, mlp = blocks[0].attn, blocks[0].mlp
    assert isinstance(attn, gpt_model.CausalSelfAttention) and isinstance(mlp, gpt_model.MLP)
    # the entropy model's own settings: Linear layers without biases, LayerNorms with
    assert all(m.bias is None for m in (attn.qkv, attn.proj, mlp.fc, mlp.proj))
    assert blocks[0].ln_1.bias is not None and model.model.ln_f.bias is not None


# Computed once (CPU, one thread) with the model as it was before it shared gpt/model.py's parts,
# and again after: the same. A change to the init, blocks, optimiser or schedule moves them.
# When the windows became anchored at the text's start, the last window moved from [21, 37) to
# [24, 37): position 36 and the bits moved (32-36 read 3 bytes less), the rest did not; the new
# values agree with a float64 softmax of the module's logits over those windows to 2e-6.
PINNED = dict(n_layer=2, n_head=2, d_model=16, context=16, steps=30, batch_size=8, lr=3e-2, seed=0, device="cpu")
PINNED_TEXT = b"the cat sat on the mat; a byte model."  # 37 bytes: windows of 16, the tail-only path too
PINNED_ENTROPIES = {0: 3.256838798522949, 5: 3.258178234100342, 20: 3.2568938732147217, 36: 3.266396999359131}
PINNED_BITS = 178.33482480049133


def test_pinned_entropies(one_thread) -> None:
    m = TransformerEntropyModel.train([TEXT, VARIED.decode()], **PINNED)
    e = m.entropies(PINNED_TEXT)
    for t, expected in PINNED_ENTROPIES.items():
        assert e[t] == pytest.approx(expected, abs=1e-6), t
    assert m.bits(PINNED_TEXT) == pytest.approx(PINNED_BITS, abs=1e-4)


def test_loads_weights_saved_under_the_old_module_names(model: TransformerEntropyModel, tmp_path) -> None:
    model.save(tmp_path)
    state = torch.load(tmp_path / "transformer.pt", weights_only=True)
    old = {}
    for key, value in state.items():  # how the model named them before it used gpt/model.py's blocks
        for before, now in LEGACY_NAMES.items():
            key = key.replace(now, before)
        old[key] = value
    assert "blocks.0.attn.c_attn.weight" in old and "blocks.0.mlp.c_proj.weight" in old
    torch.save(old, tmp_path / "transformer.pt")
    loaded = TransformerEntropyModel.load(tmp_path, device="cpu")
    np.testing.assert_array_equal(loaded.entropies(VARIED), model.entropies(VARIED))
