"""User mistakes give one clear error: ToklabError from the API, `error: ...` and exit 2 from the CLI."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

import toklab
from toklab import ToklabError

from cli_helpers import api_error, cli_error, run_cli


@pytest.fixture(autouse=True)
def isolated_toklab_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("toklab-cache")
    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(cache))
    return cache


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --- paths that cannot be read -------------------------------------------------------------------


def test_nonexistent_path(tmp_path, capsys):
    missing = tmp_path / "no" / "such.jsonl"
    assert str(missing) in api_error(str(missing))
    assert "no such file" in api_error(str(missing))
    line = cli_error(capsys, "corpus", "info", "--corpus", str(missing))
    assert str(missing) in line and "no such file" in line


def test_nonexistent_relative_shard_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "data").mkdir()
    with pytest.raises(ToklabError, match="no such file"):
        list(toklab.open_corpus("data/missing.jsonl"))


def test_unsupported_suffix(tmp_path, capsys):
    path = tmp_path / "table.csv"
    path.write_text("text\nhello\n")
    message = api_error(str(path))
    assert str(path) in message and "unsupported format" in message
    line = cli_error(capsys, "corpus", "info", "--corpus", str(path))
    assert str(path) in line and "unsupported format" in line


def test_directory_without_shards(tmp_path, capsys):
    folder = tmp_path / "nothing_here"
    folder.mkdir()
    (folder / "README.md").write_text("hi")
    write_lines(folder / ".hidden.jsonl", ['{"text": "hidden files are not shards"}'])
    message = api_error(str(folder))
    assert f"no shards under {folder}" in message
    line = cli_error(capsys, "corpus", "info", "--corpus", str(folder))
    assert f"no shards under {folder}" in line


def test_glob_matching_nothing(tmp_path, capsys):
    (tmp_path / "a.csv").write_text("x")
    pattern = str(tmp_path / "*.jsonl")
    assert f"no shards match {pattern}" in api_error(pattern)
    assert f"no shards match {pattern}" in cli_error(capsys, "corpus", "info", "--corpus", pattern)


# --- malformed JSON lines -------------------------------------------------------------------------


@pytest.fixture
def malformed_jsonl(tmp_path: Path) -> Path:
    return write_lines(
        tmp_path / "m.jsonl",
        [
            '{"text": "good one"}',
            '{"text": "good two"}',
            "this is not json",
            "[1, 2, 3]",
            '{"text": "good five"}',
            '{"text": 42}',
            '{"text": "truncated',
        ],
    )


def test_malformed_lines_are_skipped_and_counted(malformed_jsonl):
    corpus = toklab.open_corpus(str(malformed_jsonl))
    assert [(d.id, d.text) for d in corpus] == [("m.jsonl:1", "good one"), ("m.jsonl:2", "good two"), ("m.jsonl:5", "good five")]
    assert corpus.stats.malformed_lines == 4
    assert corpus.stats.malformed_examples == [f"{malformed_jsonl}:{n}" for n in (3, 4, 6, 7)]
    assert any("4 malformed lines skipped" in note for note in corpus.stats.notes())


def test_malformed_examples_keep_only_the_first_five(tmp_path):
    path = write_lines(tmp_path / "many.jsonl", ['{"text": "ok"}'] + ["{bad"] * 8)
    corpus = toklab.open_corpus(str(path))
    assert [d.text for d in corpus] == ["ok"]
    assert corpus.stats.malformed_lines == 8
    assert corpus.stats.malformed_examples == [f"{path}:{n}" for n in range(2, 7)]


def test_strict_makes_a_malformed_line_an_error_naming_file_and_line(malformed_jsonl, capsys):
    message = api_error(str(malformed_jsonl), strict=True)
    assert message.startswith(f"{malformed_jsonl}:3:")
    assert "malformed JSON" in message
    line = cli_error(capsys, "corpus", "info", "--corpus", str(malformed_jsonl), "--strict")
    assert f"{malformed_jsonl}:3:" in line


def test_cli_without_strict_reports_malformed_lines_as_a_note(malformed_jsonl, capsys):
    code, out, err = run_cli(capsys, "corpus", "info", "--corpus", str(malformed_jsonl), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["documents"] == 3
    assert any(f"{malformed_jsonl}:3" in note for note in info["notes"])


# --- missing fields -----------------------------------------------------------------------------


def test_missing_text_field_in_jsonl_names_it_and_lists_the_fields(tmp_path, capsys):
    path = write_lines(tmp_path / "f.jsonl", ['{"body": "hello", "id": 1, "lang": "en"}'])
    message = api_error(str(path))
    assert str(path) in message
    assert "'text'" in message
    assert "body, id, lang" in message
    assert "--text-field" in message
    line = cli_error(capsys, "corpus", "info", "--corpus", str(path))
    assert "'text'" in line and "body, id, lang" in line
    # and the named field then works
    assert [d.text for d in toklab.open_corpus(str(path), text_field="body")] == ["hello"]


def test_missing_text_field_in_parquet_names_it_and_lists_the_columns(tmp_path, capsys):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"content": ["a"], "url": ["u"]}), path)
    message = api_error(str(path))
    assert str(path) in message and "'text'" in message and "content, url" in message
    line = cli_error(capsys, "corpus", "info", "--corpus", str(path), "--text-field", "body")
    assert "'body'" in line and "content, url" in line


def test_missing_id_field_names_it_and_lists_the_fields(tmp_path, capsys):
    jsonl = write_lines(tmp_path / "i.jsonl", ['{"text": "hello", "key": 1}'])
    message = api_error(str(jsonl), id_field="uid")
    assert "'uid'" in message and "text, key" in message and "--id-field" in message
    parquet = tmp_path / "i.parquet"
    pq.write_table(pa.table({"text": ["a"], "key": ["k"]}), parquet)
    message = api_error(str(parquet), id_field="uid")
    assert "'uid'" in message and "text, key" in message
    line = cli_error(capsys, "corpus", "info", "--corpus", str(jsonl), "--id-field", "uid")
    assert "'uid'" in line and "text, key" in line


# --- empty documents ------------------------------------------------------------------------------


def test_empty_documents_are_skipped_and_counted(tmp_path):
    jsonl = write_lines(tmp_path / "e.jsonl", ['{"text": ""}', '{"text": null}', '{"text": "kept"}', '{"text": ""}'])
    corpus = toklab.open_corpus(str(jsonl))
    assert [(d.id, d.text) for d in corpus] == [("e.jsonl:3", "kept")]
    assert corpus.stats.empty_skipped == 3
    assert corpus.stats.documents == 1
    assert "3 empty documents skipped" in corpus.stats.notes()

    parquet = tmp_path / "e.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["", None, "x"]}), parquet)
    corpus = toklab.open_corpus(str(parquet))
    assert [(d.id, d.text) for d in corpus] == [("c", "x")]
    assert corpus.stats.empty_skipped == 2


# --- corrupt files --------------------------------------------------------------------------------


def test_corrupt_parquet_names_the_file(tmp_path, capsys):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not a parquet file at all " * 10)
    message = api_error(str(path))
    assert str(path) in message and "parquet" in message
    line = cli_error(capsys, "corpus", "info", "--corpus", str(path))
    assert str(path) in line


def test_truncated_parquet_names_the_file(tmp_path):
    path = tmp_path / "cut.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(100)]}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert str(path) in api_error(str(path))


def test_corrupt_jsonl_gz_names_the_file(tmp_path, capsys):
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(b"definitely not gzip data\n" * 10)
    assert str(path) in api_error(str(path))
    line = cli_error(capsys, "corpus", "info", "--corpus", str(path))
    assert str(path) in line


def test_truncated_jsonl_gz_names_the_file(tmp_path):
    path = tmp_path / "cut.jsonl.gz"
    data = gzip.compress(b"".join(json.dumps({"text": f"doc {i} " * 10}).encode() + b"\n" for i in range(500)))
    path.write_bytes(data[: len(data) // 2])
    assert str(path) in api_error(str(path))


def _zst_payload() -> bytes:
    return zstandard.ZstdCompressor().compress(b"".join(json.dumps({"text": f"doc {i} " * 10}).encode() + b"\n" for i in range(500)))


def test_truncated_jsonl_zst_names_the_file(tmp_path):
    path = tmp_path / "cut.jsonl.zst"
    data = _zst_payload()
    path.write_bytes(data[: len(data) // 2])
    assert str(path) in api_error(str(path))


def test_corrupt_jsonl_zst_names_the_file(tmp_path):
    path = tmp_path / "broken.jsonl.zst"
    path.write_bytes(b"not zstd at all\n" * 10)
    assert str(path) in api_error(str(path))


def test_corrupt_jsonl_zst_in_the_cli(tmp_path, capsys):
    path = tmp_path / "broken.jsonl.zst"
    path.write_bytes(b"not zstd at all\n" * 10)
    assert str(path) in cli_error(capsys, "corpus", "info", "--corpus", str(path))


# --- hub ids when offline ---------------------------------------------------------------------------


def test_hub_id_when_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no local folder called someorg/somedata
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = api_error("someorg/somedata")
    assert "someorg/somedata" in message
    assert "offline" in message and "HF_HUB_OFFLINE" in message
    assert "--corpus PATH" in message
    line = cli_error(capsys, "corpus", "info", "--corpus", "someorg/somedata")
    assert "offline" in line and "--corpus PATH" in line


# --- bad option values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value, flag",
    [
        ("val_fraction", 1.5, "--val-fraction"),
        ("val_fraction", -0.1, "--val-fraction"),
        ("sample", 0.0, "--sample"),
        ("sample", 1.5, "--sample"),
        ("max_docs", 0, "--max-docs"),
        ("max_bytes", -5, "--max-bytes"),
        ("text_field", "", "--text-field"),
    ],
)
def test_bad_option_values(tmp_path, option, value, flag):
    path = write_lines(tmp_path / "ok.jsonl", ['{"text": "fine"}'])
    with pytest.raises(ToklabError) as err:
        toklab.open_corpus(str(path), **{option: value})
    assert flag in str(err.value) and str(value) in str(err.value)


@pytest.mark.parametrize("args", [["--val-fraction", "1.5"], ["--sample", "0"]])
def test_bad_option_values_in_the_cli(tmp_path, capsys, args):
    path = write_lines(tmp_path / "ok.jsonl", ['{"text": "fine"}'])
    line = cli_error(capsys, "corpus", "info", "--corpus", str(path), *args)
    assert args[0] in line


def test_unknown_option_name_is_a_type_error(tmp_path):
    path = write_lines(tmp_path / "ok.jsonl", ['{"text": "fine"}'])
    with pytest.raises(TypeError, match="max_doc"):
        toklab.open_corpus(str(path), max_doc=3)


# --- the CLI on good data -------------------------------------------------------------------------


@pytest.fixture
def good_jsonl(tmp_path: Path) -> Path:
    return write_lines(
        tmp_path / "good.jsonl",
        ['{"id": "a", "text": "alpha"}', '{"id": "b", "text": "beta", "source": "other"}', '{"id": "c", "text": "gamma"}'],
    )


def test_cli_corpus_info_prints_the_document_count(good_jsonl, capsys):
    code, out, err = run_cli(capsys, "corpus", "info", "--corpus", str(good_jsonl))
    assert code == 0
    assert "Traceback" not in out + err
    assert re.search(r"documents\s+3\b", out), out
    assert re.search(r"^\s*good\s+2\b", out, re.M), out  # per source: good has 2 documents
    assert re.search(r"^\s*other\s+1\b", out, re.M), out


def test_cli_corpus_info_json(good_jsonl, capsys):
    code, out, _ = run_cli(capsys, "corpus", "info", "--corpus", str(good_jsonl), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["documents"] == 3
    assert info["bytes"] == len("alphabetagamma")
    assert info["train_documents"] + info["val_documents"] == 3
    assert {row["source"]: row["documents"] for row in info["per_source"]} == {"good": 2, "other": 1}


def test_cli_corpus_info_applies_corpus_options(good_jsonl, capsys):
    code, out, _ = run_cli(capsys, "corpus", "info", "--corpus", str(good_jsonl), "--json", "--max-docs", "2")
    assert code == 0
    assert json.loads(out)["documents"] == 2
