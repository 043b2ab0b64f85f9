"""A small causal byte-level transformer that scores how predictable each next byte is.

This is the learned entropy model behind the BLT-style entropy-patch segmenter: it predicts
the next byte of a text, and where it is unsure (high entropy) a new patch starts.
The model is built from the GPT's parts (toklab/gpt/model.py: its Block, initialisation and
AdamW groups): pre-LayerNorm blocks, learned positions, causal self-attention, Linear layers
without bias (LayerNorms with), and an output head tied to the byte embedding.

Conventions:

* Start byte. Training joins the documents into one stream, each preceded by a NUL byte
  (START_BYTE, 0x00), and a share of every batch starts exactly at a document start. At
  inference the model reads START_BYTE followed by data[:-1], so the prediction for data[0]
  is "the first byte of a document"; entry t is conditioned on data[:t] and nothing else.
* Windowing. A text of n bytes is read as the n inputs START_BYTE + data[:-1]. Up to
  `context` inputs run as one window. Longer texts run as windows anchored at the text's
  start: window k covers inputs [k*stride, k*stride + context), stride = context//2, the
  final one cut short at the text's end. The first window scores its positions, every
  later one only those after the end of the window before it (its last `stride` columns,
  fewer in a final window cut short), so every position after the first window sees at
  least context/2 bytes to its left. The window that scores t depends on t alone, so the
  entropy at t is a function of data[:t] only (strictly causal, like the n-gram model):
  a prefix scores like the start of the longer text, and a long text can be scored piece
  by piece (`context_start`, `score_from`), as EntropySegmenter does for long documents.
  Windows from one or many texts are batched together, and the last layer runs only the
  positions a window scores (the others are still its keys).
* Numbers are computed in float32 under torch.inference_mode and returned as float64.
  float32 results can change in their last bits with the shapes they are computed in, so
  `_run` gives every window after a text's first the same shapes (full width, in batches
  of such windows only): a part of a long text scored piece by piece then equals the whole
  pass to the bit on the CPU tested, with 1 and 2 threads (only the batch's size differs,
  which a BLAS, or a GPU's kernels, may in principle still round by). A text within its first window runs at its own length, so a
  short prefix agrees with the longer text's start to float32 rounding (about 1e-6).

Objects are picklable: the weights travel as a CPU state_dict and are rebuilt on unpickling
(on the original device when it is available there, otherwise on the CPU). torch uses every
core for one call; in a process pool, give each worker torch.set_num_threads(1).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from toklab.errors import ToklabError, one_line
from toklab.gpt.model import Block, BlockConfig, adamw, init_weights

VOCAB = 256  # bytes
START_BYTE = 0  # precedes every document in training; the only input before data[0]
WEIGHTS_FILE = "transformer.pt"
PARAMS_FILE = "transformer.json"
DOC_START_SHARE = 8  # one row in this many of each training batch starts at a document start
TOKENS_PER_BATCH = {"cpu": 4096, "cuda": 65536}  # inputs per inference forward pass (CPU: cache-sized)
LN2 = math.log(2.0)
# Module names before the model used gpt/model.py's blocks, for weights saved then (a prefix
# `blocks.N` before each); `_rebuild` renames them.
LEGACY_NAMES = {".attn.c_attn.": ".attn.qkv.", ".attn.c_proj.": ".attn.proj.", ".mlp.c_fc.": ".mlp.fc.", ".mlp.c_proj.": ".mlp.proj."}


@dataclass
class TransformerConfig:
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    context: int = 256
    dropout: float = 0.0

    def check(self) -> None:
        for name in ("n_layer", "n_head", "d_model", "context"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ToklabError(f"transformer {name} must be an integer, not {value!r}")
        if self.n_layer < 1:
            raise ToklabError(f"transformer n_layer must be at least 1, not {self.n_layer}")
        if self.n_head < 1:
            raise ToklabError(f"transformer n_head must be at least 1, not {self.n_head}")
        if self.d_model < 1 or self.d_model % self.n_head:
            raise ToklabError(f"transformer d_model ({self.d_model}) must be a positive multiple of n_head ({self.n_head})")
        if self.context < 2:
            raise ToklabError(f"transformer context must be at least 2 bytes, not {self.context}")
        if not 0.0 <= self.dropout < 1.0:
            raise ToklabError(f"transformer dropout must be in [0, 1), not {self.dropout}")

    def block_config(self) -> BlockConfig:
        """gpt/model.py's block settings for this model: no Linear biases, LayerNorm biases."""
        return BlockConfig(self.d_model, self.n_head, mlp_ratio=4, dropout=self.dropout, bias=False, norm_bias=True)


