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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np
import torch

from toklab.errors import ToklabError
from toklab.files import atomic_dir, cache_dir, cache_key, temp_name
from toklab.progress import document_progress
from toklab.segmenters.base import EOT

if TYPE_CHECKING:
    import pandas as pd

    from toklab.corpus import Corpus
    from toklab.segmenters.base import Segmenter

MAGIC = 20240520
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
DTYPES = {1: np.dtype("<u2"), 2: np.dtype("<u4")}  # version -> token dtype
MANIFEST = "manifest.json"
BYTE_LENGTHS = "byte_lengths.npy"
VAL_INDEX = "val_documents.parquet"  # one row per validation document: id, source, bytes, tokens, start
FORMAT = 2  # bump when the folder layout changes, so old caches are not reused
SPLITS = ("train", "val")
EVAL_BATCH_WINDOWS = 16  # full-context windows per evaluation batch
PIECE_FLUSH_TOKENS = 1 << 22  # ids of a batch gathered before they go to the shard writer
EVAL_BATCH_TOKENS = 8192  # at least this many tokens per evaluation batch, so short contexts batch well
EVAL_LOGITS = 2**26  # at most this many logits per evaluation batch (256 MB in float32): large vocabularies take fewer tokens
SCORING_SALT = "toklab-scoring"  # the hash that orders validation documents for a byte-capped sample


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

    def bytes_per_token(self, split: str = "train") -> float:
        """UTF-8 bytes per token of a split, the <|endoftext|> between documents counted as a token."""
        return self.bytes(split) / max(self.tokens(split), 1)

    def positions_per_patch(self, split: str = "train") -> float:
        """For flagged-byte data (toklab.segmenters.patchers): input positions per patch of a split
        (end-of-text positions count, as the model computes them)."""
        return self._patches(split)["positions_per_patch"]

    def patch_length_stats(self, split: str = "train") -> dict[str, float]:
        """For flagged-byte data: the byte lengths of a split's patches (end-of-text patches, which
        hold no byte, left out): mean, median, 90th percentile and max."""
        return dict(self._patches(split)["lengths"])

    def _patches(self, split: str, flag: int = 257) -> dict[str, Any]:
        """One pass over a split's shards for both figures above, kept for this instance (an id at or
        above `flag` starts a patch)."""
        cache = self.__dict__.setdefault("_patch_cache", {})
        if split in cache:
            return cache[split]
        positions = starts = 0
        lengths = []
        for path in self.shards(split):
            ids = read_shard(path)
            begins = np.flatnonzero(ids >= flag)
            positions += len(ids)
            starts += len(begins)
            size = np.append(begins[1:], len(ids)) - begins  # a patch cut by the shard's end is counted as it stands
            lengths.append(size[self.byte_lengths[ids[begins]] > 0])
        every = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        stats = {"mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0.0}
        if len(every):
            stats = {"mean": float(every.mean()), "median": float(np.median(every)), "p90": float(np.percentile(every, 90)), "max": float(every.max())}
        cache[split] = {"positions_per_patch": positions / max(starts, 1), "lengths": stats}
        return cache[split]

    def val_documents(self) -> "pd.DataFrame":
        """One row per validation document in split order: id, source, bytes, tokens (without the
        <|endoftext|> after it) and start (the position of its first token in the split's stream)."""
        import pandas as pd

        try:
            return pd.read_parquet(self.directory / VAL_INDEX)
        except (OSError, ValueError) as exc:
            raise ToklabError(f"cannot read {self.directory / VAL_INDEX}: {exc}; delete the folder to rebuild it") from None


def token_data_key(corpus: "Corpus", segmenter: "Segmenter") -> str:
    """Cache folder name: what the corpus reads, its split, and everything that decides the ids."""
    lengths = hashlib.blake2b(np.ascontiguousarray(segmenter.token_byte_lengths(), dtype="<i8").tobytes(), digest_size=8).hexdigest()
    payload = json.dumps(
        [FORMAT, corpus.fingerprint(), corpus.options.val_fraction, segmenter.spec, segmenter.vocab_size, segmenter.corpus_fingerprint, lengths],
        default=str,
    )
    return cache_key(segmenter.spec, payload)


class ShardWriter:
    """Collects one split's tokens and writes a shard each time `shard_tokens` have gathered, so
    memory holds at most about one shard. Shards are named `<prefix>_<n>.bin` (prefix: the split,
    or e.g. `train_00003` for one task of a pipeline)."""

    def __init__(self, directory: Path, split: str, shard_tokens: int, vocab_size: int, prefix: str | None = None) -> None:
        self.directory, self.split = directory, split
        self.prefix = split if prefix is None else prefix
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
        name = f"{self.prefix}_{len(self.names):05d}.bin"
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


def _add_checked(writer: ShardWriter, parts: list[np.ndarray], segmenter: "Segmenter") -> None:
    flat = np.concatenate(parts)
    if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= writer.vocab_size):
        raise ValueError(f"segmenter {segmenter.spec} produced ids outside [0, {writer.vocab_size})")
    writer.add(flat)


