"""`toklab tokenizer train` and `toklab tokenizer encode`."""

from __future__ import annotations

import json

import pytest

from toklab.cli import main
from toklab.segmenters import load_segmenter


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


@pytest.fixture()
def corpus_file(tmp_path):
    path = tmp_path / "train.jsonl"
    words = "the quick brown fox jumps over the lazy dog while tokenisers count bytes and merges".split()
    lines = [json.dumps({"id": str(i), "text": " ".join(words[(i + j) % len(words)] for j in range(40))}) for i in range(300)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_saves_an_exported_bpe(capsys, tmp_path, corpus_file):
    out = tmp_path / "tok"
    code, stdout, _ = run(capsys, "tokenizer", "train", "bpe:300", "--corpus", str(corpus_file), "--out", str(out))
    assert code == 0 and "saved" in stdout and "tokenizer.json" in stdout
    seg = load_segmenter(out)
    assert seg.vocab_size == 300 and seg.kind == "bpe"
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(out / "tokenizer.json")).encode("the quick fox").ids == seg.encode("the quick fox")
    # a second train into the same folder needs --overwrite; a folder of other files is refused
    code, _, err = run(capsys, "tokenizer", "train", "bpe:300", "--corpus", str(corpus_file), "--out", str(out))
    assert code == 2 and "--overwrite" in err
    code, _, _ = run(capsys, "tokenizer", "train", "bpe:300", "--corpus", str(corpus_file), "--out", str(out), "--overwrite")
    assert code == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "tokenizer", "train", "bytes", "--out", str(other))
    assert code == 2 and "not empty" in err and (other / "keep.txt").read_text() == "mine"


def test_encode_shows_pieces_and_counts(capsys, corpus_file):
    code, out, _ = run(capsys, "tokenizer", "encode", "bytes", "--text", "héllo", "--ids")
    assert code == 0
    assert "héllo" in out  # the split character is shown whole
    assert "6 tokens for 5 chars, 6 bytes" in " ".join(out.split())
    code, out, _ = run(capsys, "tokenizer", "encode", "bpe:300", "--corpus", str(corpus_file), "--text", "the quick brown fox")
    assert code == 0 and "the quick brown fox" in out and "bytes/token" in " ".join(out.split())


def test_encode_reads_a_file(capsys, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abc")
    code, out, _ = run(capsys, "tokenizer", "encode", "bytes", "--file", str(path))
    assert code == 0 and "3 tokens for 3 chars" in " ".join(out.split())


@pytest.mark.parametrize(
    "args, message",
    [
        (["tokenizer", "encode", "bytes"], "exactly one of --text or --file"),
        (["tokenizer", "encode", "nosuch", "--text", "x"], "unknown segmenter kind 'nosuch'"),
        (["tokenizer", "encode", "bpe:lots", "--text", "x"], "needs a vocabulary size"),
        (["tokenizer", "encode", "bytes", "--file", "/nonexistent.txt"], "cannot read /nonexistent.txt"),
    ],
)
def test_encode_errors_are_one_line(capsys, args, message):
    code, _, err = run(capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err
