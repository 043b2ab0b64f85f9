"""`toklab study`: the CPU smoke configuration end to end, comparability, and resuming."""

from __future__ import annotations

import json

import pytest

from toklab.cli import main
from toklab.corpus import open_corpus
from toklab.gpt.data import build_token_data
from toklab.segmenters import get_segmenter
from toklab.study import CrammingFiltered, run_study


@pytest.fixture(scope="module")
def smoke(default_corpus_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "smoke"
    return run_study("default", smoke=True, filter_t=0.3, out=out)


def test_smoke_study_runs_every_segmenter_at_every_budget(smoke):
    table = smoke.table
    assert [(r.segmenter, r.filtered, r.budget_flops) for r in table.itertuples()] == [
        ("bytes", False, 3e10), ("bytes", False, 1e11),
        ("bpe:4k", False, 3e10), ("bpe:4k", False, 1e11), ("bpe:4k", True, 3e10), ("bpe:4k", True, 1e11),
    ]  # fmt: skip  (bytes has no filtered rows: every document has more than 0.3 tokens per char)
    assert any("no filtered runs for bytes" in n for n in smoke.notes)
    assert table.loc[table.segmenter == "bytes", "bytes_per_token"].eq(1.0).all()
    for r in table.itertuples():
        summary = json.loads((smoke.out / "runs" / r.run / "summary.json").read_text())
        step_flops = summary["flops_per_token"] * summary["train"]["tokens_per_step"]
        assert r.budget_flops - step_flops < r.flops <= r.budget_flops  # a whole number of steps within the budget
        assert r.bytes_seen == pytest.approx(r.flops / r.flops_per_byte)
        assert r.val_bits_per_byte == summary["val_bits_per_byte"]
        assert summary["model"]["n_layer"] == 2 and summary["model"]["d_model"] == 64 and summary["model"]["context"] == 64
    # more compute, lower bits-per-byte, for each segmenter
    for _, group in table.groupby(["segmenter", "filtered"]):
        assert group.sort_values("budget_flops")["val_bits_per_byte"].is_monotonic_decreasing
    assert len(smoke.summary) == 2 and all(" wins with " in line for line in smoke.summary)
    assert sorted(p.name for p in smoke.out.iterdir()) == [
        "bits_per_byte_vs_flops.png", "compare.csv", "runs", "study.json", "summary.md", "table.csv", "table.json", "table.md",
    ]  # fmt: skip


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
    again = run_study("default", smoke=True, filter_t=0.3, out=smoke.out)
    assert again.skipped_runs == 6 and again.table.drop(columns=["wall_s"]).equals(first)
    (smoke.out / "runs" / smoke.table.run.iloc[0] / "summary.json").unlink()  # as if killed before it finished
    redone = run_study("default", smoke=True, filter_t=0.3, out=smoke.out)
    assert redone.skipped_runs == 5
    assert redone.table.val_bits_per_byte.tolist() == smoke.table.val_bits_per_byte.tolist()  # the same run, resumed exactly
    # other settings in the same folder need --overwrite
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "--smoke", "--flops", "5e10", "--out", str(smoke.out)])
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err


def test_a_study_too_big_for_a_cpu_says_so():
    from toklab.study import _cpu_warning

    warning = _cpu_warning([1e16, 3e16, 1e17], variants=2, device="cpu")
    assert "6 runs" in warning and "2.8e+17 FLOPs" in warning and "778 hours" in warning  # 2.8e17 / 1e11 / 3600
    assert _cpu_warning([3e10, 1e11], variants=3, device="cpu") is None
