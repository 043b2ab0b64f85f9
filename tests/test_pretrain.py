"""`toklab pretrain` and `toklab sample`: the loop, bits-per-byte, FLOPs, budgets, resume and failures."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import crash_after_checkpoints, poison_training_loss, val_records, write_word_corpus
import toklab.gpt.train as train_module
from toklab.cli import main
from toklab.errors import ToklabError
from toklab.gpt.train import Budget, TrainConfig, bits_per_byte, gpu_peak_flops, learning_rate
from toklab.pretrain import pretrain, read_history, sample

TINY = {"context": 32, "eval_bytes": 2048, "batch_size": 4}


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return write_word_corpus(tmp_path_factory.mktemp("pretrain") / "docs.jsonl", docs=400, words=60, seed=0)


def test_loss_decreases_on_the_default_corpus_with_the_tiny_model(default_corpus_build, tmp_path):
    result = pretrain("default", "bytes", model="tiny", steps=60, eval_every=30, out=tmp_path / "run", context=64, eval_bytes=8192, val_bytes=65_536)
    history = result.history
    assert [h["step"] for h in history] == [0, 30, 60]
    assert history[0]["val_bits_per_byte"] == pytest.approx(math.log2(257), abs=0.3)  # an untrained model is near uniform
    assert history[-1]["val_loss"] < history[0]["val_loss"] - 1.0
    assert result.val_bits_per_byte == history[-1]["val_bits_per_byte"] < 6.5
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "bits_per_byte.png", "checkpoint.pt", "log.jsonl", "loss.png", "per_source.csv", "run.json", "segmenter", "summary.json", "summary.md",
        "val_documents.parquet",
    ]  # fmt: skip
    assert read_history(tmp_path / "run") == history


def test_bits_per_byte_is_total_loss_over_ln2_times_the_bytes_of_every_validation_document(corpus_file, tmp_path):
    assert bits_per_byte(math.log(2) * 12.0, 4) == pytest.approx(3.0)  # 12 bits over 4 bytes
    result = pretrain(corpus_file, "bytes", steps=5, out=tmp_path / "run", **TINY)
    # by hand from the checkpoint: every validation document alone, EOT + its bytes as input,
    # its bytes + EOT as targets, in consecutive windows of the context (32)
    from toklab.gpt.model import GPT, GPTConfig

    model = GPT(GPTConfig.from_dict(json.loads((tmp_path / "run" / "run.json").read_text())["model"]))
    model.load_state_dict(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"])
    model.eval()
    val = val_records(corpus_file)
    per_doc, n_bytes, n_tokens = {}, 0, 0
    with torch.no_grad():
        for r in val:
            data = list(r["text"].encode())
            inputs, targets = [256] + data, data + [256]
            loss = 0.0
            for k in range(0, len(targets), 32):
                x, y = torch.tensor([inputs[k : k + 32]]), torch.tensor([targets[k : k + 32]])
                loss += float(model(x, y, reduction="none")[1].double().sum())
            per_doc[r["id"]] = loss
            n_bytes += len(data)
            n_tokens += len(targets)
    total = sum(per_doc.values())
    assert result.val_docs_scored == len(val) and result.val_bytes_scored == n_bytes and result.val_tokens_scored == n_tokens
    assert result.val_loss == pytest.approx(total / n_tokens, rel=1e-5)
    assert result.val_bits_per_byte == pytest.approx(total / (math.log(2) * n_bytes), rel=1e-5)
    # the per-document file holds the same losses, and they add up to the reported figure
    docs = pd.read_parquet(tmp_path / "run" / "val_documents.parquet")
    assert sorted(docs["id"]) == sorted(per_doc) and int(docs["bytes"].sum()) == n_bytes
    assert dict(zip(docs["id"], docs["loss_nats"])) == pytest.approx(per_doc, rel=1e-5)
    assert docs["loss_nats"].sum() / (math.log(2) * docs["bytes"].sum()) == pytest.approx(result.val_bits_per_byte, rel=1e-12)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["val_docs_scored"] == len(val) and summary["val_bytes_scored"] == n_bytes
    per_source = pd.read_csv(tmp_path / "run" / "per_source.csv")
    assert per_source["bytes"].sum() == n_bytes and per_source["documents"].sum() == len(val)


def test_summary_train_loss_is_the_logged_mean_and_the_last_step_is_named_apart(corpus_file, tmp_path):
    result = pretrain(corpus_file, "bytes", steps=8, eval_every=4, out=tmp_path / "run", **TINY)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    last = read_history(tmp_path / "run")[-1]
    assert summary["train_loss"] == last["train_loss"] == result.train_loss
    assert summary["last_step_train_loss"] == result.last_step_train_loss != result.train_loss


def test_epochs_and_distinct_bytes_on_a_corpus_smaller_than_the_budget(tmp_path):
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"{i:03d} tiny text, repeated often."}) + "\n" for i in range(60)))
    result = pretrain(str(path), "bytes", steps=70, out=tmp_path / "run", context=16, batch_size=4, eval_every=100)
    from toklab.corpus import open_corpus
    from toklab.gpt.data import build_token_data, read_shard
    from toklab.segmenters import get_segmenter

    data = build_token_data(open_corpus(str(path)), get_segmenter("bytes"))
    tokens = np.concatenate([np.asarray(read_shard(p)) for p in data.train_shards])
    assert len(data.train_shards) == 1
    windows = (tokens.size - 1) // 16
    epoch_bytes = int((tokens[1 : windows * 16 + 1] != 256).sum())  # the targets of every window; EOT is 0 bytes
    assert result.epochs == pytest.approx(70 * 4 / windows) and result.epochs > 2
    assert result.unique_train_bytes == epoch_bytes
    assert 2 * epoch_bytes <= result.train_bytes_seen <= 3 * epoch_bytes
    assert result.train_split_bytes == data.bytes("train")
    assert any("repeated" in note for note in result.notes)
    assert "repeated" in (tmp_path / "run" / "summary.md").read_text()


def test_flops_are_6n_plus_12ltd_per_token_over_the_tokens_seen(corpus_file, tmp_path):
    result = pretrain(corpus_file, "bytes", n_layer=2, n_head=2, d_model=32, steps=3, out=tmp_path / "run", **TINY)
    # by hand: padded vocab 320; per layer 4*32^2 + 8*32^2 = 12,288; head 320*32 = 10,240
    n = 2 * 12_288 + 10_240
    per_token = 6 * n + 12 * 2 * 32 * 32
    assert result.flops_per_token == per_token == 233_472
    assert result.tokens == 3 * 4 * 32 and result.flops == result.tokens * per_token
    assert result.model["matmul_params"] == n
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["flops"] == result.flops and "6N + 12·L·T·d" in (tmp_path / "run" / "summary.md").read_text()


def test_budgets_turn_into_steps():
    assert Budget("flops", 1e9).total_steps(tokens_per_step=1000, flops_per_token=3e5) == 3  # floor(1e9 / 3e8)
    assert Budget("tokens", 2500).total_steps(1000, 1.0) == 3
    assert Budget("steps", 7).total_steps(1000, 1.0) == 7
    assert Budget("minutes", 1).total_steps(1000, 1.0) is None
    with pytest.raises(ToklabError, match="less than one step"):
        Budget("flops", 1e3).total_steps(1000, 3e5)
    with pytest.raises(ToklabError, match="must be a positive finite number"):
        Budget("steps", 0)


def test_schedules():
    cosine = TrainConfig(lr=1.0, warmup=0.1, min_lr_ratio=0.1)
    assert learning_rate(0.05, cosine) == pytest.approx(0.5)
    assert learning_rate(0.1, cosine) == pytest.approx(1.0)
    assert learning_rate(0.55, cosine) == pytest.approx(0.55)  # half way down the cosine: (1 + 0.1) / 2
    assert learning_rate(1.0, cosine) == pytest.approx(0.1)
    one_cycle = TrainConfig(lr=2.0, schedule="one-cycle")
    assert [learning_rate(p, one_cycle) for p in (0.0, 0.25, 0.5, 0.75, 1.0)] == pytest.approx([0.0, 1.0, 2.0, 1.0, 0.0])


def test_gradient_accumulation_reaches_the_batch_tokens(corpus_file, tmp_path):
    result = pretrain(corpus_file, "bytes", tokens=1024, batch_tokens=256, out=tmp_path / "run", **TINY)
    assert result.train["accumulation"] == 2 and result.train["tokens_per_step"] == 256
    assert result.steps == 4 and result.tokens == 1024


def test_resume_gives_the_same_losses(corpus_file, tmp_path, monkeypatch):
    options = dict(steps=30, eval_every=5, checkpoint_every=10, **TINY)
    whole = pretrain(corpus_file, "bytes", out=tmp_path / "whole", **options)

    with monkeypatch.context() as patched:
        crash_after_checkpoints(patched, 2)  # the process dies right after the step-20 checkpoint
        with pytest.raises(KeyboardInterrupt):
            pretrain(corpus_file, "bytes", out=tmp_path / "cut", **options)
    assert [h["step"] for h in read_history(tmp_path / "cut")] == [0, 5, 10, 15, 20]
    first_session_wall = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["wall"]
    assert first_session_wall > 0
    with pytest.raises(ToklabError, match="other settings"):
        pretrain(corpus_file, "bytes", out=tmp_path / "cut", resume=True, **{**options, "steps": 40})
    resumed = pretrain(corpus_file, "bytes", out=tmp_path / "cut", resume=True, **options)

    def losses(history):
        return [(h["step"], h["train_loss"], h["val_loss"], h["val_bits_per_byte"]) for h in history]

    assert losses(resumed.history) == losses(whole.history)  # exactly, not approximately
    assert losses(read_history(tmp_path / "cut")) == losses(whole.history)
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.wall_s > first_session_wall  # wall time adds up over sessions
    assert resumed.val_bits_per_byte == whole.val_bits_per_byte


def test_resume_reads_a_checkpoint_onto_the_cpu_whatever_the_device(corpus_file, tmp_path, monkeypatch):
    # On CUDA, torch.load(map_location="cuda") moved the saved RNG state to the GPU and
    # torch.set_rng_state raised TypeError. Emulated here: a load mapped anywhere but the CPU
    # returns RNG states that are not CPU byte tensors, as a CUDA mapping does.
    options = dict(steps=6, checkpoint_every=3, **TINY)
    pretrain(corpus_file, "bytes", out=tmp_path / "run", **options)
    real_load = torch.load

    def load(path, map_location=None, **kwargs):
        state = real_load(path, map_location="cpu", **kwargs)
        if map_location != "cpu" and isinstance(state, dict) and "rng" in state:
            state["rng"]["torch"] = state["rng"]["torch"].to("meta")  # a tensor off the CPU, as a CUDA mapping gives
        return state

    from toklab.corpus import open_corpus
    from toklab.gpt.data import build_token_data
    from toklab.gpt.model import GPTConfig
    from toklab.segmenters import get_segmenter

    run = json.loads((tmp_path / "run" / "run.json").read_text())
    trainer = train_module.Trainer(
        build_token_data(open_corpus(corpus_file), get_segmenter("bytes")), GPTConfig.from_dict(run["model"]), TrainConfig.from_dict(run["train"]),
        tmp_path / "run", segmenter_spec="bytes",
    )  # fmt: skip
    trainer.device = "cuda:0"  # as on a GPU machine; the model stays where it is
    monkeypatch.setattr(torch, "load", load)
    trainer.load_checkpoint()
    assert trainer.step == 6


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(corpus_file, tmp_path, monkeypatch):
    poison_training_loss(monkeypatch, at_call=7)
    with pytest.raises(ToklabError, match="loss became nan at step 7.*last good checkpoint"):
        pretrain(corpus_file, "bytes", steps=20, checkpoint_every=5, out=tmp_path / "run", **TINY)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 5


def test_out_of_memory_message_offers_settings_that_fit(corpus_file, tmp_path):
    from toklab.corpus import open_corpus
    from toklab.gpt.data import build_token_data
    from toklab.gpt.model import model_config
    from toklab.segmenters import get_segmenter

    seg = get_segmenter("bytes")
    trainer = train_module.Trainer(build_token_data(open_corpus(corpus_file), seg), model_config(257, "tiny", 32), TrainConfig(batch_size=8), tmp_path, segmenter_spec="bytes")
    message = trainer._oom_message()
    assert "--batch-size 8 x context 32" in message and "--batch-size 4 with 2 accumulation steps" in message and "--batch-tokens 256" in message


def test_gpu_peaks_for_mfu():
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_peak_flops("Some Future Accelerator") is None


def test_cli_pretrain_then_sample(corpus_file, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "pretrain", "-c", corpus_file, "-s", "bytes", "--steps", "5", "--context", "32", "--eval-bytes", "2048", "--out", str(out))
    assert code == 0 and "val bits-per-byte" in stdout and "FLOPs" in stdout
    code, stdout, _ = run(capsys, "sample", "--run", str(out), "--prompt", "the cat", "-n", "20", "--temperature", "0")
    assert code == 0 and stdout.startswith("the cat")
    assert sample(out, "the cat", max_new_tokens=20, temperature=0) == sample(out, "the cat", max_new_tokens=20, temperature=0)
    # a second run into the same folder needs --resume or --overwrite; other folders are refused
    code, _, err = run(capsys, "pretrain", "-c", corpus_file, "--steps", "5", "--out", str(out))
    assert code == 2 and "--overwrite" in err
    code, _, err = run(capsys, "pretrain", "-c", corpus_file, "--steps", "5", "--flops", "1e9", "--out", str(tmp_path / "x"))
    assert code == 2 and "one budget" in err
    code, _, err = run(capsys, "sample", "--run", str(tmp_path))
    assert code == 2 and "not a pretrain run" in err
    code, _, err = run(capsys, "pretrain", "-c", corpus_file, "--model", "huge", "--out", str(tmp_path / "y"))
    assert code == 2 and "tiny" in err


def test_bfloat16_autocast_path_trains_on_cpu(corpus_file, tmp_path):
    # the CUDA runs use bf16 autocast; on CPU the same code path runs through CPU autocast
    result = pretrain(corpus_file, "bytes", steps=10, dtype="bfloat16", device="cpu", out=tmp_path / "run", **TINY)
    assert math.isfinite(result.val_loss) and result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    with pytest.raises(ToklabError, match="no CUDA device") if not torch.cuda.is_available() else pytest.raises(ToklabError, match="unknown --device"):
        pretrain(corpus_file, "bytes", steps=1, device="cuda" if not torch.cuda.is_available() else "tpu", out=tmp_path / "x", **TINY)


def test_seeds_train_separate_runs_and_give_a_t_interval(corpus_file, tmp_path, capsys):
    from toklab.pretrain import pretrain_seeds

    several = pretrain_seeds(corpus_file, "bytes", seeds=2, seed=5, steps=3, out=tmp_path / "runs", **TINY)
    assert [r.train["seed"] for r in several.runs] == [5, 6] and [r.out.name for r in several.runs] == ["seed-5", "seed-6"]
    a, b = (r.val_bits_per_byte for r in several.runs)
    assert a != b  # another seed, another initialisation and data order
    half = 12.706 * abs(a - b) / 2  # t(0.975, 1) x s / sqrt(2), s = |a - b| / sqrt(2)
    assert several.val_bits_per_byte.estimate == pytest.approx((a + b) / 2)
    assert several.val_bits_per_byte.low == pytest.approx((a + b) / 2 - half) and several.val_bits_per_byte.high == pytest.approx((a + b) / 2 + half)
    code, stdout, _ = run(capsys, "pretrain", "-c", corpus_file, "--steps", "2", "--context", "32", "--seeds", "2", "--out", str(tmp_path / "cli"))
    assert code == 0 and "2 seeds: val bits-per-byte" in stdout and (tmp_path / "cli" / "seed-1" / "summary.json").is_file()


def test_a_minutes_budget_stops_on_time(corpus_file, tmp_path):
    result = pretrain(corpus_file, "bytes", minutes=0.01, eval_every=10**6, out=tmp_path / "run", **TINY)
    assert result.stopped_by == "minutes" and result.steps >= 1
    assert read_history(tmp_path / "run")[-1]["elapsed_s"] >= 0.6  # 0.01 minutes of training steps
    assert read_history(tmp_path / "run")[-1]["step"] == result.steps


def test_a_typed_train_config_and_keyword_options_give_the_same_run(corpus_file, tmp_path):
    from toklab.gpt.train import train_config

    by_keywords = pretrain(corpus_file, "bytes", steps=3, lr=2e-3, out=tmp_path / "a", **TINY)
    typed = TrainConfig(budget=Budget("steps", 3), lr=2e-3, batch_size=4, eval_bytes=2048)
    by_config = pretrain(corpus_file, "bytes", context=32, train=typed, out=tmp_path / "b")
    first = json.loads((tmp_path / "a" / "run.json").read_text())["train"]
    assert first == json.loads((tmp_path / "b" / "run.json").read_text())["train"]
    assert first["lr"] == 2e-3 and first["batch_size"] == 4 and first["budget"] == {"kind": "steps", "value": 3.0}
    assert by_keywords.val_bits_per_byte == by_config.val_bits_per_byte
    # keywords set fields on top of the config; a budget argument replaces the config's
    merged = train_config(typed, Budget("flops", 1e9), {"seed": 7})
    assert (merged.lr, merged.seed, merged.budget, merged.batch_size) == (2e-3, 7, Budget("flops", 1e9), 4)
    with pytest.raises(TypeError, match="unknown training options: learning_rate"):
        train_config(None, None, {"learning_rate": 1.0})
    with pytest.raises(ToklabError, match="--lr must be a positive"):
        train_config(typed, None, {"lr": -1.0})
