"""Training throughput of the byte-latent patch model (`pretrain --arch blt`) next to the token
GPTs, on the same bytes and the same context in bytes.

    TOKLAB_CACHE_DIR=/tmp/benchcache TIKTOKEN_CACHE_DIR=../shared/tiktoken \
        python reports/benchmarks/blt_throughput.py                     # CPU: tiny and small
    python reports/benchmarks/blt_throughput.py --models gpu --rows blt:entropy,target=4.5 \
        --context-bytes 4096 --batch-size 16                            # one GPU: the gpu preset

Each row trains on the default corpus for --steps steps, evaluating only at the start and the
end, in a child process of its own (so peak memory is its own); the figures are toklab's own
(summary.json: training steps only). Rows run one after the other in one invocation, so their
ratios are measured side by side. A row is `bytes`, `bpe:4k` (a GPT; its context is the token
count nearest --context-bytes) or `blt:<patcher>` (the patch model; its context is in bytes).
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
from toklab.segmenters.patchers import ROW_PREFIX, patcher_spec_of_row
a = json.loads(sys.argv[1])
blt = a["row"].startswith(ROW_PREFIX)
spec = patcher_spec_of_row(a["row"]) if blt else a["row"]
result = pretrain("default", spec, arch="blt" if blt else "gpt", model=a["model"], context_bytes=a["context_bytes"], steps=a["steps"],
                  batch_size=a["batch_size"], eval_every=10**9, val_bytes=a["context_bytes"] * 8, eval_bytes=a["context_bytes"] * 8,
                  checkpoint_every=10**9, out=a["out"], overwrite=True, device=a["device"])
print(json.dumps(result.summary()))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,small")
    parser.add_argument("--rows", default="bytes;bpe:4k;blt:static,size=4.5;blt:space;blt:entropy,target=4.5", help="';'-separated")
    parser.add_argument("--context-bytes", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    print(f"machine: {platform.machine()}, Python {platform.python_version()}; context {args.context_bytes} bytes, batch {args.batch_size}, {args.steps} steps")
    print("| row | model | params | context | bytes/patch or token | bytes/s | FLOPs/byte | achieved TFLOP/s | MFU | peak memory MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        for row in args.rows.split(";"):
            with tempfile.TemporaryDirectory() as out:
                payload = {"row": row, "model": model, "context_bytes": args.context_bytes, "steps": args.steps,
                           "batch_size": args.batch_size, "out": out + "/run", "device": args.device}  # fmt: skip
                done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(payload)], capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"{row} {model} failed:\n{done.stderr[-3000:]}")
                s = json.loads(done.stdout.strip().splitlines()[-1])
            unit = s["patches"]["bytes_per_patch"] if s.get("patches") else s["flops_per_token"] / s["flops_per_byte"]
            mfu = f"{100 * s['mfu']:.1f}%" if s["mfu"] is not None else "n/a"
            print(
                f"| {row} | {model} | {s['model']['params']:,} | {s['model']['context']:,} | {unit:.2f} | {s['bytes_per_s']:,.0f} | "
                f"{s['flops_per_byte']:.3g} | {s['flops_per_byte'] * s['bytes_per_s'] / 1e12:.3f} | {mfu} | {s['peak_memory_bytes'] / 2**20:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