def _encode_split(
    corpus: "Corpus", segmenter: "Segmenter", split: str, writer: ShardWriter, eot: int, batch_docs: int, advance: Callable[[int], Any], lengths: np.ndarray
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Segment one split into `writer`; returns its documents, tokens and bytes, and for the
    validation split one index row per document (where its tokens are, for whole-document scoring)."""
    documents = n_bytes = 0
    index: list[dict[str, Any]] = []
    writer.add(np.array([eot], dtype=np.int64))  # the first document gets the same context start as the rest
    docs = corpus.train() if split == "train" else corpus.val()
    eot_array = np.array([eot], dtype=np.int64)
    for batch in _batches(docs, batch_docs):
        tokens = [0] * len(batch)
        covered = [0] * len(batch)
        starts = [0] * len(batch)
        parts: list[np.ndarray] = []
        held = 0
        position = writer.tokens
        current = -1
        # Long documents come in exact pieces (Segmenter.encode_pieces): their ids go to the writer
        # as they come, never held as one list; the shards are the same as from whole-text ids.
        for i, _, ids in segmenter.encode_pieces([d.text for d in batch]):
            if i != current:
                if current >= 0:
                    parts.append(eot_array)
                    position += 1
                current, starts[i] = i, position
            piece = np.asarray(ids, dtype=np.int64)
            parts.append(piece)
            position += piece.size
            tokens[i] += piece.size
            if split == "val" and piece.size:
                covered[i] += int(lengths[piece].sum())
            held += piece.size
            if held >= PIECE_FLUSH_TOKENS:
                _add_checked(writer, parts, segmenter)
                parts, held = [], 0
        parts.append(eot_array)
        _add_checked(writer, parts, segmenter)
        for d, n, have, start in zip(batch, tokens, covered, starts):
            size = d.n_bytes
            if split == "val":
                check_byte_contract(segmenter, d.id, have, size)
                index.append({"id": d.id, "source": d.source, "bytes": size, "tokens": n, "start": start})
            n_bytes += size
            advance(size)
        documents += len(batch)
    return {"documents": documents, "tokens": writer.tokens, "bytes": n_bytes}, index


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
            writer = ShardWriter(tmp, split, shard_tokens, vocab_size)
            counts, index = _encode_split(corpus, segmenter, split, writer, eot, batch_docs, advance, lengths)
            if counts["documents"] == 0:
                hint = "raise --val-fraction or read more documents" if split == "val" else "read more documents or lower --val-fraction"
                raise ToklabError(f"the {split} split of {corpus.spec} has no documents; {hint}")
            manifest["splits"][split] = {**counts, "shards": writer.close()}
            if split == "val":
                write_val_index(tmp / VAL_INDEX, index)
        stats = getattr(corpus, "stats", None)  # the last pass read every record: its notes cover both splits
        manifest["read_notes"] = stats.notes() if stats is not None else []
        np.save(tmp / BYTE_LENGTHS, lengths)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return load_token_data(target)


def check_byte_contract(segmenter: "Segmenter", doc_id: str, covered: int, size: int) -> None:
    """Bits-per-byte divides by a document's bytes, so its ids must stand for exactly them."""
    if covered != size:
        raise ToklabError(f"segmenter {segmenter.spec} breaks the byte-length contract on document {doc_id!r}: its ids stand for {covered} bytes, the text has {size}")


def write_val_index(path: Path, index: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("source", pa.string()), ("bytes", pa.int64()), ("tokens", pa.int64()), ("start", pa.int64())])
    pq.write_table(pa.Table.from_pylist(index, schema=schema), path)


