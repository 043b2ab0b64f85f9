"""`toklab study`: the CPU smoke configuration end to end, same documents for every run, seeds and
intervals, honest data accounting, and resuming."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from toklab import split_of
from toklab.cli import main
from toklab.corpus import open_corpus
from toklab.gpt.data import build_token_data
from toklab.segmenters import get_segmenter
from toklab.study import CrammingFiltered, conclusions, pairwise_differences, run_study

WORDS = "the cat sat on a mat and the dog ran to the park where birds sing all day long while rain falls".split()


@pytest.fixture(scope="module")
def smoke(default_corpus_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "smoke"
    return run_study("default", smoke=True, filter_t=0.3, seeds=2, out=out)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    rng = np.random.default_rng(1)
    records = [
        {"id": f"doc{i}", "text": " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), int(rng.integers(20, 90)))), "source": ("prose/a", "prose/b", "code/c")[i % 3]}
        for i in range(300)
    ]  # fmt: skip
    path = tmp_path_factory.mktemp("small") / "docs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path), records


@pytest.fixture(scope="module")
def small_study(small_corpus, tmp_path_factory):
    path, _ = small_corpus
    out = tmp_path_factory.mktemp("study") / "small"
    return run_study(path, ["bytes", "bpe:300"], [2e8, 6e8], model="tiny", context=32, seeds=3, val_bytes=None, eval_bytes=2048, batch_size=4, out=out)


def test_every_run_scores_the_same_whole_validation_documents(small_study, small_corpus):
    _, records = small_corpus
    val = [r for r in records if split_of(r["id"], 0.1) == "val"]
    val_bytes = sum(len(r["text"].encode("utf-8")) for r in val)  # independently of toklab's own counting
    runs = small_study.runs
    assert len(runs) == 2 * 2 * 3 and set(runs.seed) == {0, 1, 2}
    assert runs.val_bytes_scored.eq(val_bytes).all() and runs.val_docs_scored.eq(len(val)).all()
    ids = None
    for run in runs.run:
        docs = pd.read_parquet(small_study.out / "runs" / run / "val_documents.parquet")
        assert sorted(docs.id) == sorted(r["id"] for r in val) and int(docs.bytes.sum()) == val_bytes
        summary = json.loads((small_study.out / "runs" / run / "summary.json").read_text())
        # the run's figure is its per-document losses over ln 2 x the documents' bytes
        assert summary["val_bits_per_byte"] == pytest.approx(docs.loss_nats.sum() / (math.log(2) * val_bytes), rel=1e-12)
        ids = sorted(docs.id) if ids is None else ids
        assert sorted(docs.id) == ids
    table = json.loads((small_study.out / "table.json").read_text())
    assert {r["val_bytes_scored"] for r in table["rows"]} == {val_bytes} and {r["val_docs_scored"] for r in table["rows"]} == {len(val)}


def test_rows_are_means_over_seeds_with_t_intervals(small_study):
    for row in small_study.table.itertuples():
        values = small_study.runs[(small_study.runs.segmenter == row.segmenter) & (small_study.runs.budget_flops == row.budget_flops)].val_bits_per_byte.to_numpy()
        assert row.seeds == 3 and len(values) == 3 and len(set(values)) == 3  # the seeds differ
        half = 4.303 * values.std(ddof=1) / math.sqrt(3)  # t(0.975, 2) = 4.303
        assert row.val_bits_per_byte == pytest.approx(values.mean())
        assert (row.val_bpb_low, row.val_bpb_high) == pytest.approx((values.mean() - half, values.mean() + half), rel=1e-6)


def test_one_split_per_row_and_unique_bytes(small_study, small_corpus):
    path, _ = small_corpus
    corpus = open_corpus(path)
    for row in small_study.table.itertuples():
        data = build_token_data(corpus, get_segmenter(row.segmenter, corpus))
        assert row.bytes_per_token == pytest.approx(data.bytes("train") / data.tokens("train"))  # the training split, EOT counted
        runs = small_study.runs[(small_study.runs.segmenter == row.segmenter) & (small_study.runs.budget_flops == row.budget_flops)]
        for r in runs.itertuples():
            summary = json.loads((small_study.out / "runs" / r.run / "summary.json").read_text())
            assert r.flops_per_byte == pytest.approx(summary["flops_per_token"] * data.tokens("train") / data.bytes("train"))
            assert r.bytes_seen == summary["unique_train_bytes"] <= data.bytes("train")
            assert r.train_bytes_seen >= r.bytes_seen
    assert (small_study.out / "per_source.csv").is_file()
    per_source = small_study.per_source
    assert set(per_source.source) == {"prose/a", "prose/b", "code/c"}


def test_the_summary_names_a_winner_only_outside_the_interval():
    table = pd.DataFrame([
        {"segmenter": "a", "filtered": False, "budget_flops": 1e9, "seeds": 3, "val_bits_per_byte": 2.0, "val_bpb_low": 1.9, "val_bpb_high": 2.1, "epochs": 0.5},
        {"segmenter": "b", "filtered": False, "budget_flops": 1e9, "seeds": 3, "val_bits_per_byte": 2.5, "val_bpb_low": 2.4, "val_bpb_high": 2.6, "epochs": 0.5},
        {"segmenter": "a", "filtered": False, "budget_flops": 1e10, "seeds": 3, "val_bits_per_byte": 1.50, "val_bpb_low": 1.4, "val_bpb_high": 1.6, "epochs": 3.0},
        {"segmenter": "b", "filtered": False, "budget_flops": 1e10, "seeds": 3, "val_bits_per_byte": 1.51, "val_bpb_low": 1.4, "val_bpb_high": 1.6, "epochs": 1.0},
    ])  # fmt: skip
    differences = pd.DataFrame([
        {"budget_flops": 1e9, "best": "a", "other": "b", "difference": 0.5, "low": 0.3, "high": 0.7, "distinguishable": True, "method": "m"},
        {"budget_flops": 1e10, "best": "a", "other": "b", "difference": 0.01, "low": -0.02, "high": 0.04, "distinguishable": False, "method": "m"},
    ])  # fmt: skip
    lines = conclusions(table, differences)
    assert lines[0].startswith("At 1e+09 FLOPs: a is better: lower than b by 0.5000")
    assert "no winner" in lines[1] and "indistinguishable" in lines[1] and "is better" not in lines[1]
    assert "repeated" in lines[2] and "a 3.0x" in lines[2]


def test_pairwise_differences_use_the_documents_of_every_seed():
    runs = pd.DataFrame([
        {"segmenter": s, "filtered": False, "budget_flops": 1e9, "seed": k, "val_bits_per_byte": v, "run": f"{s}{k}"}
        for s, base in (("a", 1.0), ("b", 2.0)) for k, v in enumerate((base, base))
    ])  # fmt: skip
    doc_bytes = np.array([10, 20, 30, 40])
    ln2 = math.log(2)
    documents = {
        f"{s}{k}": pd.DataFrame({"id": list("wxyz"), "bytes": doc_bytes, "loss_nats": base * ln2 * doc_bytes})
        for s, base in (("a", 1.0), ("b", 2.0)) for k in range(2)
    }  # fmt: skip
    diff = pairwise_differences(runs, documents, replicates=200)
    assert diff.best.tolist() == ["a"] and diff.other.tolist() == ["b"]
    assert diff.difference.iloc[0] == pytest.approx(1.0) and diff.low.iloc[0] == pytest.approx(1.0) and diff.high.iloc[0] == pytest.approx(1.0)
    assert bool(diff.distinguishable.iloc[0])


def test_smoke_study_runs_every_segmenter_at_every_budget(smoke):
    table = smoke.table
    assert [(r.segmenter, r.filtered, r.budget_flops, r.seeds) for r in table.itertuples()] == [
        ("bytes", False, 3e10, 2), ("bytes", False, 1e11, 2),
        ("bpe:4k", False, 3e10, 2), ("bpe:4k", False, 1e11, 2), ("bpe:4k", True, 3e10, 2), ("bpe:4k", True, 1e11, 2),
    ]  # fmt: skip  (bytes has no filtered rows: every document has more than 0.3 tokens per char)
    assert any("no filtered runs for bytes" in n for n in smoke.notes)
    assert table.val_docs_scored.nunique() == 1 and table.val_bytes_scored.nunique() == 1
    assert table.val_bytes_scored.iloc[0] <= 65_536  # the smoke configuration's byte-capped sample
    for r in smoke.runs.itertuples():
        summary = json.loads((smoke.out / "runs" / r.run / "summary.json").read_text())
        step_flops = summary["flops_per_token"] * summary["train"]["tokens_per_step"]
        assert r.budget_flops - step_flops < r.flops <= r.budget_flops  # a whole number of steps within the budget
        assert r.val_bits_per_byte == summary["val_bits_per_byte"]
        assert summary["model"]["n_layer"] == 2 and summary["model"]["d_model"] == 64 and summary["model"]["context"] == 64
    for _, group in table.groupby(["segmenter", "filtered"]):  # more compute, lower bits-per-byte
        assert group.sort_values("budget_flops")["val_bits_per_byte"].is_monotonic_decreasing
    assert len(smoke.summary) >= 2 and all(line.startswith("At ") for line in smoke.summary)
    assert sorted(p.name for p in smoke.out.iterdir()) == [
        "bits_per_byte_vs_flops.png", "bytes_per_token_vs_bits_per_byte.png", "compare.csv", "differences.csv", "per_source.csv", "runs",
        "runs.csv", "study.json", "summary.md", "table.csv", "table.json", "table.md",
    ]  # fmt: skip
    assert "whole validation documents" in (smoke.out / "table.md").read_text()


def test_filtered_rows_are_scored_on_the_unfiltered_validation_split(smoke):
    corpus = open_corpus("default")
    seg = get_segmenter("bpe:4k", corpus)
    plain, filtered = build_token_data(corpus, seg), build_token_data(CrammingFiltered(corpus, seg, 0.3), seg)
    assert filtered.manifest["splits"]["val"] == plain.manifest["splits"]["val"]
    assert [p.read_bytes() for p in filtered.val_shards] == [p.read_bytes() for p in plain.val_shards]
    assert 0 < filtered.bytes("train") < plain.bytes("train")
    keep = smoke.table.loc[smoke.table.filtered, "train_keep_rate_bytes"]
    assert keep.eq(filtered.bytes("train") / plain.bytes("train")).all()


def test_a_restarted_study_skips_finished_runs(smoke, capsys):
    first = smoke.table.drop(columns=["wall_s"])
    again = run_study("default", smoke=True, filter_t=0.3, seeds=2, out=smoke.out)
    assert again.skipped_runs == 12 and again.table.drop(columns=["wall_s"]).equals(first)
    (smoke.out / "runs" / smoke.runs.run.iloc[0] / "summary.json").unlink()  # as if killed before it finished
    redone = run_study("default", smoke=True, filter_t=0.3, seeds=2, out=smoke.out)
    assert redone.skipped_runs == 11
    assert redone.runs.val_bits_per_byte.tolist() == smoke.runs.val_bits_per_byte.tolist()  # the same run, resumed exactly
    # other settings in the same folder need --overwrite
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "--smoke", "--flops", "5e10", "--out", str(smoke.out)])
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err


def test_equal_context_in_bytes(small_corpus, tmp_path):
    path, _ = small_corpus
    result = run_study(path, ["bytes", "bpe:300"], [2e9], model="tiny", context_bytes=96, seeds=1, batch_size=4, out=tmp_path / "s")
    contexts = dict(zip(result.table.segmenter, result.table.context))
    corpus = open_corpus(path)
    bpt = build_token_data(corpus, get_segmenter("bpe:300", corpus)).bytes_per_token("train")
    assert contexts["bpe:300"] == round(96 / bpt) < contexts["bytes"] == round(96 / build_token_data(corpus, get_segmenter("bytes")).bytes_per_token("train"))
    assert "96 bytes per window" in (tmp_path / "s" / "table.md").read_text()
    assert result.table.val_bpb_low.isna().all()  # one seed: no interval is invented


def test_a_study_too_big_for_a_cpu_says_so(capsys, small_corpus, tmp_path):
    from toklab.errors import ToklabError
    from toklab.gpt.train import check_duration

    with pytest.raises(ToklabError, match=r"6 runs: 2\.8e\+17 training FLOPs .* roughly 777\.8 hours; pass --yes"):
        check_duration(2 * (1e16 + 3e16 + 1e17), "cpu", False, "this study trains 6 runs")  # 2.8e17 / 1e11 / 3600 = 777.8
    assert "777.8 hours" in check_duration(2.8e17, "cpu", True, "x")  # --yes: a note, not a refusal
    assert check_duration(3 * (3e10 + 1e11), "cpu", False, "x") is None  # seconds: nothing to say
    path, _ = small_corpus
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "-c", path, "--flops", "1e16,1e17", "--out", str(tmp_path / "big")])
    assert exit_info.value.code == 2 and "--yes" in capsys.readouterr().err
    assert not (tmp_path / "big").exists()


def test_patch_model_rows_beside_token_rows_on_the_same_bytes(small_corpus, tmp_path):
    """blt: rows train the patch model on the same budgets and score the same validation bytes;
    their bytes/token column is bytes per patch; a filtered variant is refused with a note."""
    path, records = small_corpus
    val = [r for r in records if split_of(r["id"], 0.1) == "val"]
    val_bytes = sum(len(r["text"].encode("utf-8")) for r in val)
    result = run_study(path, ["bytes", "blt:static,size=4", "blt:space"], [3e8], model="tiny", context_bytes=64, seeds=2, filter_t=0.3, batch_size=4, out=tmp_path / "s")
    rows = result.table.set_index("segmenter")
    assert set(rows.index) == {"bytes", "blt:static,size=4", "blt:space"}
    assert result.runs.val_bytes_scored.eq(val_bytes).all() and result.runs.val_docs_scored.eq(len(val)).all()
    assert rows.loc["blt:static,size=4", "bytes_per_token"] == pytest.approx(4.0, rel=0.05)
    assert rows.loc["blt:space", "context"] == 64 and rows.loc["blt:space", "vocab_size"] == 514
    train = [r["text"] for r in records if split_of(r["id"], 0.1) == "train"]
    # a patch per word (words are short of max_len), and each end-of-text one of its own: the
    # stream is end-of-text, doc, end-of-text, ..., doc, end-of-text
    patches = sum(len(t.split(" ")) for t in train) + len(train) + 1
    assert rows.loc["blt:space", "bytes_per_token"] == pytest.approx(sum(len(t.encode()) for t in train) / patches, rel=1e-9)
    assert any("no filtered runs for blt:space" in n for n in result.notes)
    assert any(n.startswith("blt:space: ") and "bytes per patch" in n for n in result.notes)
    assert not result.table.filtered[result.table.segmenter.str.startswith("blt:")].any()


def test_a_typed_train_config_reaches_every_run(small_corpus, tmp_path):
    from toklab.gpt.train import TrainConfig

    path, _ = small_corpus
    result = run_study(path, ["bytes"], [2e8], model="tiny", context=32, seeds=2, train=TrainConfig(batch_size=4, lr=2e-3, seed=3), eval_bytes=2048, out=tmp_path / "s")
    config = json.loads((tmp_path / "s" / "study.json").read_text())["config"]
    assert config["seeds"] == [3, 4] and config["train"] == {"batch_size": 4, "eval_bytes": 2048, "lr": 2e-3}
    for run, seed in zip(result.runs.run, (3, 4)):
        train = json.loads((tmp_path / "s" / "runs" / run / "run.json").read_text())["train"]
        assert (train["batch_size"], train["lr"], train["seed"], train["eval_bytes"]) == (4, 2e-3, seed, 2048)
        assert train["budget"] == {"kind": "flops", "value": 2e8}
