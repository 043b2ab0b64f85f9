"""Progress without a terminal: plain lines on stderr, so a long run in a log is never silent."""

from __future__ import annotations

import json

import pytest

import toklab.progress as progress
from toklab.cli import main


@pytest.fixture(autouse=True)
def normal_verbosity():
    yield
    progress.set_verbosity("normal")


def test_a_pass_over_documents_prints_plain_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.setitem(progress.VERBOSITY, "normal", 0.0)  # a line at every call
    with progress.document_progress("reading corpus") as advance:
        advance(1_500_000)
        advance(500_000)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("reading corpus | ") and "1 docs, 1.5 MB" in err[0]
    assert "2 docs, 2.0 MB" in err[1] and "elapsed 0:00:00" in err[1]
    assert err[-1].endswith("elapsed 0:00:00") and "done" in err[-1]


def test_steps_print_a_line_each_with_the_count_and_eta(capsys):
    with progress.step_progress("compare", total=3) as step:
        for label in ("bytes", "bpe:4k", "zstd"):
            step(label)
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" | ")[1] for line in err] == ["0/3", "1/3", "2/3"]
    assert "now: bpe:4k" in err[1] and "ETA" in err[1]


def test_quiet_prints_nothing(capsys, monkeypatch):
    monkeypatch.setitem(progress.VERBOSITY, "normal", 0.0)
    progress.set_verbosity("quiet")
    with progress.document_progress("reading corpus") as advance:
        advance(10)
    with progress.step_progress("compare", total=1) as step:
        step("bytes")
    assert capsys.readouterr().err == ""


def test_pretrain_without_a_terminal_reports_its_steps(capsys, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "text": f"text number {i} " * 10}) + "\n" for i in range(60)))
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "-c", str(path), "--steps", "4", "--eval-every", "2", "--context", "16", "--out", str(tmp_path / "run"), "--verbose"])
    assert exit_info.value.code == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("training bytes | ")]
    assert any(line.startswith("training bytes | 2/4 steps") and "val bpb" in line for line in lines)
    assert lines[-1].startswith("training bytes | 4/4 steps | ETA 0:00:00")
    with pytest.raises(SystemExit):
        main(["pretrain", "-c", str(path), "--steps", "4", "--context", "16", "--out", str(tmp_path / "quiet"), "--quiet"])
    assert "training bytes |" not in capsys.readouterr().err