def load_token_data(directory: str | os.PathLike) -> TokenData:
    """Token data written by `build_token_data`, checked against its manifest."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        lengths = np.load(directory / BYTE_LENGTHS)
        if not (directory / VAL_INDEX).is_file():
            raise FileNotFoundError(2, "missing", str(directory / VAL_INDEX))
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


# --- training batches --------------------------------------------------------------------------


class TokenStream:
    """Shuffled training windows over a split's shards: deterministic per seed, resumable, and
    counting exactly how much text it has handed out.

    Each shard is cut into windows of context+1 tokens starting at 0, context, 2*context, ...
    (a window's last target is the next window's first input); a window never spans two shards,
    and fewer than context tokens at a shard's end are never used. Every epoch visits every window
    once, in an order drawn from (seed, epoch); a batch is the next batch_size windows, so one may
    straddle two epochs. The windows are the same in every epoch, so the text seen so far is
    known exactly: `bytes_seen` counts repeats, `unique_bytes` does not.

    Under DDP (`world_size` > 1) each call hands out the next `world_size` x `batch_size` windows
    of the same stream, and rank r takes the r-th block of `batch_size`: the micro-batch of rank r
    at micro-step m of optimiser step s (a steps of accumulation) is global micro-batch
    s·a·w + m·w + r, a pure function of those numbers. The ranks' windows are disjoint and together
    are exactly the windows one process reads for the same steps. Every rank counts the bytes of
    all the windows, so the position and byte counts are the same on every rank.
    """

    def __init__(
        self, shards: list[Path], batch_size: int, context: int, *, seed: int = 0, byte_lengths: np.ndarray | None = None, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size < 1 or context < 1:
            raise ToklabError(f"batch size and context must be positive, got {batch_size} and {context}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ToklabError(f"rank {rank} is outside a world of {world_size} processes")
        self.rank, self.world_size = rank, world_size
        if not shards:
            raise ToklabError("no token shards to read")
        self.shards = [Path(p) for p in shards]
        self.batch_size, self.context, self.seed = batch_size, context, seed
        self.byte_lengths = None if byte_lengths is None else np.asarray(byte_lengths, dtype=np.int64)
        self._data = [read_shard(p) for p in self.shards]
        per_shard = np.array([max(d.size - 1, 0) // context for d in self._data], dtype=np.int64)
        self.windows_per_epoch = int(per_shard.sum())
        total = sum(d.size for d in self._data)
        if self.windows_per_epoch < batch_size * world_size:
            needs = f"a batch needs {batch_size}" if world_size == 1 else f"a batch of {batch_size} on each of {world_size} processes needs {batch_size * world_size}"
            raise ToklabError(
                f"the split holds {total:,} tokens, {self.windows_per_epoch:,} windows of context {context}, but {needs}; "
                "lower the batch size or context, or read more documents"
            )
        self._first_window = np.concatenate([[0], np.cumsum(per_shard)])  # global window index where each shard starts
        self.tokens_per_epoch = self.windows_per_epoch * context  # targets per epoch
        self.windows_seen = 0
        self.bytes_seen = 0  # target bytes handed out, repeats included
        self.unique_bytes = 0  # target bytes of distinct windows handed out
        self._order: np.ndarray | None = None
        self._order_epoch = -1

    @property
    def epoch(self) -> int:
        return self.windows_seen // self.windows_per_epoch

    @property
    def epochs(self) -> float:
        """Passes over the split's windows so far, fractional."""
        return self.windows_seen / self.windows_per_epoch

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._order_epoch != epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.windows_per_epoch)
            self._order_epoch = epoch
        return self._order  # type: ignore[return-value]

    def _window(self, index: int) -> np.ndarray:
        shard = int(np.searchsorted(self._first_window, index, side="right")) - 1
        start = (index - int(self._first_window[shard])) * self.context
        return np.asarray(self._data[shard][start : start + self.context + 1], dtype=np.int64)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """int64 (x, y) of shape [batch_size, context]; y is x shifted by one token (this rank's share)."""
        rows = np.empty((self.batch_size, self.context + 1), dtype=np.int64)
        mine = self.rank * self.batch_size
        for i in range(self.batch_size * self.world_size):
            epoch, k = divmod(self.windows_seen, self.windows_per_epoch)
            ours = mine <= i < mine + self.batch_size
            if ours or self.byte_lengths is not None:  # another rank's window: only its bytes are counted
                row = self._window(int(self._permutation(epoch)[k]))
                if ours:
                    rows[i - mine] = row
            self.windows_seen += 1
            if self.byte_lengths is not None:
                size = int(self.byte_lengths[row[1:]].sum())
                self.bytes_seen += size
                if epoch == 0:
                    self.unique_bytes += size
        tokens = torch.from_numpy(rows)
        return tokens[:, :-1], tokens[:, 1:]

    def state_dict(self) -> dict[str, int]:
        return {"windows_seen": self.windows_seen, "bytes_seen": self.bytes_seen, "unique_bytes": self.unique_bytes, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        try:
            seen, bytes_seen, unique = int(state["windows_seen"]), int(state["bytes_seen"]), int(state["unique_bytes"])
        except (KeyError, TypeError, ValueError):
            raise ToklabError("this checkpoint's data position was written by an older toklab; start the run again with --overwrite") from None
        if seen < 0 or bytes_seen < 0 or unique < 0:
            raise ToklabError(f"cannot resume the token stream at window {seen}")
        self.windows_seen, self.bytes_seen, self.unique_bytes = seen, bytes_seen, unique


# --- validation: whole documents ------------------------------------------------------------------


def scoring_order(ids: Iterable[str]) -> np.ndarray:
    """Validation documents ordered by a hash of their id alone: the same order for every
    segmenter, so a sample capped in bytes picks the same documents for all of them."""
    from toklab.corpus.document import unit_hash

    keys = np.array([unit_hash(str(i), SCORING_SALT) for i in ids], dtype=np.float64)
    return np.argsort(keys, kind="stable")


def byte_capped(order: np.ndarray, doc_bytes: np.ndarray, max_bytes: int | None) -> np.ndarray:
    """The longest prefix of `order` whose documents hold at most `max_bytes` bytes (at least one
    document); every document when `max_bytes` is None."""
    if max_bytes is None:
        return order
    if max_bytes < 1:
        raise ToklabError(f"the validation byte cap must be positive, got {max_bytes}")
    total = np.cumsum(np.asarray(doc_bytes, dtype=np.int64)[order])
    return order[: max(1, int(np.searchsorted(total, max_bytes, side="right")))]


@dataclass
class Scores:
    """One evaluation: per-document losses and sizes over the documents scored."""

    doc: np.ndarray  # indices into the validation index
    loss_nats: np.ndarray  # float64 per document: its tokens and the <|endoftext|> after it
    tokens: np.ndarray  # targets per document (its tokens + 1)
    bytes: np.ndarray  # UTF-8 bytes per document

    @property
    def loss_sum(self) -> float:
        return float(self.loss_nats.sum())

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.sum())

    @property
    def n_bytes(self) -> int:
        return int(self.bytes.sum())


