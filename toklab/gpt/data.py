"""Token shards for `toklab pretrain`: a corpus segmented once, cached, and read back as batches.

A shard is a header of 256 little-endian int32 values (magic 20240520, version, token count, the
rest zero), the layout nanoGPT's and llm.c's .bin shards use so other trainers can read ours,
followed by the tokens: uint16 (version 1, what llm.c reads) when every id fits, else uint32
(version 2). A split is one stream of tokens, <|endoftext|> first and after every document,
cut into shards of at most `shard_tokens`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np
import torch

from toklab.errors import ToklabError
from toklab.files import atomic_dir, cache_dir, temp_name
from toklab.progress import document_progress
from toklab.segmenters.base import EOT

if TYPE_CHECKING:
    from toklab.corpus import Corpus
    from toklab.segmenters.base import Segmenter

MAGIC = 20240520
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
DTYPES = {1: np.dtype("<u2"), 2: np.dtype("<u4")}  # version -> token dtype
MANIFEST = "manifest.json"
BYTE_LENGTHS = "byte_lengths.npy"
FORMAT = 1  # bump when the folder layout changes, so old caches are not reused
SPLITS = ("train", "val")
VAL_BATCH = 16  # windows per validation batch


def _version_for(vocab_size: int) -> int:
    # uint16 holds ids 0..65535, i.e. every vocabulary of up to 2**16 entries.
    return 1 if vocab_size <= 2**16 else 2


# --- single shards ---------------------------------------------------------------------------


def write_shard(path: str | os.PathLike, tokens: np.ndarray, vocab_size: int) -> Path:
    """Write `tokens` as one shard (under a temporary name, then renamed); returns the path."""
    path = Path(path)
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or (tokens.size and not np.issubdtype(tokens.dtype, np.integer)):
        raise ValueError(f"tokens must be a 1-D integer array, got {tokens.dtype} of shape {tokens.shape}")
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}), got {int(tokens.min())}..{int(tokens.max())}")
    version = _version_for(vocab_size)
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (MAGIC, version, tokens.size)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(header.tobytes())
            f.write(tokens.astype(DTYPES[version], copy=False).tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_header(path: str | os.PathLike) -> tuple[int, int, int]:
    """(magic, version, n_tokens) of a shard, after checking it is whole."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except FileNotFoundError:
        raise ToklabError(f"no such token shard: {path}") from None
    except OSError as exc:
        raise ToklabError(f"cannot read token shard {path}: {exc.strerror or exc}") from None
    if len(raw) < HEADER_BYTES:
        raise ToklabError(f"{path} is not a token shard: {len(raw)} bytes, shorter than the {HEADER_BYTES}-byte header")
    magic, version, n_tokens = (int(v) for v in np.frombuffer(raw, dtype="<i4", count=3))
    if magic != MAGIC:
        raise ToklabError(f"{path} is not a token shard: magic {magic}, expected {MAGIC}")
    if version not in DTYPES:
        raise ToklabError(f"{path}: unsupported token shard version {version} (this toklab reads 1 and 2)")
    needed = HEADER_BYTES + n_tokens * DTYPES[version].itemsize
    if n_tokens < 0 or size < needed:
        raise ToklabError(f"{path} is truncated: {size} bytes, its header promises {n_tokens} tokens ({needed} bytes)")
    return magic, version, n_tokens


def read_shard(path: str | os.PathLike) -> np.ndarray:
    """The tokens of a shard as a read-only memory map (uint16 or uint32)."""
    _, version, n_tokens = read_header(path)
    return np.memmap(path, dtype=DTYPES[version], mode="r", offset=HEADER_BYTES, shape=(n_tokens,))


def eot_id(segmenter: "Segmenter") -> int:
    """The id of <|endoftext|>, which separates documents in a shard."""
    eot = segmenter.special_tokens.get(EOT)
    if eot is None:
        raise ToklabError(f"segmenter {segmenter.spec} has no {EOT} token to separate documents; pretraining needs one")
    return int(eot)


# --- a corpus as token data --------------------------------------------------------------------


