"""`corpus_info` and `toklab corpus info` on a tiny corpus whose characters are not its bytes:
every figure is a literal counted by hand (code points and UTF-8 bytes of each text)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import toklab
from toklab.cli import main

# (id, source, text, code points, UTF-8 bytes, split at val_fraction 0.5), counted by hand:
# é à ï ñ are 2 bytes, 漢 字 か な 東 京 3 bytes, each emoji (and the skin-tone modifier) 4 bytes.
# The splits are the pinned ones of tests/corpus/test_split.py (blake2b of "toklab-split\0<id>" < 0.5).
DOCS = [
    ("doc-0", "latin", "hello world", 11, 11, "val"),
    ("doc-1", "latin", "caf\u00e9 d\u00e9j\u00e0 vu", 12, 15, "train"),  # café déjà vu
    ("doc-2", "cjk", "\u6f22\u5b57\u304b\u306a", 4, 12, "val"),  # 漢字かな
    ("doc-8", "cjk", "\u6771\u4eac 2024", 7, 11, "train"),  # 東京 2024
    ("doc-3", "emoji", "ok \U0001f44d\U0001f3fd", 5, 11, "val"),  # ok 👍🏽 (thumbs up, medium skin tone)
    ("doc-7", "emoji", "\U0001f389", 1, 4, "train"),  # 🎉
    ("doc-5", "emoji", "na\u00efve \U0001f642 \u00f1", 9, 14, "val"),  # naïve 🙂 ñ
]
# Per source, by hand from the rows above: documents, bytes, chars, max bytes, val documents.
EXPECTED_SOURCES = {
    "cjk": {"documents": 2, "bytes": 23, "chars": 11, "max_bytes": 12, "val_documents": 1},
    "emoji": {"documents": 3, "bytes": 29, "chars": 15, "max_bytes": 14, "val_documents": 2},
    "latin": {"documents": 2, "bytes": 26, "chars": 23, "max_bytes": 15, "val_documents": 1},
}
TOTAL_DOCUMENTS, TOTAL_BYTES, TOTAL_CHARS, VAL_DOCUMENTS = 7, 78, 49, 4


@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps({"id": i, "text": t, "source": s}, ensure_ascii=False) for i, s, t, *_ in DOCS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_hand_counts_are_self_consistent():
    # the literals above add up (a typo in them would otherwise hide behind the tests below)
    for source, row in EXPECTED_SOURCES.items():
        docs = [d for d in DOCS if d[1] == source]
        assert row["documents"] == len(docs)
        assert row["chars"] == sum(d[3] for d in docs) and row["bytes"] == sum(d[4] for d in docs)
        assert row["max_bytes"] == max(d[4] for d in docs) and row["val_documents"] == sum(d[5] == "val" for d in docs)
    assert TOTAL_CHARS == 11 + 12 + 4 + 7 + 5 + 1 + 9 and TOTAL_BYTES == 11 + 15 + 12 + 11 + 11 + 4 + 14


def test_corpus_info_counts_documents_bytes_and_chars(mixed):
    info = toklab.corpus_info(toklab.open_corpus(str(mixed), val_fraction=0.5))
    assert (info.documents, info.bytes, info.chars) == (TOTAL_DOCUMENTS, TOTAL_BYTES, TOTAL_CHARS)
    assert (info.train_documents, info.val_documents) == (TOTAL_DOCUMENTS - VAL_DOCUMENTS, VAL_DOCUMENTS)
    assert (info.max_bytes, info.max_doc_id) == (15, "doc-1")
    assert info.mean_bytes == pytest.approx(78 / 7)
    table = info.per_source.set_index("source")
    assert sorted(table.index) == ["cjk", "emoji", "latin"]
    for source, expected in EXPECTED_SOURCES.items():
        row = table.loc[source]
        assert {k: int(row[k]) for k in expected} == expected, source
        assert row["mean_bytes"] == pytest.approx(expected["bytes"] / expected["documents"]), source
        assert row["share_of_bytes"] == pytest.approx(expected["bytes"] / 78), source


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def test_cli_corpus_info_json_counts_chars(mixed, capsys):
    code, out, err = run(capsys, "corpus", "info", "-c", str(mixed), "--val-fraction", "0.5", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["documents"], data["bytes"], data["chars"]) == (TOTAL_DOCUMENTS, TOTAL_BYTES, TOTAL_CHARS)
    assert (data["train_documents"], data["val_documents"]) == (3, 4)
    assert (data["max_bytes"], data["max_doc_id"]) == (15, "doc-1")
    assert data["mean_bytes"] == pytest.approx(78 / 7)
    per_source = {row["source"]: row for row in data["per_source"]}
    assert sorted(per_source) == ["cjk", "emoji", "latin"]
    for source, expected in EXPECTED_SOURCES.items():
        assert {k: per_source[source][k] for k in expected} == expected, source
        assert per_source[source]["share_of_bytes"] == pytest.approx(expected["bytes"] / 78), source


def test_cli_corpus_info_tables_show_the_hand_counts(mixed, capsys):
    code, out, err = run(capsys, "corpus", "info", "-c", str(mixed), "--val-fraction", "0.5")
    assert code == 0, err
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "documents 7 (train 3, val 4)" in lines
    assert "bytes 78 (0.00 MB)" in lines
    assert "characters 49" in lines
    assert "mean length 11 bytes" in lines  # 78 / 7 = 11.1
    assert "max length 15 bytes (doc-1)" in lines
    # per source, largest first: docs, MB, mean B, max B, val, share
    rows = [line for line in lines if re.match(r"(emoji|latin|cjk) ", line)]
    assert rows == [
        "emoji 3 0.00 10 14 2 37.2%",  # 29 / 3 = 9.7; 29 / 78
        "latin 2 0.00 13 15 1 33.3%",  # 26 / 2; 26 / 78
        "cjk 2 0.00 12 12 1 29.5%",  # 23 / 2 = 11.5 rounds to even; 23 / 78
    ]
