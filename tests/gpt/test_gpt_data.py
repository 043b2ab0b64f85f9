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
    ValidationSet,
    byte_capped,
    scoring_order,
    target_bytes,
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
    monkeypatch.setattr(seg, "encode_arrays", boom)  # bytes hands encode_pieces arrays
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
    monkeypatch.setattr(seg, "encode_arrays", fail_on_second)  # bytes hands encode_pieces arrays
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


def _window_starts(x: torch.Tensor) -> list[int]:
    # two_shards' values are their own global positions, so a row's first value is where it starts
    return [int(v) for v in x[:, 0]]


def test_an_epoch_visits_every_window_once_in_a_shuffled_order(two_shards):
    stream = TokenStream(two_shards, batch_size=2, context=8, seed=0)
    # windows of 9 tokens at 0, 8, ..., 88 in each 100-token shard: (100 - 1) // 8 = 12 per shard
    assert stream.windows_per_epoch == 24
    starts = []
    for _ in range(12):
        x, y = stream.next_batch()
        assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (2, 8)
        assert torch.equal(y[:, :-1], x[:, 1:])
        for row_x, row_y in zip(x, y):  # a window is 9 consecutive tokens of one shard
            first = int(row_x[0])
            assert row_x.tolist() == list(range(first, first + 8)) and row_y.tolist() == list(range(first + 1, first + 9))
        starts += _window_starts(x)
    expected = [base + 8 * k for base in (0, 100) for k in range(12)]
    assert sorted(starts) == expected and starts != expected  # every window once, not in file order
    assert stream.epoch == 1 and stream.epochs == 1.0


def test_shuffling_is_deterministic_per_seed_and_differs_between_seeds_and_epochs(two_shards):
    def order(seed: int, batches: int) -> list[int]:
        stream = TokenStream(two_shards, batch_size=2, context=8, seed=seed)
        return [s for _ in range(batches) for s in _window_starts(stream.next_batch()[0])]

    a, b, c = order(0, 24), order(0, 24), order(1, 24)
    assert a == b and a != c
    assert sorted(a[:24]) == sorted(a[24:]) and a[:24] != a[24:]  # the second epoch: the same windows, another order


def test_data_accounting_counts_repeats_and_distinct_bytes_exactly(two_shards):
    # every id stands for 2 bytes except 5 (0 bytes, like <|endoftext|>)
    lengths = np.full(257, 2, dtype=np.int64)
    lengths[5] = 0
    stream = TokenStream(two_shards, batch_size=4, context=8, seed=3, byte_lengths=lengths)
    # one epoch: 24 windows of 8 targets; targets 1..96 and 101..196; 5 is among them once
    epoch_bytes = 2 * (24 * 8) - 2
    for _ in range(3):
        stream.next_batch()
    assert stream.epochs == 0.5 and stream.unique_bytes == stream.bytes_seen <= 12 * 16
    for _ in range(9):  # 1.5 epochs further (6 batches of 4 windows make an epoch): two full passes in all
        stream.next_batch()
    assert stream.epochs == 2.0
    assert stream.unique_bytes == epoch_bytes and stream.bytes_seen == 2 * epoch_bytes


@pytest.mark.parametrize("steps", [0, 3, 12, 25])
def test_state_dict_resumes_to_the_identical_batch(two_shards, steps):
    lengths = np.ones(257, dtype=np.int64)
    first = TokenStream(two_shards, batch_size=2, context=8, seed=5, byte_lengths=lengths)
    for _ in range(steps):
        first.next_batch()
    state = first.state_dict()
    resumed = TokenStream(two_shards, batch_size=2, context=8, seed=5, byte_lengths=lengths)
    resumed.load_state_dict(json.loads(json.dumps(state)))  # survives a checkpoint file
    for _ in range(15):
        x1, y1 = first.next_batch()
        x2, y2 = resumed.next_batch()
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert first.state_dict() == resumed.state_dict()
    with pytest.raises(ToklabError, match="older toklab"):
        resumed.load_state_dict({"shard": 0, "position": 0, "epoch": 0})


def test_a_short_split_is_a_user_error(tmp_path):
    shard = write_shard(tmp_path / "s.bin", np.arange(10), 257)
    with pytest.raises(ToklabError, match=r"10 tokens.*1 windows.*needs 2"):
        TokenStream([shard], batch_size=2, context=8)
    stream = TokenStream([shard], batch_size=1, context=9)  # exactly 10 tokens is one window
    assert stream.next_batch()[1].tolist() == [list(range(1, 10))]
    assert stream.next_batch()[0].tolist() == [list(range(9))]  # and every batch after repeats it


def test_stream_over_built_data(corpus):
    data = build_token_data(corpus, get_segmenter("bytes"))
    tokens = shard_tokens_of(data.train_shards)
    stream = TokenStream(data.train_shards, batch_size=4, context=16, byte_lengths=data.byte_lengths)
    seen = 0
    for _ in range(2):
        x, y = stream.next_batch()
        for row_x, row_y in zip(x.tolist(), y.tolist()):
            assert row_x[1:] == row_y[:-1]
            assert any(tokens[i : i + 17] == row_x + row_y[-1:] for i in range(0, len(tokens) - 16, 16))  # a window at a multiple of the context
            seen += sum(0 if t == data.eot else 1 for t in row_y)
    assert stream.bytes_seen == seen


# --- validation: whole documents ------------------------------------------------------------------


