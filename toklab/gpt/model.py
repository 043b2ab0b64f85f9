"""A decoder-only GPT in plain PyTorch, the model that `toklab pretrain` trains.

One file, one model, in the spirit of nanoGPT's model.py: a dataclass config, pre-LayerNorm
blocks, learned position embeddings, causal scaled-dot-product attention, a GELU MLP, and an
output head tied to the token embedding.

Conventions:

* Vocabulary. `GPTConfig.vocab_size` is the segmenter's vocabulary. The embedding and head
  are padded up to a multiple of PAD_MULTIPLE (64), which keeps matrix multiplies on fast
  shapes. Padded ids are never real tokens: the loss and `generate` only look at
  logits[..., :vocab_size], so the padded rows never receive probability mass.
* FLOPs. The padded head is what the hardware computes, so `GPTConfig.flops_per_token`
  and `GPT.matmul_params` count the padded vocabulary (see toklab/gpt/flops.py).
* Loss is cross-entropy in nats, computed in float32 even under autocast.
* Shared parts. The blocks (Block, CausalSelfAttention, MLP), `init_weights` and `adamw` are
  also the byte-level entropy model's (toklab/segmenters/entropy_transformer.py), which builds
  them from a BlockConfig (biases in LayerNorms but not in Linear layers, and attention that
  can run the queries of only the final positions). This module imports nothing above
  toklab.gpt.flops, so segmenters may import it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from toklab.errors import ToklabError
from toklab.gpt.flops import ModelShape, flops_per_token

__all__ = [
    "PAD_MULTIPLE", "PRESETS", "GPTConfig", "GPT", "model_config",
    "preset_values", "cross_entropy", "BlockConfig", "Block", "CausalSelfAttention", "MLP", "init_weights", "adamw",
]

PAD_MULTIPLE = 64
INIT_STD = 0.02  # GPT-2's initialisation scale

# Model sizes by name; context and vocabulary come from the run, not the preset.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 2, "n_head": 2, "d_model": 64},  # seconds on a CPU, for tests
    "small": {"n_layer": 4, "n_head": 4, "d_model": 128},
    "medium": {"n_layer": 6, "n_head": 6, "d_model": 384},
    "gpt2-124m": {"n_layer": 12, "n_head": 12, "d_model": 768},
}

# The fields `model_config` lets a caller override on top of a preset.
OVERRIDABLE = ("n_layer", "n_head", "d_model", "mlp_ratio", "dropout", "bias")


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int  # the segmenter's vocabulary (unpadded)
    n_layer: int = 2
    n_head: int = 2
    d_model: int = 64
    context: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "context", "mlp_ratio"):
            value = getattr(self, name)
            # bool is an int subclass; True as a layer count is a mistake, not a 1
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ToklabError(f"GPT config: {name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_head != 0:
            raise ToklabError(
                f"GPT config: d_model ({self.d_model}) must be divisible by n_head ({self.n_head})"
            )
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ToklabError(f"GPT config: dropout must be in [0, 1), got {dropout!r}")
        if not isinstance(self.bias, bool):
            raise ToklabError(f"GPT config: bias must be true or false, got {self.bias!r}")

    @property
    def padded_vocab_size(self) -> int:
        """vocab_size rounded up to a multiple of PAD_MULTIPLE."""
        return -(-self.vocab_size // PAD_MULTIPLE) * PAD_MULTIPLE

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def shape(self, name: str = "custom") -> ModelShape:
        """The model's shape for FLOPs accounting."""
        return ModelShape(name, self.n_layer, self.d_model, self.context, self.mlp_ratio)

    def flops_per_token(self) -> float:
        """Training FLOPs per token; the padded head is what is computed, so it is what counts."""
        return flops_per_token(self.shape(), self.padded_vocab_size)

    def block_config(self) -> BlockConfig:
        """The blocks' settings: `bias` covers both the Linear layers and the LayerNorms."""
        return BlockConfig(self.d_model, self.n_head, self.mlp_ratio, self.dropout, bias=self.bias, norm_bias=self.bias)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """The inverse of to_dict; unknown or missing keys are a ToklabError (e.g. a foreign checkpoint)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ToklabError(f"GPT config: unknown field(s) {', '.join(unknown)}")
        if "vocab_size" not in d:
            raise ToklabError("GPT config: vocab_size is missing")
        return cls(**d)


def preset_values(presets: dict[str, dict[str, Any]], preset: str | None, overridable: Iterable[str], overrides: dict[str, Any], what: str = "model") -> dict[str, Any]:
    """A preset's fields (None: none, the config's defaults), then any non-None overrides; an
    unknown preset or option is a one-line ToklabError. Shared by every model family's config."""
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in presets:
            raise ToklabError(f"unknown {what} preset {preset!r}; presets: {', '.join(presets)}")
        values.update(presets[preset])
    allowed = tuple(overridable)
    for key, value in overrides.items():
        if key not in allowed:
            raise ToklabError(f"unknown {what} option {key!r}; options: {', '.join(allowed)}")
        if value is not None:
            values[key] = value
    return values