# --- the model -------------------------------------------------------------------------------


class ByteTransformer(nn.Module):
    """Bytes (B, T) -> next-byte logits (B, T, 256). The head shares the byte embedding's weights;
    the Linear layers have no bias (nanoGPT's bias=False: a little faster, no worse)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        config.check()
        self.config = config
        self.wte = nn.Embedding(VOCAB, config.d_model)
        self.wpe = nn.Embedding(config.context, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        block = config.block_config()
        self.blocks = nn.ModuleList(Block(block) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        init_weights(self, self.blocks, config.n_layer)  # the GPT's (GPT-2) initialisation

    def hidden(self, idx: torch.Tensor, last: int | None = None) -> torch.Tensor:
        """The final (normalised) hidden states (B, T, d_model) for byte ids (B, T), or only
        those of the final `last` positions (B, last, d_model), which skips some of the work."""
        T = idx.shape[1]
        if T > self.config.context:
            raise ValueError(f"sequence of {T} is longer than the context of {self.config.context}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks[:-1]:
            x = block(x)
        return self.ln_f(self.blocks[-1](x, last))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.hidden(idx))


# --- the entropy model -----------------------------------------------------------------------


def _default_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ToklabError(f"unknown torch device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ToklabError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    return dev


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8", errors="surrogateescape")  # undoes a surrogateescape decode
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="surrogatepass")


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, str):
        return _utf8(data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise ToklabError(f"the entropy model reads bytes or str, not {type(data).__name__}")


class TransformerEntropyModel:
    """Next-byte entropies and cross-entropy of text under a small trained byte transformer."""

    kind = "transformer"

    def __init__(self, model: ByteTransformer, params: dict[str, Any], device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.params = dict(params)
        self.device = device

    @property
    def config(self) -> TransformerConfig:
        return self.model.config

    @property
    def context(self) -> int:
        return self.model.config.context

    def __repr__(self) -> str:
        c = self.config
        return f"<TransformerEntropyModel n_layer={c.n_layer} d_model={c.d_model} context={c.context} on {self.device}>"

    # --- training ------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        steps: int = 300,
        batch_size: int = 32,
        context: int = 256,
        n_layer: int = 2,
        n_head: int = 4,
        d_model: int = 128,
        lr: float = 3e-3,
        seed: int = 0,
        max_train_bytes: int = 20_000_000,
        dropout: float = 0.0,
        device: str | None = None,
    ) -> "TransformerEntropyModel":
        """Train on random windows of `context`+1 bytes of `texts` (str, or bytes) with AdamW
        (warm-up, then cosine decay to lr/10). Reads at most `max_train_bytes` of text; each
        document is preceded by START_BYTE. Deterministic for a given seed on the CPU."""
        config = TransformerConfig(n_layer=n_layer, n_head=n_head, d_model=d_model, context=context, dropout=dropout)
        config.check()
        for name, value in (("steps", steps), ("batch_size", batch_size), ("max_train_bytes", max_train_bytes), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ToklabError(f"transformer {name} must be an integer, not {value!r}")
        if steps < 1:
            raise ToklabError(f"transformer steps must be at least 1, not {steps}")
        if batch_size < 1:
            raise ToklabError(f"transformer batch_size must be at least 1, not {batch_size}")
        if max_train_bytes < 1:
            raise ToklabError(f"transformer max_train_bytes must be at least 1, not {max_train_bytes}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ToklabError(f"transformer lr must be a positive number, not {lr!r}")
        dev = _default_device(device)

        stream, doc_starts = _read_stream(texts, max_train_bytes)
        data = torch.from_numpy(np.frombuffer(stream, dtype=np.uint8).copy()).to(dev)
        width = min(context + 1, len(stream))  # a window: inputs plus the byte after the last
        last_start = len(stream) - width
        doc_starts_t = torch.tensor(np.minimum(doc_starts, last_start), dtype=torch.long)
        n_doc_rows = batch_size // DOC_START_SHARE
        offsets = torch.arange(width, device=dev)

        warmup = max(1, min(100, steps // 10))

        def lr_at(step: int) -> float:
            if step < warmup:
                return lr * (step + 1) / warmup
            progress = (step - warmup) / max(1, steps - warmup)
            return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))

        losses: list[float] = []
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            model = ByteTransformer(config).to(dev)
            optimizer = adamw(model, lr, weight_decay=0.1, betas=(0.9, 0.95))  # unfused, as before
            sampler = torch.Generator().manual_seed(seed)
            model.train()
            for step in range(steps):
                starts = torch.randint(0, last_start + 1, (batch_size,), generator=sampler)
                if n_doc_rows:
                    pick = torch.randint(0, len(doc_starts_t), (n_doc_rows,), generator=sampler)
                    starts[:n_doc_rows] = doc_starts_t[pick]
                batch = data[starts.to(dev)[:, None] + offsets].long()
                logits = model(batch[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                losses.append(loss.item())
        tail = losses[-max(1, steps // 10):]
        params = {
            **asdict(config),
            "steps": steps,
            "batch_size": batch_size,
            "lr": float(lr),
            "seed": seed,
            "max_train_bytes": max_train_bytes,
            "train_bytes": len(stream) - len(doc_starts),  # text bytes read, separators not counted
            "train_docs": len(doc_starts),
            "start_byte": START_BYTE,
            "final_train_bits_per_byte": round(sum(tail) / len(tail) / LN2, 4),
        }
        return cls(model, params, dev)

    # --- scoring -------------------------------------------------------------------------------

    def entropies(self, data: bytes) -> np.ndarray:
        """Entropy in bits of the predicted distribution of each byte: entry t is given data[:t]."""
        return self.score(data)[0]

    def entropies_batch(self, datas: Sequence[bytes]) -> list[np.ndarray]:
        """`entropies` of many texts, their windows sharing forward passes (faster for short texts)."""
        return [entropy for entropy, _ in self.score_batch(datas)]

    def surprisals(self, data: bytes) -> np.ndarray:
        """-log2 p(data[t] | data[:t]) for every t: each byte's cost in bits."""
        return self.score(data)[1]

    def bits(self, data: bytes) -> float:
        """Total cross-entropy of `data` in bits; bits(data) / len(data) is bits-per-byte."""
        return float(self.surprisals(data).sum())

    def score(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """(entropy, surprisal) in bits at every position, from one forward pass."""
        return self.score_batch([data])[0]

    def score_batch(self, datas: Sequence[bytes]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(entropy, surprisal) of many texts; both come from the same forward passes."""
        datas = [_as_bytes(d) for d in datas]
        lengths = np.array([len(d) for d in datas], dtype=np.int64)
        doc_offsets = np.concatenate([[0], np.cumsum(lengths)])
        flat = b"".join(datas)
        # inputs[doc_offsets[i] + t] is the byte before datas[i][t] (START_BYTE for t = 0)
        inputs = np.frombuffer(flat, dtype=np.uint8).copy()
        if len(flat):
            inputs[1:] = inputs[:-1].copy()
            inputs[doc_offsets[:-1][lengths > 0]] = START_BYTE
        entropy, surprisal = self._score_flat(inputs, np.frombuffer(flat, dtype=np.uint8), _windows(lengths, doc_offsets, self.context))
        bounds = list(zip(doc_offsets[:-1], doc_offsets[1:]))
        return [(entropy[a:b], surprisal[a:b]) for a, b in bounds]

    # --- scoring a long text piece by piece --------------------------------------------------------

    def context_start(self, pos: int) -> int:
        """The first byte that the scores from position `pos` on read: the first input of the window
        that scores `pos` (the byte before that window's first position), or 0 in the first window."""
        return max(0, _window_start(pos, self.context) - 1)

    def score_from(self, x: bytes | np.ndarray, lo: int, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """(entropy, surprisal) of data[pos:lo + len(x)] for x = data[lo:lo + len(x)], a part of a
        longer text `data` with lo <= context_start(pos): the windows are the whole text's (the last
        one cut short at x's end), so the numbers are the whole text's there, float32 rounding aside."""
        x = np.frombuffer(_as_bytes(x), dtype=np.uint8) if not isinstance(x, np.ndarray) else x
        end = lo + len(x)
        if pos >= end:
            return np.zeros(0), np.zeros(0)
        if not 0 <= lo <= self.context_start(pos):
            raise ValueError(f"score_from: position {pos} needs the bytes from {self.context_start(pos)} on, not from {lo}")
        first = _window_start(pos, self.context)  # the whole text's window that scores pos
        targets = x[first - lo :]
        if first == 0:
            inputs = np.concatenate([[START_BYTE], x[:-1]]).astype(np.uint8)
            windows = _windows(np.array([end]), np.array([0, end]), self.context)
        else:  # a window inside the text: its first input is data[first - 1], and it scores its tail only
            inputs = x[first - 1 - lo : -1]
            windows = _windows(np.array([end - first]), np.array([0, end - first]), self.context, owned_from=self.context - self.context // 2)
        entropy, surprisal = self._score_flat(inputs, targets, windows)
        return entropy[pos - first :], surprisal[pos - first :]

    def entropies_from(self, x: bytes | np.ndarray, lo: int, pos: int) -> np.ndarray:
        """The entropies of `score_from`."""
        return self.score_from(x, lo, pos)[0]

    def _score_flat(self, inputs: np.ndarray, targets: np.ndarray, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(entropy, surprisal) at every flat position the windows own (zero elsewhere)."""
        entropy = np.zeros(len(targets), dtype=np.float64)
        surprisal = np.zeros(len(targets), dtype=np.float64)
        if len(targets):
            for index, ent, sur in self._run(inputs, targets, windows):
                entropy[index], surprisal[index] = ent, sur
        return entropy, surprisal

    def _run(self, inputs: np.ndarray, targets: np.ndarray, windows: np.ndarray):
        """Yield (flat positions, entropies, surprisals) for batches of windows (start, length, own_from, own_to).

        A window that scores only its tail (a later window of a long text) runs at the full context
        width (padded where the text ends), in a batch of such windows only, and its head runs on
        all of that tail: its numbers come from operations of the same shapes, the batch's size
        aside, whether the text is scored whole or piece by piece (`score_from`). Other windows
        (a text's first) run at their own length among windows of any length."""
        tail = windows[:, 2] > 0
        widths = np.where(tail, self.context, windows[:, 1])
        order = np.lexsort((-widths, ~tail))  # tail windows first; then long windows first (less padding)
        windows, widths, n_tail = windows[order], widths[order], int(tail.sum())
        i = 0
        with torch.inference_mode():
            while i < len(windows):
                width = int(widths[i])
                n = max(1, TOKENS_PER_BATCH.get(self.device.type, 4096) // width)
                j = min(i + n, n_tail if i < n_tail else len(windows))  # tail windows and others apart
                batch = windows[i:j]
                i = j
                cols = np.arange(width)
                index = batch[:, :1] + cols  # flat position of each input (past the end: padding)
                owned = (cols >= batch[:, 2:3]) & (cols < batch[:, 3:4])
                padded = np.minimum(index, len(inputs) - 1)
                idx = torch.from_numpy(inputs[padded].astype(np.int64)).to(self.device)
                mask = torch.from_numpy(owned).to(self.device)
                last = width - int(batch[:, 2].min())  # the final layer runs only these positions
                h = self.model.hidden(idx, last)
                if batch[0, 2] > 0:  # the head on every tail position (owned or not): fixed shapes
                    logits = self.model.lm_head(h)[mask[:, width - last:]]
                else:
                    logits = self.model.lm_head(h[mask[:, width - last:]])  # by window, then position
                logp = F.log_softmax(logits.float(), dim=-1)
                tgt = torch.from_numpy(targets[index[owned]].astype(np.int64)).to(self.device)
                surprisal = -logp.gather(1, tgt[:, None]).squeeze(1) / LN2
                logp = logp.clamp_min(-1e4)  # so that p = 0 adds 0, not 0 * -inf
                entropy = (-(logp.exp() * logp).sum(-1) / LN2).clamp_(0.0, 8.0)  # float32 rounding aside
                yield index[owned], entropy.double().cpu().numpy(), surprisal.double().cpu().numpy()

    # --- saving, loading, pickling -------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write transformer.pt (state_dict) and transformer.json (params) into `directory`."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ToklabError(f"cannot save the transformer entropy model: {directory} is not a folder")
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        torch.save(state, directory / WEIGHTS_FILE)
        (directory / PARAMS_FILE).write_text(json.dumps(self.params, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path, device: str | None = None) -> "TransformerEntropyModel":
        directory = Path(directory)
        for name in (PARAMS_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise ToklabError(f"{directory} holds no saved transformer entropy model (no {name})")
        try:
            params = json.loads((directory / PARAMS_FILE).read_text())
            if not isinstance(params, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise ToklabError(f"cannot read {directory / PARAMS_FILE}: {exc}") from None
        dev = _default_device(device)
        try:
            state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for a damaged file
            raise ToklabError(f"cannot read {directory / WEIGHTS_FILE}: {one_line(exc)}") from None
        return cls._rebuild(params, state, dev, str(directory))

    @classmethod
    def _rebuild(cls, params: dict[str, Any], state: dict[str, torch.Tensor], dev: torch.device, where: str):
        names = {f.name for f in fields(TransformerConfig)}
        config = TransformerConfig(**{k: v for k, v in params.items() if k in names})
        if params.get("start_byte", START_BYTE) != START_BYTE:
            raise ToklabError(f"{where}: the model was trained with start byte {params['start_byte']}, not {START_BYTE}")
        model = ByteTransformer(config)
        try:
            model.load_state_dict(_renamed(state))
        except (RuntimeError, KeyError) as exc:
            raise ToklabError(f"{where}: weights do not match the saved config: {one_line(exc)}") from None
        return cls(model, params, dev)

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return {"params": self.params, "state_dict": state, "device": str(self.device)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        dev = torch.device(state["device"])
        if dev.type == "cuda" and not torch.cuda.is_available():
            dev = torch.device("cpu")
        other = self._rebuild(state["params"], state["state_dict"], dev, "unpickled model")
        self.__dict__.update(other.__dict__)


def _renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state_dict with the module names of LEGACY_NAMES replaced by today's."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for old, new in LEGACY_NAMES.items():
            key = key.replace(old, new)
        out[key] = value
    return out


def _read_stream(texts: Iterable[str], max_bytes: int) -> tuple[bytes, np.ndarray]:
    """START_BYTE + doc for each non-empty doc, up to `max_bytes` of text; and where each starts."""
    if isinstance(texts, (str, bytes)):
        texts = [texts]
    parts: list[bytes] = []
    starts: list[int] = []
    size = text_bytes = 0
    for text in texts:
        if text_bytes >= max_bytes:
            break
        if isinstance(text, str):
            raw = _utf8(text)
        elif isinstance(text, (bytes, bytearray)):
            raw = bytes(text)
        else:
            raise ToklabError(f"transformer training texts must be str, not {type(text).__name__}")
        raw = raw[: max_bytes - text_bytes]
        if not raw:
            continue
        starts.append(size)
        parts.append(bytes([START_BYTE]) + raw)
        size += len(raw) + 1
        text_bytes += len(raw)
    if not parts:
        raise ToklabError("no training text for the transformer entropy model")
    return b"".join(parts), np.array(starts, dtype=np.int64)


def _window_start(pos: int, context: int) -> int:
    """The first input of the window that scores position `pos` of a text (_windows)."""
    stride = context // 2
    return 0 if pos < context else ((pos - context) // stride + 1) * stride


def _windows(lengths: np.ndarray, doc_offsets: np.ndarray, context: int, owned_from: int = 0) -> np.ndarray:
    """(k, 4) rows of (flat start, length, first owned column, end of owned columns).

    A text of up to `context` bytes is one window. A longer one is cut into windows anchored at its
    start: window k covers [k * stride, k * stride + context), stride = context // 2, the final one
    cut short at the text's end, so where a window lies does not depend on the text's length. Each
    owns the columns not owned by the one before it: all of the first window's (from `owned_from`,
    which a text that continues one scored before sets to context - stride), then the last `stride`
    columns of each later one (fewer in a final window cut short).
    """
    rows: list[np.ndarray] = []
    stride = context // 2
    for n, base in zip(lengths.tolist(), doc_offsets[:-1].tolist()):
        if n <= owned_from:
            continue
        if n <= context:
            rows.append(np.array([[base, n, owned_from, n]], dtype=np.int64))
            continue
        starts = stride * np.arange(1 + -(-(n - context) // stride))  # the last one ends at or past n
        ends = np.minimum(starts + context, n)
        own_from = np.full_like(starts, context - stride)
        own_from[0] = owned_from
        rows.append(np.stack([base + starts, ends - starts, own_from, ends - starts], axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, 4), dtype=np.int64)
