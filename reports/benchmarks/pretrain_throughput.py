"""Training throughput of `toklab pretrain`: tokens/s, bytes/s, MFU (GPU only) and peak memory.

    TOKLAB_CACHE_DIR=/tmp/benchcache TIKTOKEN_CACHE_DIR=../shared/tiktoken \
        python reports/benchmarks/pretrain_throughput.py                      # CPU: tiny and small
    python reports/benchmarks/pretrain_throughput.py --models gpt2-124m --context 1024 \
        --batch-size 16 --compile                                             # one GPU

Each configuration trains on the default corpus cut by tiktoken's gpt2 encoding (vocabulary
50,257, as in the GPU target) for --steps steps, evaluating only at the start and the end; the
figures are toklab's own (RunResult: training steps only, evaluation excluded), so they are what
a user sees in summary.json. Each configuration runs in a child process of its own, so peak
memory is that configuration's alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile

CHILD = """
import json, sys
from toklab.pretrain import pretrain
args = json.loads(sys.argv[1])
result = pretrain("default", args["segmenter"], model=args["model"], context=args["context"], steps=args["steps"],
                  batch_size=args["batch_size"], eval_every=10**9, val_bytes=args["context"] * 8, eval_bytes=args["context"] * 8, checkpoint_every=10**9,
                  out=args["out"], overwrite=True, device=args["device"], compile=args["compile"])
print(json.dumps(result.summary()))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,small")
    parser.add_argument("--segmenter", default="tiktoken:gpt2")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()

    rows = []
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory() as out:
            payload = {"model": model, "segmenter": args.segmenter, "context": args.context, "steps": args.steps,
                       "batch_size": args.batch_size, "out": out + "/run", "device": args.device, "compile": args.compile}  # fmt: skip
            done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(payload)], capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{model} failed:\n{done.stderr[-3000:]}")
            summary = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append((model, summary))

    print(f"machine: {platform.machine()}, Python {platform.python_version()}; segmenter {args.segmenter}, context {args.context}, batch {args.batch_size}, {args.steps} steps")
    print("| model | params | device | tokens/s | bytes/s | ms/step | FLOPs/token | achieved TFLOP/s | MFU | peak memory MiB |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for model, s in rows:
        step_ms = 1000 * s["train"]["tokens_per_step"] / s["tokens_per_s"]
        mfu = f"{100 * s['mfu']:.1f}%" if s["mfu"] is not None else "n/a"
        print(
            f"| {model} | {s['model']['params']:,} | {s['device']} | {s['tokens_per_s']:,.0f} | {s['bytes_per_s']:,.0f} | {step_ms:,.0f} | "
            f"{s['flops_per_token']:.3g} | {s['flops_per_token'] * s['tokens_per_s'] / 1e12:.3f} | {mfu} | {s['peak_memory_bytes'] / 2**20:,.0f} |"
        )


if __name__ == "__main__":
    main()
