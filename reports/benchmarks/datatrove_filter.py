"""Benchmark: `toklab filter` on datatrove's local executor against toklab's own process pool.

The email rows are cut into --shards parquet shards (fresh ids), written --copies times, read in
place from a temporary folder. Each run is a child process (`python this.py child MODE ...`), the
modes alternating, best of --reps:

- pool:        `filter_corpus(dir, out, segmenter=FOLDER, workers=W)` (toklab filter's default)
- executor:    `filter_on_datatrove(dir, out, executor="local", tasks=T, workers=W, ...)`
               (`toklab filter --executor local --tasks T --workers W`)
- steps:       a plain datatrove pipeline, ParquetReader -> CrammingFilter -> ParquetWriter, T tasks
               on W workers (the step users drop into their own pipelines; another output layout)

Throughput is text MB over the filtering loop's seconds (filter's own timing, summary meta
timings_s.filter, for pool and executor; the executor's run for steps) and over the child's wall
time. Memory: every process of the child's tree is sampled from /proc every 50 ms; "per task" is
the largest peak RSS of a worker process (a forked task, or a pool worker), "main" the parent's.

    python reports/benchmarks/datatrove_filter.py [--reps 3] [--shards 8] [--copies 2] [--tasks 8] [--workers 2] [--out FILE]

Needs ../shared/corpora/email and datatrove; TIKTOKEN_CACHE_DIR for the tiktoken segmenter.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EMAIL = HERE.parents[2] / "shared" / "corpora" / "email"
PAGE = os.sysconf("SC_PAGE_SIZE")
SEGMENTER = "tiktoken:cl100k_base"
TARGET = 0.80  # executor MB/s over pool MB/s
MODES = ("pool", "executor", "steps")


def child(mode: str, shards: str, out: str, segmenter: str, tasks: int, workers: int) -> None:
    """One run, in this (child) process; prints its timings as JSON."""
    start = time.perf_counter()
    if mode == "pool":
        from toklab.filter import filter_corpus

        result = filter_corpus(shards, out, segmenter=segmenter, workers=workers)
        loop = result.meta["timings_s"]["filter"]
        docs, n_bytes = result.documents, result.bytes
    elif mode == "executor":
        from toklab.datatrove import filter_on_datatrove

        result = filter_on_datatrove(shards, out, executor="local", tasks=tasks, workers=workers, segmenter=segmenter)
        loop = result.meta["timings_s"]["filter"]
        docs, n_bytes = result.documents, result.bytes
    else:
        from datatrove.executor import LocalPipelineExecutor
        from datatrove.pipeline.readers import ParquetReader
        from datatrove.pipeline.writers import ParquetWriter

        from toklab.datatrove import CrammingFilter, filter_stats

        steps = [ParquetReader(shards), CrammingFilter(segmenter, threshold=0.3), ParquetWriter(out + "/kept")]
        begin = time.perf_counter()
        LocalPipelineExecutor(steps, tasks=tasks, workers=workers, logging_dir=out + "/logs", start_method="fork").run()
        loop = time.perf_counter() - begin
        stats = filter_stats(out + "/logs/stats.json")
        docs, n_bytes = stats["documents"], stats["bytes"]
    print(json.dumps({"loop_s": loop, "wall_in_s": time.perf_counter() - start, "docs": docs, "bytes": n_bytes}))


def tree(root: int) -> dict[int, int]:
    """pid -> parent pid for `root` and every descendant."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = {root: 0}, [root]
    while frontier:
        pid = frontier.pop()
        for child_pid, parent in parents.items():
            if parent == pid and child_pid not in found:
                found[child_pid] = pid
                frontier.append(child_pid)
    return found


def rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def measured_run(args: list[str]) -> dict[str, Any]:
    """Run a child; its timings, wall time and the peak RSS of its main process and of its workers."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "child", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peaks: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid in tree(proc.pid):
                peaks[pid] = max(peaks.get(pid, 0), rss(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed with {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - start
    result["main_mb"] = peaks.get(proc.pid, 0) / 2**20
    workers = [v for pid, v in peaks.items() if pid != proc.pid]
    result["task_mb"] = max(workers) / 2**20 if workers else 0.0
    return result


def make_shards(folder: Path, shards: int, copies: int) -> tuple[int, int]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(EMAIL)
    step = -(-table.num_rows // shards)
    docs = n_bytes = 0
    for copy in range(copies):
        for i in range(shards):
            part = table.slice(i * step, step)
            part = part.set_column(part.schema.get_field_index("id"), "id", pa.array([f"c{copy}-{x}" for x in part.column("id").to_pylist()]))
            pq.write_table(part, folder / f"part-{copy:02d}-{i:03d}.parquet")
            docs += part.num_rows
            n_bytes += int(pc.sum(pc.binary_length(part.column("text"))).as_py())
    return docs, n_bytes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "datatrove_filter.md"))
    args = parser.parse_args()

    from toklab.datatrove import save_segmenter

    started = time.time()
    loads = []
    with tempfile.TemporaryDirectory(prefix="toklab-dt-bench-") as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        docs, n_bytes = make_shards(root / "in", args.shards, args.copies)
        segmenter = str(save_segmenter(SEGMENTER, root / "segmenter"))
        best: dict[str, dict[str, Any]] = {}
        for rep in range(args.reps):
            for mode in MODES:
                out = root / f"out-{mode}-{rep}"
                run = measured_run([mode, str(root / "in"), str(out), segmenter, str(args.tasks), str(args.workers)])
                loads.append(os.getloadavg()[0])
                shutil.rmtree(out, ignore_errors=True)
                assert run["docs"] == docs, (mode, run["docs"], docs)
                kept = best.setdefault(mode, {**run, "task_mb": 0.0, "main_mb": 0.0})
                for key in ("loop_s", "wall_s"):
                    kept[key] = min(kept[key], run[key])
                for key in ("task_mb", "main_mb"):
                    kept[key] = max(kept[key], run[key])
                print(mode, rep, {k: round(v, 2) if isinstance(v, float) else v for k, v in run.items()}, flush=True)
    minutes = (time.time() - started) / 60
    mb = n_bytes / 1e6
    rows = []
    for mode in MODES:
        r = best[mode]
        rows.append(
            f"| {mode} | {r['loop_s']:.2f} | {mb / r['loop_s']:.1f} | {best['pool']['loop_s'] / r['loop_s']:.2f} "
            f"| {r['wall_s']:.2f} | {mb / r['wall_s']:.1f} | {best['pool']['wall_s'] / r['wall_s']:.2f} | {r['main_mb']:.0f} | {r['task_mb']:.0f} |"
        )
    from toklab._version import __version__

    ratio = best["pool"]["loop_s"] / best["executor"]["loop_s"]
    text = f"""# toklab filter on datatrove's local executor against its own process pool

- date: {datetime.date.today().isoformat()}
- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, toklab {__version__}, no GPU
- command: `TIKTOKEN_CACHE_DIR=../shared/tiktoken python reports/benchmarks/datatrove_filter.py --reps {args.reps} --shards {args.shards} --copies {args.copies} --tasks {args.tasks} --workers {args.workers}`
- input: ../shared/corpora/email cut into {args.shards} parquet shards, written {args.copies} times with fresh ids: {args.shards * args.copies} shards, {docs:,} documents, {mb:.1f} MB of text
- segmenter: {SEGMENTER}, saved once (`toklab.datatrove.save_segmenter`) and given to every run as that folder, so nothing is trained in the timings; t = 0.3
- executor runs: {args.tasks} tasks, {args.workers} at once; pool runs: {args.workers} workers
- whole benchmark: {minutes:.1f} min; 1-minute load average after each run: mean {sum(loads) / len(loads):.1f}, max {max(loads):.1f} (above {os.cpu_count()} means other jobs shared the machine)

Best of {args.reps}, the modes alternating; memory is the largest seen. 'loop' is the filtering itself (filter's own
timing of its shard loop; for steps, the executor's run), 'wall' the whole child process (imports, reading the
segmenter, the state file, datatrove's logs). MB = UTF-8 bytes of the texts.

| mode | loop s | loop MB/s | loop / pool | wall s | wall MB/s | wall / pool | main peak MB | per-task peak MB |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

executor / pool throughput (loop): **{ratio:.2f}** (target >= {TARGET})
"""
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        mode, shards, out, segmenter, tasks, workers = sys.argv[2:8]
        child(mode, shards, out, segmenter, int(tasks), int(workers))
    else:
        main()
