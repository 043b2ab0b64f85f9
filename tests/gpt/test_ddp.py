"""`toklab pretrain` and `toklab study` under torchrun (DDP), on a CPU: gloo, 2 processes.

The multi-process tests start real torchrun jobs (toklab.gpt.distributed.launch, the launcher of
`--nproc`), each process importing torch; they are slow-marked (tests/conftest.py SLOW), CI runs them.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_word_corpus
from toklab.errors import ToklabError
from toklab.gpt.data import TokenStream, write_shard
from toklab.gpt.distributed import World, failure_message, launch, world
from toklab.gpt.train import step_size
from toklab.pretrain import pretrain, read_history

WORKER = Path(__file__).with_name("ddp_worker.py")
# one global step: 256 tokens = batch 2 x context 32 x 4 micro-batches in one process, x 2 in each of two
OPTIONS = dict(steps=8, eval_every=2, checkpoint_every=4, context=32, batch_size=2, batch_tokens=256, eval_bytes=2048, val_bytes=8192)


def cli_args(corpus: str, out: Path, **extra: object) -> list[str]:
    options = {**OPTIONS, **extra}
    args = ["pretrain", "-c", corpus, "-s", "bytes", "--out", str(out)]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def losses(history: list[dict]) -> list[tuple]:
    return [(h["step"], h["train_loss"], h["val_loss"], h["val_bits_per_byte"]) for h in history]


# --- the data: each rank's share of the windows ------------------------------------------------------------


def test_each_ranks_windows_are_disjoint_and_together_the_single_process_stream(tmp_path):
    shards = [write_shard(tmp_path / f"s{i}.bin", np.arange(i * 1000, i * 1000 + n) % 50_000, 50_000) for i, n in enumerate((641, 330))]
    batch, context, world_size, accumulation, steps = 3, 8, 2, 2, 9  # 9 steps x 2 x 2 x 3 = 108 windows of the 121 per epoch
    lengths = np.arange(50_000) % 3  # bytes per id, so the byte counts are checked too
    one = TokenStream(shards, batch, context, seed=4, byte_lengths=lengths)
    # one process: accumulation x world_size micro-batches per step, in order
    single = [[one.next_batch()[0] for _ in range(accumulation * world_size)] for _ in range(steps)]
    ranks = [TokenStream(shards, batch, context, seed=4, byte_lengths=lengths, rank=r, world_size=world_size) for r in range(world_size)]
    for s in range(steps):
        got = {}
        for m in range(accumulation):
            for r, stream in enumerate(ranks):
                got[m * world_size + r] = stream.next_batch()[0]  # global micro-batch m·w + r
        for g in range(accumulation * world_size):
            assert torch.equal(got[g], single[s][g]), (s, g)
    # the windows themselves, as token offsets: no window twice within an epoch, none left out
    firsts = [tuple(x[:, 0].tolist()) for step in single for x in step]
    flat = [f for group in firsts for f in group]
    assert len(flat) == steps * accumulation * world_size * batch == 108
    assert len(set(flat)) == 108  # 121 windows per epoch (640 // 8 + 329 // 8): all 108 distinct
    # the counts are the whole job's on every rank, so rank 0's checkpoint holds them for all
    assert all(r.state_dict() == one.state_dict() for r in ranks)
    assert one.windows_seen == 108


def test_accumulation_divides_by_the_world_size_so_batch_tokens_is_global():
    assert step_size(2, 32, 256) == (4, 256)
    assert step_size(2, 32, 256, world_size=2) == (2, 256)
    assert step_size(2, 32, 256, world_size=4) == (1, 256)
    assert step_size(8, 32, None, world_size=2) == (1, 512)  # no --batch-tokens: one micro-batch on each process


def test_world_comes_from_torchruns_environment(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert world() == World(0, 0, 1)
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun with one process: a plain run
    assert not world().distributed
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert world() == World(3, 1, 4) and not world().main
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ToklabError, match="outside 0..3"):
        world()


def test_launching_inside_a_torchrun_job_and_a_whole_study_under_torchrun_are_refused(monkeypatch):
    from toklab.study import run_study

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ToklabError, match="not both"):
        launch(2, ["pretrain"])
    with pytest.raises(ToklabError, match="toklab study --nproc N"):
        run_study("nowhere.jsonl", ["bytes"], [1e9])


def test_the_first_failure_is_the_one_reported(tmp_path):
    (tmp_path / "rank-0.json").write_text(json.dumps({"rank": 0, "time": 20.0, "message": "RuntimeError: Connection closed by peer"}))
    (tmp_path / "rank-1.json").write_text(json.dumps({"rank": 1, "time": 10.0, "message": "the disk is full"}))
    assert failure_message(tmp_path, {0: 1, 1: 2}) == "rank 1 failed: the disk is full"
    assert failure_message(tmp_path / "none", {1: -9}) == "rank 1 failed: killed by signal 9 (its output above says why)"
    assert failure_message(tmp_path / "none", {1: 3, 0: -15}).startswith("rank 1 failed: exit code 3")  # the first to fail, not the lowest rank


# --- real two-process jobs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return write_word_corpus(tmp_path_factory.mktemp("ddp") / "docs.jsonl", docs=400, words=60, seed=0)


@pytest.fixture(scope="module")
def runs(corpus_file, tmp_path_factory, isolated_cache):
    """The same run in one process (here) and in two (torchrun via the launcher), and which files each rank of the two wrote."""
    base = tmp_path_factory.mktemp("ddp-runs")
    single = pretrain(corpus_file, "bytes", out=base / "one", **OPTIONS)
    writes = base / "writes"
    start = time.perf_counter()
    env = {"DDP_TEST_WRITES": str(writes), "DDP_TEST_WATCH": os.pathsep.join([str(base), str(isolated_cache)])}
    launch(2, cli_args(corpus_file, base / "two"), script=WORKER, extra_env=env)
    return {"base": base, "single": single, "writes": writes, "seconds": time.perf_counter() - start}


def test_two_processes_give_the_losses_and_bits_per_byte_of_one(runs):
    single, two = runs["single"], runs["base"] / "two"
    got = read_history(two)
    assert [h["step"] for h in got] == [0, 2, 4, 6, 8]
    for a, b in zip(losses(got), losses(single.history)):
        assert a[0] == b[0]
        assert a[1:] == pytest.approx(b[1:], rel=1e-5, abs=1e-6)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["val_bits_per_byte"] == pytest.approx(single.val_bits_per_byte, rel=1e-6)
    assert summary["val_bytes_scored"] == single.val_bytes_scored and summary["val_docs_scored"] == single.val_docs_scored
    assert summary["tokens"] == single.tokens == 8 * 256 and summary["train"]["tokens_per_step"] == 256
    assert summary["train"]["accumulation"] == 2 and single.train["accumulation"] == 4  # per process
    assert summary["unique_train_bytes"] == single.unique_train_bytes and summary["train_bytes_seen"] == single.train_bytes_seen
    # the whole job's figures and each process's
    parallel = summary["parallel"]
    assert parallel["processes"] == 2 and parallel["backend"] == "gloo"
    assert parallel["per_process"]["tokens_per_s"] == pytest.approx(summary["tokens_per_s"] / 2)
    assert parallel["job"]["flops"] == summary["flops"] == 2 * parallel["per_process"]["flops"]
    assert "processes (DDP)" in (two / "summary.md").read_text()
    assert json.loads((two / "run.json").read_text())["world_size"] == 2
    assert torch.load(two / "checkpoint.pt", weights_only=False)["world_size"] == 2
    assert single.parallel is None and "world_size" not in json.loads((runs["base"] / "one" / "run.json").read_text())


def test_only_rank_0_writes_files(runs):
    rank0 = json.loads((runs["writes"] / "rank-0.json").read_text())
    rank1 = json.loads((runs["writes"] / "rank-1.json").read_text())
    assert rank1 == []
    written = {Path(path).name for _, path in rank0}
    assert {"run.json", "log.jsonl", "checkpoint.pt", "summary.json", "summary.md", "val_documents.parquet"} <= written  # the hook sees them


def test_a_killed_two_process_run_resumes_to_the_same_losses(runs, corpus_file, capfd):
    cut = runs["base"] / "cut"
    with pytest.raises(ToklabError, match="rank . failed"):
        launch(2, cli_args(corpus_file, cut), script=WORKER, extra_env={"DDP_TEST_CRASH_AFTER": "1"})  # dies after the step-4 checkpoint
    assert [h["step"] for h in read_history(cut)] == [0, 2, 4]
    # another number of processes: one line that says what to do
    with pytest.raises(ToklabError, match=r"trained with 2 processes and this job has 1; resume it with 2 processes in all \(--nproc 2"):
        pretrain(corpus_file, "bytes", out=cut, resume=True, **OPTIONS)
    capfd.readouterr()
    from toklab.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([*cli_args(corpus_file, cut), "--resume", "--nproc", "2"])  # the CLI's own launcher
    out, _ = capfd.readouterr()
    assert exit_info.value.code in (0, None)
    assert out.count("pretrain bytes") == 1 and "DDP: 2 processes (gloo)" in out  # rank 0 alone reports
    assert losses(read_history(cut)) == losses(read_history(runs["base"] / "two"))  # exactly: the same ranks, the same sums
    a = torch.load(cut / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(runs["base"] / "two" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_crash_on_one_rank_ends_the_job_with_one_line(corpus_file, tmp_path):
    start = time.perf_counter()
    with pytest.raises(ToklabError) as error:
        launch(2, cli_args(corpus_file, tmp_path / "run"), script=WORKER, extra_env={"DDP_TEST_FAIL": "1:3", "TOKLAB_DDP_TIMEOUT": "30"})
    assert str(error.value) == "rank 1 failed: RuntimeError: injected failure on rank 1 at step 3"
    assert time.perf_counter() - start < 60  # not a hang: the launcher stops rank 0 as soon as rank 1 is gone


def test_a_minutes_budget_stops_every_rank_at_the_same_step(corpus_file, tmp_path):
    args = cli_args(corpus_file, tmp_path / "run")
    at = args.index("--steps")
    args[at : at + 2] = ["--minutes", "0.005"]  # 0.3 s of training: ranks whose clocks disagreed would hang or part
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    launch(2, args, extra_env={"TOKLAB_DDP_TIMEOUT": "60"})
    # torchrun's agent leaves its own handlers behind; a pool forked later then hangs when told to stop
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stopped_by"] == "minutes" and summary["steps"] >= 1 and read_history(tmp_path / "run")[-1]["step"] == summary["steps"]


def test_study_trains_each_run_in_two_processes(corpus_file, tmp_path):
    from toklab.study import run_study

    result = run_study(corpus_file, ["bytes"], [2e9], model="tiny", context=32, seeds=1, out=tmp_path / "study", nproc=2, batch_size=2, val_bytes=4096, eval_bytes=1024, eval_every=100)
    (run,) = list((tmp_path / "study" / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["parallel"]["processes"] == 2
    assert result.runs["steps"].iloc[0] == summary["steps"] > 0 and math.isfinite(result.table["val_bits_per_byte"].iloc[0])
