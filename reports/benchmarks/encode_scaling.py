"""Benchmark: 1 -> all cores for the kinds whose encode_batch scales below 1.7x, and whether a
process pool around them does better.

For each kind, one child process per core count (`taskset -c 0` for one core) encodes the same
texts three ways, alternating, best of 3:
- toklab: `encode_batch(texts, workers=cores)` (the library's own threads, or one process);
- pool: a fork process pool of `cores` workers, each running `encode_batch(chunk, workers=1)` on
  contiguous chunks and sending back its lists of ids (what encode_batch must return);
- pool, counts only: the same pool sending back only the number of tokens per text (what a
  consumer that only counts needs: the cost of shipping ids back is gone).

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
        ways = {"toklab": lambda: seg.encode_batch(texts, workers=cores),
                "pool": lambda: pooled(seg, texts, cores, _ids),
                "pool_counts": lambda: pooled(seg, texts, cores, _counts)}
        best = {name: float("inf") for name in ways}
        for _ in range(3):
            for name, run in ways.items():
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)
        print(json.dumps({"kind": spec, "cores": cores, "mb": n_bytes / 1e6, **best}), flush=True)


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
        "# Encode scaling, 1 -> all cores: the library's own path against a process pool",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {platform.machine()}, {all_cores} cores, Python {platform.python_version()}, toklab {toklab.__version__}",
        f"- command: `python reports/benchmarks/encode_scaling.py --mb {args.mb}`",
        f"- text: {mb:.1f} MB from ../shared/corpora (sotu, email, code, udhr, equal shares; the texts of segmenter_encode.py); kinds trained on the default corpus",
        "- method: one child process per core count (`taskset -c 0` for one core); the three ways alternate on the same texts, best of 3; the pool's ids are checked equal to encode_batch's",
        "",
        f"| kind | toklab MB/s, 1 core | toklab MB/s, {all_cores} | toklab scaling | pool MB/s, 1 | pool MB/s, {all_cores} | pool scaling | pool counts-only MB/s, {all_cores} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for spec in KINDS:
        one, many = rows[spec, 1], rows[spec, all_cores]
        lines.append(
            f"| {spec} | {mb / one['toklab']:.2f} | {mb / many['toklab']:.2f} | {one['toklab'] / many['toklab']:.2f}x | "
            f"{mb / one['pool']:.2f} | {mb / many['pool']:.2f} | {one['pool'] / many['pool']:.2f}x | {mb / many['pool_counts']:.2f} |"
        )
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
