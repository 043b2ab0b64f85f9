"""Where commands write without --out, saying when they replace something, --json and `toklab report`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import toklab
from cli_helpers import cli_error, cli_ok, run_cli
from toklab.errors import ToklabError
from toklab.files import changed_settings, default_output, slug
from toklab.text import count


# --- names: expected values written by hand ---------------------------------------------------------


def test_slug_by_hand() -> None:
    assert slug("bpe:32k,regex=o200k") == "bpe-32k-regex-o200k"
    assert slug("entropy:target=4.5") == "entropy-target-4.5"
    assert slug("") == "unnamed" and slug("..") == "unnamed" and slug("///") == "unnamed"
    long_a, long_b = "x" * 150 + "a", "x" * 150 + "b"
    assert len(slug(long_a)) == 100 and slug(long_a).startswith("x" * 80)
    assert slug(long_a) != slug(long_b)  # the hash of the whole keeps them apart


def test_cache_key_by_hand() -> None:
    import hashlib

    from toklab.files import cache_key

    digest = hashlib.blake2b(b'["x", 1]', digest_size=8).hexdigest()
    assert cache_key("bpe:32k,regex=o200k", '["x", 1]') == f"bpe_32k_regex_o200k-{digest}"
    assert cache_key("hf:" + "a" * 100, "").startswith("hf_" + "a" * 57 + "-")


def test_default_output_and_settings_by_hand() -> None:
    assert default_output("compare", "sotu", "", "bytes_bpe:1k") == Path("reports/compare-sotu-bytes_bpe-1k")
    assert changed_settings({"a": 1, "train": {"lr": 1e-3, "seed": 0}}, {"a": 1, "train": {"lr": 2e-3, "seed": 0}, "b": 2}) == ["b", "train.lr"]


def test_count_by_hand() -> None:
    assert count(1, "document") == "1 document"
    assert count(0, "document") == "0 documents"
    assert count(1200, "run") == "1,200 runs"
    assert count(2, "pass", "passes") == "2 passes"


def test_corpus_label_names_the_reading_options(tmp_path: Path) -> None:
    data = tmp_path / "mydata.jsonl"
    data.write_text('{"text": "a"}\n')
    assert toklab.open_corpus(str(data)).label == "mydata"
    assert toklab.open_corpus(str(data), max_docs=100, val_fraction=0.2).label == "mydata-100docs-val0.2"
    assert toklab.open_corpus(str(data), sample=0.5, seed=3).label == "mydata-sample0.5-seed3"


def test_default_folders_differ_where_runs_differ(tmp_path: Path) -> None:
    from toklab.comparison import default_out as compare_out, default_segmenters
    from toklab.filter.report import default_report
    from toklab.gpt.train import Budget
    from toklab.pretrain import default_out as pretrain_out
    from toklab.study import default_out as study_out

    data = tmp_path / "mydata.jsonl"
    data.write_text('{"text": "a"}\n')
    corpus = toklab.open_corpus(str(data))
    assert compare_out(corpus) == compare_out(corpus, default_segmenters()) == Path("reports/compare-mydata")
    assert compare_out(corpus, ["bytes", "bpe:8k"]) == Path("reports/compare-mydata-bytes_bpe-8k")
    assert compare_out(corpus, None, 0.25) == Path("reports/compare-mydata-t0.25")
    # the README's study commands, one after the other, no longer meet in one folder
    assert study_out(corpus, smoke=True) == Path("reports/study-mydata-smoke")
    assert study_out(corpus, smoke=True, filter_t=0.3) == Path("reports/study-mydata-smoke-filtered-t0.3")
    assert study_out(corpus, smoke=True, context_bytes=192) == Path("reports/study-mydata-smoke-ctx192bytes")
    assert study_out(corpus, smoke=True, segmenters=["bytes", "bpe:4k"], flops=[1e11, 3e10], seeds=3) == Path("reports/study-mydata-smoke")
    assert study_out(corpus, segmenters=["bytes"], flops=[1e16, 1.5e17]) == Path("reports/study-mydata-bytes-1e16_1.5e17")
    assert pretrain_out(corpus, "bpe:4k", "tiny", Budget("steps", 100)) == Path("reports/pretrain-mydata-bpe-4k-tiny-100steps")
    assert pretrain_out(corpus, "bytes", "tiny", Budget("flops", 1e11), seed=2, context="ctx64") == Path("reports/pretrain-mydata-bytes-tiny-1e11flops-ctx64-seed2")
    assert pretrain_out(corpus, "bytes", "tiny", Budget("flops", 1e11), seeds=3) == Path("reports/pretrain-mydata-bytes-tiny-1e11flops-3-seeds")
    # a dry run and a sweep of the same corpus keep separate reports
    assert default_report("mydata", None, threshold=0.3) == Path("reports/filter-mydata-bpe-32k-t0.3-dry-run")
    assert default_report("mydata", None, sweep=[0.25, 0.3]) == Path("reports/filter-mydata-bpe-32k-sweep-0.25-0.3")
    assert default_report("mydata", None, by="zstd") == Path("reports/filter-mydata-zstd-t0.5-dry-run")
    assert default_report("mydata", "out/kept") == Path("reports/filter-kept")


# --- the commands ---------------------------------------------------------------------------------


@pytest.fixture()
def small_corpus(tmp_path: Path) -> Path:
    lines = [json.dumps({"id": f"d{i}", "text": f"Document {i} says hello to the world, number {i * 7}. " * 20}) for i in range(40)]
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_compare_says_when_it_replaces_and_prints_json(capsys, small_corpus: Path, in_tmp: Path) -> None:
    args = ["compare", "--corpus", small_corpus, "--val-fraction", "0.3", "--no-compressors", "-q"]
    cli_ok(capsys, *args, "-s", "bytes")
    cli_ok(capsys, *args, "-s", "bytes,bpe:300")
    assert sorted(p.name for p in (in_tmp / "reports").iterdir()) == ["compare-small-val0.3-bytes", "compare-small-val0.3-bytes_bpe-300"]
    code, out, err = run_cli(capsys, *args, "-s", "bytes", "--json")
    assert code == 0
    assert "replaced the earlier compare report" in err
    payload = json.loads(out)  # stdout holds the JSON and nothing else
    assert [row["segmenter"] for row in payload["table"]] == ["bytes"]
    assert payload["table"][0]["bytes_per_token"] == 1.0
    assert payload["report"] == str(Path("reports/compare-small-val0.3-bytes"))
    shown = cli_ok(capsys, "report", "reports/compare-small-val0.3-bytes", "--json")
    assert json.loads(shown)["table"] == payload["table"]


def test_pretrain_rerun_shows_the_finished_run(capsys, small_corpus: Path, in_tmp: Path) -> None:
    args = ["pretrain", "--corpus", small_corpus, "--val-fraction", "0.3", "-s", "bytes", "--steps", "2", "--eval-every", "2", "--context", "16", "-q"]
    first = json.loads(cli_ok(capsys, *args, "--json"))
    run = Path(first["out"])
    assert run == Path("reports/pretrain-small-val0.3-bytes-tiny-2steps-ctx16")
    stamp = (run / "log.jsonl").stat().st_mtime_ns
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and "already finished" in err
    assert (run / "log.jsonl").stat().st_mtime_ns == stamp  # not trained again
    assert f"{first['val_bits_per_byte']:.4f}" in out
    again = json.loads(cli_ok(capsys, "report", run, "--json"))
    assert again["val_bits_per_byte"] == first["val_bits_per_byte"] and len(again["history"]) == len(first["history"])
    message = cli_error(capsys, *args, "--lr", "0.002")
    assert "train.lr differ" in message


def test_filter_dry_run_keeps_the_sweep_report(capsys, small_corpus: Path, in_tmp: Path) -> None:
    args = ["filter", "--corpus", small_corpus, "-s", "bytes", "-q"]
    cli_ok(capsys, *args, "--sweep", "0.5,1.5")
    cli_ok(capsys, *args, "--dry-run", "--t", "1.5")
    reports = sorted(p.name for p in (in_tmp / "reports").iterdir())
    assert reports == ["filter-small-bytes-sweep-0.5-1.5", "filter-small-bytes-t1.5-dry-run"]
    shown = cli_ok(capsys, "report", "reports/filter-small-bytes-sweep-0.5-1.5")
    assert "keep rates by threshold" in shown
    summary = json.loads(cli_ok(capsys, "report", "reports/filter-small-bytes-t1.5-dry-run", "--json"))
    assert summary["kept"] == 40 and summary["documents"] == 40  # bytes: tokens = UTF-8 bytes = chars here, 1 <= 1.5


def test_report_refuses_what_it_cannot_read(capsys, tmp_path: Path) -> None:
    assert "does not exist" in cli_error(capsys, "report", tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    assert "holds no toklab report" in cli_error(capsys, "report", tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{}")
    assert "no finished pretrain run" in cli_error(capsys, "report", tmp_path / "bad")


def test_help_paragraphs_rewrap_and_value_names_are_words(capsys) -> None:
    import re

    import typer

    from toklab.cli import _polish, app

    def walk(command, path=()):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, path + (name,))

    commands = list(walk(_polish(typer.main.get_command(app))))
    assert len(commands) > 10
    for path, command in commands:
        if command.help:
            assert not re.search(r"[^\n]\n[^\n]", command.help), path  # no line breaks inside a paragraph
        if path:
            shown = cli_ok(capsys, *path, "--help")
            assert not re.search(r"<(str|bool|int|float|list)", shown), (path, shown)


def test_saved_study_example_renders_whole_at_80_columns(capsys) -> None:
    example = Path(__file__).resolve().parent.parent / "reports" / "examples" / "study-smoke"
    shown = cli_ok(capsys, "report", example)
    assert "…" not in shown  # no figure or name cut short
    assert "bpe:4k (filtered)" in shown and max(len(line) for line in shown.splitlines()) <= 80
    rows = json.loads((example / "table.json").read_text())["rows"]
    for row in rows:  # every mean and interval half-width as saved
        assert f"{row['val_bits_per_byte']:.4f}" in shown
        assert f"{(row['val_bpb_high'] - row['val_bpb_low']) / 2:.4f}" in shown


# --- the one folder policy (toklab.outputs) -------------------------------------------------------


def test_the_folder_policy_decides_each_case(tmp_path):
    from toklab.outputs import OutputPolicy, Plan, plan_output

    run = OutputPolicy("run", resumable=True)
    study = OutputPolicy("study", continues_same=True)
    new = tmp_path / "new"
    assert plan_output(new, run, previous=None, settings={"a": 1}) is Plan.NEW
    with pytest.raises(ToklabError, match="holds no run to continue"):
        plan_output(new, run, previous=None, settings={"a": 1}, resume=True)
    held = tmp_path / "held"
    held.mkdir()
    (held / "run.json").write_text("{}")
    same, other = {"a": 1}, {"a": 2}
    assert plan_output(held, run, previous=same, settings=same, resume=True) is Plan.CONTINUE
    assert plan_output(held, run, previous=same, settings=other, overwrite=True) is Plan.REPLACE
    assert plan_output(held, study, previous=same, settings=same) is Plan.CONTINUE
    with pytest.raises(ToklabError, match=r"^--out .* already holds a run; pass --resume to continue it or --overwrite to replace it, or choose another --out$"):
        plan_output(held, run, previous=same, settings=same)
    with pytest.raises(ToklabError, match=r"already holds a study with other settings \(a differ\); pass --overwrite to replace it"):
        plan_output(held, study, previous=same, settings=other)
    with pytest.raises(ToklabError, match=r"^--resume: the run in .* was started with other settings \(a differ\)"):
        plan_output(held, run, previous=same, settings=other, resume=True)
    with pytest.raises(ToklabError, match="holds a damaged run"):
        plan_output(held, run, previous=None, settings=same, damaged="run.json cannot be read")
    assert plan_output(held, run, previous=None, settings=same, damaged="x", overwrite=True) is Plan.REPLACE
    with pytest.raises(ToklabError, match="is not empty and holds no toklab run"):  # --overwrite never replaces what is not ours
        plan_output(held, run, previous=None, settings=same, overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ToklabError, match="is a file"):
        plan_output(tmp_path / "file", run, previous=None, settings=same)