def test_the_val_index_locates_every_document(corpus):
    seg = get_segmenter("bytes")
    data = build_token_data(corpus, seg)
    index = data.val_documents()
    val = [r for r in RECORDS if split_of(r["id"], VAL_FRACTION) == "val"]
    assert index["id"].tolist() == [r["id"] for r in val]
    assert index["bytes"].tolist() == [len(r["text"].encode()) for r in val] == index["tokens"].tolist()
    stream = shard_tokens_of(data.val_shards)
    for row, r in zip(index.itertuples(), val):
        assert stream[row.start - 1] == stream[row.start + row.tokens] == data.eot
        assert bytes(stream[row.start : row.start + row.tokens]).decode() == r["text"]


def test_scoring_order_and_byte_cap_depend_on_ids_and_bytes_alone():
    ids = [f"d{i}" for i in range(50)]
    order = scoring_order(ids)
    assert sorted(order.tolist()) == list(range(50)) and order.tolist() != list(range(50))
    assert scoring_order(list(reversed(ids))).tolist() == [49 - i for i in order.tolist()]  # the same documents, whatever the file order
    sizes = np.array([10] * 50)
    assert byte_capped(order, sizes, 35).tolist() == order[:3].tolist()  # 30 bytes fit, 40 do not
    assert byte_capped(order, sizes, 5).tolist() == order[:1].tolist()  # never empty
    assert byte_capped(order, sizes, None).tolist() == order.tolist()


def _score_by_hand(data, context: int) -> tuple[list[int], int]:
    """Every document's targets and their count, from the raw stream and the index, without ValidationSet."""
    stream = shard_tokens_of(data.val_shards)
    targets = []
    for row in data.val_documents().itertuples():
        targets += stream[row.start : row.start + row.tokens + 1]  # its tokens and the <|endoftext|> after
    return targets, len(targets)


@pytest.mark.parametrize("context", [4, 16, 1000])
def test_validation_windows_cover_every_document_from_its_first_token(corpus, context):
    data = build_token_data(corpus, get_segmenter("bytes"))
    validation = ValidationSet(data, context)
    expected, n = _score_by_hand(data, context)
    index = data.val_documents()
    stream = shard_tokens_of(data.val_shards)
    by_doc: dict[int, list[list[int]]] = {}
    for x, y, lengths, doc in validation.batches():
        assert x.shape == y.shape and x.shape[1] <= context
        for row_x, row_y, length, d in zip(x.tolist(), y.tolist(), lengths.tolist(), doc.tolist()):
            assert row_y[length:] == [-100] * (len(row_y) - length)  # padding is ignored by the loss
            assert row_x[1:length] == row_y[: length - 1]  # the input is the target shifted by one
            by_doc.setdefault(d, []).append(row_y[:length])
    rebuilt = [t for d in range(len(index)) for piece in _ordered(by_doc[d], stream, index, d) for t in piece]
    assert rebuilt == expected and len(rebuilt) == n


def _ordered(pieces: list[list[int]], stream: list[int], index, d: int) -> list[list[int]]:
    """A document's windows in text order (batches come sorted by length)."""
    start, n = int(index["start"][d]), int(index["tokens"][d]) + 1
    targets = stream[start : start + n]
    out, at = [], 0
    remaining = list(pieces)
    while at < n:
        match = next(p for p in remaining if targets[at : at + len(p)] == p)
        remaining.remove(match)
        out.append(match)
        at += len(match)
    return out


def test_a_document_starts_with_its_end_of_text_and_later_windows_start_afresh(corpus):
    data = build_token_data(corpus, get_segmenter("bytes"))
    validation = ValidationSet(data, 8)
    index = data.val_documents()
    stream = shard_tokens_of(data.val_shards)
    d0 = 0
    start, n = int(index["start"][d0]), int(index["tokens"][d0]) + 1
    rows = [(x, y, l) for xb, yb, lb, db in validation.batches(np.array([d0])) for x, y, l, d in zip(xb.tolist(), yb.tolist(), lb.tolist(), db.tolist())]
    assert sum(l for _, _, l in rows) == n
    first = next(x for x, y, l in rows if y[:l] == stream[start : start + min(8, n)])
    assert first[: min(8, n)] == stream[start - 1 : start - 1 + min(8, n)] and first[0] == data.eot


def test_a_byte_capped_validation_set_is_the_same_documents_for_every_segmenter(corpus):
    sets = []
    for spec in ("bytes", "bpe:300"):
        seg = get_segmenter(spec, corpus)
        data = build_token_data(corpus, seg)
        validation = ValidationSet(data, 16, max_bytes=400)
        index = data.val_documents()
        chosen = index.iloc[validation.selected]
        sets.append((sorted(chosen["id"]), int(chosen["bytes"].sum())))
        assert sum(int(l.sum()) for _, _, l, _ in validation.batches()) == int(chosen["tokens"].sum()) + len(chosen)
    assert sets[0] == sets[1] and 0 < sets[0][1] <= 400
    all_bytes = sum(len(r["text"].encode()) for r in RECORDS if split_of(r["id"], VAL_FRACTION) == "val")
    assert sets[0][1] < all_bytes


def test_target_bytes_sums_the_byte_lengths_of_the_targets():
    lengths = get_segmenter("bytes").token_byte_lengths()
    y = torch.tensor([[1, 2, 256], [256, 65, 66]])
    assert target_bytes(y, lengths) == 4  # the two end-of-text tokens stand for no bytes
    assert target_bytes(y, np.arange(257, dtype=np.int64)) == 1 + 2 + 256 + 256 + 65 + 66