@dataclass
class TokenData:
    """A segmented corpus on disk: train and val shards, the byte length of every id, a manifest."""

    directory: Path
    vocab_size: int
    eot: int
    train_shards: list[Path]
    val_shards: list[Path]
    byte_lengths: np.ndarray  # int64 per id, 0 for special tokens
    manifest: dict[str, Any]

    def _split(self, split: str) -> dict[str, Any]:
        if split not in SPLITS:
            raise ToklabError(f"unknown split '{split}' (use train or val)")
        return self.manifest["splits"][split]

    def tokens(self, split: str) -> int:
        """Tokens in a split, the <|endoftext|> separators included."""
        return int(self._split(split)["tokens"])

    def bytes(self, split: str) -> int:
        """UTF-8 bytes of the text of a split's documents."""
        return int(self._split(split)["bytes"])

    def shards(self, split: str) -> list[Path]:
        self._split(split)
        return self.train_shards if split == "train" else self.val_shards


def token_data_key(corpus: "Corpus", segmenter: "Segmenter") -> str:
    """Cache folder name: what the corpus reads, its split, and everything that decides the ids."""
    lengths = hashlib.blake2b(np.ascontiguousarray(segmenter.token_byte_lengths(), dtype="<i8").tobytes(), digest_size=8).hexdigest()
    payload = json.dumps(
        [FORMAT, corpus.fingerprint(), corpus.options.val_fraction, segmenter.spec, segmenter.vocab_size, segmenter.corpus_fingerprint, lengths],
        default=str,
    )
    digest = hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", segmenter.spec)[:60]
    return f"{safe}-{digest}"


class _ShardWriter:
    """Collects one split's tokens and writes a shard each time `shard_tokens` have gathered, so
    memory holds at most about one shard."""

    def __init__(self, directory: Path, split: str, shard_tokens: int, vocab_size: int) -> None:
        self.directory, self.split = directory, split
        self.shard_tokens, self.vocab_size = shard_tokens, vocab_size
        self.dtype = DTYPES[_version_for(vocab_size)]
        self.pending: list[np.ndarray] = []
        self.n_pending = 0
        self.names: list[str] = []
        self.tokens = 0

    def add(self, tokens: np.ndarray) -> None:
        self.pending.append(tokens.astype(self.dtype, copy=False))
        self.n_pending += tokens.size
        self.tokens += tokens.size
        if self.n_pending < self.shard_tokens:
            return
        flat = np.concatenate(self.pending)
        start = 0
        while flat.size - start >= self.shard_tokens:
            self._write(flat[start : start + self.shard_tokens])
            start += self.shard_tokens
        rest = flat[start:].copy()  # a copy lets the big array go
        self.pending, self.n_pending = ([rest] if rest.size else []), rest.size

    def close(self) -> list[str]:
        if self.n_pending:
            self._write(np.concatenate(self.pending))
            self.pending, self.n_pending = [], 0
        return self.names

    def _write(self, tokens: np.ndarray) -> None:
        name = f"{self.split}_{len(self.names):05d}.bin"
        write_shard(self.directory / name, tokens, self.vocab_size)
        self.names.append(name)


def _batches(texts: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in texts:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _encode_split(corpus: "Corpus", segmenter: "Segmenter", split: str, writer: _ShardWriter, eot: int, batch_docs: int, advance: Callable[[int], Any]) -> dict[str, Any]:
    """Segment one split into `writer`; returns its documents, tokens and bytes."""
    documents = n_bytes = 0
    writer.add(np.array([eot], dtype=np.int64))  # the first document gets the same context start as the rest
    docs = corpus.train() if split == "train" else corpus.val()
    for batch in _batches(docs, batch_docs):
        encoded = segmenter.encode_batch([d.text for d in batch])
        lengths = [len(ids) for ids in encoded]
        flat = np.empty(sum(lengths) + len(encoded), dtype=np.int64)
        pos = 0
        for ids, n in zip(encoded, lengths):
            flat[pos : pos + n] = ids
            flat[pos + n] = eot
            pos += n + 1
        if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= writer.vocab_size):
            raise ValueError(f"segmenter {segmenter.spec} produced ids outside [0, {writer.vocab_size})")
        writer.add(flat)
        for d in batch:
            size = d.n_bytes
            n_bytes += size
            advance(size)
        documents += len(batch)
    return {"documents": documents, "tokens": writer.tokens, "bytes": n_bytes}


