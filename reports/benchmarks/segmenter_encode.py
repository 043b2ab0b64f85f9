"""Benchmark: encode throughput of each segmenter kind, toklab against the library called directly.

For every kind and for one core and all cores, a child process (pinned with `taskset` for one
core) encodes the same texts with the library's own batch call and with toklab's
`encode_batch`, alternating the two, best of 5. The ratio is toklab's overhead.

    python reports/benchmarks/segmenter_encode.py [--mb 8] [--out reports/benchmarks/segmenter_encode.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared"
FOLDERS = ["sotu", "email", "code", "udhr"]
TRAINED = ["bpe:32k", "unigram:32k", "spm-bpe:32k"]
PRETRAINED = ["tiktoken:cl100k_base", "tiktoken:o200k_base", "tiktoken:gpt2"]


def texts_for(mb: int) -> list[str]:
    import toklab

    per_folder = mb * 10**6 // len(FOLDERS)
    return [d.text for f in FOLDERS for d in toklab.open_corpus(str(SHARED / "corpora" / f), max_bytes=per_folder)]


def cases(cores: int, hf_json: str) -> list[tuple[str, Any, Callable[[list[str]], Any]]]:
    """(row name, toklab segmenter, the same work done by calling the library directly)."""
    from tokenizers import Tokenizer

    import toklab
    from toklab.segmenters import get_segmenter

    corpus = toklab.open_corpus("default")
    rows: list[tuple[str, Any, Callable[[list[str]], Any]]] = []
    rows.append(("bytes", get_segmenter("bytes"), lambda ts: [list(t.encode("utf-8")) for t in ts]))
    bpe = get_segmenter("bpe:32k", corpus)
    rows.append(("bpe:32k (tiktoken fast path)", bpe, lambda ts: bpe._encoding.encode_ordinary_batch(ts, num_threads=cores)))
    hf_plain = Tokenizer.from_str(bpe._hf.to_str())
    rows.append(("bpe:32k vs tokenizers", bpe, lambda ts: [e.ids for e in hf_plain.encode_batch(ts, add_special_tokens=False)]))
    for spec in ("unigram:32k", "spm-bpe:32k"):
        seg = get_segmenter(spec, corpus)
        rows.append((spec, seg, lambda ts, sp=seg._sp: sp.encode(ts, out_type=int, num_threads=cores)))
    for spec in PRETRAINED:
        seg = get_segmenter(spec)
        rows.append((spec, seg, lambda ts, enc=seg.encoding: enc.encode_ordinary_batch(ts, num_threads=cores)))
    hf = get_segmenter(f"hf:{hf_json}")
    direct_hf = Tokenizer.from_file(hf_json)
    rows.append(("hf:tokenizer.json (bpe:32k export)", hf, lambda ts: [e.ids for e in direct_hf.encode_batch(ts, add_special_tokens=False)]))
    return rows


def child(mb: int, cores: int, hf_json: str) -> None:
    texts = texts_for(mb)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    for name, seg, direct in cases(cores, hf_json):
        ours = (lambda ts, s=seg: s.encode_batch(ts, workers=cores))
        assert ours(texts[:50]) == [list(x) for x in direct(texts[:50])] or name.endswith("vs tokenizers"), name
        best = {"direct": float("inf"), "toklab": float("inf")}
        for _ in range(5):
            for label, fn in (("direct", direct), ("toklab", ours)):
                start = time.perf_counter()
                fn(texts)
                best[label] = min(best[label], time.perf_counter() - start)
        print(json.dumps({"kind": name, "cores": cores, "mb": n_bytes / 1e6, **best}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=16, help="MB of ../shared/corpora text to encode (mixed evenly over its four folders)")
    parser.add_argument("--out", type=Path, default=HERE / "segmenter_encode.md")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--hf-json", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.mb, args.child, args.hf_json)
        return
    import toklab
    from toklab.segmenters import get_segmenter
    from toklab.segmenters.base import cpu_count

    corpus = toklab.open_corpus("default")
    started = time.perf_counter()
    for spec in TRAINED:  # train (or find in the cache) once, so the children only load
        get_segmenter(spec, corpus, progress=True)
    train_seconds = time.perf_counter() - started
    hf_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "toklab-bench-hf"
    get_segmenter("bpe:32k", corpus).save(hf_dir)
    all_cores = cpu_count()
    rows = []
    for cores in sorted({1, all_cores}):
        prefix = ["taskset", "-c", "0"] if cores == 1 else []
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false" if cores == 1 else "true", RAYON_NUM_THREADS=str(cores))
        cmd = prefix + [sys.executable, __file__, "--mb", str(args.mb), "--child", str(cores), "--hf-json", str(hf_dir / "tokenizer.json")]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode:
            sys.exit(out.stderr)
        for line in out.stdout.splitlines():
            rows.append(json.loads(line))
            print(line, flush=True)
    lines = [
        "# Segmenter encode throughput: toklab against the library called directly",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {platform.machine()}, {all_cores} cores, Python {platform.python_version()}, toklab {toklab.__version__}",
        f"- command: `python reports/benchmarks/segmenter_encode.py --mb {args.mb}`",
        f"- text: {rows[0]['mb']:.1f} MB from ../shared/corpora ({', '.join(FOLDERS)}, equal shares); trainable kinds trained on the default corpus",
        "- method: one process per core count (`taskset -c 0` for one core); the library call and toklab's `encode_batch` alternate on the same texts, best of 5",
        "- 'bpe:32k vs tokenizers' compares toklab's bpe (tiktoken fast path, identical ids) with encoding through `tokenizers` itself",
        "",
        "| kind | cores | library MB/s | toklab MB/s | toklab / library time |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['cores']} | {r['mb'] / r['direct']:,.1f} | {r['mb'] / r['toklab']:,.1f} | {r['toklab'] / r['direct']:.2f} |")
    same_work = [r for r in rows if not r["kind"].endswith("vs tokenizers")]
    worst = max(same_work, key=lambda r: r["toklab"] / r["direct"])
    lines += [
        "",
        f"Largest toklab / library time ratio: {worst['toklab'] / worst['direct']:.2f} ({worst['kind']}, {worst['cores']} core(s)); target: under 1.10.",
        f"Training (or loading from cache) {', '.join(TRAINED)} took {train_seconds:.0f} s before the runs.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
