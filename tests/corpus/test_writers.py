"""Shard writers: round trip through open_corpus, size caps, zstd, atomic renames, column changes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

import toklab
from toklab import Document, ToklabError
from toklab.corpus import JsonlZstShardWriter, ParquetShardWriter, shard_writer

FORMATS = {"parquet": (ParquetShardWriter, ".parquet"), "jsonl.zst": (JsonlZstShardWriter, ".jsonl.zst")}


@pytest.fixture(autouse=True)
def isolated_toklab_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("toklab-cache")
    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(cache))
    return cache


def rows(corpus) -> list[tuple]:
    return [(d.id, d.text, d.source, d.meta) for d in corpus]


def shard_rows(path: Path) -> list[dict]:
    """The raw records of one shard, read without toklab."""
    if path.name.endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    data = zstandard.ZstdDecompressor().stream_reader(path.read_bytes()).read()
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


DOCS = [
    Document(id="a", text="héllo wörld", source="web", meta={"lang": "de", "n": 1}),
    Document(id="b", text="second\nline", source="books", meta={"lang": "en", "n": 2}),
    Document(id="c", text="日本語のテキスト", source="web", meta={"lang": "ja", "n": 3}),
]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip_documents(tmp_path, fmt):
    out = tmp_path / "out"
    with shard_writer(out, fmt, prefix="rt") as writer:
        for doc in DOCS:
            writer.write(doc)
    cls, suffix = FORMATS[fmt]
    assert isinstance(writer, cls)
    assert writer.paths == [out / f"rt-00000{suffix}"]
    assert writer.records == 3
    assert rows(toklab.open_corpus(str(out))) == [(d.id, d.text, d.source, d.meta) for d in DOCS]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip_plain_dicts(tmp_path, fmt):
    out = tmp_path / "out"
    records = [
        {"id": "r1", "text": "first", "source": "s1", "url": "http://a"},
        {"id": "r2", "text": "second", "source": "s2", "url": "http://b"},
    ]
    writer = shard_writer(out, fmt, prefix="d")
    for record in records:
        writer.write(record)
    paths = writer.close()
    assert paths == writer.paths and len(paths) == 1
    assert rows(toklab.open_corpus(str(out))) == [("r1", "first", "s1", {"url": "http://a"}), ("r2", "second", "s2", {"url": "http://b"})]
    assert shard_rows(paths[0]) == records


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_small_size_cap_gives_several_numbered_shards(tmp_path, fmt):
    cls, suffix = FORMATS[fmt]
    out = tmp_path / "out"
    # each record is ~33 approximate bytes (id 2 + text 30 + source 1): two records fill a 50-byte shard
    docs = [Document(id=f"d{i}", text=f"{i}" * 30, source="s") for i in range(9)]
    writer = cls(out, prefix="part", max_shard_bytes=50)
    with writer:
        for doc in docs:
            writer.write(doc)
    names = [f"part-{i:05d}{suffix}" for i in range(5)]
    assert writer.paths == [out / n for n in names]
    assert sorted(p.name for p in out.iterdir()) == names
    assert writer.records == 9
    counts = [len(shard_rows(p)) for p in writer.paths]
    assert counts == [2, 2, 2, 2, 1]
    assert all(p.stat().st_size > 0 for p in writer.paths)
    assert [d.id for d in toklab.open_corpus(str(out))] == [d.id for d in docs]
    assert [d.text for d in toklab.open_corpus(str(out))] == [d.text for d in docs]


def test_start_index_numbers_shards_from_there(tmp_path):
    writer = ParquetShardWriter(tmp_path, prefix="x", max_shard_bytes=1, start_index=7)
    with writer:
        writer.write({"text": "a"})
        writer.write({"text": "b"})
    assert [p.name for p in writer.paths] == ["x-00007.parquet", "x-00008.parquet"]


def test_parquet_shards_are_zstd_compressed(tmp_path):
    writer = ParquetShardWriter(tmp_path, prefix="z", max_shard_bytes=80)  # ~46 bytes a record
    with writer:
        for i in range(4):
            writer.write(Document(id=f"{i}", text="compress me " * 3, source="s", meta={"k": i}))
    assert len(writer.paths) == 2
    for path in writer.paths:
        meta = pq.ParquetFile(path).metadata
        assert meta.num_rows == 2
        assert [meta.row_group(0).column(c).compression for c in range(meta.num_columns)] == ["ZSTD"] * 4


def test_jsonl_zst_shard_is_one_utf8_json_object_per_line(tmp_path):
    with JsonlZstShardWriter(tmp_path, prefix="j") as writer:
        writer.write(DOCS[0])
    data = zstandard.ZstdDecompressor().stream_reader((tmp_path / "j-00000.jsonl.zst").read_bytes()).read()
    assert data == (json.dumps(DOCS[0].to_record(), ensure_ascii=False) + "\n").encode("utf-8")


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_nothing_written_leaves_no_shard(tmp_path, fmt):
    out = tmp_path / "out"
    with shard_writer(out, fmt) as writer:
        pass
    assert writer.paths == [] and writer.records == 0
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_an_exception_mid_shard_keeps_completed_shards_and_drops_the_partial_one(tmp_path, fmt):
    cls, suffix = FORMATS[fmt]
    out = tmp_path / "out"
    docs = [Document(id=f"d{i}", text=f"{i}" * 30, source="s") for i in range(5)]
    writer = cls(out, prefix="p", max_shard_bytes=50)
    with pytest.raises(RuntimeError, match="boom"):
        with writer:
            for doc in docs:
                writer.write(doc)
            # two shards are complete; d4 sits in the third, which is still open
            assert not (out / f"p-00002{suffix}").exists()
            raise RuntimeError("boom")
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"p-00000{suffix}", f"p-00001{suffix}"]
    assert not [n for n in names if n.startswith(".")]
    assert writer.paths == [out / n for n in names]
    assert [d.id for d in toklab.open_corpus(str(out))] == ["d0", "d1", "d2", "d3"]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_an_exception_before_any_shard_completes_leaves_nothing(tmp_path, fmt):
    out = tmp_path / "out"
    with pytest.raises(KeyError):
        with shard_writer(out, fmt, prefix="p") as writer:
            writer.write({"text": "only"})
            raise KeyError("stop")
    assert list(out.iterdir()) == []
    assert writer.paths == []


def test_parquet_column_change_starts_a_new_shard(tmp_path):
    writer = ParquetShardWriter(tmp_path, prefix="c")
    with writer:
        writer.write(Document(id="1", text="one", source="s", meta={"lang": "en"}))
        writer.write(Document(id="2", text="two", source="s", meta={"lang": "fr"}))
        writer.write(Document(id="3", text="three", source="s", meta={"url": "http://x"}))
        writer.write({"id": "4", "text": "four", "source": "t"})
    assert [p.name for p in writer.paths] == ["c-00000.parquet", "c-00001.parquet", "c-00002.parquet"]
    assert [pq.read_schema(p).names for p in writer.paths] == [
        ["id", "text", "source", "lang"],
        ["id", "text", "source", "url"],
        ["id", "text", "source"],
    ]
    assert rows(toklab.open_corpus(str(tmp_path))) == [
        ("1", "one", "s", {"lang": "en"}),
        ("2", "two", "s", {"lang": "fr"}),
        ("3", "three", "s", {"url": "http://x"}),
        ("4", "four", "t", {}),
    ]


def test_bad_writer_arguments(tmp_path):
    with pytest.raises(ToklabError, match="csv"):
        shard_writer(tmp_path, "csv")
    with pytest.raises(ToklabError, match="positive"):
        ParquetShardWriter(tmp_path, max_shard_bytes=0)


def test_key_order_does_not_start_a_new_parquet_shard(tmp_path):
    with ParquetShardWriter(tmp_path / "out") as writer:
        writer.write({"id": "a", "text": "x", "source": "s"})
        writer.write({"source": "s", "text": "y", "id": "b"})
    assert len(writer.paths) == 1
    assert [d.text for d in toklab.open_corpus(str(tmp_path / "out"))] == ["x", "y"]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_lone_surrogates_are_written_as_replacement_characters(tmp_path, fmt):
    # e.g. a Document built in Python from text decoded with errors="surrogateescape"
    out = tmp_path / "out"
    docs = [
        Document(id="a\udc80", text="t\ud800ext", source="s\udfff", meta={"tags": ["x\udc81", "z"], "nested": {"k": "v\udc82"}}),
        Document(id="b", text="clean \U0001f600", source="web", meta={"tags": ["y"], "nested": {"k": "w"}}),
    ]
    with shard_writer(out, fmt) as writer:
        for doc in docs:
            writer.write(doc)
    assert (writer.records, writer.repaired) == (2, 1)
    assert shard_rows(writer.paths[0]) == [
        {"id": "a\ufffd", "text": "t\ufffdext", "source": "s\ufffd", "tags": ["x\ufffd", "z"], "nested": {"k": "v\ufffd"}},
        {"id": "b", "text": "clean \U0001f600", "source": "web", "tags": ["y"], "nested": {"k": "w"}},
    ]


def test_a_surrogate_in_a_plain_dict_key_is_replaced_too(tmp_path):
    with JsonlZstShardWriter(tmp_path / "out") as writer:
        writer.write({"id": "a", "text": "x", "k\udc80": "v"})
    assert writer.repaired == 1
    assert shard_rows(writer.paths[0]) == [{"id": "a", "text": "x", "k\ufffd": "v"}]