def build_token_data(
    corpus: "Corpus",
    segmenter: "Segmenter",
    *,
    shard_tokens: int = 100_000_000,
    cache: bool = True,
    progress: bool = False,
    batch_docs: int = 512,
) -> TokenData:
    """Segment the corpus's train and val splits into shards under the cache folder, or return the
    shards a previous call wrote for the same corpus and segmenter (`cache=False` rebuilds them).

    Cached data is reused whatever `shard_tokens` it was written with: the tokens are the same.
    """
    if shard_tokens < 1 or batch_docs < 1:
        raise ToklabError(f"shard_tokens and batch_docs must be positive, got {shard_tokens} and {batch_docs}")
    eot = eot_id(segmenter)
    vocab_size = segmenter.vocab_size
    val_fraction = corpus.options.val_fraction
    if val_fraction <= 0:
        raise ToklabError("pretraining needs a validation split, but --val-fraction is 0; raise --val-fraction (e.g. 0.05)")
    target = cache_dir() / "tokens" / token_data_key(corpus, segmenter)
    if cache and (target / MANIFEST).is_file():
        try:
            return load_token_data(target)
        except ToklabError:
            pass  # a damaged cache is rebuilt below
    lengths = np.asarray(segmenter.token_byte_lengths(), dtype=np.int64)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "segmenter": segmenter.spec,
        "segmenter_corpus_fingerprint": segmenter.corpus_fingerprint,
        "vocab_size": vocab_size,
        "eot": eot,
        "dtype": DTYPES[_version_for(vocab_size)].name,
        "corpus": corpus.spec,
        "corpus_fingerprint": corpus.fingerprint(),
        "val_fraction": val_fraction,
        "shard_tokens": shard_tokens,
        "splits": {},
    }
    with atomic_dir(target) as tmp, document_progress(f"tokenising with {segmenter.spec}", progress) as advance:
        # val first: it is small, so an empty one is reported before the long train pass.
        for split in ("val", "train"):
            writer = _ShardWriter(tmp, split, shard_tokens, vocab_size)
            counts = _encode_split(corpus, segmenter, split, writer, eot, batch_docs, advance)
            if counts["documents"] == 0:
                hint = "raise --val-fraction or read more documents" if split == "val" else "read more documents or lower --val-fraction"
                raise ToklabError(f"the {split} split of {corpus.spec} has no documents; {hint}")
            manifest["splits"][split] = {**counts, "shards": writer.close()}
        np.save(tmp / BYTE_LENGTHS, lengths)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return load_token_data(target)


