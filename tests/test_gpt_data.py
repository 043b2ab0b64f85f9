"""Token shards for pretraining: the .bin format, building and caching a corpus, batches, validation windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import toklab
from toklab import ToklabError, get_segmenter, split_of
from toklab.files import cache_dir
from toklab.gpt.data import (
    HEADER_INTS,
    MAGIC,
    TokenStream,
    build_token_data,
    eot_id,
    load_token_data,
    read_header,
    read_shard,
    target_bytes,
    val_windows,
    write_shard,
)
from toklab.segmenters.bytes import ByteSegmenter

VAL_FRACTION = 0.25
RECORDS = [{"id": f"doc-{i}", "text": f"document {i}: héllo wörld, ünïcode ✓ " * (i % 3 + 1)} for i in range(40)]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def expected_stream(records: list[dict], split: str, encode, eot: int) -> list[int]:
    """EOT, then each document of `split` followed by EOT, computed from the records themselves."""
    out = [eot]
    for r in records:
        if split_of(r["id"], VAL_FRACTION) == split:
            out += list(encode(r["text"])) + [eot]
    return out


def shard_tokens_of(paths: list[Path]) -> list[int]:
    return [int(t) for p in paths for t in read_shard(p)]


@pytest.fixture
def corpus(tmp_path: Path):
    return toklab.open_corpus(str(write_jsonl(tmp_path / "docs.jsonl", RECORDS)), val_fraction=VAL_FRACTION)


def test_the_fixture_corpus_has_both_splits():
    parts = [split_of(r["id"], VAL_FRACTION) for r in RECORDS]
    assert 3 <= parts.count("val") <= 30 and parts.count("train") >= 10


# --- the shard format --------------------------------------------------------------------------


@pytest.mark.parametrize(("vocab", "dtype", "version"), [(257, np.uint16, 1), (100_000, np.uint32, 2)])
def test_shard_round_trip_and_exact_layout(tmp_path, vocab, dtype, version):
    tokens = np.array([0, 1, 255, vocab - 1, 7, vocab - 1, 3], dtype=np.int64)
    path = write_shard(tmp_path / "s.bin", tokens, vocab)
    assert path == tmp_path / "s.bin"
    assert path.stat().st_size == 1024 + np.dtype(dtype).itemsize * tokens.size
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    assert header[:3].tolist() == [20240520, version, 7] and not header[3:].any()
    assert read_header(path) == (MAGIC, version, 7)
    raw = np.fromfile(path, dtype=np.dtype(dtype).newbyteorder("<"), offset=1024)
    assert raw.tolist() == tokens.tolist()
    data = read_shard(path)
    assert data.dtype == dtype and data.tolist() == tokens.tolist()
    assert isinstance(data, np.memmap) and not data.flags.writeable
    assert [p.name for p in tmp_path.iterdir()] == ["s.bin"]  # no temporary left behind


def test_vocabulary_of_exactly_65536_still_fits_uint16(tmp_path):
    path = write_shard(tmp_path / "s.bin", np.array([65535]), 65536)
    assert read_header(path)[1] == 1 and read_shard(path).tolist() == [65535]


@pytest.mark.parametrize("bad", [257, -1])
def test_ids_outside_the_vocabulary_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        write_shard(tmp_path / "s.bin", np.array([1, bad, 2]), 257)
    assert list(tmp_path.iterdir()) == []


def test_truncated_wrong_magic_and_wrong_version_are_user_errors(tmp_path):
    path = write_shard(tmp_path / "s.bin", np.arange(10), 257)
    data = path.read_bytes()
    (tmp_path / "short.bin").write_bytes(data[:-1])
    with pytest.raises(ToklabError, match=r"short\.bin.*truncated"):
        read_header(tmp_path / "short.bin")
    with pytest.raises(ToklabError, match="short.bin"):
        read_shard(tmp_path / "short.bin")
    (tmp_path / "tiny.bin").write_bytes(data[:100])
    with pytest.raises(ToklabError, match="tiny.bin"):
        read_header(tmp_path / "tiny.bin")
    header = np.frombuffer(data[:1024], dtype="<i4").copy()
    header[0] = 20240519
    (tmp_path / "magic.bin").write_bytes(header.tobytes() + data[1024:])
    with pytest.raises(ToklabError, match=r"magic\.bin.*magic 20240519"):
        read_header(tmp_path / "magic.bin")
    header[:2] = (MAGIC, 3)
    (tmp_path / "version.bin").write_bytes(header.tobytes() + data[1024:])
    with pytest.raises(ToklabError, match=r"version\.bin.*version 3"):
        read_header(tmp_path / "version.bin")
    with pytest.raises(ToklabError, match="missing.bin"):
        read_header(tmp_path / "missing.bin")


def test_eot_id():
    assert eot_id(get_segmenter("bytes")) == 256

    class NoSpecials(ByteSegmenter):
        special_tokens = {}

    with pytest.raises(ToklabError, match="endoftext"):
        eot_id(NoSpecials())


# --- building token data -----------------------------------------------------------------------


def test_build_with_bytes_gives_eot_separated_documents(corpus):
    seg = get_segmenter("bytes")
    data = build_token_data(corpus, seg)
    encode = lambda text: text.encode("utf-8")  # noqa: E731
    train = expected_stream(RECORDS, "train", encode, 256)
    val = expected_stream(RECORDS, "val", encode, 256)
    assert [p.name for p in data.train_shards] == ["train_00000.bin"]
    assert [p.name for p in data.val_shards] == ["val_00000.bin"]
    assert shard_tokens_of(data.train_shards) == train
    assert shard_tokens_of(data.val_shards) == val
    assert read_shard(data.train_shards[0]).dtype == np.uint16
    # the corpus layer agrees on which documents are train
    assert [d.id for d in corpus.train()] == [r["id"] for r in RECORDS if split_of(r["id"], VAL_FRACTION) == "train"]

    for split, stream in (("train", train), ("val", val)):
        docs = [r for r in RECORDS if split_of(r["id"], VAL_FRACTION) == split]
        n_bytes = sum(len(r["text"].encode("utf-8")) for r in docs)
        assert n_bytes > sum(len(r["text"]) for r in docs)  # the non-ASCII text counts as bytes, not characters
        assert data.tokens(split) == len(stream) == n_bytes + len(docs) + 1
        assert data.bytes(split) == n_bytes
        assert data.manifest["splits"][split]["documents"] == len(docs)
    assert data.vocab_size == 257 and data.eot == 256
    assert data.byte_lengths.dtype == np.int64
    assert np.array_equal(data.byte_lengths, seg.token_byte_lengths())
    assert data.directory.parent == cache_dir() / "tokens"

    manifest = json.loads((data.directory / "manifest.json").read_text())
    assert manifest == data.manifest
    assert manifest["segmenter"] == "bytes" and manifest["corpus_fingerprint"] == corpus.fingerprint()
    assert manifest["val_fraction"] == VAL_FRACTION and manifest["vocab_size"] == 257 and manifest["eot"] == 256
    loaded = load_token_data(data.directory)
    assert loaded.train_shards == data.train_shards and loaded.manifest == data.manifest
    with pytest.raises(ToklabError, match="unknown split"):
        data.tokens("test")


def test_second_build_comes_from_the_cache(corpus, monkeypatch):
    seg = get_segmenter("bytes")
    first = build_token_data(corpus, seg)

    def boom(*args, **kwargs):
        raise AssertionError("encoded again")

    monkeypatch.setattr(seg, "encode_batch", boom)
    again = build_token_data(corpus, seg)
    assert again.directory == first.directory and again.manifest == first.manifest
    with pytest.raises(AssertionError, match="encoded again"):
        build_token_data(corpus, seg, cache=False)
    other = toklab.open_corpus(corpus.spec, val_fraction=0.3)  # another split is another key
    with pytest.raises(AssertionError, match="encoded again"):
        build_token_data(other, seg)
    assert load_token_data(first.directory).manifest == first.manifest  # the failed rebuild left the cache alone


def test_an_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    corpus = toklab.open_corpus(str(write_jsonl(tmp_path / "x.jsonl", RECORDS)), val_fraction=VAL_FRACTION)
    seg = get_segmenter("bytes")
    before = set((cache_dir() / "tokens").glob("*")) if (cache_dir() / "tokens").exists() else set()
    calls = []

    def fail_on_second(texts, workers=None):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return [list(t.encode()) for t in texts]

    monkeypatch.setattr(seg, "encode_batch", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        build_token_data(corpus, seg, batch_docs=4, shard_tokens=50)
    assert set((cache_dir() / "tokens").glob("*")) == before


def test_shards_split_the_same_stream(corpus):
    seg = get_segmenter("bytes")
    whole = build_token_data(corpus, seg)
    train, val = shard_tokens_of(whole.train_shards), shard_tokens_of(whole.val_shards)
    small = build_token_data(corpus, seg, shard_tokens=100, cache=False, batch_docs=3)
    assert len(small.train_shards) == -(-len(train) // 100) >= 3
    assert [p.name for p in small.train_shards[:3]] == ["train_00000.bin", "train_00001.bin", "train_00002.bin"]
    assert [read_header(p)[2] for p in small.train_shards[:-1]] == [100] * (len(small.train_shards) - 1)
    assert shard_tokens_of(small.train_shards) == train
    assert shard_tokens_of(small.val_shards) == val
    assert small.tokens("train") == len(train) and small.manifest["splits"]["train"]["shards"] == [p.name for p in small.train_shards]


def test_empty_splits_are_user_errors(tmp_path):
    seg = get_segmenter("bytes")
    ids = [f"doc-{i}" for i in range(200)]
    train_only = [i for i in ids if split_of(i, 0.01) == "train"][:3]
    val_only = [i for i in ids if split_of(i, 0.99) == "val"][:3]
    path = write_jsonl(tmp_path / "t.jsonl", [{"id": i, "text": "abc"} for i in train_only])
    with pytest.raises(ToklabError, match=r"val split.*--val-fraction"):
        build_token_data(toklab.open_corpus(str(path), val_fraction=0.01), seg)
    with pytest.raises(ToklabError, match="--val-fraction"):
        build_token_data(toklab.open_corpus(str(path), val_fraction=0.0), seg)
    path = write_jsonl(tmp_path / "v.jsonl", [{"id": i, "text": "abc"} for i in val_only])
    with pytest.raises(ToklabError, match=r"train split.*more documents"):
        build_token_data(toklab.open_corpus(str(path), val_fraction=0.99), seg)


def test_large_vocabulary_is_stored_as_uint32(corpus, shared_tiktoken):
    seg = get_segmenter("tiktoken:o200k_base")
    assert seg.vocab_size > 65_536
    data = build_token_data(corpus, seg)
    eot = seg.special_tokens["<|endoftext|>"]
    assert data.eot == eot > 65_535
    assert read_header(data.train_shards[0])[1] == 2
    assert data.train_shards[0].stat().st_size == 1024 + 4 * data.tokens("train")
    assert read_shard(data.train_shards[0]).dtype == np.uint32
    assert shard_tokens_of(data.train_shards) == expected_stream(RECORDS, "train", seg.encode, eot)
    assert shard_tokens_of(data.val_shards) == expected_stream(RECORDS, "val", seg.encode, eot)
    assert data.bytes("train") == sum(len(r["text"].encode()) for r in RECORDS if split_of(r["id"], VAL_FRACTION) == "train")


# --- batches -----------------------------------------------------------------------------------


@pytest.fixture
def two_shards(tmp_path: Path) -> list[Path]:
    # values tell where a token came from: shard 0 holds 0..99, shard 1 holds 100..199
    return [write_shard(tmp_path / "a.bin", np.arange(100), 257), write_shard(tmp_path / "b.bin", np.arange(100, 200), 257)]


def test_stream_walks_the_shards_in_contiguous_windows(two_shards):
    stream = TokenStream(two_shards, batch_size=2, context=8)
    # 17 tokens per batch, 16 further each time: starts 0, 16, ..., 80 fit in 100 tokens
    starts = [(0, s) for s in range(0, 81, 16)] + [(100, s) for s in range(0, 81, 16)]
    for base, start in starts:
        assert stream.state_dict()["epoch"] == 0
        x, y = stream.next_batch()
        assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (2, 8)
        window = torch.arange(base + start, base + start + 17)
        assert torch.equal(x, window[:-1].view(2, 8)) and torch.equal(y, window[1:].view(2, 8))
        assert torch.equal(y[:, :-1], x[:, 1:])
    x, y = stream.next_batch()  # wraps to shard 0 of the next epoch, at an offset below context
    state = stream.state_dict()
    assert state["epoch"] == 1 and state["shard"] == 0
    offset = int(x[0, 0])
    assert 0 <= offset < 8 and torch.equal(x.flatten(), torch.arange(offset, offset + 16))
    assert state["position"] == offset + 16


def test_windows_never_span_shards_and_the_seed_is_deterministic(two_shards):
    def run(seed: int) -> list[torch.Tensor]:
        stream = TokenStream(two_shards, batch_size=2, context=8, seed=seed)
        return [torch.cat(stream.next_batch()) for _ in range(60)]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))
    assert all(bool((t < 100).all()) or bool((t >= 100).all()) for t in a)


@pytest.mark.parametrize("steps", [0, 3, 12, 25])
def test_state_dict_resumes_to_the_identical_batch(two_shards, steps):
    first = TokenStream(two_shards, batch_size=2, context=8, seed=5)
    for _ in range(steps):
        first.next_batch()
    state = first.state_dict()
    resumed = TokenStream(two_shards, batch_size=2, context=8, seed=5)
    resumed.load_state_dict(json.loads(json.dumps(state)))  # survives a checkpoint file
    for _ in range(15):
        x1, y1 = first.next_batch()
        x2, y2 = resumed.next_batch()
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert first.state_dict() == resumed.state_dict()


def test_a_short_split_is_a_user_error(tmp_path):
    shard = write_shard(tmp_path / "s.bin", np.arange(10), 257)
    with pytest.raises(ToklabError, match=r"10 tokens.*17"):
        TokenStream([shard], batch_size=2, context=8)
    other = write_shard(tmp_path / "t.bin", np.arange(10), 257)
    with pytest.raises(ToklabError, match="no shard holds a whole batch"):
        TokenStream([shard, other], batch_size=2, context=8)
    stream = TokenStream([shard], batch_size=1, context=9)  # exactly 10 tokens is one batch
    assert stream.next_batch()[1].tolist() == [list(range(1, 10))]
    assert stream.next_batch()[0].tolist() == [list(range(9))]  # and every batch after wraps to it


def test_a_shard_of_exactly_one_batch_is_read_in_every_epoch(tmp_path):
    # later epochs start at an offset; a shard with no room for it must still give its one batch
    shards = [write_shard(tmp_path / "s.bin", np.arange(10), 257), write_shard(tmp_path / "t.bin", np.arange(100, 150), 257)]
    stream = TokenStream(shards, batch_size=1, context=9, seed=0)
    from_first = 0
    for _ in range(60):
        x, _ = stream.next_batch()
        if stream.state_dict()["shard"] == 0:
            from_first += 1
            assert x.tolist() == [list(range(9))]
    epoch = stream.state_dict()["epoch"]
    assert epoch >= 10 and from_first == epoch + 1  # shard 0 opens every epoch, this one included


def test_stream_over_built_data(corpus):
    data = build_token_data(corpus, get_segmenter("bytes"))
    tokens = shard_tokens_of(data.train_shards)
    stream = TokenStream(data.train_shards, batch_size=4, context=16)
    x, _ = stream.next_batch()
    x, y = stream.next_batch()
    assert x.flatten().tolist() == tokens[64:128] and y.flatten().tolist() == tokens[65:129]


# --- validation windows ------------------------------------------------------------------------


def test_val_windows_are_fixed_consecutive_windows(tmp_path):
    tokens = np.arange(300) % 257
    shards = [write_shard(tmp_path / "v0.bin", tokens, 257), write_shard(tmp_path / "v1.bin", tokens[:20], 257)]
    batches = list(val_windows(shards, context=8))
    assert [tuple(x.shape) for x, _ in batches] == [(16, 8), (16, 8), (5, 8), (2, 8)]  # 299 // 8 = 37, 19 // 8 = 2
    x = torch.cat([b[0] for b in batches[:3]])
    y = torch.cat([b[1] for b in batches[:3]])
    assert x.flatten().tolist() == tokens[: 37 * 8].tolist() and y.flatten().tolist() == tokens[1 : 37 * 8 + 1].tolist()
    assert batches[3][1].flatten().tolist() == tokens[1:17].tolist()
    again = list(val_windows(shards, context=8))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    capped = list(val_windows(shards, context=8, max_tokens=50))
    assert [tuple(x.shape) for x, _ in capped] == [(6, 8)]  # 6 windows hold 48 <= 50 targets
    assert sum(x.numel() for x, _ in val_windows(shards, context=8, max_tokens=10_000)) == 39 * 8
    with pytest.raises(ToklabError, match="context 8"):
        list(val_windows([write_shard(tmp_path / "s.bin", np.arange(8), 257)], context=8))
    with pytest.raises(ToklabError, match="max_tokens"):
        list(val_windows(shards, context=8, max_tokens=7))


def test_target_bytes_sums_the_byte_lengths_of_the_targets():
    lengths = get_segmenter("bytes").token_byte_lengths()
    y = torch.tensor([[1, 2, 256], [256, 65, 66]])
    assert target_bytes(y, lengths) == 4  # the two end-of-text tokens stand for no bytes
    assert target_bytes(y, np.arange(257, dtype=np.int64)) == 1 + 2 + 256 + 256 + 65 + 66