class ValidationSet:
    """The documents every run is scored on: whole validation documents, chosen by id hash and
    capped in bytes (or all of them), identical for every segmenter, seed and budget.

    A document is scored from its first token: the model reads <|endoftext|> and the document's
    tokens and predicts each token and the <|endoftext|> after it, so the targets stand for exactly
    the document's bytes. A document longer than the context is scored in consecutive windows of
    `context` targets; each later window starts afresh, with no context from before its start.
    Windows are sorted by length and batched, so short documents cost little padding.
    """

    def __init__(self, data: TokenData, context: int, max_bytes: int | None = None, *, batch_windows: int = EVAL_BATCH_WINDOWS) -> None:
        if context < 1:
            raise ToklabError(f"context must be positive, got {context}")
        index = data.val_documents()
        self.index = index
        self.context = context
        self.order = scoring_order(index["id"])
        self.doc_bytes = index["bytes"].to_numpy(np.int64)
        self.doc_tokens = index["tokens"].to_numpy(np.int64) + 1  # the <|endoftext|> after each is a target too
        self.selected = byte_capped(self.order, self.doc_bytes, max_bytes)
        self.eot, self.batch_windows, self.vocab_size = data.eot, batch_windows, data.vocab_size
        self._stream, self._starts = self._gather(data, index["start"].to_numpy(np.int64))

    def _gather(self, data: TokenData, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The selected documents' tokens, each with the <|endoftext|> before and after it, in one
        compact array (a large split is never read whole), and where each document starts in it."""
        shards = [read_shard(p) for p in data.val_shards]
        offsets = np.concatenate([[0], np.cumsum([s.size for s in shards])])

        def read(a: int, b: int) -> np.ndarray:  # stream[a:b] across shard boundaries
            parts = []
            for k, shard in enumerate(shards):
                lo, hi = max(a, int(offsets[k])), min(b, int(offsets[k + 1]))
                if lo < hi:
                    parts.append(np.asarray(shard[lo - offsets[k] : hi - offsets[k]], dtype=np.int64))
            return np.concatenate(parts) if parts else np.zeros(0, np.int64)

        local = np.full(len(starts), -1, dtype=np.int64)
        pieces, at = [], 0
        for d in np.sort(self.selected).tolist():
            piece = read(int(starts[d]) - 1, int(starts[d]) + int(self.doc_tokens[d]))
            pieces.append(piece)
            local[d] = at + 1
            at += piece.size
        return (np.concatenate(pieces) if pieces else np.zeros(0, np.int64)), local

    def subset(self, max_bytes: int | None) -> np.ndarray:
        """The documents of a smaller byte cap: a prefix of this set in the same hash order."""
        return byte_capped(self.selected, self.doc_bytes, max_bytes)

    def batches(self, docs: np.ndarray | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]]:
        """(x, y, lengths, doc) batches over the windows of `docs` (default: the whole set): x and y
        are [n, L] int64, padded at the end with <|endoftext|> (y with -100, which the loss ignores)."""
        docs = self.selected if docs is None else docs
        windows: list[tuple[int, int, int]] = []  # (document, input start in the stream, length)
        T = self.context
        for d in docs.tolist():
            first, n = int(self._starts[d]) - 1, int(self.doc_tokens[d])  # the <|endoftext|> before it is the first input
            windows.extend((d, first + k, min(T, n - k)) for k in range(0, n, T))
        windows.sort(key=lambda w: -w[2])
        per_batch = max(1, self.batch_windows)
        # tokens per batch: enough that short windows batch well, few enough that the logits stay small
        budget = max(T, min(max(per_batch * T, EVAL_BATCH_TOKENS), EVAL_LOGITS // self.vocab_size))
        i = 0
        while i < len(windows):
            length = windows[i][2]
            n = max(1, min(len(windows) - i, budget // length))
            chunk = windows[i : i + n]
            x = np.full((n, length), self.eot, dtype=np.int64)
            y = np.full((n, length), -100, dtype=np.int64)
            for row, (_, start, size) in enumerate(chunk):
                x[row, :size] = self._stream[start : start + size]
                y[row, :size] = self._stream[start + 1 : start + 1 + size]
            yield torch.from_numpy(x), torch.from_numpy(y), np.array([w[2] for w in chunk]), np.array([w[0] for w in chunk])
            i += n

    def scores(self, losses: Iterable[tuple[np.ndarray, np.ndarray]], docs: np.ndarray | None = None) -> Scores:
        """Sum per-window losses into per-document losses; `losses` yields (row losses summed, doc) per batch."""
        docs = self.selected if docs is None else docs
        total = np.zeros(len(self.index), dtype=np.float64)
        for row_sums, row_docs in losses:
            np.add.at(total, row_docs, row_sums)
        return Scores(doc=docs, loss_nats=total[docs], tokens=self.doc_tokens[docs], bytes=self.doc_bytes[docs])


def target_bytes(y: torch.Tensor, byte_lengths: np.ndarray) -> int:
    """The bytes of text the target ids stand for (special tokens count 0)."""
    return int(np.asarray(byte_lengths)[y.detach().cpu().numpy()].sum())
