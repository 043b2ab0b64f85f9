"""toklab.datatrove: datatrove steps (CrammingFilter, SegmenterStats, TokenShardWriter) and
`toklab filter --executor`, checked against toklab's own filter, compare and token data."""

from __future__ import annotations

import gzip
import json
import math
import os
import random
import signal
import string
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("datatrove", reason='datatrove is not installed (pip install "toklab[datatrove]"); toklab.datatrove needs it')

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from cli_helpers import cli_error, cli_ok  # noqa: E402

THRESHOLD = 0.4  # gpt2 on these emails keeps about half the documents at 0.4 tokens per char
DOCS = 600
SHARDS = 6


@pytest.fixture(scope="module")
def shards(shared_corpora: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every tenth email (all five sources), cut into SHARDS parquet shards."""
    table = pq.read_table(shared_corpora / "email" / "email-00000.parquet")
    table = table.take(list(range(0, 10 * DOCS, 10)))
    folder = tmp_path_factory.mktemp("email-shards")
    step = math.ceil(table.num_rows / SHARDS)
    for i in range(SHARDS):
        pq.write_table(table.slice(i * step, step), folder / f"part-{i:05d}.parquet")
    return folder


@pytest.fixture(scope="module")
def gpt2(shared_tiktoken: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    from toklab.datatrove import save_segmenter

    return str(save_segmenter("tiktoken:gpt2", tmp_path_factory.mktemp("seg") / "gpt2"))


@pytest.fixture(scope="module")
def pool_run(shards: Path, gpt2: str, tmp_path_factory: pytest.TempPathFactory):
    """`toklab filter` on its own process pool: what every datatrove run must reproduce."""
    from toklab.filter import filter_corpus

    out = tmp_path_factory.mktemp("pool") / "out"
    result = filter_corpus(str(shards), out, segmenter=gpt2, threshold=THRESHOLD, keep_rejected=True, workers=2)
    assert result.conserved and 0 < result.kept < DOCS  # the rule splits these documents
    return result


def _rows(folder: Path, pattern: str) -> dict[str, dict]:
    rows = {}
    for path in sorted(folder.glob(pattern)):
        for row in pq.read_table(path).to_pylist():
            rows[row["id"]] = row
    return rows


def _jsonl_rows(folder: Path) -> dict[str, dict]:
    rows = {}
    for path in sorted(folder.rglob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                rows[row["id"]] = row
    return rows


def test_cramming_filter_pipeline_keeps_what_toklab_filter_keeps(shards: Path, gpt2: str, pool_run, tmp_path: Path) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import JsonlWriter

    from toklab.datatrove import CrammingFilter, filter_stats

    pipeline = [
        ParquetReader(str(shards)),
        CrammingFilter(gpt2, threshold=THRESHOLD, exclusion_writer=JsonlWriter(str(tmp_path / "rejected"))),
        JsonlWriter(str(tmp_path / "kept")),
    ]
    LocalPipelineExecutor(pipeline, tasks=4, workers=2, logging_dir=str(tmp_path / "logs"), start_method="fork").run()

    expected_kept = _rows(pool_run.out, "*.parquet")
    expected_rejected = _rows(pool_run.rejected_out, "*.parquet")
    kept, rejected = _jsonl_rows(tmp_path / "kept"), _jsonl_rows(tmp_path / "rejected")
    assert len(expected_kept) == pool_run.kept
    assert set(kept) == set(expected_kept)  # the same ids ...
    assert all(kept[i]["text"] == expected_kept[i]["text"] for i in kept)  # ... and the same text
    assert set(rejected) == set(expected_rejected)
    for i in list(kept)[:50]:  # the ratio toklab filter writes beside each document
        assert kept[i]["metadata"]["tokens_per_char"] == expected_kept[i]["tokens_per_char"]
    some = next(iter(rejected))
    assert rejected[some]["metadata"]["reject_reason"] == expected_rejected[some]["reject_reason"]
    assert rejected[some]["metadata"]["filter_reason"] == "cramming"

    stats = filter_stats(tmp_path / "logs" / "stats.json")
    assert stats["kept"] + stats["rejected"] + stats["empty"] == stats["documents"] == DOCS
    assert (stats["kept"], stats["rejected"], stats["empty"]) == (pool_run.kept, pool_run.rejected, pool_run.empty)
    assert (stats["kept_bytes"], stats["rejected_bytes"], stats["bytes"]) == (pool_run.kept_bytes, pool_run.rejected_bytes, pool_run.bytes)
    per_source = pool_run.per_source.set_index("source")
    assert set(stats["per_source"]) == set(per_source.index)
    for source, cell in stats["per_source"].items():
        assert (cell["documents"], cell["kept"], cell["kept_bytes"]) == (per_source.at[source, "docs"], per_source.at[source, "kept_docs"], per_source.at[source, "kept_bytes"])


def test_cramming_filter_counts_empty_documents_and_judges_by_zstd() -> None:
    import zstandard

    from toklab.datatrove import CrammingFilter, documents

    text = "abc " * 200  # compresses to a few percent
    rng = random.Random(0)
    noise = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(400))  # about 0.8 after zstd
    docs = documents([("a", text, "s1"), ("b", "", "s1"), ("c", noise, "s2")])
    step = CrammingFilter(by="zstd", threshold=0.5)
    kept = list(step.run(iter(docs)))
    assert [d.id for d in kept] == ["a"]
    size = len(zstandard.ZstdCompressor(level=3).compress(text.encode()))
    assert kept[0].metadata["zstd_ratio"] == size / len(text)
    assert docs[1].metadata["reject_reason"] == "empty"
    assert docs[2].metadata["reject_reason"].startswith("zstd_ratio ") and docs[2].metadata["reject_reason"].endswith(" > 0.5")
    counts = {k: v.total for k, v in step.stats.stats.items()}
    assert (counts["kept"], counts["rejected"], counts["empty"]) == (1, 1, 1)
    assert counts["s1/kept"] == 1 and counts["s1/empty"] == 1 and counts["s2/rejected"] == 1
    assert counts["kept_bytes"] == len(text) and counts["rejected_bytes"] == len(noise)


def test_executor_local_writes_what_toklab_filter_writes(shards: Path, gpt2: str, pool_run, tmp_path: Path) -> None:
    from toklab.datatrove import filter_on_datatrove

    out = tmp_path / "out"
    result = filter_on_datatrove(str(shards), out, executor="local", tasks=4, workers=2, segmenter=gpt2, threshold=THRESHOLD, keep_rejected=True)
    assert result.conserved, result.count_check
    assert (result.kept, result.rejected, result.empty, result.documents) == (pool_run.kept, pool_run.rejected, pool_run.empty, DOCS)
    for name in sorted(p.name for p in pool_run.out.glob("*.parquet")):
        assert (out / name).read_bytes() == (pool_run.out / name).read_bytes()
        assert (Path(f"{out}-rejected") / name).read_bytes() == (pool_run.rejected_out / name).read_bytes()
    assert sorted(p.name for p in (out / ".datatrove" / "completions").iterdir()) == [f"{r:05d}" for r in range(4)]
    assert result.per_source.equals(pool_run.per_source)


def test_a_killed_run_resumes_only_its_unfinished_tasks(shards: Path, gpt2: str, pool_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import toklab.filter as toklab_filter
    from toklab.datatrove import filter_on_datatrove
    from toklab.errors import ToklabError

    real = toklab_filter.filter_shard
    calls: list[int] = []

    def crash_on_shard_2(job, seg, workers=1, advance=None):  # noqa: ANN001, ANN202
        calls.append(job.index)
        if job.index == 2:
            raise RuntimeError("killed")
        return real(job, seg, workers=workers, advance=advance)

    monkeypatch.setattr(toklab_filter, "filter_shard", crash_on_shard_2)
    out = tmp_path / "out"
    options = dict(executor="local", tasks=4, workers=1, segmenter=gpt2, threshold=THRESHOLD)  # one at a time, in this process
    with pytest.raises(RuntimeError, match="killed"):
        filter_on_datatrove(str(shards), out, **options)
    markers = out / ".datatrove" / "completions"
    assert sorted(p.name for p in markers.iterdir()) == ["00000", "00001"]  # task 2 failed, task 3 never ran
    assert calls == [0, 4, 1, 5, 2]  # shard i belongs to task i % 4
    state = json.loads((out / ".toklab-filter.json").read_text())
    assert sorted(state["done"]) == ["0", "1", "4", "5"] and not state["complete"]

    with pytest.raises(ToklabError, match="--resume"):  # an interrupted folder is not overwritten by accident
        filter_on_datatrove(str(shards), out, **options)
    calls.clear()
    monkeypatch.setattr(toklab_filter, "filter_shard", lambda job, seg, workers=1, advance=None: calls.append(job.index) or real(job, seg, workers=workers))
    result = filter_on_datatrove(str(shards), out, resume=True, **options)
    assert calls == [2, 3]  # only tasks 2 and 3 ran again
    assert result.resumed_shards == 4 and result.conserved
    assert sorted(p.name for p in markers.iterdir()) == [f"{r:05d}" for r in range(4)]
    for name in sorted(p.name for p in pool_run.out.glob("*.parquet")):
        assert (out / name).read_bytes() == (pool_run.out / name).read_bytes()
    assert result.kept == pool_run.kept

    with pytest.raises(ToklabError, match="settings|tasks|differ|same"):  # a resume must deal the shards out the same way
        filter_on_datatrove(str(shards), out, resume=True, **{**options, "tasks": 3})


KILLER = """
import os, signal, sys, time
import toklab.filter as toklab_filter
from toklab.datatrove import filter_on_datatrove

real, main = toklab_filter.filter_shard, os.getpid()

def kill_the_main_on_shard_3(job, seg, workers=1, advance=None):
    if job.index == 3:
        open(sys.argv[5], "w").write(str(os.getpid()))
        os.kill(main, signal.SIGKILL)  # the whole run is killed here, mid-way
        time.sleep(60)
    return real(job, seg, workers=workers, advance=advance)

toklab_filter.filter_shard = kill_the_main_on_shard_3
filter_on_datatrove(sys.argv[1], sys.argv[2], tasks=4, workers=2, segmenter=sys.argv[3], threshold=float(sys.argv[4]))
"""


def test_a_real_kill_stops_the_tasks_and_resume_finishes_the_rest(shards: Path, gpt2: str, pool_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import time

    import toklab.filter as toklab_filter
    from toklab.datatrove import filter_on_datatrove
    from toklab.files import pid_alive

    out, pid_file = tmp_path / "out", tmp_path / "worker.pid"
    with open(tmp_path / "stderr", "wb") as err:  # a file, not a pipe: an orphan holding it cannot stall the test
        run = subprocess.run([sys.executable, "-c", KILLER, str(shards), str(out), gpt2, str(THRESHOLD), str(pid_file)], stdout=subprocess.DEVNULL, stderr=err, timeout=120)
    assert run.returncode == -9, (tmp_path / "stderr").read_text()[-2000:]
    worker = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while pid_alive(worker) and time.monotonic() < deadline:  # the task process ends with its parent
        time.sleep(0.1)
    orphan = pid_alive(worker)
    if orphan:
        os.kill(worker, signal.SIGKILL)
    assert not orphan, "a task process outlived the killed run"
    done = {p.name for p in (out / ".datatrove" / "completions").iterdir()} if (out / ".datatrove" / "completions").is_dir() else set()
    assert f"{3:05d}" not in done
    tallies = out / ".datatrove" / "tallies"
    finished = {int(p.stem) for p in tallies.glob("*.json")} if tallies.is_dir() else set()  # shards whose task got that far
    assert 3 not in finished

    calls: list[int] = []
    real = toklab_filter.filter_shard
    monkeypatch.setattr(toklab_filter, "filter_shard", lambda job, seg, workers=1, advance=None: calls.append(job.index) or real(job, seg, workers=workers))
    result = filter_on_datatrove(str(shards), out, tasks=4, workers=1, segmenter=gpt2, threshold=THRESHOLD, resume=True)
    assert sorted(calls) == sorted(set(range(SHARDS)) - finished)  # only the shards not done yet ...
    assert not {f"{i % 4:05d}" for i in calls} & done  # ... of the tasks without a completion marker
    assert result.conserved and result.kept == pool_run.kept
    for name in sorted(p.name for p in pool_run.out.glob("*.parquet")):
        assert (out / name).read_bytes() == (pool_run.out / name).read_bytes()


def test_overwrite_removes_the_engine_folder(shards: Path, gpt2: str, tmp_path: Path) -> None:
    from toklab.datatrove import filter_on_datatrove
    from toklab.filter import filter_corpus

    out = tmp_path / "out"
    filter_on_datatrove(str(shards), out, tasks=2, workers=1, segmenter=gpt2, threshold=THRESHOLD)
    assert (out / ".datatrove" / "completions" / "00001").is_file()
    filter_corpus(str(shards), out, segmenter=gpt2, threshold=THRESHOLD, overwrite=True, workers=1)
    assert not (out / ".datatrove").exists()  # stale completion markers would skip every task of a later run


def test_segmenter_stats_merged_equal_compare(shards: Path, shared_corpora: Path, gpt2: str, tmp_path: Path) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader

    from toklab.comparison import run_compare
    from toklab.corpus import open_corpus
    from toklab.datatrove import SegmenterStats, merge_segmenter_stats
    from toklab.measures import is_spaced

    mixed = tmp_path / "mixed"  # emails and the udhr's languages: unspaced scripts count apart for tokens/word
    mixed.mkdir()
    for name in ("part-00000.parquet", "part-00001.parquet"):
        (mixed / name).write_bytes((shards / name).read_bytes())
    udhr = pq.read_table(sorted((shared_corpora / "udhr").glob("*.parquet"))[0])
    pq.write_table(udhr.select(["id", "text", "source"]), mixed / "udhr.parquet")
    corpus = open_corpus(str(mixed), val_fraction=0.5)  # enough of the few unspaced udhr texts in the split compare measures
    expected = run_compare(corpus, [gpt2, "bytes"], compressors=False)
    val = [{"id": d.id, "text": d.text, "source": d.source} for d in corpus.val()]  # the documents compare measures
    folder = tmp_path / "val"
    folder.mkdir()
    for i in range(3):
        pq.write_table(pa.Table.from_pylist(val[i::3]), folder / f"v{i}.parquet")
    steps = [ParquetReader(str(folder)), SegmenterStats([gpt2, "bytes"], tmp_path / "stats", threshold=0.3)]
    LocalPipelineExecutor(steps, tasks=4, workers=1, logging_dir=str(tmp_path / "logs")).run()
    merged = merge_segmenter_stats(tmp_path / "stats", tasks=4)

    assert merged.meta["tasks"] == 4 and merged.meta["documents"] == len(val)
    assert any(not is_spaced(d["text"]) for d in val) and any(is_spaced(d["text"]) for d in val)
    want = expected.table.iloc[:2].reset_index(drop=True)
    got = merged.table
    assert list(got["tokens"]) == list(want["tokens"]) and list(got["vocab_size"]) == list(want["vocab_size"])
    for column in ("tokens_per_char", "chars_per_token", "bytes_per_token", "tokens_per_word", "bits_per_byte", "renyi_efficiency",
                   "vocab_utilisation", "keep_rate_docs", "keep_rate_bytes", "train_flops_per_mb"):  # fmt: skip
        assert np.allclose(got[column].astype(float), want[column].astype(float), rtol=1e-12, equal_nan=True), column
    sources = [c for c in expected.per_source.columns if c not in ("worst_source", "worst_bytes_per_token")]
    assert sorted(sources) == sorted(c for c in merged.per_source.columns if c not in ("worst_source", "worst_bytes_per_token"))
    assert np.allclose(merged.per_source[sources].to_numpy(float), expected.per_source[sources].to_numpy(float), rtol=1e-12)


def test_token_shard_writer_feeds_pretrain(shards: Path, gpt2: str, tmp_path: Path) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader

    from toklab.corpus import open_corpus
    from toklab.datatrove import TokenShardWriter, finish_token_data
    from toklab.gpt.data import build_token_data, load_token_data, read_shard
    from toklab.segmenters import load_segmenter

    steps = [ParquetReader(str(shards)), TokenShardWriter(tmp_path / "tokens", gpt2, shard_tokens=200_000)]
    LocalPipelineExecutor(steps, tasks=3, workers=1, logging_dir=str(tmp_path / "logs")).run()
    corpus = open_corpus(str(shards))
    installed = finish_token_data(tmp_path / "tokens", gpt2, corpus=corpus)
    data = load_token_data(tmp_path / "tokens")
    seg = load_segmenter(gpt2)
    val = list(corpus.val())
    train_docs = sum(1 for _ in corpus.train())
    assert data.manifest["splits"]["val"]["documents"] == len(val) and data.manifest["splits"]["train"]["documents"] == train_docs
    assert len(data.train_shards) > 3  # several shards per task at 200k tokens each
    expected = sum(len(seg.encode(d.text)) + 1 for d in val) + 3  # each task's stream starts with <|endoftext|>
    assert data.tokens("val") == expected == sum(len(read_shard(p)) for p in data.val_shards)
    index = data.val_documents().set_index("id")
    stream = np.concatenate([np.asarray(read_shard(p)) for p in data.val_shards])
    for doc in val[:20]:  # whole-document scoring finds each document's tokens where the index says
        row = index.loc[doc.id]
        assert stream[row["start"] : row["start"] + row["tokens"]].tolist() == seg.encode(doc.text)
        assert stream[row["start"] - 1] == data.eot
    assert build_token_data(corpus, seg).directory == installed  # what pretrain asks for: these shards


def test_cli_executor_local_and_missing_datatrove(shards: Path, gpt2: str, pool_run, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    text = cli_ok(capsys, "filter", "-c", str(shards), "--out", out, "-s", gpt2, "-t", THRESHOLD, "--executor", "local", "--tasks", 3, "--workers", 1, "--report", tmp_path / "report", "--json")
    summary = json.loads(text[text.index("{") :])
    assert (summary["kept"], summary["documents"]) == (pool_run.kept, DOCS)
    assert (tmp_path / "report" / "summary.json").is_file()
    for name in sorted(p.name for p in pool_run.out.glob("*.parquet")):
        assert (out / name).read_bytes() == (pool_run.out / name).read_bytes()
    assert "--executor must be" in cli_error(capsys, "filter", "-c", str(shards), "--out", tmp_path / "o2", "--executor", "spark")
    assert "--partition and --time" in cli_error(capsys, "filter", "-c", str(shards), "--out", tmp_path / "o3", "-s", gpt2, "--executor", "slurm")

    for name in [n for n in sys.modules if n == "datatrove" or n.startswith("datatrove.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "toklab.datatrove", raising=False)
    line = cli_error(capsys, "filter", "-c", str(shards), "--out", tmp_path / "o4", "-s", gpt2, "--executor", "local", "--report", tmp_path / "r4")
    assert line == 'error: --executor needs datatrove: pip install "toklab[datatrove]"'


def test_slurm_options_pass_through(tmp_path: Path) -> None:
    from toklab.datatrove import ExecutorOptions, FilterShards, build_executor

    options = ExecutorOptions(executor="slurm", tasks=8, partition="cpu", time="4:00:00", workers=2)
    executor = build_executor([FilterShards([], None, str(tmp_path / "t"))], options, tmp_path / "logs")
    assert (executor.partition, executor.time, executor.tasks, executor.workers) == ("cpu", "4:00:00", 8, 2)


def test_ray_executor_writes_what_toklab_filter_writes(shards: Path, gpt2: str, pool_run, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="ray is not installed here")
    from toklab.datatrove import filter_on_datatrove

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "out"
        result = filter_on_datatrove(str(shards), out, executor="ray", tasks=3, workers=2, segmenter=gpt2, threshold=THRESHOLD)
    finally:
        ray.shutdown()
    assert result.conserved and result.kept == pool_run.kept
    for name in sorted(p.name for p in pool_run.out.glob("*.parquet")):
        assert (out / name).read_bytes() == (pool_run.out / name).read_bytes()
