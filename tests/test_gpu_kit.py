"""The GPU kit (scripts/gpu_check.py) in its CPU dry run, and what of the trainer's CUDA path a CPU
can check: losses read late (as on CUDA) give the same figures as losses read every step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import poison_training_loss
import toklab.gpt.train as train_module
from toklab.errors import ToklabError
from toklab.pretrain import pretrain, read_history

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.py"
STAGES = ["env", "throughput-eager", "throughput-compile", "blt-throughput", "resume", "ddp", "study"]


def kit(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def stages(out: Path) -> dict[str, dict]:
    return json.loads((out / "stages.json").read_text())["stages"]


@pytest.mark.slow  # about 100 s on 2 cores: twelve processes (importing torch in each), twelve study runs
def test_the_dry_run_runs_every_stage_and_the_resume_check_passes(tmp_path):
    out, bundle = tmp_path / "out", tmp_path / "results.tar.gz"
    done = kit("--dry-run", "--out", str(out), "--bundle", str(bundle))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert {name: s["status"] for name, s in stages(out).items()} == {name: "ok" for name in STAGES}
    for name in ("setup.json", "plan.json", "env.json", "throughput.json", "throughput.md", "resume.json", "ddp.json", "study.json", "summary.md", "study/table.csv"):
        assert (out / name).is_file(), name

    env = json.loads((out / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["cuda_available"] is False and env["matmul_tflops"] > 0
    rows = {r["variant"]: r for r in json.loads((out / "throughput.json").read_text())["rows"]}
    assert set(rows) == {"eager", "compile", "blt"} and rows["compile"]["compile"] is True
    for row in rows.values():
        assert row["status"] == "ok" and row["tokens_per_s"] > 0 and row["timed_steps"] == 6 and np.isfinite(row["last_loss"])
        assert row["mfu"] is None  # no MFU on a CPU
    # the patch model: its preset, context in bytes and patcher, FLOPs per byte counted in full
    from toklab.gpt.blt import blt_config

    assert (rows["blt"]["model"], rows["blt"]["context_bytes"], rows["blt"]["patcher"]) == ("blt tiny", 64, "space")
    assert rows["blt"]["tokens_per_step"] == 4 * 64 and rows["blt"]["flops_per_token"] > blt_config("tiny", 64).flops_per_byte(64.0)
    assert "The blt row is the byte-latent patch model" in (out / "throughput.md").read_text()
    resume = json.loads((out / "resume.json").read_text())
    assert resume["pass"] is True and resume["default"]["exact"] and resume["default"]["killed_at_step"] == 8
    assert resume["default"]["logged_before_the_kill"] == [0, 3, 6]  # the run really died at step 8
    # ddp: the same run plainly, under torchrun with one process, and in 2 gloo processes (one global batch)
    ddp = json.loads((out / "ddp.json").read_text())
    assert [(r["variant"], r["processes"], r["accumulation"]) for r in ddp["rows"]] == [("plain", 1, 2), ("torchrun, 1 process", 1, 2), ("--nproc 2", 2, 1)]
    assert all(r["tokens_per_s"] > 0 for r in ddp["rows"]) and ddp["rows"][2]["parallel"]["processes"] == 2 and ddp["losses_agree"] is True
    assert "overhead_target_met" not in ddp and "not the GPU figure" in ddp["verdict"]  # a CPU dry run measures no GPU overhead
    study = json.loads((out / "study.json").read_text())
    segmenters = json.loads((out / "plan.json").read_text())["study"]["segmenters"]  # tiktoken:gpt2 where its vocabulary is here
    assert segmenters[:2] == ["bytes", "bpe:1k"] and len(study["finished_runs"]) == len(segmenters) * 2 * 2 and study["summary"]  # x 2 budgets x 2 seeds
    summary = (out / "summary.md").read_text()
    assert "| resume | ok |" in summary and "bit for bit" in summary and summary.strip() in done.stdout
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert "out/summary.md" in names and "out/study/table.csv" in names
    assert not [n for n in names if n.endswith(".pt") or "/cache/" in n]  # no checkpoints or caches


def test_a_failed_stage_is_recorded_and_the_next_one_runs(tmp_path):
    out = tmp_path / "out"
    done = kit("--dry-run", "--out", str(out), "--stages", "env,throughput", env={"TOKLAB_GPU_CHECK_FAIL": "env,throughput-eager"})
    assert done.returncode == 0, done.stderr[-2000:]
    got = stages(out)
    assert got["env"]["status"] == "failed" and "failure injected" in got["env"]["error"]
    assert got["throughput-eager"]["status"] == "failed"
    assert got["throughput-compile"]["status"] == "ok"
    rows = {r["variant"]: r for r in json.loads((out / "throughput.json").read_text())["rows"]}
    assert rows["compile"]["tokens_per_s"] > 0 and "tokens_per_s" not in rows["eager"]
    assert "| env | failed |" in (out / "summary.md").read_text()


def test_when_time_runs_out_the_stages_are_skipped_and_said_so(tmp_path):
    out = tmp_path / "out"
    done = kit("--dry-run", "--out", str(out), "--time-budget", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(s["status"] == "skipped" and "time ran out" in s["reason"] for s in stages(out).values())
    assert json.loads((out / "resume.json").read_text())["pass"] is False
    assert "| study | skipped |" in (out / "summary.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stages", "env,warp"], "unknown --stages warp"),
        (["--time-budget", "-1"], "--time-budget must be at least 0"),
        (["--bundle", "/nonexistent-folder/x.tar.gz"], "does not exist"),
    ],
)
def test_mistakes_are_one_line_errors(tmp_path, args, message):
    done = kit("--dry-run", "--out", str(tmp_path / "out"), *args)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    done = kit("--dry-run", "--out", str(tmp_path / "full"))
    assert done.returncode == 2 and "not empty" in done.stderr and len(done.stderr.strip().splitlines()) == 1


# --- the trainer's CUDA schedule of loss reads, on a CPU --------------------------------------------


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("kit") / "docs.jsonl"
    words = "the cat sat on a mat and the dog ran to the park where birds sing all day long".split()
    rng = np.random.default_rng(1)
    path.write_text("".join(json.dumps({"id": str(i), "text": " ".join(words[j] for j in rng.integers(0, len(words), 50))}) + "\n" for i in range(300)))
    return str(path)


TINY = {"context": 32, "eval_bytes": 2048, "val_bytes": 8192, "batch_size": 4}


def losses(history):
    return [(h["step"], h["train_loss"], h["val_loss"], h["val_bits_per_byte"]) for h in history]


def test_losses_read_every_few_steps_as_on_cuda_give_the_same_figures(corpus_file, tmp_path, monkeypatch):
    options = dict(steps=13, eval_every=5, checkpoint_every=6, batch_tokens=256, **TINY)  # 2 micro-batches per step
    every = pretrain(corpus_file, "bytes", out=tmp_path / "every", **options)
    # on CUDA the losses stay on the device between reads; here they are read after steps 3, 6, 9, 12,
    # and at the evaluations and checkpoints, which read whatever is pending
    monkeypatch.setattr(train_module.Trainer, "_read_due", lambda self: self.step % 3 == 0)
    late = pretrain(corpus_file, "bytes", out=tmp_path / "late", **options)
    assert losses(late.history) == losses(every.history)  # exactly: the same float arithmetic
    assert (late.train_loss, late.last_step_train_loss) == (every.train_loss, every.last_step_train_loss)
    assert losses(read_history(tmp_path / "late")) == losses(every.history)
    a = torch.load(tmp_path / "every" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "late" / "checkpoint.pt", weights_only=False)
    assert a["train_loss"] == b["train_loss"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_a_nan_found_at_a_late_read_names_its_own_step_and_keeps_the_good_checkpoint(corpus_file, tmp_path, monkeypatch):
    poison_training_loss(monkeypatch, at_call=7)
    monkeypatch.setattr(train_module.Trainer, "_read_due", lambda self: self.step % 4 == 0)  # step 7's loss is read at step 8
    with pytest.raises(ToklabError, match="loss became nan at step 7.*last good checkpoint"):
        pretrain(corpus_file, "bytes", steps=20, checkpoint_every=5, eval_every=100, out=tmp_path / "run", **TINY)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 5