def load_token_data(directory: str | os.PathLike) -> TokenData:
    """Token data written by `build_token_data`, checked against its manifest."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        lengths = np.load(directory / BYTE_LENGTHS)
    except FileNotFoundError as exc:
        raise ToklabError(f"{directory} is not a toklab token folder (no {Path(exc.filename).name})") from None
    except (OSError, ValueError) as exc:
        raise ToklabError(f"cannot read token folder {directory}: {exc}") from None
    try:
        vocab_size, eot, splits = int(manifest["vocab_size"]), int(manifest["eot"]), manifest["splits"]
        shards = {s: [directory / name for name in splits[s]["shards"]] for s in SPLITS}
        expected = {s: int(splits[s]["tokens"]) for s in SPLITS}
    except (KeyError, TypeError, ValueError) as exc:
        raise ToklabError(f"{directory / MANIFEST} is incomplete ({exc!r}); delete the folder to rebuild it") from None
    if lengths.shape != (vocab_size,):
        raise ToklabError(f"{directory / BYTE_LENGTHS} holds {lengths.shape[0]} lengths for a vocabulary of {vocab_size}")
    version = _version_for(vocab_size)
    for split in SPLITS:
        found = 0
        for path in shards[split]:
            _, shard_version, n_tokens = read_header(path)
            if shard_version != version:
                raise ToklabError(f"{path} has version {shard_version}, but a vocabulary of {vocab_size} needs {version}")
            found += n_tokens
        if found != expected[split]:
            raise ToklabError(f"{directory}: the {split} shards hold {found} tokens, the manifest says {expected[split]}")
    return TokenData(directory, vocab_size, eot, shards["train"], shards["val"], lengths.astype(np.int64, copy=False), manifest)


# --- reading batches ---------------------------------------------------------------------------


class TokenStream:
    """Deterministic batches of (x, y) windows over a split's shards, with a resumable position.

    Walks the shards in order, taking batch_size*context+1 contiguous tokens at a time and moving
    on by batch_size*context; a window never spans two shards. After the last shard it wraps to
    the first and counts an epoch. The first epoch starts at token 0; each later one starts at an
    offset below `context` drawn from (seed, epoch), so repeated passes cut the text elsewhere.
    """

    def __init__(self, shards: list[Path], batch_size: int, context: int, *, seed: int = 0) -> None:
        if batch_size < 1 or context < 1:
            raise ToklabError(f"batch size and context must be positive, got {batch_size} and {context}")
        if not shards:
            raise ToklabError("no token shards to read")
        self.shards = [Path(p) for p in shards]
        self.batch_size, self.context, self.seed = batch_size, context, seed
        self._data = [read_shard(p) for p in self.shards]
        self.need = batch_size * context + 1
        total = sum(d.size for d in self._data)
        if total < self.need:
            raise ToklabError(
                f"the split holds {total:,} tokens, but a batch of {batch_size} x {context} needs {self.need:,}; "
                "lower the batch size or context, or read more documents"
            )
        largest = max(d.size for d in self._data)
        if largest < self.need:
            raise ToklabError(f"no shard holds a whole batch ({self.need:,} tokens; the largest has {largest:,}); rebuild with larger shards")
        self.shard, self.position, self.epoch = 0, 0, 0

    def _offset(self, epoch: int) -> int:
        if epoch == 0:
            return 0
        return int(np.random.default_rng([self.seed, epoch]).integers(self.context))

    def _start(self, shard: int, epoch: int) -> int:
        # Clamped so that every shard long enough for one batch yields one in every epoch.
        return min(self._offset(epoch), self._data[shard].size - self.need)

    def _settle(self) -> None:
        """Move to the next place a whole batch fits (the next shard, or the next epoch)."""
        while self.position + self.need > self._data[self.shard].size:
            self.shard += 1
            if self.shard == len(self._data):
                self.shard, self.epoch = 0, self.epoch + 1
            if self._data[self.shard].size >= self.need:
                self.position = self._start(self.shard, self.epoch)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """int64 (x, y) of shape [batch_size, context]; y is x shifted by one token."""
        self._settle()
        window = np.asarray(self._data[self.shard][self.position : self.position + self.need], dtype=np.int64)
        self.position += self.need - 1
        tokens = torch.from_numpy(window)
        return tokens[:-1].view(self.batch_size, self.context), tokens[1:].view(self.batch_size, self.context)

    def state_dict(self) -> dict[str, int]:
        return {"shard": self.shard, "position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        shard, position, epoch = int(state["shard"]), int(state["position"]), int(state["epoch"])
        if not (0 <= shard < len(self._data)) or position < 0 or epoch < 0:
            raise ToklabError(f"cannot resume the token stream at shard {shard}, position {position}: it has {len(self._data)} shards")
        self.shard, self.position, self.epoch = shard, position, epoch


def val_windows(
    shards: list[Path], context: int, max_tokens: int | None = None, *, batch_size: int = VAL_BATCH
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation set: consecutive non-overlapping windows from the start of each shard,
    in batches (x, y) of shape [n <= batch_size, context], covering at most `max_tokens` targets."""
    if context < 1 or batch_size < 1:
        raise ToklabError(f"context and batch size must be positive, got {context} and {batch_size}")
    if max_tokens is not None and max_tokens < context:
        raise ToklabError(f"max_tokens {max_tokens} is less than one window of {context} tokens")
    data = [read_shard(p) for p in shards]
    if not any(d.size > context for d in data):
        total = sum(d.size for d in data)
        raise ToklabError(f"the validation split holds {total:,} tokens; one window of context {context} needs {context + 1} in one shard")
    left = None if max_tokens is None else max_tokens // context  # windows still to yield
    for tokens in data:
        windows = (tokens.size - 1) // context
        start = 0
        while windows > 0 and (left is None or left > 0):
            n = min(batch_size, windows, left if left is not None else windows)
            slab = torch.from_numpy(np.asarray(tokens[start : start + n * context + 1], dtype=np.int64))
            yield slab[:-1].view(n, context), slab[1:].view(n, context)
            start += n * context
            windows -= n
            if left is not None:
                left -= n


def target_bytes(y: torch.Tensor, byte_lengths: np.ndarray) -> int:
    """The bytes of text the target ids stand for (special tokens count 0)."""
    return int(np.asarray(byte_lengths)[y.detach().cpu().numpy()].sum())
