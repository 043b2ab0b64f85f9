"""Every corpus reader, through `toklab.open_corpus`: ids, texts, sources, meta, caps, sampling, split."""

from __future__ import annotations

import base64
import gzip
import json
import random
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

import toklab
from toklab import ToklabError, split_of
from toklab.corpus import in_sample


@pytest.fixture(autouse=True)
def isolated_toklab_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("toklab-cache")
    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(cache))
    return cache


# --- helpers ---------------------------------------------------------------------------------


def jsonl_bytes(records: list) -> bytes:
    """One JSON value per line; a None entry becomes a blank line."""
    return b"".join(b"\n" if r is None else json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = jsonl_bytes(records)
    name = path.name
    if name.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    elif name.endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    else:
        path.write_bytes(data)
    return path


def write_parquet(path: Path, columns: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def rows(corpus) -> list[tuple]:
    """Everything a Document carries, meta included (Document equality ignores meta)."""
    return [(d.id, d.text, d.source, d.meta) for d in corpus]


# --- one reader per format -------------------------------------------------------------------


def test_parquet_with_id_and_source_columns(tmp_path):
    path = write_parquet(
        tmp_path / "shard.parquet",
        {"id": ["a", "b", "c"], "text": ["alpha", "béta", "gamma"], "source": ["web", "web", "books"], "lang": ["en", "fr", "en"]},
    )
    corpus = toklab.open_corpus(str(path))
    assert rows(corpus) == [
        ("a", "alpha", "web", {"lang": "en"}),
        ("b", "béta", "web", {"lang": "fr"}),
        ("c", "gamma", "books", {"lang": "en"}),
    ]
    assert corpus.stats.documents == 3
    assert corpus.stats.files == 1
    assert corpus.stats.bytes == len("alphabétagamma".encode())  # é is two bytes: 15


def test_parquet_default_ids_are_zero_based_rows_and_source_is_the_stem(tmp_path):
    path = write_parquet(tmp_path / "web-00000.parquet", {"text": ["one", "two"], "n": [1, 2]})
    assert rows(toklab.open_corpus(str(path))) == [
        ("web-00000.parquet:0", "one", "web-00000", {"n": 1}),
        ("web-00000.parquet:1", "two", "web-00000", {"n": 2}),
    ]


def test_parquet_binary_text_column_is_decoded(tmp_path):
    path = write_parquet(tmp_path / "bin.parquet", {"id": ["x", "y"], "text": pa.array([b"ok", b"bad\xffbyte"], type=pa.binary())})
    corpus = toklab.open_corpus(str(path))
    assert [(d.id, d.text) for d in corpus] == [("x", "ok"), ("y", "bad\ufffdbyte")]
    assert corpus.stats.invalid_utf8 == 1


def test_parquet_many_rows_cross_batches_in_order(tmp_path):
    n = 1300  # more than two 512-row batches
    path = write_parquet(tmp_path / "big.parquet", {"text": [f"t{i}" for i in range(n)]})
    docs = list(toklab.open_corpus(str(path)))
    assert [d.id for d in docs] == [f"big.parquet:{i}" for i in range(n)]
    assert [d.text for d in docs] == [f"t{i}" for i in range(n)]


def test_jsonl_default_ids_use_one_based_line_numbers(tmp_path):
    path = write_jsonl(
        tmp_path / "notes.jsonl",
        [{"text": "first", "url": "u1"}, None, {"text": "third", "url": "u3"}, {"text": "fourth", "source": "forum"}],
    )
    corpus = toklab.open_corpus(str(path))
    assert rows(corpus) == [
        ("notes.jsonl:1", "first", "notes", {"url": "u1"}),
        ("notes.jsonl:3", "third", "notes", {"url": "u3"}),  # the blank line 2 is skipped, numbering kept
        ("notes.jsonl:4", "fourth", "forum", {}),
    ]
    assert corpus.stats.documents == 3
    assert corpus.stats.malformed_lines == 0
    assert corpus.stats.empty_skipped == 0


def test_jsonl_id_field_is_used_when_present(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"id": 17, "text": "a"}, {"id": "k", "text": "b"}])
    assert [d.id for d in toklab.open_corpus(str(path))] == ["17", "k"]


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_compressed_jsonl(tmp_path, suffix):
    records = [{"text": f"doc number {i} ünïcödé", "k": i} for i in range(5)]
    path = write_jsonl(tmp_path / f"part{suffix}", records)
    corpus = toklab.open_corpus(str(path))
    assert rows(corpus) == [(f"part{suffix}:{i + 1}", f"doc number {i} ünïcödé", "part", {"k": i}) for i in range(5)]
    assert corpus.stats.documents == 5


