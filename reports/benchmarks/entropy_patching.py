"""Benchmark: entropy-patching throughput (MB/s) of the n-gram entropy model on CPU.

Trains `entropy:target=4.5` with n-gram orders 3-6 on the default corpus, then on text from
../shared/corpora times: the model's entropies alone, entropies plus patch boundaries, and the
whole `encode_batch` (patches mapped to ids), next to `bpe:32k`'s encode_batch on the same text in
the same process. 'before' is the scoring as it was (kept here only, `old_entropies`: np.unique
over every position, 256-way distributions per distinct context, per-document patching and ids in
Python). Best of 3. Run it once plainly (all cores) and once under `taskset -c 0` (one core).

    python reports/benchmarks/entropy_patching.py [--mb 8] [--out reports/benchmarks/entropy_patching.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import toklab
from toklab.segmenters import get_segmenter
from toklab.segmenters.base import cpu_count

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "segmenters"))
from test_entropy_speed import reference_entropies_batch  # noqa: E402  (the old scorer lives with its test)

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


def old_entropies(model, docs: list[bytes]) -> list[np.ndarray]:
    """The entropies as NgramEntropyModel.score_batch computed them before 2026-12-01 (per 4 MiB
    batch): the reference kept in tests/segmenters/test_entropy_speed.py."""
    return reference_entropies_batch(model, docs)


def old_encode(seg, texts: list[str]) -> list[list[int]]:
    docs = [t.encode() for t in texts]
    return [seg._ids_of(d, seg._starts(e, d)) for d, e in zip(docs, old_entropies(seg.model, docs))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None, help="write the section here (default: print it); entropy_patching.md puts the runs together by hand")
    args = parser.parse_args()
    per_folder = args.mb * 10**6 // len(FOLDERS)
    texts = [d.text for f in FOLDERS for d in toklab.open_corpus(str(SHARED / f), max_bytes=per_folder)]
    docs = [t.encode() for t in texts]
    n_mb = sum(map(len, docs)) / 1e6
    corpus = toklab.open_corpus("default")
    bpe = get_segmenter("bpe:32k", corpus)
    bpe.encode_batch(texts[:20])
    bpe_s = best_of(lambda: bpe.encode_batch(texts))
    bpe_mbs = n_mb / bpe_s
    print("bpe:32k encode MB/s", bpe_mbs, flush=True)
    rows = []
    for order in (3, 4, 5, 6):
        spec = f"entropy:target=4.5,order={order}"
        start = time.perf_counter()
        seg = get_segmenter(spec, corpus, cache=False)
        train = time.perf_counter() - start
        model = seg.model
        start = time.perf_counter()
        fresh = model.entropies_batch(docs)  # the first call also builds the lookup tables
        first_s = time.perf_counter() - start
        old = old_entropies(model, docs)
        same = all(np.array_equal(a, b) for a, b in zip(old, fresh))
        ids = seg.encode_batch(texts)
        old_ids_s = best_of(lambda: old_encode(seg, texts), repeat=1)
        same_ids = ids == old_encode(seg, texts)
        old_s = best_of(lambda: old_entropies(model, docs), repeat=1)
        score_s = best_of(lambda: model.entropies_batch(docs))
        patch_s = best_of(lambda: [seg._starts(e, d) for d, e in zip(docs, model.entropies_batch(docs))])
        encode_s = best_of(lambda: seg.encode_batch(texts))
        mean_patch = n_mb * 1e6 / sum(int(seg._starts(e, d).sum()) for d, e in zip(docs, fresh))
        rows.append((spec, train, n_mb / old_s, n_mb / first_s, n_mb / score_s, n_mb / patch_s, n_mb / old_ids_s, n_mb / encode_s,
                     bpe_s / score_s, bpe_s / encode_s, same, same_ids, mean_patch, seg.params["theta"]))
        print(rows[-1], flush=True)
    cores = cpu_count()
    head = f"## {cores} core{'s' if cores > 1 else ''} ({'taskset -c 0' if cores == 1 else 'all cores'}): bpe:32k encode_batch {bpe_mbs:.2f} MB/s"
    lines = [
        head,
        "",
        "| spec | train s | entropies before MB/s | entropies first call (builds tables) MB/s | entropies MB/s | entropies + patching MB/s | encode before MB/s | encode MB/s | entropies / bpe | encode / bpe | entropies identical (bits) | ids identical | bytes/patch | theta |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    lines += [f"| {r[0]} | {r[1]:.1f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.2f} | {r[7]:.2f} | {r[8]:.2f}x | {r[9]:.2f}x | {'yes' if r[10] else 'NO'} | {'yes' if r[11] else 'NO'} | {r[12]:.2f} | {r[13]:.3f} |" for r in rows]
    lines += ["", f"text: {n_mb:.1f} MB; `python reports/benchmarks/entropy_patching.py --mb {args.mb}`{' under taskset -c 0' if cores == 1 else ''}; best of 3 (before: 1 run); {datetime.date.today().isoformat()}; {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"]
    if args.out is None:
        print("\n".join(lines))
        return
    args.out.write_text("\n".join(lines) + "\n")  # one section: entropy_patching.md puts the runs together
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
