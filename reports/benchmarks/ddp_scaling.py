"""DDP scaling of `toklab pretrain`: tokens/s of the same run in 1 process and under --nproc N.

    TOKLAB_CACHE_DIR=/tmp/benchcache python reports/benchmarks/ddp_scaling.py            # CPU: 1 vs 2 processes
    python reports/benchmarks/ddp_scaling.py --device cuda --model gpt2-124m --context 1024 \
        --segmenter tiktoken:gpt2 --batch-size 16 --nproc 1,8                              # GPUs (not measured here)

Every configuration trains the same global batch (--batch-size per process x --context x the
largest --nproc, reached by gradient accumulation where there are fewer processes) for --steps
steps, evaluating only at the start and the end, through the CLI in a fresh process (so each
one's startup and memory are its own). The figures are toklab's own (summary.json: training
steps only, evaluation and startup excluded). Rows:

  plain          one process, torch's default threads (all cores): what a plain run gets
  plain, 1 thread one process with OMP_NUM_THREADS=1: the per-process share the N-process rows get
  --nproc N      N processes under torchrun's launcher, one thread each on a CPU (as torchrun sets)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile


def run(args: argparse.Namespace, nproc: int, threads: int | None, global_batch: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable, "-m", "toklab", "pretrain", "-c", args.corpus, "-s", args.segmenter, "--model", args.model, "--context", str(args.context),
            "--batch-size", str(args.batch_size), "--batch-tokens", str(global_batch), "--steps", str(args.steps), "--eval-every", str(10**6),
            "--checkpoint-every", str(10**6), "--val-bytes", str(args.context * 8), "--eval-bytes", str(args.context * 8), "--device", args.device,
            "--out", out + "/run", "--json",
        ]  # fmt: skip
        if nproc > 1:
            cmd += ["--nproc", str(nproc)]
        env = dict(os.environ)
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            sys.exit(f"{nproc} process(es) failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout[done.stdout.index("{") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="default")
    parser.add_argument("--segmenter", default="bytes")
    parser.add_argument("--model", default="small")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per micro-batch, per process")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--nproc", default="1,2", help="comma-separated process counts; 1 is the plain run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="runs per row; the median is reported")
    args = parser.parse_args()

    counts = [int(n) for n in args.nproc.split(",")]
    global_batch = args.batch_size * args.context * max(counts)
    rows = []
    plans = [(1, None, "plain")] + ([(1, 1, "plain, 1 thread")] if args.device == "cpu" else []) + [(n, None, f"--nproc {n}") for n in counts if n > 1]
    for nproc, threads, label in plans:
        summaries = [run(args, nproc, threads, global_batch) for _ in range(args.repeats)]
        rates = [s["tokens_per_s"] for s in summaries]
        rows.append((label, nproc, rates, summaries[-1]))
        print(f"{label}: " + ", ".join(f"{r:,.0f}" for r in rates) + " tokens/s", file=sys.stderr, flush=True)

    base = statistics.median(rows[0][2])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; device {args.device}")
    print(f"corpus {args.corpus}, {args.segmenter}, model {args.model}, context {args.context}, batch {args.batch_size} per process, "
          f"{global_batch:,} tokens per step, {args.steps} steps, {args.repeats} runs per row (median)")  # fmt: skip
    print("| run | processes | tokens/s (job) | tokens/s per process | vs plain | runs | accumulation | final train loss |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for label, nproc, rates, s in rows:
        median = statistics.median(rates)
        runs = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"| {label} | {nproc} | {median:,.0f} | {median / nproc:,.0f} | {median / base:.2f}x | {runs} | {s['train']['accumulation']} | {s['last_step_train_loss']:.4f} |")


if __name__ == "__main__":
    main()