def test_txt_is_one_document_per_file(tmp_path):
    path = tmp_path / "essay.txt"
    path.write_bytes("Line one.\n\nLine three — with a dash.\n".encode())
    corpus = toklab.open_corpus(str(path))
    assert rows(corpus) == [("essay.txt", "Line one.\n\nLine three — with a dash.\n", "essay", {})]
    assert corpus.stats.documents == 1
    assert corpus.stats.empty_skipped == 0


def test_txt_lines_mode_one_document_per_line_and_empty_lines_counted(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes(b"alpha\n\nbeta\r\n\n  gamma  \n")
    corpus = toklab.open_corpus(str(path), lines=True)
    assert rows(corpus) == [
        ("lines.txt:1", "alpha", "lines", {}),
        ("lines.txt:3", "beta", "lines", {}),  # the \r\n ending is stripped
        ("lines.txt:5", "  gamma  ", "lines", {}),  # inner whitespace is text
    ]
    assert corpus.stats.empty_skipped == 2
    assert corpus.stats.documents == 3


def test_empty_txt_file_is_skipped_and_counted(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    corpus = toklab.open_corpus(str(tmp_path / "empty.txt"))
    assert list(corpus) == []
    assert corpus.stats.empty_skipped == 1


# --- directories, globs and default ids/sources --------------------------------------------------


@pytest.fixture
def mixed_root(tmp_path: Path) -> Path:
    root = tmp_path / "corpus_root"
    (root / "books" / "nested").mkdir(parents=True)
    (root / "books" / "nested" / "tale.txt").write_text("Once upon a time.", encoding="utf-8")
    write_jsonl(root / "top.jsonl.gz", [{"text": "top level"}])
    write_parquet(root / "web" / "a.parquet", {"text": ["page a0", "page a1"]})
    write_jsonl(root / "web" / "b.jsonl", [{"text": "page b1"}, {"text": "labelled", "source": "forum"}])
    write_jsonl(root / "web" / "c.jsonl.zst", [{"text": "page c1", "id": "explicit-id"}])
    write_jsonl(root / ".hidden.jsonl", [{"text": "must not be read"}])
    (root / "README.md").write_text("not a shard")
    (root / "web" / "notes.csv").write_text("text\nnot a shard\n")
    return root


def test_directory_of_mixed_shards_sorted_recursive_with_default_ids_and_sources(mixed_root):
    corpus = toklab.open_corpus(str(mixed_root))
    assert rows(corpus) == [
        ("books/nested/tale.txt", "Once upon a time.", "books", {}),
        ("top.jsonl.gz:1", "top level", "corpus_root", {}),  # no sub-folder: the root folder's name
        ("web/a.parquet:0", "page a0", "web", {}),
        ("web/a.parquet:1", "page a1", "web", {}),
        ("web/b.jsonl:1", "page b1", "web", {}),
        ("web/b.jsonl:2", "labelled", "forum", {}),  # a source field wins over the folder
        ("explicit-id", "page c1", "web", {}),
    ]
    assert [Path(i.target).name for i in corpus.inputs] == ["tale.txt", "top.jsonl.gz", "a.parquet", "b.jsonl", "c.jsonl.zst"]
    assert corpus.stats.files == 5
    assert corpus.stats.documents == 7


def test_directory_with_trailing_slash_reads_the_same(mixed_root):
    assert rows(toklab.open_corpus(str(mixed_root) + "/")) == rows(toklab.open_corpus(str(mixed_root)))


def test_corpus_is_reiterable_and_stats_describe_the_last_pass(mixed_root):
    corpus = toklab.open_corpus(str(mixed_root))
    first = rows(corpus)
    second = rows(corpus)
    assert first == second
    assert corpus.stats.documents == 7  # not accumulated over passes


@pytest.fixture
def glob_tree(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    write_jsonl(data / "en" / "a.jsonl", [{"text": "hello"}])
    write_jsonl(data / "fr" / "b.jsonl", [{"text": "bonjour"}, {"text": "salut"}])
    write_jsonl(data / "c.jsonl", [{"text": "top"}])
    (data / "skip.csv").write_text("text\nx\n")
    return data


def test_glob_with_wildcard_folder_takes_the_source_from_the_sub_folder(glob_tree):
    corpus = toklab.open_corpus(str(glob_tree) + "/*/*.jsonl")
    assert rows(corpus) == [
        ("en/a.jsonl:1", "hello", "en", {}),
        ("fr/b.jsonl:1", "bonjour", "fr", {}),
        ("fr/b.jsonl:2", "salut", "fr", {}),
    ]


def test_glob_of_files_directly_under_the_root_takes_the_root_name(glob_tree):
    corpus = toklab.open_corpus(str(glob_tree) + "/*.jsonl")
    assert rows(corpus) == [("c.jsonl:1", "top", "data", {})]


def test_recursive_glob(glob_tree):
    corpus = toklab.open_corpus(str(glob_tree) + "/**/*.jsonl")
    assert [(d.id, d.source) for d in corpus] == [
        ("c.jsonl:1", "data"),
        ("en/a.jsonl:1", "en"),
        ("fr/b.jsonl:1", "fr"),
        ("fr/b.jsonl:2", "fr"),
    ]


# --- field options ------------------------------------------------------------------------------


FIELD_RECORDS = [
    {"body": "hello there", "key": 7, "kind": "forum", "id": "not-the-id", "lang": "en"},
    {"body": "second", "key": "k2", "kind": "news", "id": "nope", "lang": "de"},
]
FIELD_EXPECTED = [
    ("7", "hello there", "forum", {"id": "not-the-id", "lang": "en"}),
    ("k2", "second", "news", {"id": "nope", "lang": "de"}),
]


def test_text_id_and_source_field_options_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", FIELD_RECORDS)
    corpus = toklab.open_corpus(str(path), text_field="body", id_field="key", source_field="kind")
    assert rows(corpus) == FIELD_EXPECTED


def test_text_id_and_source_field_options_parquet(tmp_path):
    columns = {k: [str(r[k]) for r in FIELD_RECORDS] for k in FIELD_RECORDS[0]}
    path = write_parquet(tmp_path / "f.parquet", columns)
    corpus = toklab.open_corpus(str(path), text_field="body", id_field="key", source_field="kind")
    assert rows(corpus) == FIELD_EXPECTED


def test_text_field_option_leaves_a_text_column_in_meta(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"content": "real", "text": "other", "source": "s"}])
    assert rows(toklab.open_corpus(str(path), text_field="content")) == [("g.jsonl:1", "real", "s", {"text": "other"})]


# --- Hugging Face datasets --------------------------------------------------------------------


def test_saved_dataset_folder(tmp_path):
    import datasets

    folder = tmp_path / "saved_ds"
    datasets.Dataset.from_dict({"id": ["x", "y", "z"], "text": ["a", "bb", "ccc"], "lang": ["en", "fr", "de"]}).save_to_disk(str(folder))
    corpus = toklab.open_corpus(str(folder))
    assert corpus.inputs[0].kind == "saved"
    assert rows(corpus) == [
        ("x", "a", "saved_ds", {"lang": "en"}),
        ("y", "bb", "saved_ds", {"lang": "fr"}),
        ("z", "ccc", "saved_ds", {"lang": "de"}),
    ]


def test_saved_dataset_dict_defaults_to_train_and_takes_a_split(tmp_path):
    import datasets

    folder = tmp_path / "dd"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["t1", "t2"]}),
            "test": datasets.Dataset.from_dict({"text": ["e1"]}),
        }
    ).save_to_disk(str(folder))
    assert rows(toklab.open_corpus(str(folder))) == [("dd:0", "t1", "dd", {}), ("dd:1", "t2", "dd", {})]
    assert rows(toklab.open_corpus(str(folder), split="test")) == [("dd:0", "e1", "dd", {})]
    with pytest.raises(ToklabError, match="split"):
        list(toklab.open_corpus(str(folder), split="validation"))


