"""pretrain, study, sample and the CLI itself under user mistakes, damaged files and failing disks:
one `error:` line and exit 2, and nothing the user owns is lost."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import toklab.gpt.train as train_module

from cli_helpers import cli_error, run_cli

TINY = ["--steps", "2", "--context", "16", "--batch-size", "2"]


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    lines = [json.dumps({"id": str(i), "text": f"document {i}: the cat sat on the mat " * 6}) for i in range(80)]
    (folder / "a.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_an_output_inside_the_corpus_is_refused_everywhere(capsys, data, tmp_path):
    assert "inside the input" in cli_error(capsys, "pretrain", "-c", str(data), *TINY, "--out", str(data / "run"))
    assert "inside the input" in cli_error(capsys, "study", "-c", str(data), "--smoke", "--out", str(data / "study"))
    assert "contains the input" in cli_error(capsys, "pretrain", "-c", str(data / "a.jsonl"), *TINY, "--out", str(tmp_path))
    assert "inside the input" in cli_error(capsys, "pretrain", "-c", str(data) + "/*.jsonl", *TINY, "--out", str(data / "sub"))
    assert sorted(p.name for p in data.iterdir()) == ["a.jsonl"]


def test_overwrite_checks_everything_first_and_keeps_files_it_did_not_write(capsys, data, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "pretrain", "-c", str(data), *TINY, "--out", str(out))[0] == 0
    (out / "NOTES.txt").write_text("mine")
    before = (out / "summary.json").read_text()
    assert "less than one step" in cli_error(capsys, "pretrain", "-c", str(data), "--flops", "1", "--context", "16", "--out", str(out), "--overwrite")
    assert (out / "summary.json").read_text() == before  # the finished run is still there
    assert run_cli(capsys, "pretrain", "-c", str(data), "--steps", "3", "--context", "16", "--batch-size", "2", "--out", str(out), "--overwrite")[0] == 0
    assert (out / "NOTES.txt").read_text() == "mine" and json.loads((out / "summary.json").read_text())["steps"] == 3


def test_study_overwrite_checks_the_budgets_first_and_keeps_other_files(capsys, data, tmp_path):
    out = tmp_path / "study"
    args = ["study", "-c", str(data), "-s", "bytes", "--model", "tiny", "--context", "16", "--batch-size", "2", "--seeds", "1", "--out", str(out)]
    with open(data / "a.jsonl", "a") as f:
        f.write("{not json\n")
    assert run_cli(capsys, *args, "--flops", "2e8")[0] == 0
    assert any("malformed line" in n for n in json.loads((out / "table.json").read_text())["notes"])
    (out / "NOTES.txt").write_text("mine")
    table = (out / "table.md").read_text()
    assert "less than one step" in cli_error(capsys, *args, "--flops", "1e3", "--overwrite")
    assert (out / "table.md").read_text() == table
    assert run_cli(capsys, *args, "--flops", "3e8", "--overwrite")[0] == 0
    assert (out / "NOTES.txt").read_text() == "mine" and "3e+08" in (out / "table.md").read_text()


@pytest.mark.parametrize("option", [["--flops", "inf"], ["--tokens", "inf"], ["--lr", "inf"], ["--lr", "nan"], ["--steps", "abc"], ["--bogus"]])
def test_bad_numbers_and_options_are_one_line(capsys, data, tmp_path, option):
    cli_error(capsys, "pretrain", "-c", str(data), "--context", "16", *option, "--out", str(tmp_path / "run"))


def test_study_budgets_must_be_finite(capsys, data, tmp_path):
    assert "finite" in cli_error(capsys, "study", "-c", str(data), "--flops", "1e8,inf", "--out", str(tmp_path / "s"))


def test_a_file_where_a_folder_should_be(capsys, data, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    message = cli_error(capsys, "pretrain", "-c", str(data), *TINY, "--out", str(tmp_path / "notes.txt" / "sub"))
    assert "lies below the file" in message


def test_checkpoints_hold_only_finite_weights_and_evaluations(capsys, data, tmp_path, monkeypatch):
    real = train_module.Trainer.evaluate
    calls = {"n": 0}

    def poisoned(self, final=True):
        scores = real(self, final)
        calls["n"] += 1
        if calls["n"] == 3:  # the evaluation after step 2 blows up
            scores.loss_nats[:] = float("nan")
        return scores

    monkeypatch.setattr(train_module.Trainer, "evaluate", poisoned)
    out = tmp_path / "run"
    message = cli_error(capsys, "pretrain", "-c", str(data), "--steps", "4", "--context", "16", "--eval-every", "1", "--checkpoint-every", "1", "--out", str(out))
    assert "validation loss became nan at step 2" in message
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 1  # the step-2 weights were never checkpointed

    monkeypatch.setattr(train_module.Trainer, "evaluate", real)
    monkeypatch.setattr(train_module.Trainer, "weights_finite", lambda self: self.step < 2)
    message = cli_error(capsys, "pretrain", "-c", str(data), "--steps", "4", "--context", "16", "--checkpoint-every", "1", "--out", str(tmp_path / "w"))
    assert "the weights became nan at step 2" in message
    assert torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=False)["step"] == 1


def test_sample_on_damaged_runs(capsys, data, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "pretrain", "-c", str(data), *TINY, "--out", str(out))[0] == 0
    checkpoint = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(checkpoint[: len(checkpoint) // 2])
    assert "cannot read" in cli_error(capsys, "sample", "--run", str(out), "-n", "3")
    state = torch.load(__import__("io").BytesIO(checkpoint), weights_only=False)
    state["model"] = {k: v * float("nan") for k, v in state["model"].items()}
    torch.save(state, out / "checkpoint.pt")
    assert "non-finite weights" in cli_error(capsys, "sample", "--run", str(out), "-n", "3")
    (out / "run.json").write_text("{not json")
    assert "damaged" in cli_error(capsys, "sample", "--run", str(out), "-n", "3")


def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_no_temporary(capsys, data, tmp_path, monkeypatch):
    def full(state, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "run"
    assert "cannot write" in cli_error(capsys, "pretrain", "-c", str(data), *TINY, "--out", str(out))
    assert not list(out.glob(".*.tmp"))


def test_stale_temporaries_of_dead_processes_are_removed_at_the_next_start(capsys, data, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "pretrain", "-c", str(data), *TINY, "--out", str(out))[0] == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    stale = out / f".checkpoint.pt.{dead}.tmp"
    stale.write_bytes(b"left by a killed run")
    assert run_cli(capsys, "pretrain", "-c", str(data), *TINY, "--out", str(out), "--overwrite")[0] == 0
    assert not stale.exists()


def test_an_os_error_is_one_line(capsys, data, tmp_path, monkeypatch):
    pretrain_module = sys.modules["toklab.pretrain"]  # toklab.pretrain is also the function's name

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "run" / "summary.json"))

    monkeypatch.setattr(pretrain_module, "write_run_report", read_only)
    message = cli_error(capsys, "pretrain", "-c", str(data), *TINY, "--out", str(tmp_path / "run"))
    assert "Read-only file system" in message and "summary.json" in message


def test_ctrl_c_says_how_to_continue(capsys, data, tmp_path, monkeypatch):
    def interrupted(self, on_step=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module.Trainer, "run", interrupted)
    code, _, err = run_cli(capsys, "pretrain", "-c", str(data), *TINY, "--out", str(tmp_path / "run"))
    assert code == 130 and "interrupted; rerun with --resume" in err and "Traceback" not in err


def test_text_that_is_not_utf8_in_argv(capsys):
    code, out, err = run_cli(capsys, "tokenizer", "encode", "bytes", "--text", "ab\udcff")  # how Python hands over the byte 0xff
    assert code == 0 and "3 chars" in out


def test_a_closed_pipe_ends_quietly(data):
    command = f"{sys.executable} -m toklab corpus sample -c {data} -n 20 | head -1"
    result = subprocess.run(["bash", "-c", "set -o pipefail; " + command], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr


def test_malformed_lines_are_noted_by_pretrain(capsys, data, tmp_path):
    with open(data / "a.jsonl", "a") as f:
        f.write("{not json\n")
    code, _, err = run_cli(capsys, "pretrain", "-c", str(data), *TINY, "--out", str(tmp_path / "run"))
    assert code == 0 and "malformed line" in err
    assert any("malformed line" in n for n in json.loads((tmp_path / "run" / "summary.json").read_text())["notes"])


def test_tokenizer_train_refuses_a_file_and_the_corpus_as_its_folder(capsys, data, tmp_path):
    (tmp_path / "existing_file").write_text("mine")
    assert "is a file" in cli_error(capsys, "tokenizer", "train", "bytes", "--out", str(tmp_path / "existing_file"))
    assert "lies below the file" in cli_error(capsys, "tokenizer", "train", "bytes", "--out", str(tmp_path / "existing_file" / "x"))
    assert "inside the input" in cli_error(capsys, "tokenizer", "train", "bpe:300", "-c", str(data), "--out", str(data / "tok"))
    assert (tmp_path / "existing_file").read_text() == "mine" and sorted(p.name for p in data.iterdir()) == ["a.jsonl"]


def test_gpu_scale_settings_on_a_cpu_are_refused_without_yes(capsys, data, tmp_path):
    message = cli_error(capsys, "pretrain", "-c", str(data), "--model", "gpt2-124m", "--flops", "1e18", "--out", str(tmp_path / "big"))
    assert "roughly 2,777.8 hours" in message and "--yes" in message  # 1e18 / 1e11 / 3600
    assert not (tmp_path / "big").exists()


def test_malformed_lines_are_noted_by_compare(capsys, data, tmp_path):
    with open(data / "a.jsonl", "ab") as f:
        f.write(b"{not json\n" + json.dumps({"id": "bad", "text": "x"}).encode()[:-2] + b"\xff\"}\n")
    code, _, err = run_cli(capsys, "compare", "-c", str(data), "-s", "bytes", "--no-compressors", "--out", str(tmp_path / "rep"))
    assert code == 0 and "malformed line" in err
    assert any("malformed line" in n for n in json.loads((tmp_path / "rep" / "results.json").read_text())["notes"])