def model_config(vocab_size: int, preset: str | None = "tiny", context: int = 256, **overrides: Any) -> GPTConfig:
    """A config from a preset (None: GPTConfig's defaults), then any non-None overrides."""
    return GPTConfig(vocab_size=vocab_size, context=context, **preset_values(PRESETS, preset, OVERRIDABLE, overrides))


@dataclass(frozen=True)
class BlockConfig:
    """What one transformer block needs. Not part of GPTConfig (which is saved in checkpoints):
    the GPT derives it with GPTConfig.block_config(), other models build it directly."""

    d_model: int
    n_head: int
    mlp_ratio: int = 4
    dropout: float = 0.0
    bias: bool = True  # biases in the Linear layers
    norm_bias: bool = True  # biases in the LayerNorms (the entropy model has these without the former)


def _block_config(config: GPTConfig | BlockConfig) -> BlockConfig:
    return config.block_config() if isinstance(config, GPTConfig) else config


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig | BlockConfig) -> None:
        super().__init__()
        config = _block_config(config)
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)  # one matmul for q, k, v
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, last: int | None = None) -> torch.Tensor:
        """Attention outputs [B, T, C], or only those of the final `last` positions [B, last, C]
        (every position is still a key); scoring uses this to skip rows no one reads."""
        B, T, C = x.shape
        L = T if last is None else min(last, T)
        dropout = self.dropout if self.training else 0.0
        if L == T:
            # [B, T, 3C] -> three [B, n_head, T, head_dim], the layout SDPA expects
            q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:  # queries for the tail only; the causal mask is aligned to the bottom right
            w_q, w_kv = self.qkv.weight.split([C, 2 * C])
            b_q, b_kv = self.qkv.bias.split([C, 2 * C]) if self.qkv.bias is not None else (None, None)
            q = F.linear(x[:, T - L :], w_q, b_q).view(B, L, self.n_head, C // self.n_head).transpose(1, 2)
            k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in F.linear(x, w_kv, b_kv).split(C, dim=2))
            mask = torch.ones(L, T, dtype=torch.bool, device=x.device).tril(T - L)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).reshape(B, L, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig | BlockConfig) -> None:
        super().__init__()
        config = _block_config(config)
        hidden = config.mlp_ratio * config.d_model
        self.fc = nn.Linear(config.d_model, hidden, bias=config.bias)
        self.gelu = nn.GELU()
        self.proj = nn.Linear(hidden, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm: normalise the input of each sublayer, so the residual stream stays an identity path."""

    def __init__(self, config: GPTConfig | BlockConfig) -> None:
        super().__init__()
        config = _block_config(config)
        self.ln_1 = nn.LayerNorm(config.d_model, bias=config.norm_bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model, bias=config.norm_bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, last: int | None = None) -> torch.Tensor:
        """The block's outputs [B, T, C], or only those of the final `last` positions."""
        x = (x if last is None else x[:, -last:]) + self.attn(self.ln_1(x), last)
        return x + self.mlp(self.ln_2(x))


def _init_module(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    # LayerNorm keeps PyTorch's ones/zeros.


def init_weights(model: nn.Module, blocks: Iterable[Block], n_layer: int) -> None:
    """GPT-2's initialisation of `model`, whose residual blocks are `blocks` (n_layer of them)."""
    model.apply(_init_module)
    # Each block adds two outputs to the residual stream; scaling their projections keeps
    # the stream's variance from growing with depth (GPT-2 practice).
    resid_std = INIT_STD / math.sqrt(2 * n_layer)
    for block in blocks:
        nn.init.normal_(block.attn.proj.weight, mean=0.0, std=resid_std)
        nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=resid_std)


def adamw(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    fused: bool = False,
) -> torch.optim.AdamW:
    """AdamW that decays matrices and embeddings (>= 2-D) but not biases or LayerNorm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # Pass `fused` only when asked: AdamW(fused=False) also turns off the foreach kernels that
    # its default (fused=None) picks on CUDA, which would change the numbers.
    extra = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **extra)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, classes: int, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in nats over the first `classes` logits (padded ids are no tokens: they stay
    out of the softmax), in float32 because a bfloat16 log-softmax over tens of thousands of
    classes loses the small probabilities. Targets of -100 are padding (loss 0 with "none")."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        real = logits[..., :classes].float()
        loss = F.cross_entropy(real.reshape(-1, classes), targets.reshape(-1), reduction=reduction)
    return loss.view(targets.shape) if reduction == "none" else loss


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        d, v = config.d_model, config.padded_vocab_size
        self.wte = nn.Embedding(v, d)
        self.wpe = nn.Embedding(config.context, d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(d, bias=config.bias)
        self.lm_head = nn.Linear(d, v, bias=False)
        # Tied embeddings: one V x d matrix reads tokens in and scores them out.
        self.lm_head.weight = self.wte.weight
        init_weights(self, self.blocks, config.n_layer)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits [B, T, padded_vocab] and, with targets, the cross-entropy in nats over the real vocabulary.

        reduction "mean" gives a scalar loss, "none" the per-token losses [B, T].
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must be [batch, time], got shape {tuple(idx.shape)}")
        T = idx.size(1)
        if T > self.config.context:
            raise ToklabError(f"sequence of {T} tokens is longer than the model's context ({self.config.context})")
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")

        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))

        if targets is None:
            return logits, None
        return logits, cross_entropy(logits, targets, self.config.vocab_size, reduction)

    def num_params(self) -> int:
        """Every parameter; parameters() yields the tied embedding/head matrix once."""
        return sum(p.numel() for p in self.parameters())

    def matmul_params(self) -> int:
        """Weights used in matrix multiplies: every Linear weight in the blocks plus the V x d head.

        Counted from the modules, so a test can hold it to the formula in flops.py.
        """
        blocks = sum(m.weight.numel() for m in self.blocks.modules() if isinstance(m, nn.Linear))
        return blocks + self.lm_head.weight.numel()

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """idx [B, T] followed by max_new_tokens sampled ids; temperature 0 is greedy argmax.

        The model sees at most the last `context` tokens. Only real vocabulary ids are produced.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        V = self.config.vocab_size
        was_training = self.training
        self.eval()  # sampling must not see dropout
        try:
            for _ in range(max_new_tokens):
                logits, _ = self(idx[:, -self.config.context :])
                logits = logits[:, -1, :V].float()  # the real vocabulary only
                if temperature == 0:
                    next_id = logits.argmax(dim=-1, keepdim=True)
                else:
                    logits = logits / temperature
                    if top_k is not None and top_k < V:
                        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                        logits = logits.masked_fill(logits < kth, float("-inf"))
                    probs = F.softmax(logits, dim=-1)
                    next_id = torch.multinomial(probs, num_samples=1, generator=generator)
                idx = torch.cat((idx, next_id), dim=1)
        finally:
            self.train(was_training)
        return idx

    def optimizer(
        self,
        lr: float,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        device_type: str = "cpu",
    ) -> torch.optim.AdamW:
        """AdamW that decays matrices and embeddings (>= 2-D) but not biases or LayerNorm gains."""
        # The fused kernel is one launch per step instead of one per tensor; CUDA only here.
        return adamw(self, lr, weight_decay, betas, fused=device_type == "cuda")