def test_saved_dataset_dict_without_train_needs_a_split(tmp_path):
    import datasets

    folder = tmp_path / "dd2"
    datasets.DatasetDict({"a": datasets.Dataset.from_dict({"text": ["x"]}), "b": datasets.Dataset.from_dict({"text": ["y"]})}).save_to_disk(str(folder))
    with pytest.raises(ToklabError) as err:
        list(toklab.open_corpus(str(folder)))
    assert "--split" in str(err.value) and "a, b" in str(err.value)
    assert rows(toklab.open_corpus(str(folder), split="b")) == [("dd2:0", "y", "dd2", {})]


def test_streaming_datasets_path_on_a_local_parquet_folder(tmp_path, monkeypatch):
    import datasets

    # load_dataset keeps a lock file in its cache: keep it out of ~/.cache
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")
    folder = tmp_path / "pq_folder"
    write_parquet(folder / "a.parquet", {"text": ["s1", "s2"], "n": [1, 2]})
    write_parquet(folder / "b.parquet", {"text": ["s3"], "n": [3]})
    calls = []
    real_load = datasets.load_dataset

    def spy(*args, **kwargs):
        calls.append(kwargs.get("streaming"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    corpus = toklab.open_corpus("hf:" + str(folder))
    assert corpus.inputs[0].kind == "stream"
    assert rows(corpus) == [
        (f"{folder}:0", "s1", "pq_folder", {"n": 1}),
        (f"{folder}:1", "s2", "pq_folder", {"n": 2}),
        (f"{folder}:2", "s3", "pq_folder", {"n": 3}),
    ]
    assert calls == [True]
    assert corpus.stats.documents == 3


# --- caps, sampling, split ----------------------------------------------------------------------


def make_ids_corpus(path: Path, ids: list[str], text=lambda i: f"text of {i}") -> Path:
    return write_jsonl(path, [{"id": i, "text": text(i)} for i in ids])


def test_max_docs(tmp_path):
    path = make_ids_corpus(tmp_path / "c.jsonl", [f"d{i}" for i in range(10)])
    corpus = toklab.open_corpus(str(path), max_docs=3)
    assert [d.id for d in corpus] == ["d0", "d1", "d2"]
    assert corpus.stats.documents == 3


def test_max_docs_spans_files(tmp_path):
    make_ids_corpus(tmp_path / "d" / "a.jsonl", ["a0", "a1"])
    make_ids_corpus(tmp_path / "d" / "b.jsonl", ["b0", "b1"])
    assert [d.id for d in toklab.open_corpus(str(tmp_path / "d"), max_docs=3)] == ["a0", "a1", "b0"]


def test_max_bytes_counts_utf8_bytes_and_stops_before_the_doc_that_would_exceed(tmp_path):
    texts = {"d0": "éé", "d1": "abcd", "d2": "wxyz", "d3": "q"}  # 4, 4, 4, 1 bytes
    path = make_ids_corpus(tmp_path / "c.jsonl", list(texts), text=texts.get)
    exact = toklab.open_corpus(str(path), max_bytes=8)
    assert [d.id for d in exact] == ["d0", "d1"]
    assert exact.stats.bytes == 8
    under = toklab.open_corpus(str(path), max_bytes=11)
    assert [d.id for d in under] == ["d0", "d1"]  # d2 would make 12 > 11; it stops there
    assert under.stats.bytes == 8


def test_max_bytes_stops_rather_than_skipping(tmp_path):
    texts = {"d0": "abcd", "d1": "x" * 50, "d2": "y"}
    path = make_ids_corpus(tmp_path / "c.jsonl", list(texts), text=texts.get)
    corpus = toklab.open_corpus(str(path), max_bytes=6)
    assert [d.id for d in corpus] == ["d0"]  # d2 would fit but the stream has stopped at d1
    assert corpus.stats.bytes == 4


IDS = [f"doc-{i:04d}" for i in range(400)]


def test_sample_is_deterministic_seeded_and_a_subset(tmp_path):
    path = make_ids_corpus(tmp_path / "c.jsonl", IDS)
    full = [d.id for d in toklab.open_corpus(str(path))]
    once = [d.id for d in toklab.open_corpus(str(path), sample=0.5, seed=0)]
    again = [d.id for d in toklab.open_corpus(str(path), sample=0.5, seed=0)]
    other = [d.id for d in toklab.open_corpus(str(path), sample=0.5, seed=1)]
    assert full == IDS
    assert once == again
    assert once != other
    assert set(once) <= set(full) and set(other) <= set(full)
    assert once == [i for i in full if i in set(once)]  # original order kept
    assert once == [i for i in IDS if in_sample(i, 0.5, 0)]
    assert 140 <= len(once) <= 260


def test_sample_does_not_depend_on_the_other_documents(tmp_path):
    a = make_ids_corpus(tmp_path / "a.jsonl", IDS)
    b = make_ids_corpus(tmp_path / "b.jsonl", list(reversed(IDS[::2])) + ["new-1", "new-2"])
    kept_a = {d.id for d in toklab.open_corpus(str(a), sample=0.3, seed=5)}
    kept_b = {d.id for d in toklab.open_corpus(str(b), sample=0.3, seed=5)}
    common = set(IDS[::2])
    assert kept_a & common == kept_b & common


def test_train_and_val_partition_the_documents(tmp_path):
    path = make_ids_corpus(tmp_path / "c.jsonl", IDS[:200])
    corpus = toklab.open_corpus(str(path), val_fraction=0.3)
    everything = [d.id for d in corpus]
    train = [d.id for d in corpus.train()]
    val = [d.id for d in corpus.val()]
    assert train and val
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(everything) == sorted(IDS[:200])
    assert train == [i for i in everything if split_of(i, 0.3) == "train"]
    assert val == [i for i in everything if split_of(i, 0.3) == "val"]
    # caps apply before the split: train and val of a capped corpus partition the same documents
    capped = toklab.open_corpus(str(path), val_fraction=0.3, max_docs=50)
    assert sorted([d.id for d in capped.train()] + [d.id for d in capped.val()]) == sorted(IDS[:50])


def test_a_documents_split_survives_reordering_adding_and_removing(tmp_path):
    a = make_ids_corpus(tmp_path / "a.jsonl", IDS[:300])
    changed = IDS[100:300:2] + [f"extra-{i}" for i in range(80)]
    random.Random(3).shuffle(changed)
    b = make_ids_corpus(tmp_path / "b.jsonl", changed)
    ca, cb = toklab.open_corpus(str(a), val_fraction=0.2), toklab.open_corpus(str(b), val_fraction=0.2)
    val_a, val_b = {d.id for d in ca.val()}, {d.id for d in cb.val()}
    train_a, train_b = {d.id for d in ca.train()}, {d.id for d in cb.train()}
    common = set(IDS[100:300:2])
    assert val_a & common == val_b & common
    assert train_a & common == train_b & common
    assert val_a & common  # the check is not vacuous
    assert {i: split_of(i, 0.2) for i in common} == {i: ("val" if i in val_b else "train") for i in common}


# --- invalid text -------------------------------------------------------------------------------


def test_invalid_utf8_in_txt_is_replaced_and_counted(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ab\xffcd")
    corpus = toklab.open_corpus(str(tmp_path / "bad.txt"))
    assert [d.text for d in corpus] == ["ab\ufffdcd"]
    assert corpus.stats.invalid_utf8 == 1


def test_invalid_utf8_in_txt_lines_is_counted_per_document(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"good\nb\xc3d\nfine\n\xfe\xff\n")
    corpus = toklab.open_corpus(str(tmp_path / "bad.txt"), lines=True)
    assert [d.text for d in corpus] == ["good", "b\ufffdd", "fine", "\ufffd\ufffd"]
    assert corpus.stats.invalid_utf8 == 2


def test_invalid_utf8_in_a_jsonl_line_is_replaced_and_counted(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "x\xfey"}\n')
    corpus = toklab.open_corpus(str(path))
    assert [(d.id, d.text) for d in corpus] == [("bad.jsonl:1", "ok"), ("bad.jsonl:2", "x\ufffdy")]
    assert corpus.stats.invalid_utf8 == 1
    assert corpus.stats.malformed_lines == 0


def test_json_lone_surrogate_is_removed_and_counted(tmp_path):
    path = tmp_path / "sur.jsonl"
    path.write_bytes(b'{"text": "a\\ud800b"}\n{"text": "pair \\ud83d\\ude00"}\n')
    corpus = toklab.open_corpus(str(path))
    docs = list(corpus)
    assert len(docs) == 2
    assert "\ud800" not in docs[0].text
    docs[0].text.encode("utf-8")  # valid UTF-8 now
    assert docs[1].text == "pair \U0001f600"  # a proper surrogate pair is one character, untouched
    assert corpus.stats.invalid_utf8 == 1


def test_json_lone_surrogate_becomes_the_replacement_character(tmp_path):
    path = tmp_path / "sur.jsonl"
    path.write_bytes(b'{"text": "a\\ud800b"}\n')
    assert [d.text for d in toklab.open_corpus(str(path))] == ["a\ufffdb"]


# --- bounded memory -----------------------------------------------------------------------------


def test_streaming_a_30_mb_jsonl_zst_keeps_memory_bounded(tmp_path):
    n_docs, doc_chars = 30_000, 1000
    rng = random.Random(0)
    blob = base64.b64encode(rng.randbytes(n_docs * doc_chars * 3 // 4)).decode()  # incompressible-ish text
    path = tmp_path / "big.jsonl.zst"
    with open(path, "wb") as raw, zstandard.ZstdCompressor(level=1).stream_writer(raw) as out:
        for i in range(n_docs):
            out.write(json.dumps({"id": f"d{i}", "text": blob[i * doc_chars : (i + 1) * doc_chars]}).encode() + b"\n")
    assert path.stat().st_size > 20_000_000

    corpus = toklab.open_corpus(str(path))
    tracemalloc.start()
    try:
        count = total = 0
        for doc in corpus:
            count += 1
            total += doc.n_bytes
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n_docs == corpus.stats.documents
    assert total == n_docs * doc_chars == 30_000_000
    assert peak < 8 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"


def test_jsonl_zst_with_several_frames_is_read_whole(tmp_path):
    # e.g. shards appended to with `cat a.zst b.zst`: each frame is decompressed in turn
    frames = [
        zstandard.ZstdCompressor().compress(b"".join(json.dumps({"id": f"{k}-{i}", "text": f"frame {k} doc {i}"}).encode() + b"\n" for i in range(300)))
        for k in range(3)
    ]
    path = tmp_path / "multi.jsonl.zst"
    path.write_bytes(b"".join(frames))
    docs = list(toklab.open_corpus(str(path)))
    assert [d.id for d in docs] == [f"{k}-{i}" for k in range(3) for i in range(300)]
    assert docs[450].text == "frame 1 doc 150"
