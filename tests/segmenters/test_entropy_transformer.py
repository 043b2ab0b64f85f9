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
)

TINY = dict(n_layer=1, n_head=2, d_model=32, context=32, steps=100, batch_size=16, lr=1e-2, seed=0, device="cpu")
SENTENCE = "the cat sat on the mat. "
TEXT = SENTENCE * 40
VARIED = b"Entropy patches: a byte model predicts each next byte; new patch where it is unsure. 0123456789!"


@pytest.fixture(scope="module")
def model() -> TransformerEntropyModel:
    return TransformerEntropyModel.train([TEXT], **TINY)


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
    data = (VARIED * 3)[: 7 * C + 5]  # not a multiple of the stride: the last window is aligned to the end
    n = len(data)
    e = model.entropies(data)
    s = model.surprisals(data)
    assert e.shape == (n,) and np.isfinite(e).all() and np.isfinite(s).all()
    # the first window: the positions before `context`, read from the text's start
    np.testing.assert_allclose(e[:C], entropy_bits(direct_log_probs(model, data, 0, C)), atol=1e-4)
    for t in (C, C + 1, C + S - 1, C + S, 3 * C + 7, n - S - 1, n - 2, n - 1):
        k = (t - C) // S + 1  # windows end at C + k S (the last at n) and own from the previous end
        end = min(C + k * S, n)
        start = end - C
        assert t - start >= C // 2  # at least context/2 bytes to the left
        logp = direct_log_probs(model, data, start, end)
        assert e[t] == pytest.approx(entropy_bits(logp)[t - start], abs=1e-4)
        assert s[t] == pytest.approx(-logp[t - start, data[t]].item() / math.log(2), abs=1e-4)


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
PINNED = dict(n_layer=2, n_head=2, d_model=16, context=16, steps=30, batch_size=8, lr=3e-2, seed=0, device="cpu")
PINNED_TEXT = b"the cat sat on the mat; a byte model."  # 37 bytes: windows of 16, the tail-only path too
PINNED_ENTROPIES = {0: 3.256838798522949, 5: 3.258178234100342, 20: 3.2568938732147217, 36: 3.267002820968628}
PINNED_BITS = 178.33362770080566


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # more threads split sums differently (~1e-6 apart)
    yield
    torch.set_num_threads(threads)


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
