"""Benchmark: zstd-dict against bpe at the same vocabulary size: training time, encode MB/s, bytes/token.

Trains on the train split of ../shared/corpora (capped by --mb), encodes its validation split,
all in one process, side by side.

    python reports/benchmarks/zstd_dict_vs_bpe.py [--mb 12] [--out reports/benchmarks/zstd_dict_vs_bpe.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import toklab
from toklab.segmenters import get_segmenter

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "corpora"
SPECS = ["bpe:32k", "zstd-dict:32k", "zstd-dict:32k,k=1024,d=8", "zstd-dict:32k,parse=greedy", "bpe:8k", "zstd-dict:8k"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=12, help="MB of ../shared/corpora to read (train and validation together)")
    parser.add_argument("--out", type=Path, default=HERE / "zstd_dict_vs_bpe.md")
    args = parser.parse_args()
    corpus = toklab.open_corpus(str(SHARED), sample=0.5, max_bytes=args.mb * 10**6)
    val = [d.text for d in corpus.val()]
    n_mb = sum(len(t.encode()) for t in val) / 1e6
    train_mb = sum(d.n_bytes for d in corpus.train()) / 1e6
    rows = []
    for spec in SPECS:
        start = time.perf_counter()
        seg = get_segmenter(spec, corpus, cache=False)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        ids = seg.encode_batch(val)
        encode_s = time.perf_counter() - start
        rows.append((seg.spec, train_s, n_mb / encode_s, n_mb * 1e6 / sum(map(len, ids))))
        print(rows[-1], flush=True)
    lines = [
        "# zstd-dict against bpe at the same vocabulary size",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, toklab {toklab.__version__}",
        f"- command: `python reports/benchmarks/zstd_dict_vs_bpe.py --mb {args.mb}`",
        f"- data: a deterministic half-sample of ../shared/corpora capped at {args.mb} MB: {train_mb:.1f} MB train split, {n_mb:.2f} MB validation split; one process, side by side, no cache",
        "- zstd-dict:32k searches fastCOVER's k and d (zstd's default); `k=1024,d=8` fixes them; bpe encodes through its tiktoken fast path on all cores, zstd-dict's parse is pure Python on one core",
        "",
        "| spec | train s | encode MB/s | bytes/token |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {s} | {t:.1f} | {r:.2f} | {b:.2f} |" for s, t, r, b in rows]
    lines += [
        "",
        "Where zstd-dict's training time goes (measured separately on the same train split): zstd's dictionary",
        "training takes about 5 s with its k/d search and 0.2 s with k and d fixed; counting the dictionary's",
        "candidate substrings (lengths 2-16) on the 8 MB sample takes about 45 s, one numpy sort of fixed-width",
        "windows per length; it grows with `sample_bytes` (default 8m), which is the knob to turn for faster training (not measured here).",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
