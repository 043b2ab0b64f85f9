"""Benchmark: entropy-patching throughput (MB/s) of the n-gram entropy model on CPU.

Trains `entropy:target=4.5` with n-gram orders 3-6 on the default corpus, then on text from
../shared/corpora times: the model's entropies alone, entropies plus patch boundaries, and the
whole `encode_batch` (patches mapped to ids). One process, best of 3, runs side by side.

    python reports/benchmarks/entropy_patching.py [--mb 8] [--out reports/benchmarks/entropy_patching.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np

import toklab
from toklab.segmenters import get_segmenter

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "corpora"
FOLDERS = ["sotu", "email", "code", "udhr"]


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=8)
    parser.add_argument("--out", type=Path, default=HERE / "entropy_patching.md")
    args = parser.parse_args()
    per_folder = args.mb * 10**6 // len(FOLDERS)
    texts = [d.text for f in FOLDERS for d in toklab.open_corpus(str(SHARED / f), max_bytes=per_folder)]
    docs = [t.encode() for t in texts]
    n_mb = sum(map(len, docs)) / 1e6
    corpus = toklab.open_corpus("default")
    rows = []
    for order in (3, 4, 5, 6):
        spec = f"entropy:target=4.5,order={order}"
        start = time.perf_counter()
        seg = get_segmenter(spec, corpus, cache=False)
        train = time.perf_counter() - start
        scores = seg._scores(docs)
        score_s = best_of(lambda: seg._scores(docs))
        patch_s = best_of(lambda: [seg._starts(e, d) for d, (e, _) in zip(docs, seg._scores(docs))])
        encode_s = best_of(lambda: seg.encode_batch(texts))
        mean_patch = n_mb * 1e6 / sum(int(seg._starts(e, d).sum()) for d, (e, _) in zip(docs, scores))
        bits = sum(float(s.sum()) for _, s in scores) / (n_mb * 1e6)
        rows.append((spec, train, n_mb / score_s, n_mb / patch_s, n_mb / encode_s, mean_patch, bits, seg.params["theta"]))
        print(rows[-1], flush=True)
    lines = [
        "# Entropy patching throughput (n-gram entropy model, CPU)",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}, toklab {toklab.__version__}",
        f"- command: `python reports/benchmarks/entropy_patching.py --mb {args.mb}`",
        f"- text: {n_mb:.1f} MB from ../shared/corpora ({', '.join(FOLDERS)}, equal shares); segmenters trained on the default corpus (train split), theta calibrated to 4.5 bytes/patch on held-out train text",
        "- method: one process; 'entropies' is the model's score of every byte, 'patching' adds the boundaries, 'encode' is the whole `encode_batch` (patches to ids with byte fallback); best of 3",
        "",
        "| spec | train s | entropies MB/s | patching MB/s | encode MB/s | bytes/patch on this text | model bits/byte | theta |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {s} | {t:.1f} | {a:.2f} | {b:.2f} | {c:.2f} | {m:.2f} | {bits:.3f} | {th:.3f} |" for s, t, a, b, c, m, bits, th in rows]
    lines += [
        "",
        "Order 2 (one byte of context) is left out: its entropies take only about 256 distinct values, so the mean patch length moves in steps and calibration to 4.5 bytes/patch within 2% fails with a clear error (closest on the default corpus: 4.38).",
        "",
        "The transformer entropy model (`model=transformer`) on a GPU: that figure is still missing; no GPU was lent to the task that wrote this.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
