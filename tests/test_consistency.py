"""The same words mean the same thing in every command."""

from __future__ import annotations

import json

import pytest

from toklab.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def test_both_spellings_of_the_segmenter_option_work_everywhere(capsys, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "text": f"text number {i} " * 10}) + "\n" for i in range(60)))
    for spelling in ("--segmenter", "--segmenters"):
        code, out, err = run(capsys, "pretrain", "-c", str(path), spelling, "bytes", "--steps", "2", "--context", "16", "--out", str(tmp_path / spelling), "-q")
        assert code == 0, err
        code, out, err = run(capsys, "compare", "-c", str(path), spelling, "bytes", "--no-compressors", "--out", str(tmp_path / f"c{spelling}"), "-q")
        assert code == 0, err


def test_help_lists_every_kind_and_the_saved_message_names_the_delivered_size(capsys, tmp_path):
    _, out, _ = run(capsys, "tokenizer", "train", "--help")
    assert "entropy:" in out and "zstd-dict:" in out
    code, out, _ = run(capsys, "tokenizer", "train", "bytes", "--out", str(tmp_path / "tok"))
    assert code == 0 and "saved bytes (bytes, 257 ids)" in out and "<" not in out.splitlines()[0]


def test_study_run_folders_name_their_budget_plainly():
    from toklab.study import _run_name

    assert _run_name("bpe:4k", False, None, 1e11, 0) == "bpe-4k-1e11-seed0"  # not 1e-11, which reads as a tiny number
    assert _run_name("bytes", True, 0.3, 3e10, 2) == "bytes-filtered-t0.3-3e10-seed2"


def test_flags_show_no_value_placeholder_in_help(capsys):
    for command in (["study"], ["pretrain"], ["filter"], ["compare"], ["tokenizer", "train"]):
        _, out, _ = run(capsys, *command, "--help")
        assert not [line for line in out.splitlines() if "<bool>" in line and "--help" not in line], command  # typer's own --help aside


def test_filter_and_study_state_the_delivered_vocabulary_size(capsys, tmp_path):
    from toklab.corpus import open_corpus
    from toklab.segmenters import get_segmenter

    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "text": f"text number {i} with some words " * 5}) + "\n" for i in range(80)))
    delivered = get_segmenter("bpe:1500", open_corpus(str(path))).vocab_size
    assert delivered < 1500  # this small corpus cannot fill 1,500 ids
    code, _, err = run(capsys, "filter", "-c", str(path), "-s", "bpe:1500", "--dry-run", "--report", str(tmp_path / "rep"), "-q")
    assert code == 0, err
    filtered_with = json.loads((tmp_path / "rep" / "summary.json").read_text())["vocab_size"]  # trained on the filter's own sample of the input
    assert 257 < filtered_with < 1500 and f"bpe:1500 ({filtered_with:,} ids)" in (tmp_path / "rep" / "report.md").read_text()
    code, _, err = run(capsys, "study", "-c", str(path), "-s", "bpe:1500", "--flops", "2e9", "--seeds", "1", "--context", "16", "--batch-size", "2", "--out", str(tmp_path / "s"), "-q")
    assert code == 0, err
    assert json.loads((tmp_path / "s" / "table.json").read_text())["rows"][0]["vocab_size"] == delivered
