"""The decoder-only GPT behind `toklab pretrain`: shapes, parameter counts, loss, causality, sampling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from toklab.errors import ToklabError
from toklab.gpt.flops import ModelShape, flops_per_token
from toklab.gpt.model import GPT, PAD_MULTIPLE, PRESETS, GPTConfig, model_config


def tiny(vocab_size: int = 257, **kwargs) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab_size, **kwargs))


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize("vocab, padded", [(257, 320), (50257, 50304), (64, 64), (1, 64), (65, 128)])
def test_padded_vocab(vocab: int, padded: int) -> None:
    assert PAD_MULTIPLE == 64
    assert GPTConfig(vocab_size=vocab).padded_vocab_size == padded


def test_presets_and_overrides() -> None:
    assert PRESETS["tiny"] == {"n_layer": 2, "n_head": 2, "d_model": 64}
    assert PRESETS["small"] == {"n_layer": 4, "n_head": 4, "d_model": 128}
    assert PRESETS["medium"] == {"n_layer": 6, "n_head": 6, "d_model": 384}
    assert PRESETS["gpt2-124m"] == {"n_layer": 12, "n_head": 12, "d_model": 768}

    cfg = model_config(1000, "small", context=64)
    assert (cfg.vocab_size, cfg.n_layer, cfg.n_head, cfg.d_model, cfg.context) == (1000, 4, 4, 128, 64)
    assert (cfg.mlp_ratio, cfg.dropout, cfg.bias) == (4, 0.0, True)
    assert model_config(1000).context == 256

    # None means "keep the preset's value"
    cfg = model_config(1000, "medium", n_layer=None, d_model=192, mlp_ratio=2, dropout=0.1, bias=False)
    assert (cfg.n_layer, cfg.n_head, cfg.d_model, cfg.mlp_ratio, cfg.dropout, cfg.bias) == (6, 6, 192, 2, 0.1, False)

    cfg = model_config(1000, None, n_layer=3)
    assert (cfg.n_layer, cfg.n_head, cfg.d_model) == (3, 2, 64)


def test_config_validation() -> None:
    with pytest.raises(ToklabError, match="divisible by n_head"):
        GPTConfig(vocab_size=100, d_model=64, n_head=3)
    with pytest.raises(ToklabError, match="divisible by n_head"):
        model_config(100, "small", d_model=130)
    with pytest.raises(ToklabError, match="n_layer must be a positive integer"):
        GPTConfig(vocab_size=100, n_layer=0)
    with pytest.raises(ToklabError, match="vocab_size"):
        GPTConfig(vocab_size=-5)
    with pytest.raises(ToklabError, match="context"):
        GPTConfig(vocab_size=100, context=2.5)  # type: ignore[arg-type]
    with pytest.raises(ToklabError, match="dropout"):
        GPTConfig(vocab_size=100, dropout=1.0)
    with pytest.raises(ToklabError, match="dropout"):
        GPTConfig(vocab_size=100, dropout=-0.1)
    with pytest.raises(ToklabError) as err:
        model_config(100, "huge")
    message = str(err.value)
    assert "huge" in message and "\n" not in message
    for name in ("tiny", "small", "medium", "gpt2-124m"):
        assert name in message
    with pytest.raises(ToklabError, match="n_heads"):
        model_config(100, "tiny", n_heads=4)


def test_config_round_trip_and_flops() -> None:
    cfg = GPTConfig(vocab_size=257, n_layer=3, n_head=4, d_model=96, context=48, mlp_ratio=2, dropout=0.1, bias=False)
    d = cfg.to_dict()
    assert d == {
        "vocab_size": 257, "n_layer": 3, "n_head": 4, "d_model": 96, "context": 48,
        "mlp_ratio": 2, "dropout": 0.1, "bias": False,
    }  # fmt: skip
    assert GPTConfig.from_dict(d) == cfg
    with pytest.raises(ToklabError, match="unknown field"):
        GPTConfig.from_dict({**d, "n_embd": 96})

    assert cfg.shape("x") == ModelShape("x", n_layer=3, d_model=96, context=48, mlp_ratio=2)
    assert cfg.shape().name == "custom"
    # The padded head (320 rows) is what is computed, so it is what is counted.
    assert cfg.flops_per_token() == flops_per_token(cfg.shape(), 320)
    assert cfg.flops_per_token() != flops_per_token(cfg.shape(), 257)
    # 6 N + 12 L T d with N = 3 * (4 + 2*2) * 96^2 + 320 * 96
    assert cfg.flops_per_token() == 6 * (3 * 8 * 96**2 + 320 * 96) + 12 * 3 * 48 * 96


# --- parameter counts -------------------------------------------------------------------


def test_matmul_params_hand_count() -> None:
    model = tiny(257)  # L=2, d=64, ratio 4, padded V=320
    per_layer = (
        64 * 192  # qkv
        + 64 * 64  # attention out-projection
        + 64 * 256  # MLP up
        + 256 * 64  # MLP down
    )
    assert per_layer == 49152 == 12 * 64**2
    assert model.matmul_params() == 2 * per_layer + 320 * 64 == 118784


@pytest.mark.parametrize(
    "cfg",
    [
        GPTConfig(vocab_size=257),
        GPTConfig(vocab_size=1000, n_layer=3, n_head=3, d_model=96, context=32, mlp_ratio=2, bias=False),
        GPTConfig(vocab_size=5000, n_layer=4, n_head=4, d_model=128, context=64, mlp_ratio=3),
    ],
)
def test_matmul_params_matches_flops_formula(cfg: GPTConfig) -> None:
    model = GPT(cfg)
    assert model.matmul_params() == cfg.shape().matmul_params(cfg.padded_vocab_size)


def test_num_params_hand_count() -> None:
    model = tiny(257)  # V_pad=320, d=64, context 128, 2 layers
    d, v, t = 64, 320, 128
    embeddings = v * d + t * d  # 20480 + 8192
    per_layer = (
        2 * (2 * d)  # two LayerNorms, weight + bias
        + (d * 3 * d + 3 * d)  # qkv
        + (d * d + d)  # attention out-projection
        + (d * 4 * d + 4 * d)  # MLP up
        + (4 * d * d + d)  # MLP down
    )
    assert per_layer == 256 + 12480 + 4160 + 16640 + 16448 == 49984
    final_ln = 2 * d
    assert model.num_params() == embeddings + 2 * per_layer + final_ln == 128768  # the tied head adds nothing

    # Without biases: LayerNorms keep only their gains, Linears only their weights.
    no_bias = tiny(257, bias=False)
    assert no_bias.num_params() == embeddings + 2 * (2 * d + 12 * d * d) + d


def test_gpt2_124m_param_count() -> None:
    # On the meta device: shapes only, no memory or time spent on 124M weights.
    with torch.device("meta"):
        model = GPT(model_config(50257, "gpt2-124m", context=1024))
    assert model.config.padded_vocab_size == 50304
    assert model.num_params() == 124_475_904  # GPT-2 small with the 50304-row embedding
    assert model.matmul_params() == 12 * 12 * 768**2 + 50304 * 768


def test_tied_embeddings() -> None:
    model = tiny()
    assert model.lm_head.weight is model.wte.weight
    assert model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr()
    assert model.wte.weight.shape == (320, 64)


def test_init_scales() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=1000, n_layer=8, n_head=4, d_model=128))
    resid_std = 0.02 / math.sqrt(2 * 8)
    for block in model.blocks:
        assert block.attn.proj.weight.std().item() == pytest.approx(resid_std, rel=0.05)
        assert block.mlp.proj.weight.std().item() == pytest.approx(resid_std, rel=0.05)
        assert block.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert block.mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
        for lin in (block.attn.qkv, block.attn.proj, block.mlp.fc, block.mlp.proj):
            assert torch.count_nonzero(lin.bias) == 0
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.wpe.weight.std().item() == pytest.approx(0.02, rel=0.05)


# --- forward and loss -------------------------------------------------------------------


def test_forward_shapes_and_context_limit() -> None:
    model = tiny(257, context=16)
    idx = torch.randint(0, 257, (3, 16))
    logits, loss = model(idx)
    assert logits.shape == (3, 16, 320) and loss is None
    with pytest.raises(ToklabError, match="longer than the model's context"):
        model(torch.randint(0, 257, (1, 17)))


def test_pre_layernorm_residual_path() -> None:
    # Pre-LN: x + attn(ln_1(x)), then + mlp(ln_2(.)). With the output projections zeroed a
    # block is exactly the identity; a post-LN block would still normalise x.
    model = tiny(257)
    block = model.blocks[0]
    with torch.no_grad():
        for lin in (block.attn.proj, block.mlp.proj):
            lin.weight.zero_()
            lin.bias.zero_()
    x = 3.0 * torch.randn(2, 8, 64) + 1.0
    assert torch.equal(block(x), x)


def test_causality() -> None:
    model = tiny(257, context=32).eval()
    torch.manual_seed(1)
    idx = torch.randint(0, 257, (2, 32))
    t = 11
    changed = idx.clone()
    changed[:, t + 1 :] = (idx[:, t + 1 :] + 1 + torch.randint(0, 250, (2, 32 - t - 1))) % 257
    assert (changed[:, t + 1 :] != idx[:, t + 1 :]).all()
    a, _ = model(idx)
    b, _ = model(changed)
    assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6, rtol=0)
    # ...and the later positions do see the change, so the comparison above is not vacuous.
    assert (a[:, t + 1 :] - b[:, t + 1 :]).abs().amax(dim=-1).min() > 1e-3


def test_loss_at_init_is_uniform() -> None:
    model = tiny(257)
    torch.manual_seed(2)
    idx = torch.randint(0, 257, (4, 64))
    targets = torch.randint(0, 257, (4, 64))
    _, loss = model(idx, targets)
    assert loss.shape == ()
    assert abs(loss.item() - math.log(257)) < 0.3
    _, per_token = model(idx, targets, reduction="none")
    assert per_token.shape == (4, 64)
    assert (per_token > 0).all()
    assert per_token.mean().item() == pytest.approx(loss.item(), rel=1e-6)


def test_padded_logits_get_no_mass() -> None:
    model = tiny(257)
    torch.manual_seed(3)
    idx = torch.randint(0, 257, (2, 20))
    targets = torch.randint(0, 257, (2, 20))
    logits, loss = model(idx, targets, reduction="none")
    by_hand = -torch.log_softmax(logits[..., :257], dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(loss, by_hand, atol=1e-6)
    # Over all 320 columns the loss would be larger (by about ln(320/257)): slicing matters.
    padded = F.cross_entropy(logits.reshape(-1, 320), targets.reshape(-1), reduction="none").view(2, 20)
    assert (padded - loss).mean().item() > 0.1


def test_loss_is_float32_under_autocast() -> None:
    model = tiny(257)
    idx = torch.randint(0, 257, (2, 16))
    targets = torch.randint(0, 257, (2, 16))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits, loss = model(idx, targets)
    assert logits.dtype == torch.bfloat16
    assert loss.dtype == torch.float32
    _, full_precision = model(idx, targets)
    assert loss.item() == pytest.approx(full_precision.item(), abs=0.05)


def test_dropout_only_in_training() -> None:
    model = tiny(257, dropout=0.2)
    idx = torch.randint(0, 257, (2, 16))
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])


# --- training ---------------------------------------------------------------------------


def overfit(steps: int = 40) -> list[float]:
    model = tiny(97, context=32)
    torch.manual_seed(4)
    idx = torch.randint(0, 97, (4, 32))
    targets = torch.roll(idx, -1, dims=1)
    opt = model.optimizer(lr=3e-3, weight_decay=0.1)
    losses = []
    for _ in range(steps):
        _, loss = model(idx, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_overfit_small_batch() -> None:
    losses = overfit()
    assert abs(losses[0] - math.log(97)) < 0.3
    assert losses[-1] < 0.5 * losses[0]
    assert overfit() == losses  # deterministic given the seeds


def test_optimizer_groups() -> None:
    model = tiny(257)
    opt = model.optimizer(lr=1e-3, weight_decay=0.05, betas=(0.8, 0.9))
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    assert any(p is model.wte.weight for p in decay["params"])
    assert any(p is model.blocks[0].ln_1.weight for p in no_decay["params"])
    assert any(p is model.blocks[0].attn.qkv.bias for p in no_decay["params"])
    # Every parameter exactly once (the tied matrix included).
    counted = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert counted == model.num_params()
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["betas"] == (0.8, 0.9)
    assert not opt.defaults.get("fused")
    # 2 LayerNorms x 2 + 4 Linear biases per layer, plus the final LayerNorm's 2.
    assert len(no_decay["params"]) == 2 * (4 + 4) + 2
    # Embeddings (token, position) and 4 Linear weights per layer.
    assert len(decay["params"]) == 2 + 2 * 4


# --- generation -------------------------------------------------------------------------


def test_generate_length_and_vocab() -> None:
    model = tiny(257, context=16)
    prompt = torch.randint(0, 257, (1, 5))
    gen = torch.Generator().manual_seed(0)
    out = model.generate(prompt, 30, temperature=1.0, generator=gen)  # runs past the context: crops
    assert out.shape == (1, 35)
    assert torch.equal(out[:, :5], prompt)
    assert int(out.max()) < 257

    again = model.generate(prompt, 30, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)

    long_prompt = torch.randint(0, 257, (1, 40))  # longer than the context
    assert model.generate(long_prompt, 3, temperature=0).shape == (1, 43)
    assert model.generate(prompt, 0).shape == (1, 5)
    assert model.training  # generate restores the mode it found


def test_generate_greedy() -> None:
    model = tiny(257, context=16).eval()
    prompt = torch.randint(0, 257, (1, 6))
    a = model.generate(prompt, 10, temperature=0)
    b = model.generate(prompt, 10, temperature=0)
    assert torch.equal(a, b)
    logits, _ = model(prompt)
    assert a[0, 6].item() == logits[0, -1, :257].argmax().item()
    # each greedy step is the argmax given everything before it
    logits, _ = model(a[:, :-1][:, -16:])
    assert a[0, -1].item() == logits[0, -1, :257].argmax().item()


def test_generate_never_picks_padded_ids() -> None:
    model = tiny(100)  # padded to 128
    with torch.no_grad():
        # Make every hidden state the all-ones vector, then give the padded rows the
        # largest logits by far: a sampler over all 128 columns would pick them.
        model.ln_f.weight.zero_()
        model.ln_f.bias.fill_(1.0)
        model.wte.weight[100:] = 1.0
        model.wte.weight[:100] = 0.0
        model.wte.weight[7] = 0.5
    logits, _ = model(torch.tensor([[1, 2, 3]]))
    assert logits[0, -1].argmax().item() >= 100
    prompt = torch.tensor([[1, 2, 3]])
    greedy = model.generate(prompt, 5, temperature=0)
    assert greedy[0, 3:].tolist() == [7] * 5
    gen = torch.Generator().manual_seed(0)
    for top_k in (None, 1, 5, 1000):
        out = model.generate(prompt, 20, temperature=1.0, top_k=top_k, generator=gen)
        assert int(out.max()) < 100
    assert model.generate(prompt, 5, top_k=1, generator=gen)[0, 3:].tolist() == [7] * 5


# --- the shared blocks (also the byte-level entropy model's) ------------------------------


def test_state_dict_keys_are_stable() -> None:
    # Checkpoints are loaded by these names; the blocks being shared must not rename them.
    layer = ["ln_1.weight", "ln_1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
             "ln_2.weight", "ln_2.bias", "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight", "mlp.proj.bias"]
    keys = ["wte.weight", "wpe.weight", *(f"blocks.0.{k}" for k in layer), "ln_f.weight", "ln_f.bias", "lm_head.weight"]
    assert list(tiny(64, n_layer=1).state_dict()) == keys
    assert list(tiny(64, n_layer=1, bias=False).state_dict()) == [k for k in keys if not k.endswith(".bias")]


def test_block_config_follows_the_gpt_config() -> None:
    from toklab.gpt.model import BlockConfig

    cfg = GPTConfig(vocab_size=64, n_head=4, d_model=32, mlp_ratio=2, dropout=0.1, bias=False)
    assert cfg.block_config() == BlockConfig(32, 4, mlp_ratio=2, dropout=0.1, bias=False, norm_bias=False)
    assert "block_config" not in cfg.to_dict()  # not a saved field


@pytest.mark.parametrize("bias", [True, False])
def test_block_tail_equals_the_full_run(bias: bool) -> None:
    # `last` runs only the final positions' queries (entropy scoring); they must match the full run.
    from toklab.gpt.model import Block, BlockConfig

    torch.manual_seed(0)
    block = Block(BlockConfig(32, 4, bias=bias, norm_bias=True)).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))  # non-zero biases too
        x = torch.randn(3, 10, 32)
        full = block(x)
        for last in (1, 4, 10, 25):
            torch.testing.assert_close(block(x, last), full[:, -last:], atol=1e-5, rtol=1e-5)
