"""`toklab filter`: the Cramming rule, conservation, field preservation, resume and safety."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

import toklab.filter as filter_module
import toklab.filter.shards as filter_shards
from toklab.cli import main
from toklab.errors import ToklabError
from toklab.filter import count_rows, filter_corpus, rejected_folder
from toklab.measures import keep_rates


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def read_jsonl_zst(path: Path) -> list[dict]:
    with open(path, "rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f).read()
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` (the state file aside) and a hash of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != filter_module.STATE_FILE
    }


def words(n: int, seed: int) -> str:
    vocab = "the of and to in is was for on that with as by at from it an be this which".split()
    rng = np.random.default_rng(seed)
    return " ".join(vocab[i] for i in rng.integers(0, len(vocab), n))


@pytest.fixture()
def shards(tmp_path: Path) -> Path:
    """Six parquet shards in two sub-folders: prose (ratio ~1 with bytes) mixed with accented text."""
    root = tmp_path / "corpus"
    for s in range(6):
        folder = root / ("prose" if s < 3 else "accents")
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(40):
            text = words(20 + i, seed=100 * s + i) if s < 3 or i % 2 else "é" * (5 + i) + "a" * 10
            rows.append({"id": f"s{s}-{i}", "text": text, "n": i, "tags": [s, i]})
        pq.write_table(pa.Table.from_pylist(rows), folder / f"part-{s}.parquet")
    return root


# --- the rule -------------------------------------------------------------------------------


def test_a_document_exactly_at_t_times_chars_is_kept(tmp_path):
    # bytes segmenter: one token per UTF-8 byte, so 4 x "é" + 21 x "a" is 29 tokens for 25 chars,
    # exactly 1.16 per char; in floats 1.16 * 25 = 28.999999999999996 < 29.
    path = tmp_path / "docs.jsonl"
    docs = {"at": "é" * 4 + "a" * 21, "over": "é" * 5 + "a" * 20, "under": "é" * 3 + "a" * 22}
    path.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in docs.items()))
    result = filter_corpus(str(path), tmp_path / "out", threshold=1.16, segmenter="bytes", keep_rejected=True)
    kept = read_jsonl_zst(tmp_path / "out" / "docs.jsonl.zst")
    assert [r["id"] for r in kept] == ["at", "under"]
    assert kept[0]["tokens_per_char"] == pytest.approx(29 / 25) and kept[1]["tokens_per_char"] == pytest.approx(28 / 25)
    rejected = read_jsonl_zst(rejected_folder(tmp_path / "out") / "docs.jsonl.zst")
    assert [(r["id"], r["reject_reason"]) for r in rejected] == [("over", "tokens_per_char 1.2000 > 1.16")]
    assert (result.kept, result.rejected, result.empty) == (2, 1, 0)


def test_keep_rates_and_sweep_match_the_segmenter_counted_directly(shards):
    from toklab.segmenters import get_segmenter

    result = filter_corpus(str(shards), segmenter="bytes", sweep=[1.0, 1.3, 1.6], workers=1)
    seg = get_segmenter("bytes")
    texts = [t for p in sorted(shards.rglob("*.parquet")) for t in pq.read_table(p).column("text").to_pylist()]
    tokens = np.array([len(seg.encode(t)) for t in texts])
    chars = np.array([len(t) for t in texts])
    n_bytes = np.array([len(t.encode()) for t in texts])
    for row in result.sweep.itertuples():
        docs_rate, bytes_rate = keep_rates(tokens, chars, n_bytes, row.t)
        assert row.keep_rate_docs == pytest.approx(docs_rate) and row.keep_rate_bytes == pytest.approx(bytes_rate)
    assert result.out is None and result.documents == 240
    # at t = 1 only pure-ASCII documents survive: the accented ones are 1.25+ tokens per char
    at_one = result.sweep.set_index("t").loc[1.0]
    assert at_one.kept_docs == sum(1 for t in texts if t.isascii())
    assert at_one.worst_source == "accents" and at_one.sources_emptied == 0


def test_by_zstd_uses_compressed_over_raw_bytes(tmp_path):
    path = tmp_path / "z.jsonl"
    texts = {"repetitive": "abcabc" * 200, "random": "".join(chr(c) for c in np.random.default_rng(0).integers(33, 123, 400))}
    path.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()))
    compressor = zstandard.ZstdCompressor(level=3)
    expected = len(compressor.compress(texts["repetitive"].encode())) / len(texts["repetitive"])
    for workers in (1, 2):  # one document at a time, or all at once on several threads: the same sizes
        result = filter_corpus(str(path), tmp_path / f"out{workers}", by="zstd", threshold=0.5, workers=workers)
        kept = read_jsonl_zst(tmp_path / f"out{workers}" / "z.jsonl.zst")
        assert [r["id"] for r in kept] == ["repetitive"] and kept[0]["zstd_ratio"] == expected
    assert result.segmenter is None and result.rejected == 1
    with pytest.raises(ToklabError, match="--by zstd uses no segmenter"):
        filter_corpus(str(path), tmp_path / "o2", by="zstd", segmenter="bytes")


# --- output -----------------------------------------------------------------------------------


def test_parquet_keeps_its_schema_every_column_and_adds_the_ratio(shards, tmp_path):
    out = tmp_path / "out"
    result = filter_corpus(str(shards), out, threshold=1.1, segmenter="bytes", keep_rejected=True, workers=1)
    for source in sorted(shards.rglob("*.parquet")):
        rel = source.relative_to(shards)
        original = pq.read_table(source)
        kept, rejected = pq.read_table(out / rel), pq.read_table(rejected_folder(out) / rel)
        assert kept.schema.names == original.schema.names + ["tokens_per_char"]
        assert kept.schema.field("tags").type == original.schema.field("tags").type  # list<int64> stays a list
        assert rejected.schema.names == original.schema.names + ["tokens_per_char", "reject_reason"]
        # kept and rejected rows together are the input rows, unchanged, in order
        merged = sorted(kept.drop_columns(["tokens_per_char"]).to_pylist() + rejected.drop_columns(["tokens_per_char", "reject_reason"]).to_pylist(), key=lambda r: r["n"])
        assert merged == original.to_pylist()
    assert result.kept + result.rejected == 240 and result.conserved


def test_jsonl_fields_survive_with_their_types(tmp_path):
    path = tmp_path / "in.jsonl.gz"
    import gzip

    records = [
        {"id": 7, "text": "plain words here", "meta": {"url": "http://x", "score": 0.5}, "tags": ["a", None], "flag": True},
        {"id": 8, "text": "ééééé", "meta": None, "extra": 3},
    ]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
    filter_corpus(str(path), tmp_path / "out", threshold=1.0, segmenter="bytes", keep_rejected=True)
    kept = read_jsonl_zst(tmp_path / "out" / "in.jsonl.zst")
    rejected = read_jsonl_zst(rejected_folder(tmp_path / "out") / "in.jsonl.zst")
    assert kept == [{**records[0], "tokens_per_char": 1.0}]
    assert rejected == [{**records[1], "tokens_per_char": 2.0, "reject_reason": "tokens_per_char 2.0000 > 1"}]


def test_counts_are_conserved_with_empty_and_malformed_input(tmp_path, capsys):
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps({"id": "a", "text": "short ascii"}), "{not json", json.dumps({"id": "b", "text": ""}),
             json.dumps({"id": "c", "text": "ééé"}), "[1, 2]", json.dumps({"id": "d", "text": None}), json.dumps({"id": "e", "text": "more ascii text"})]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = filter_corpus(str(path), out, threshold=1.0, segmenter="bytes", keep_rejected=True)
    assert (result.documents, result.kept, result.rejected, result.empty, result.malformed) == (5, 2, 1, 2, 2)
    assert result.conserved and "5 read = 2 kept + 1 rejected + 2 empty" in result.count_check
    assert any("2 malformed lines skipped" in n and "mixed.jsonl:2" in n for n in result.notes)
    rejected = read_jsonl_zst(rejected_folder(out) / "mixed.jsonl.zst")
    assert sorted((r["id"], r["reject_reason"]) for r in rejected) == [("b", "empty"), ("c", "tokens_per_char 2.0000 > 1"), ("d", "empty")]
    assert count_rows(out / "mixed.jsonl.zst") == 2
    # the same run from the command line says so, and --strict turns the malformed lines into an error
    code, stdout, _ = run(capsys, "filter", "-c", str(path), "--out", str(tmp_path / "cli"), "-s", "bytes", "--t", "1", "--report", str(tmp_path / "report"))
    assert code == 0 and "count check passed" in stdout
    code, _, err = run(capsys, "filter", "-c", str(path), "--out", str(tmp_path / "strict"), "-s", "bytes", "--strict")
    assert code == 2 and "mixed.jsonl:2" in err


def test_text_files_become_jsonl_with_id_text_and_source(tmp_path):
    folder = tmp_path / "txt" / "novels"
    folder.mkdir(parents=True)
    (folder / "one.txt").write_text("plain text\n")
    (folder / "two.txt").write_text("ééé\n")
    filter_corpus(str(tmp_path / "txt"), tmp_path / "out", threshold=1.0, segmenter="bytes")
    assert read_jsonl_zst(tmp_path / "out" / "novels" / "one.jsonl.zst") == [
        {"id": "novels/one.txt", "text": "plain text\n", "source": "novels", "tokens_per_char": 1.0}
    ]
    assert read_jsonl_zst(tmp_path / "out" / "novels" / "two.jsonl.zst") == []


def test_per_source_table_shows_a_source_the_filter_removes_whole(shards):
    result = filter_corpus(str(shards), segmenter="bytes", threshold=1.0, dry_run=True, workers=1)
    table = result.per_source.set_index("source")
    assert set(table.index) == {"prose", "accents"}
    assert table.loc["prose", "keep_rate_docs"] == 1.0
    accents = table.loc["accents"]
    assert accents.kept_docs == 60 and accents.rejected_docs == 60  # the odd rows are ASCII words
    assert accents.docs == 120 and accents.bytes == accents.kept_bytes + accents.dropped_bytes
    emptied = filter_corpus(str(shards / "accents"), segmenter="bytes", threshold=0.5, dry_run=True, workers=1)
    assert any("lost every document" in n for n in emptied.notes)


def test_report_folder_has_summary_csv_histogram_and_examples(shards, tmp_path, capsys):
    report = tmp_path / "report"
    code, stdout, _ = run(capsys, "filter", "-c", str(shards), "--dry-run", "-s", "bytes", "--t", "1.2", "--report", str(report), "--sweep", "1,1.2,1.5")
    assert code == 0 and "keep rates by threshold" in stdout
    assert sorted(p.name for p in report.iterdir()) == ["per_source.csv", "ratio_histogram.png", "report.md", "summary.json", "sweep.csv"]
    summary = json.loads((report / "summary.json").read_text())
    assert summary["documents"] == 240 and summary["out"] is None
    assert sum(summary["histogram"]["counts"]) == 240
    assert summary["examples"] and all(e["ratio"] > 1.2 for e in summary["examples"])
    assert (report / "ratio_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Rejected examples" in (report / "report.md").read_text()
    assert not list(tmp_path.glob("out*"))  # a dry run writes no shards


# --- resume and safety ------------------------------------------------------------------------


def test_resume_after_a_kill_gives_byte_identical_shards(shards, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    filter_corpus(str(shards), whole, threshold=1.1, segmenter="bytes", keep_rejected=True, workers=1)

    broken = tmp_path / "broken"
    real_write_state = filter_module._write_state
    calls = {"n": 0}

    def killed_after_two_shards(out, state):
        if len(state["done"]) == 3:  # the third shard's files are in place, but not yet recorded
            raise KeyboardInterrupt
        calls["n"] += 1
        real_write_state(out, state)

    monkeypatch.setattr(filter_module, "_write_state", killed_after_two_shards)
    with pytest.raises(KeyboardInterrupt):
        filter_corpus(str(shards), broken, threshold=1.1, segmenter="bytes", keep_rejected=True, workers=1)
    monkeypatch.setattr(filter_module, "_write_state", real_write_state)
    # the interrupted run let go of --out and left no temporaries behind
    assert not (broken / filter_module.LOCK_FILE).exists() and not list(tmp_path.rglob("*.tmp"))
    (broken / "accents" / ".part-4.parquet.123.tmp").write_bytes(b"half a shard")  # a shard cut off mid-write by a kill
    (broken / "accents" / ".notes.123.tmp").write_bytes(b"a user's file")  # not a name toklab writes
    state = json.loads((broken / filter_module.STATE_FILE).read_text())
    assert len(state["done"]) == 2 and not state["complete"]

    with pytest.raises(ToklabError, match="pass --resume"):
        filter_corpus(str(shards), broken, threshold=1.1, segmenter="bytes", keep_rejected=True, workers=1)
    with pytest.raises(ToklabError, match="threshold differ"):
        filter_corpus(str(shards), broken, threshold=1.2, segmenter="bytes", keep_rejected=True, resume=True, workers=1)
    result = filter_corpus(str(shards), broken, threshold=1.1, segmenter="bytes", keep_rejected=True, resume=True, workers=1)
    assert result.resumed_shards == 2 and result.conserved
    assert (broken / "accents" / ".notes.123.tmp").read_bytes() == b"a user's file"
    (broken / "accents" / ".notes.123.tmp").unlink()
    assert tree_digest(broken) == tree_digest(whole)
    assert tree_digest(rejected_folder(broken)) == tree_digest(rejected_folder(whole))


def test_parallel_shards_give_the_same_bytes_as_one_worker(shards, tmp_path):
    filter_corpus(str(shards), tmp_path / "one", threshold=1.1, segmenter="bytes", workers=1)
    result = filter_corpus(str(shards), tmp_path / "two", threshold=1.1, segmenter="bytes", workers=2)
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two") and len(tree_digest(tmp_path / "two")) == 6
    assert result.conserved


def test_unsafe_out_is_refused_and_the_input_is_untouched(shards, tmp_path, capsys):
    before = tree_digest(shards)
    for out in (shards / "filtered", shards / "prose", tmp_path):
        code, _, err = run(capsys, "filter", "-c", str(shards), "--out", str(out), "-s", "bytes", "--overwrite")
        assert code == 2 and "input" in err and len(err.strip().splitlines()) == 1
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    for flag in ([], ["--overwrite"], ["--resume"]):
        code, _, err = run(capsys, "filter", "-c", str(shards), "--out", str(foreign), "-s", "bytes", *flag)
        assert code == 2 and "not empty" in err
    assert (foreign / "notes.txt").read_text() == "keep"
    # a finished run is not silently redone; --overwrite replaces it (and only it)
    out = tmp_path / "out"
    assert run(capsys, "filter", "-c", str(shards), "--out", str(out), "-s", "bytes", "--report", str(tmp_path / "r"))[0] == 0
    code, _, err = run(capsys, "filter", "-c", str(shards), "--out", str(out), "-s", "bytes", "--report", str(tmp_path / "r"))
    assert code == 2 and "--overwrite" in err
    assert run(capsys, "filter", "-c", str(shards), "--out", str(out), "-s", "bytes", "--t", "2", "--overwrite", "--report", str(tmp_path / "r"))[0] == 0
    assert tree_digest(shards) == before
    code, _, err = run(capsys, "filter", "-c", str(shards), "-s", "bytes")
    assert code == 2 and "--out is required" in err
    code, _, err = run(capsys, "filter", "-c", str(shards), "--dry-run", "--max-docs", "5")
    assert code == 2 and "--max-docs" in err
    code, _, err = run(capsys, "filter", "-c", str(shards), "--dry-run", "--t", "0")
    assert code == 2 and "--t must be positive" in err


def test_default_segmenter_is_a_bpe_trained_on_the_input_and_cached(shards, tmp_path):
    from toklab.corpus import open_corpus
    from toklab.filter import training_sample

    first = filter_corpus(str(shards), segmenter="bpe:300", dry_run=True, workers=1)
    corpus = open_corpus(str(shards))
    assert first.segmenter == "bpe:300"
    sample = training_sample(corpus, filter_module.DEFAULT_TRAIN_BYTES)
    assert sample.options.val_fraction == 0.0 and sample.options.sample == 1.0  # a small input is read whole
    small = training_sample(corpus, 4000)
    assert 0 < small.options.sample < 1 and small.options.max_bytes == 4000
    seen = {d.source for d in small.documents()}
    assert seen == {"prose", "accents"}  # drawn from every shard, not the first few
    # the default (bpe:32k) trains once on the input, then comes from the cache
    from toklab.files import cache_dir

    def cached() -> list[str]:
        return sorted(p.name for p in (cache_dir() / "segmenters").glob("bpe-32k-*"))

    before = cached()
    default = filter_corpus(str(shards), dry_run=True, workers=1)
    trained = cached()
    again = filter_corpus(str(shards), dry_run=True, workers=1)
    assert len(trained) == len(before) + 1 and cached() == trained
    assert default.segmenter == again.segmenter == "bpe:32k" and default.kept == again.kept


def test_a_real_kill_mid_run_then_resume_gives_byte_identical_shards(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    corpus = tmp_path / "many"
    corpus.mkdir()
    rng = np.random.default_rng(1)
    for s in range(24):
        texts = ["".join(rng.choice(list("abcdé "), 400)) for _ in range(1500)]
        pq.write_table(pa.table({"id": [f"{s}-{i}" for i in range(1500)], "text": texts}), corpus / f"shard-{s:02d}.parquet")
    command = [sys.executable, "-m", "toklab", "filter", "-c", str(corpus), "-s", "bytes", "--t", "1.1", "--workers", "1"]
    subprocess.run(command + ["--out", str(tmp_path / "whole"), "--report", str(tmp_path / "r1")], check=True, capture_output=True)

    out = tmp_path / "killed"
    child = subprocess.Popen(command + ["--out", str(out), "--report", str(tmp_path / "r2")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = out / filter_module.STATE_FILE
    done = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        try:
            done = len(json.loads(state_file.read_text())["done"])
        except (OSError, ValueError):
            done = 0
        if done >= 3:
            os.kill(child.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not json.loads(state_file.read_text())["complete"]
    resumed = subprocess.run(command + ["--out", str(out), "--report", str(tmp_path / "r2"), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed:" in resumed.stdout and "count check passed" in resumed.stdout
    assert tree_digest(out) == tree_digest(tmp_path / "whole")


def test_a_saved_dataset_becomes_parquet_with_its_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"id": [1, 2, 3], "text": ["hello world", "ééé", ""], "x": [[1], [2], [3]]}).save_to_disk(str(tmp_path / "saved"))
    result = filter_corpus(str(tmp_path / "saved"), tmp_path / "out", segmenter="bytes", threshold=1.0, keep_rejected=True)
    assert pq.read_table(tmp_path / "out" / "saved.parquet").to_pylist() == [{"id": 1, "text": "hello world", "x": [1], "tokens_per_char": 1.0}]
    rejected = pq.read_table(rejected_folder(tmp_path / "out") / "saved.parquet").to_pylist()
    assert [(r["id"], r["reject_reason"]) for r in rejected] == [(2, "tokens_per_char 2.0000 > 1"), (3, "empty")]
    assert (result.kept, result.rejected, result.empty) == (1, 1, 1) and result.conserved


def test_parquet_batches_are_cut_by_text_size(monkeypatch):
    monkeypatch.setattr(filter_shards, "BATCH_BYTES", 10)
    batch = pa.record_batch({"text": ["aaaa", "bbbbbbbb", "cc", None, "d" * 13, "e"]})
    cut = [b.column("text").to_pylist() for b in filter_shards._bounded(iter([batch]), "text")]
    assert cut == [["aaaa"], ["bbbbbbbb", "cc", None], ["d" * 13], ["e"]]
