"""`toklab pretrain --arch blt`: the byte-latent patch model in the trainer, scored on the same
validation bytes as a bytes GPT; causality end to end (patcher + model), exact resume, NaN."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from cli_helpers import cli_error
from conftest import crash_after_checkpoints, poison_training_loss, val_records, write_word_corpus
from toklab.errors import ToklabError
from toklab.gpt.blt import BLT, BLTConfig, blt_config
from toklab.pretrain import pretrain, read_history

TINY = {"context": 32, "eval_bytes": 2048, "batch_size": 4}


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return write_word_corpus(tmp_path_factory.mktemp("pretrain-blt") / "docs.jsonl", docs=300, words=50, seed=1)


def _flagged(text: str, size: int) -> list[int]:
    """Static patches of `size` bytes by hand: a patch starts at t when t // size changes (id + 257)."""
    data = text.encode()
    return [b + 257 if t % size == 0 else b for t, b in enumerate(data)]


def test_bits_per_byte_by_hand_and_the_same_bytes_as_a_bytes_gpt(corpus_file, tmp_path):
    result = pretrain(corpus_file, "static:size=4", arch="blt", steps=4, out=tmp_path / "blt", **TINY)
    gpt = pretrain(corpus_file, "bytes", steps=2, out=tmp_path / "gpt", **TINY)
    run = json.loads((tmp_path / "blt" / "run.json").read_text())
    assert run["arch"] == "blt" and "arch" not in json.loads((tmp_path / "gpt" / "run.json").read_text())
    model = BLT(BLTConfig.from_dict({k: v for k, v in run["model"].items()}))
    model.load_state_dict(torch.load(tmp_path / "blt" / "checkpoint.pt", weights_only=False)["model"])
    model.eval()
    # every validation document alone: end-of-text (513) then its flagged bytes as input, the
    # flagged bytes then end-of-text as targets, in consecutive windows of the context (32 bytes)
    per_doc, n_bytes = {}, 0
    with torch.no_grad():
        for r in val_records(corpus_file):
            ids = _flagged(r["text"], 4)
            inputs, targets = [513] + ids, ids + [513]
            loss = 0.0
            for k in range(0, len(targets), 32):
                x, y = torch.tensor([inputs[k : k + 32]]), torch.tensor([targets[k : k + 32]])
                loss += float(model(x, y, reduction="none")[1].double().sum())
            per_doc[r["id"]] = loss
            n_bytes += len(r["text"].encode())
    total = sum(per_doc.values())
    assert result.val_bytes_scored == n_bytes == gpt.val_bytes_scored and result.val_docs_scored == gpt.val_docs_scored
    assert result.val_bits_per_byte == pytest.approx(total / (math.log(2) * n_bytes), rel=1e-5)
    blt_docs = pd.read_parquet(tmp_path / "blt" / "val_documents.parquet")
    gpt_docs = pd.read_parquet(tmp_path / "gpt" / "val_documents.parquet")
    assert sorted(blt_docs["id"]) == sorted(gpt_docs["id"]) and int(blt_docs["bytes"].sum()) == int(gpt_docs["bytes"].sum())
    assert dict(zip(blt_docs["id"], blt_docs["loss_nats"])) == pytest.approx(per_doc, rel=1e-5)
    # FLOPs: the model's count at the training split's positions per patch (4 bytes, and each
    # document's end-of-text starts a patch of its own)
    assert result.arch == "blt" and result.patches["bytes_per_patch"] == pytest.approx(4.0, rel=0.05)
    # static patches of 4: every one 4 bytes but each document's last (its length mod 4)
    stats = result.patches["patch_bytes"]
    val_ids = {r["id"] for r in val_records(corpus_file)}
    train = [len(json.loads(line)["text"].encode()) for line in open(corpus_file) if json.loads(line)["id"] not in val_ids]
    assert stats["median"] == 4 and stats["p90"] == 4 and stats["max"] == 4
    assert stats["mean"] == pytest.approx(sum(train) / sum(math.ceil(n / 4) for n in train), rel=1e-12)
    expected = blt_config("tiny", 32).flops_per_byte(result.patches["positions_per_patch"])
    assert result.flops_per_token == pytest.approx(expected, rel=1e-12)
    assert result.flops == pytest.approx(result.steps * 4 * 32 * expected, rel=1e-12)


