"""Benchmark: 1 -> all cores for the kinds whose encode_batch scales below 1.7x, and whether a
process pool around them does better.

For each kind, one child process per core count (`taskset -c 0` for one core) encodes the same
texts five ways, alternating, best of 3:
- toklab: `encode_batch(texts, workers=cores)` (the library's own threads, or one process), which
  returns Python lists of ids;
- arrays: `encode_arrays(texts, workers=cores)`, int64 arrays: built without Python lists by the
  kinds that make their ids in numpy (`arrays_native`: bytes, entropy), converted from the lists
  for the others;
- count_tokens: `count_tokens(texts, workers=cores)`, what compare and filter call (arrays for the
  array-native kinds, the lists for the others);
- pool: a fork process pool of `cores` workers, each running `encode_batch(chunk, workers=1)` on
  contiguous chunks and sending back its lists of ids (what encode_batch must return);
- pool, counts only: the same pool sending back only the number of tokens per text (what a
  consumer that only counts needs: the cost of shipping ids back is gone).

A second table measures the same calls in one process, workers=1 and workers=all alternating six
times (the other core idle while one works): the ratio of the best times and of the medians, which
shows how much two runs of the first table can differ on a shared machine.

    python reports/benchmarks/encode_scaling.py [--mb 8] [--out reports/benchmarks/encode_scaling.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from segmenter_encode import texts_for  # noqa: E402  (the same texts as the encode benchmark)

KINDS = ["bytes", "unigram:32k", "spm-bpe:32k", "zstd-dict:32k", "entropy:target=4.5", "bpe:32k"]
_SEGMENTER: Any = None  # the pool's workers inherit it through fork


def _ids(chunk: list[str]) -> list[list[int]]:
    return _SEGMENTER.encode_batch(chunk, workers=1)


def _counts(chunk: list[str]) -> list[int]:
    return [len(ids) for ids in _SEGMENTER.encode_batch(chunk, workers=1)]


def pooled(segmenter: Any, texts: list[str], workers: int, job: Any) -> list[Any]:
    global _SEGMENTER
    _SEGMENTER = segmenter
    k = 4 * workers
    bounds = [len(texts) * i // k for i in range(k + 1)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return [x for part in pool.imap(job, [texts[a:b] for a, b in zip(bounds[:-1], bounds[1:])]) for x in part]


def child(mb: int, cores: int) -> None:
    import toklab
    from toklab.segmenters import get_segmenter

    texts = texts_for(mb)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    corpus = toklab.open_corpus("default")
    for spec in KINDS:
        seg = get_segmenter(spec, corpus)
        expected = seg.encode_batch(texts[:200], workers=1)
        assert pooled(seg, texts[:200], cores, _ids) == expected, spec
        assert [a.tolist() for a in seg.encode_arrays(texts[:200], workers=cores)] == expected, spec
        ways = {"toklab": lambda: seg.encode_batch(texts, workers=cores),
                "arrays": lambda: seg.encode_arrays(texts, workers=cores),
                "count_tokens": lambda: seg.count_tokens(texts, workers=cores),
                "pool": lambda: pooled(seg, texts, cores, _ids),
                "pool_counts": lambda: pooled(seg, texts, cores, _counts)}
        best = {name: float("inf") for name in ways}
        for _ in range(3):
            for name, run in ways.items():
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)
        print(json.dumps({"kind": spec, "cores": cores, "mb": n_bytes / 1e6, **best}), flush=True)


def in_process(mb: int, cores: int) -> list[str]:
    """Rows of the second table: each way with workers=1 and workers=cores in one process."""
    import statistics

    import toklab
    from toklab.segmenters import get_segmenter

    texts = texts_for(mb)
    n_mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    corpus = toklab.open_corpus("default")
    rows = []
    for spec in KINDS:
        seg = get_segmenter(spec, corpus)
        for name in ("encode_batch", "encode_arrays", "count_tokens"):
            call = getattr(seg, name)
            times: dict[int, list[float]] = {1: [], cores: []}
            for _ in range(6):
                for workers in times:
                    start = time.perf_counter()
                    call(texts, workers=workers)
                    times[workers].append(time.perf_counter() - start)
            one, many = times[1], times[cores]
            rows.append(f"| {spec} | {name} | {n_mb / min(one):.2f} | {n_mb / min(many):.2f} | {min(one) / min(many):.2f}x | "
                        f"{statistics.median(one) / statistics.median(many):.2f}x |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=8)
    parser.add_argument("--out", type=Path, default=HERE / "encode_scaling.md")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.mb, args.child)
        return
    import toklab
    from toklab.segmenters import get_segmenter
    from toklab.segmenters.base import cpu_count

    corpus = toklab.open_corpus("default")
    for spec in KINDS:  # train (or find in the cache) once, so the children only load
        get_segmenter(spec, corpus, progress=True)
    all_cores = cpu_count()
    rows: dict[tuple[str, int], dict] = {}
    for cores in (1, all_cores):
        prefix = ["taskset", "-c", "0"] if cores == 1 else []
        out = subprocess.run(prefix + [sys.executable, __file__, "--mb", str(args.mb), "--child", str(cores)], capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr)
        for line in out.stdout.splitlines():
            row = json.loads(line)
            rows[row["kind"], cores] = row
            print(line, flush=True)
    mb = next(iter(rows.values()))["mb"]
    lines = [
        "# Encode scaling, 1 -> all cores: lists, arrays, counts, and a process pool",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {platform.machine()}, {all_cores} cores, Python {platform.python_version()}, toklab {toklab.__version__}",
        f"- command: `python reports/benchmarks/encode_scaling.py --mb {args.mb}`",
        f"- text: {mb:.1f} MB from ../shared/corpora (sotu, email, code, udhr, equal shares; the texts of segmenter_encode.py); kinds trained on the default corpus",
        "- method: one child process per core count (`taskset -c 0` for one core); the five ways alternate on the same texts, best of 3; "
        "the arrays' and the pool's ids are checked equal to encode_batch's",
        "- columns: MB/s on 1 core, on all cores, and the ratio, for encode_batch (lists), encode_arrays and the pool; MB/s on all cores for count_tokens and the pool's counts",
        "",
        f"| kind | lists 1 | lists {all_cores} | lists scaling | arrays 1 | arrays {all_cores} | arrays scaling | count_tokens {all_cores} "
        f"| pool 1 | pool {all_cores} | pool scaling | pool counts {all_cores} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for spec in KINDS:
        one, many = rows[spec, 1], rows[spec, all_cores]
        cells = [spec]
        for way in ("toklab", "arrays"):
            cells += [f"{mb / one[way]:.2f}", f"{mb / many[way]:.2f}", f"{one[way] / many[way]:.2f}x"]
        cells.append(f"{mb / many['count_tokens']:.2f}")
        cells += [f"{mb / one['pool']:.2f}", f"{mb / many['pool']:.2f}", f"{one['pool'] / many['pool']:.2f}x", f"{mb / many['pool_counts']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Workers=1 against workers={all_cores} in one process, alternating, 6 times each:",
        "",
        f"| kind | call | MB/s, workers=1 (best) | MB/s, workers={all_cores} (best) | ratio of best | ratio of medians |",
        "|---|---|---:|---:|---:|---:|",
        *in_process(args.mb, all_cores),
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
