"""A Byte-Latent-Transformer-style patch model, in the spirit of nanoGPT's model.py and gpt/model.py.

Bytes go in, bytes come out; a large "global" transformer runs over patches of bytes, and two
small "local" transformers run over the bytes themselves:

    flagged-byte ids [B, T]
      -> local encoder: byte embedding + hashed byte n-gram embeddings + learned byte positions,
         then `encoder_layers` causal blocks whose attention only reaches `local_window` bytes back
      -> pooling: one vector per patch from the bytes of that patch only ("max", or "attention":
         a query made from the max-pooled states attends over the bytes of its own patch)
      -> global transformer: `global_layers` of model.py's Block, causal over patches,
         learned patch positions, no vocabulary head
      -> local decoder: at byte t of patch j, encoder state at t + Linear(global output of patch
         j-1) (patch 0 reads a learned start vector), `decoder_layers` windowed causal blocks,
         LayerNorm, a head over 257 classes (256 bytes + end-of-text) padded to PAD_MULTIPLE.

Input encoding (the data's contract). FLAG = 257: a byte b (0..255) that starts a patch has id
b + 257, otherwise b; end-of-text is 256 (not a start) or 513 (a start). So the input vocabulary is
514, byte = id % 257 and start = id >= 257. Position 0 of every window is a patch start whatever
its flag. Targets are the next ids in the same encoding; only `target % 257` is predicted, so a
target's flag never reaches the loss. Target -100 is padding (ignored), as in model.py.

Causality. The byte at input position t is in patch j = (starts at positions <= t) - 1. The encoder
is causal over bytes, patch j pools only bytes of patch j, the global model is causal over patches
and the decoder at t reads patch j-1's global output: so the logits at t depend on bytes <= t only
(as long as the flags do, which is the data's job). Reading patch j's own global output would leak
the later bytes of patch j (tests/gpt/test_blt.py builds that variant and shows it fails).

Windowed attention. Bytes are cut into chunks of `local_window`; each chunk's queries attend to the
keys of the previous chunk and of their own chunk under a causal + window mask (a query sees itself
and the window - 1 bytes before it), one F.scaled_dot_product_attention call. The computed cost is
2 * window keys per byte, not the context. A window at least as long as the sequence is plain causal
attention over the T bytes.

FLOPs (training: forward + backward) per byte, `BLTConfig.flops_per_byte(bytes_per_patch)`:
every matrix multiply counts 6 x (weights used) per position it runs at, and attention counts
12 * L * (keys per query) * d, with keys per query as computed (the masked half included):

  encoder  6 Le (4 + 2r) ld^2 + 12 Le K ld,   K = 2 * local_window, or context if that is shorter
  pooling  "attention": 6 (2 ld gd) per byte (keys and values) + 6 (2 gd^2) / bpp (patch query
           and output projections) + 12 gd per byte (the score and weighted-sum dot products:
           4 gd forward per byte, times 3);  "max": 6 ld gd per byte (the projection)
  global   [6 Lg (4 + 2r) gd^2 + 12 Lg Tp gd] / bpp, Tp = min(context / bpp, global_context)
  g2d      6 gd ld / bpp (global output -> decoder width, once per patch)
  decoder  6 Ld (4 + 2r) ld^2 + 12 Ld K ld + 6 ld Vp,   Vp = 257 padded to PAD_MULTIPLE (320)

where ld/gd are the local/global widths, r the MLP ratio, Le/Ld/Lg the layer counts and bpp the
mean bytes per patch. Not counted: embedding lookups (byte, hashed n-gram, positions: they are
table reads, not FLOPs), the n-gram hashing (integer ops), biases, LayerNorms, GELUs, softmaxes,
the max-pooling and scatter/gather, dropout, the loss, and the optimizer. The global part is per
patch, so it is divided by bpp; the patches the batch is padded with (to a multiple of 8, up to
the longest window's patch count) are not counted.

`blt_logging_flops_per_byte` gives a second figure in BLT's own logging convention: 6 N + 7 L T d
per unit with N the non-embedding matmul weights, for the global part (per patch, / bpp, T = the
context in patches) and the local parts (per byte, T = the keys a byte attends to).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from toklab.errors import ToklabError
# Block, BlockConfig, CausalSelfAttention (and through Block, MLP), init_weights and adamw are model.py's
from toklab.gpt.model import (
    INIT_STD,
    PAD_MULTIPLE,
    Block,
    BlockConfig,
    cross_entropy,
    preset_values,
    CausalSelfAttention,
    adamw,
    init_weights,
)

__all__ = [
    "FLAG", "EOT", "BYTE_CLASSES", "INPUT_VOCAB", "BLT_PRESETS", "BLTConfig", "BLT", "blt_config",
    "blt_logging_flops_per_byte", "WindowedSelfAttention", "LocalBlock", "ngram_hashes",
]

FLAG = 257  # id = byte + FLAG at a patch start
EOT = 256  # end-of-text byte class
BYTE_CLASSES = 257  # 256 bytes + end-of-text: what the head predicts
INPUT_VOCAB = 2 * FLAG  # 514 input ids
PATCH_MULTIPLE = 8  # the patch axis is padded to a multiple of this
_HASH_PRIME = 1_000_003
_HASH_MOD = 2**31 - 1  # keeps h * prime inside int64

# Model sizes by name; the context comes from the run, not the preset.
BLT_PRESETS: dict[str, dict[str, Any]] = {
    # seconds on a CPU, for tests
    "tiny": {"local_d": 64, "local_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "local_window": 64,
             "global_d": 64, "global_heads": 2, "global_layers": 2, "ngram_buckets": 512},
    "small": {"local_d": 128, "local_heads": 4, "encoder_layers": 1, "decoder_layers": 2, "local_window": 128,
              "global_d": 128, "global_heads": 4, "global_layers": 4, "ngram_buckets": 4096},
    # global: 8 x 12 x 512^2 = 25.2M non-embedding parameters; run with context 4096
    "gpu": {"local_d": 256, "local_heads": 4, "encoder_layers": 1, "decoder_layers": 4, "local_window": 256,
            "global_d": 512, "global_heads": 8, "global_layers": 8, "ngram_buckets": 8192},
}

# The fields `blt_config` lets a caller override on top of a preset.
OVERRIDABLE = (
    "local_d", "local_heads", "encoder_layers", "decoder_layers", "local_window", "global_d", "global_heads",
    "global_layers", "global_context", "ngram_sizes", "ngram_buckets", "pooling", "mlp_ratio", "dropout",
)


def _padded(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass(frozen=True)
class BLTConfig:
    context: int = 256  # bytes per window
    local_d: int = 64
    local_heads: int = 2
    encoder_layers: int = 1
    decoder_layers: int = 1
    local_window: int = 64  # a byte attends to itself and the local_window - 1 bytes before it
    global_d: int = 64
    global_heads: int = 2
    global_layers: int = 2
    global_context: int | None = None  # most patches per window; None: context
    ngram_sizes: tuple[int, ...] = (3, 4, 5, 6, 7, 8)
    ngram_buckets: int = 4096  # rows per n-gram table (one table per n)
    pooling: str = "attention"  # "attention" | "max"
    mlp_ratio: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.global_context is None:
            object.__setattr__(self, "global_context", self.context)
        for name in ("context", "local_d", "local_heads", "encoder_layers", "decoder_layers", "local_window",
                     "global_d", "global_heads", "global_layers", "global_context", "ngram_buckets", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ToklabError(f"BLT config: {name} must be a positive integer, got {value!r}")
        for d, h in (("local_d", "local_heads"), ("global_d", "global_heads")):
            if getattr(self, d) % getattr(self, h) != 0:
                raise ToklabError(f"BLT config: {d} ({getattr(self, d)}) must be divisible by {h} ({getattr(self, h)})")
        sizes = self.ngram_sizes
        if isinstance(sizes, list):
            sizes = tuple(sizes)
            object.__setattr__(self, "ngram_sizes", sizes)
        if (not isinstance(sizes, tuple) or len(set(sizes)) != len(sizes)
                or any(not isinstance(n, int) or isinstance(n, bool) or not 2 <= n <= 16 for n in sizes)):
            raise ToklabError(f"BLT config: ngram_sizes must be distinct integers in 2..16, got {sizes!r}")
        if self.pooling not in ("attention", "max"):
            raise ToklabError(f"BLT config: pooling must be 'attention' or 'max', got {self.pooling!r}")
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ToklabError(f"BLT config: dropout must be in [0, 1), got {dropout!r}")

    @property
    def padded_vocab_size(self) -> int:
        """The head's width: 257 byte classes rounded up to a multiple of PAD_MULTIPLE."""
        return _padded(BYTE_CLASSES, PAD_MULTIPLE)

    @property
    def local_keys(self) -> int:
        """Keys the windowed attention computes per byte: 2 windows (previous + own chunk), or the
        whole context when the window covers it."""
        return self.context if self.context <= self.local_window else 2 * self.local_window

    def local_block_config(self) -> BlockConfig:
        return BlockConfig(self.local_d, self.local_heads, self.mlp_ratio, self.dropout)

    def global_block_config(self) -> BlockConfig:
        return BlockConfig(self.global_d, self.global_heads, self.mlp_ratio, self.dropout)

    def matmul_params(self) -> dict[str, int]:
        """Weights used in matrix multiplies, by part; "*_byte" parts run once per byte,
        "*_patch" parts once per patch. BLT.matmul_params counts the same from the modules."""
        ld, gd, r = self.local_d, self.global_d, self.mlp_ratio
        local_block = (4 + 2 * r) * ld * ld
        pool_byte = 2 * ld * gd if self.pooling == "attention" else ld * gd
        pool_patch = 2 * gd * gd if self.pooling == "attention" else 0
        return {
            "encoder_byte": self.encoder_layers * local_block,
            "pooling_byte": pool_byte,
            "pooling_patch": pool_patch,
            "global_patch": self.global_layers * (4 + 2 * r) * gd * gd,
            "global_to_decoder_patch": gd * ld,
            "decoder_byte": self.decoder_layers * local_block,
            "head_byte": ld * self.padded_vocab_size,
        }

    def flops_breakdown(self, bytes_per_patch: float) -> dict[str, float]:
        """Training FLOPs per byte by part (see the module docstring); values sum to flops_per_byte."""
        if not bytes_per_patch >= 1.0:
            raise ToklabError(f"bytes_per_patch must be at least 1, got {bytes_per_patch!r}")
        m = self.matmul_params()
        bpp = float(bytes_per_patch)
        K, ld, gd = self.local_keys, self.local_d, self.global_d
        patches = min(self.context / bpp, float(self.global_context))
        scores = 12.0 * gd if self.pooling == "attention" else 0.0
        return {
            "encoder": 6.0 * m["encoder_byte"] + 12.0 * self.encoder_layers * K * ld,
            "pooling": 6.0 * m["pooling_byte"] + 6.0 * m["pooling_patch"] / bpp + scores,
            "global": (6.0 * m["global_patch"] + 12.0 * self.global_layers * patches * gd) / bpp,
            "global_to_decoder": 6.0 * m["global_to_decoder_patch"] / bpp,
            "decoder": 6.0 * m["decoder_byte"] + 12.0 * self.decoder_layers * K * ld + 6.0 * m["head_byte"],
        }

    def flops_per_byte(self, bytes_per_patch: float) -> float:
        """Training FLOPs (forward + backward) per byte at a mean patch length of bytes_per_patch."""
        return sum(self.flops_breakdown(bytes_per_patch).values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ngram_sizes"] = list(self.ngram_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BLTConfig:
        """The inverse of to_dict; unknown keys are a ToklabError (e.g. a foreign checkpoint)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ToklabError(f"BLT config: unknown field(s) {', '.join(unknown)}")
        return cls(**d)


def blt_config(preset: str | None = "tiny", context: int = 256, **overrides: Any) -> BLTConfig:
    """A config from a preset (None: BLTConfig's defaults), then any non-None overrides."""
    return BLTConfig(context=context, **preset_values(BLT_PRESETS, preset, OVERRIDABLE, overrides, what="BLT"))


def blt_logging_flops_per_byte(config: BLTConfig, bytes_per_patch: float) -> float:
    """BLT's logging convention, 6 N + 7 L T d per unit (N: non-embedding matmul weights):
    the global model per patch (T = context in patches) divided by bytes_per_patch, plus the
    local models per byte (T = the keys a byte attends to, config.local_keys); the per-patch
    projections (pooling query/output, global->decoder) count as 6 N per patch."""
    if not bytes_per_patch >= 1.0:
        raise ToklabError(f"bytes_per_patch must be at least 1, got {bytes_per_patch!r}")
    m = config.matmul_params()
    bpp = float(bytes_per_patch)
    patches = min(config.context / bpp, float(config.global_context))
    global_part = (6.0 * m["global_patch"] + 7.0 * config.global_layers * patches * config.global_d) / bpp
    local_n = m["encoder_byte"] + m["pooling_byte"] + m["decoder_byte"] + m["head_byte"]
    local_layers = config.encoder_layers + config.decoder_layers
    local_part = 6.0 * local_n + 7.0 * local_layers * config.local_keys * config.local_d
    patch_part = 6.0 * (m["pooling_patch"] + m["global_to_decoder_patch"]) / bpp
    return global_part + local_part + patch_part


def ngram_hashes(byte: torch.Tensor, n: int, buckets: int) -> torch.Tensor:
    """For every position t of byte [B, T] (values 0..256), a hash of the bytes t-n+1..t in
    [0, buckets); near the window's start only the bytes at positions >= 0 take part (a missing
    byte hashes as 0, every real one as byte + 1, so the two differ). Vectorised over positions."""
    x = byte.long() + 1
    h = torch.zeros_like(x)
    for i in range(n):  # h = sum_i (byte[t - i] + 1) * prime^(n-1-i), mod _HASH_MOD
        shifted = F.pad(x[:, : x.size(1) - i], (i, 0)) if i else x
        h = (h * _HASH_PRIME + shifted) % _HASH_MOD
    return h % buckets


class WindowedSelfAttention(CausalSelfAttention):
    """model.py's attention (same qkv/proj weights) with a causal local window: a query sees
    itself and the window - 1 positions before it, computed in chunks of `window`."""

    def __init__(self, config: BlockConfig, window: int) -> None:
        super().__init__(config)
        self.window = window

    def forward(self, x: torch.Tensor, last: int | None = None) -> torch.Tensor:
        B, T, C = x.shape
        W, H = self.window, self.n_head
        dropout = self.dropout if self.training else 0.0
        if T <= W:  # the window covers the sequence: plain causal attention
            return super().forward(x)
        n = -(-T // W)  # chunks
        x = F.pad(x, (0, 0, 0, n * W - T))  # padded queries are dropped, padded keys are never seen
        q, k, v = self.qkv(x).view(B, n, W, 3, H, C // H).permute(3, 0, 1, 4, 2, 5)  # [B, n, H, W, hd]
        # keys/values of the previous chunk then this one: [B, n, H, 2W, hd]
        k = torch.cat((F.pad(k, (0, 0, 0, 0, 0, 0, 1, 0))[:, :-1], k), dim=3)
        v = torch.cat((F.pad(v, (0, 0, 0, 0, 0, 0, 1, 0))[:, :-1], v), dim=3)
        # query i (absolute cW + i) may see key j (absolute (c-1)W + j) iff i < j <= i + W;
        # chunk 0 has no previous chunk, so there also j >= W
        i = torch.arange(W, device=x.device).view(W, 1)
        j = torch.arange(2 * W, device=x.device).view(1, 2 * W)
        mask = ((j > i) & (j <= i + W)).expand(n, W, 2 * W).clone()
        mask[0] &= j >= W
        mask = mask.view(1, n, 1, W, 2 * W).expand(B, n, 1, W, 2 * W).reshape(B * n, 1, W, 2 * W)
        hd = C // H
        y = F.scaled_dot_product_attention(
            q.reshape(B * n, H, W, hd), k.reshape(B * n, H, 2 * W, hd), v.reshape(B * n, H, 2 * W, hd),
            attn_mask=mask, dropout_p=dropout,
        )
        y = y.view(B, n, H, W, hd).permute(0, 1, 3, 2, 4).reshape(B, n * W, C)[:, :T]
        return self.resid_dropout(self.proj(y))


class LocalBlock(Block):
    """model.py's pre-LayerNorm Block with windowed causal attention."""

    def __init__(self, config: BlockConfig, window: int) -> None:
        super().__init__(config)
        self.attn = WindowedSelfAttention(config, window)


class BLT(nn.Module):
    def __init__(self, config: BLTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        ld, gd = c.local_d, c.global_d
        local = c.local_block_config()
        # local encoder
        self.byte_emb = nn.Embedding(BYTE_CLASSES, ld)
        self.ngram_emb = nn.ModuleList(nn.Embedding(c.ngram_buckets, ld) for _ in c.ngram_sizes)
        self.byte_pos = nn.Embedding(c.context, ld)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(LocalBlock(local, c.local_window) for _ in range(c.encoder_layers))
        # pooling
        if c.pooling == "attention":
            self.pool_kv = nn.Linear(ld, 2 * gd)  # per byte: keys and values
            self.pool_q = nn.Linear(gd, gd)  # per patch: query from the max-pooled values
            self.pool_out = nn.Linear(gd, gd)  # per patch
        else:
            self.pool_proj = nn.Linear(ld, gd)
        # global
        self.patch_pos = nn.Embedding(c.global_context, gd)
        self.global_blocks = nn.ModuleList(Block(c.global_block_config()) for _ in range(c.global_layers))
        self.ln_global = nn.LayerNorm(gd)
        self.global_to_decoder = nn.Linear(gd, ld)
        self.start = nn.Parameter(torch.zeros(ld))  # what patch 0 reads in place of patch -1
        # local decoder
        self.decoder = nn.ModuleList(LocalBlock(local, c.local_window) for _ in range(c.decoder_layers))
        self.ln_f = nn.LayerNorm(ld)
        self.head = nn.Linear(ld, c.padded_vocab_size, bias=False)

        init_weights(self, self.global_blocks, c.global_layers)
        nn.init.normal_(self.start, mean=0.0, std=INIT_STD)
        resid_std = INIT_STD / math.sqrt(2 * (c.encoder_layers + c.decoder_layers))
        for block in (*self.encoder, *self.decoder):
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=resid_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=resid_std)

    # ---- the stages, separately callable for tests -------------------------------------------

    @staticmethod
    def patch_ids(idx: torch.Tensor) -> torch.Tensor:
        """[B, T] index of the patch each input position is in (position 0 always starts one)."""
        starts = idx >= FLAG
        starts[:, 0] = True
        return starts.long().cumsum(dim=1) - 1

    def encode(self, idx: torch.Tensor) -> torch.Tensor:
        """Local encoder states [B, T, local_d]."""
        T = idx.size(1)
        byte = idx % FLAG
        x = self.byte_emb(byte) + self.byte_pos(torch.arange(T, device=idx.device))
        for n, table in zip(self.config.ngram_sizes, self.ngram_emb):
            x = x + table(ngram_hashes(byte, n, self.config.ngram_buckets))
        x = self.drop(x)
        for block in self.encoder:
            x = block(x)
        return x

    def pool(self, h: torch.Tensor, patch: torch.Tensor, num_patches: int) -> torch.Tensor:
        """Patch vectors [B, P, global_d], each from the byte states of its own patch only;
        patches with no bytes (padding) are zero."""
        B, T, _ = h.shape
        gd, P = self.config.global_d, num_patches
        if self.config.pooling == "max":
            v = self.pool_proj(h)
            index = patch.unsqueeze(-1).expand(B, T, gd)
            return v.new_zeros(B, P, gd).scatter_reduce(1, index, v, "amax", include_self=False)
        k, v = self.pool_kv(h).chunk(2, dim=-1)  # [B, T, gd]
        index = patch.unsqueeze(-1).expand(B, T, gd)
        m = v.new_zeros(B, P, gd).scatter_reduce(1, index, v, "amax", include_self=False)
        q = self.pool_q(m)  # [B, P, gd]
        # segment softmax per head over the bytes of each patch, in float32
        H = self.config.global_heads
        hd = gd // H
        qt = torch.gather(q, 1, index).float().view(B, T, H, hd)
        kf, vf = k.float().view(B, T, H, hd), v.float().view(B, T, H, hd)
        s = (qt * kf).sum(-1) / math.sqrt(hd)  # [B, T, H]
        hidx = patch.unsqueeze(-1).expand(B, T, H)
        smax = s.new_full((B, P, H), float("-inf")).scatter_reduce(1, hidx, s, "amax", include_self=False)
        e = torch.exp(s - torch.gather(smax, 1, hidx).detach())
        denom = s.new_zeros(B, P, H).scatter_add(1, hidx, e)
        w = e / torch.gather(denom, 1, hidx)
        out = (w.unsqueeze(-1) * vf).reshape(B, T, gd)
        out = out.new_zeros(B, P, gd).scatter_add(1, index, out)
        present = (denom[..., :1] > 0).to(m.dtype)  # [B, P, 1]: 0 for the empty padding patches
        return (m + self.pool_out(out.to(m.dtype))) * present

    def global_forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Global transformer outputs [B, P, global_d], causal over patches."""
        P = patches.size(1)
        x = self.drop(patches + self.patch_pos(torch.arange(P, device=patches.device)))
        for block in self.global_blocks:
            x = block(x)
        return self.ln_global(x)

    def decoder_context(self, g: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
        """What byte t (in patch j) reads from the global model: patch j-1's projected output
        (the start vector for j = 0), [B, T, local_d]. Never patch j's own: that would leak."""
        g = self.global_to_decoder(g)  # [B, P, ld], once per patch
        start = self.start.to(g.dtype).expand(g.size(0), 1, -1)
        shifted = torch.cat((start, g[:, :-1]), dim=1)
        return torch.gather(shifted, 1, patch.unsqueeze(-1).expand(-1, -1, g.size(-1)))

    def decode(self, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, padded 257] from encoder states and the global context."""
        x = h + context
        for block in self.decoder:
            x = block(x)
        return self.head(self.ln_f(x))

    def num_patches(self, patch: torch.Tensor) -> int:
        """The batch's patch axis: the most patches in a window, padded to a multiple of 8."""
        P = int(patch[:, -1].max().item()) + 1
        if P > self.config.global_context:
            raise ToklabError(f"a window has {P} patches, more than the model's global_context ({self.config.global_context})")
        return min(_padded(P, PATCH_MULTIPLE), self.config.global_context)

    # ---- the model -------------------------------------------------------------------------

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits [B, T, padded 257] and, with targets (flagged ids or -100), the cross-entropy in
        nats over the 257 byte classes of target % 257. reduction "mean" gives a scalar, "none" [B, T]."""
        if idx.dim() != 2:
            raise ValueError(f"idx must be [batch, time], got shape {tuple(idx.shape)}")
        T = idx.size(1)
        if T > self.config.context:
            raise ToklabError(f"sequence of {T} bytes is longer than the model's context ({self.config.context})")
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")

        patch = self.patch_ids(idx)
        h = self.encode(idx)
        g = self.global_forward(self.pool(h, patch, self.num_patches(patch)))
        logits = self.decode(h, self.decoder_context(g, patch))

        if targets is None:
            return logits, None
        classes = torch.where(targets >= 0, targets % FLAG, targets)  # the flag is never predicted
        return logits, cross_entropy(logits, classes, BYTE_CLASSES, reduction)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def matmul_params(self) -> dict[str, int]:
        """Weights used in matrix multiplies by part, counted from the modules (the same keys as
        BLTConfig.matmul_params); "*_byte" parts run per byte, "*_patch" parts per patch."""

        def linear(*modules: nn.Module) -> int:
            return sum(m.weight.numel() for mod in modules for m in mod.modules() if isinstance(m, nn.Linear))

        pool_byte = (self.pool_kv,) if self.config.pooling == "attention" else (self.pool_proj,)
        pool_patch = (self.pool_q, self.pool_out) if self.config.pooling == "attention" else ()
        return {
            "encoder_byte": linear(self.encoder),
            "pooling_byte": linear(*pool_byte),
            "pooling_patch": linear(*pool_patch),
            "global_patch": linear(self.global_blocks),
            "global_to_decoder_patch": linear(self.global_to_decoder),
            "decoder_byte": linear(self.decoder),
            "head_byte": linear(self.head),
        }

    def optimizer(
        self,
        lr: float,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        device_type: str = "cpu",
    ) -> torch.optim.AdamW:
        """AdamW that decays matrices and embeddings (>= 2-D) but not biases, gains or the start vector."""
        return adamw(self, lr, weight_decay, betas, fused=device_type == "cuda")