@pytest.mark.parametrize("spec", ["static:size=3", "space", "entropy:target=3"])
def test_loss_before_a_changed_byte_is_unchanged_whatever_the_patcher(spec, corpus_file):
    """Patcher and model together: the flags are recomputed from the changed text, and the loss on
    every byte before the change stays the same."""
    from toklab.corpus import open_corpus
    from toklab.segmenters.patchers import load_patcher

    patched = load_patcher(spec, open_corpus(corpus_file))
    torch.manual_seed(0)
    model = BLT(blt_config("tiny", 96)).eval()
    text = "the cat sat on a mat, and the dog ran to the park where birds sing all day long."
    for j in (5, 23, 40, 61):
        changed = text[:j] + "Q#zx" + text[j + 4 :]
        losses = []
        for t in (text, changed):
            ids = [513] + patched.encode(t) + [513]
            x, y = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
            with torch.no_grad():
                losses.append(model(x, y, reduction="none")[1][0])
        # target position i predicts byte i of the text: those before j must not move
        assert torch.allclose(losses[0][:j], losses[1][:j], atol=1e-5), (spec, j)
        assert not torch.allclose(losses[0][j:], losses[1][j:], atol=1e-5)


def test_resume_gives_the_same_losses(corpus_file, tmp_path, monkeypatch):
    options = dict(arch="blt", steps=12, eval_every=4, checkpoint_every=4, **TINY)
    whole = pretrain(corpus_file, "space", out=tmp_path / "whole", **options)
    with monkeypatch.context() as patched:
        crash_after_checkpoints(patched, 2)
        with pytest.raises(KeyboardInterrupt):
            pretrain(corpus_file, "space", out=tmp_path / "cut", **options)
    assert [h["step"] for h in read_history(tmp_path / "cut")] == [0, 4, 8]
    resumed = pretrain(corpus_file, "space", out=tmp_path / "cut", resume=True, **options)

    def losses(history):
        return [(h["step"], h["train_loss"], h["val_loss"], h["val_bits_per_byte"]) for h in history]

    assert losses(resumed.history) == losses(whole.history)  # exactly
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_nan_loss_stops_a_blt_run_and_keeps_the_last_good_checkpoint(corpus_file, tmp_path, monkeypatch):
    poison_training_loss(monkeypatch, at_call=7, model_class=BLT)
    with pytest.raises(ToklabError, match="loss became nan at step 7.*last good checkpoint"):
        pretrain(corpus_file, "static:size=4", arch="blt", steps=20, checkpoint_every=5, out=tmp_path / "run", **TINY)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 5


def test_bad_blt_requests_are_one_line_errors(corpus_file, tmp_path, capsys):
    assert "shape a GPT" in cli_error(capsys, "pretrain", "-c", corpus_file, "--arch", "blt", "-s", "space", "--n-layer", "3", "--steps", "2", "--out", str(tmp_path / "a"))
    assert "unknown --arch" in cli_error(capsys, "pretrain", "-c", corpus_file, "--arch", "rnn", "--steps", "2", "--out", str(tmp_path / "b"))
    assert "unknown BLT preset" in cli_error(capsys, "pretrain", "-c", corpus_file, "--arch", "blt", "-s", "space", "-m", "medium", "--steps", "2", "--out", str(tmp_path / "c"))
    assert "size=0" in cli_error(capsys, "pretrain", "-c", corpus_file, "--arch", "blt", "-s", "static:size=0", "--steps", "2", "--out", str(tmp_path / "d"))
    pretrain(corpus_file, "space", arch="blt", steps=2, out=tmp_path / "run", **TINY)
    assert "sampling is for GPT runs only" in cli_error(capsys, "sample", "-r", str(tmp_path / "run"))
