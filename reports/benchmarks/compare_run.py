"""Benchmark: wall time, peak memory and toklab's share of a whole `toklab compare` run.

Runs the real CLI (`python -m toklab compare`) in a child process under `/usr/bin/time -v`,
with a fresh, empty TOKLAB_CACHE_DIR (so every trainable segmenter is trained; the default
corpus is first built in it by `toklab corpus build default`, timed on its own) and
TIKTOKEN_CACHE_DIR=../shared/tiktoken, once on the default corpus and once on
../shared/corpora/email; then again with the cache warm (segmenters loaded). Each run's
results.json `meta.timings_s` splits its wall time into library work (train_or_load + encode +
compressors), toklab's own work (read + measure) and the remainder (start-up, imports, report
files, plots, terminal tables, exit). A second, instrumented copy of each run (the same CLI entry
point, `toklab.cli.main`, with timers wrapped around its functions) breaks the remainder down and
finds the toklab code that runs inside the library buckets (reading the train split for the
trainers and for the zstd dictionary samples). Takes about 5 minutes on 2 cores.

    python reports/benchmarks/compare_run.py [--warm-runs 2] [--no-breakdown] [--out reports/benchmarks/compare_run.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from toklab.comparison import default_segmenters

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED = REPO.parent / "shared"
EMAIL = "../shared/corpora/email"  # as typed in the repo root, where every child runs
TARGET = 0.15
LIBRARY = ["train_or_load", "encode", "compressors"]
OWN = ["read", "measure"]

# The instrumented copy: the same entry point as `python -m toklab`, with timers around the
# functions that run outside `meta.timings_s` and around toklab code that runs inside it.
INSTRUMENTED = r'''
import json, sys, time
T0, EPOCH0 = time.perf_counter(), time.time()
marks, phase = {"started at": EPOCH0}, ["compare"]
def add(key, seconds):
    marks[key] = marks.get(key, 0.0) + seconds
def timed_iter(iterable, key):
    it = iter(iterable)
    while True:
        t = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            add(key, time.perf_counter() - t)
            return
        add(key, time.perf_counter() - t)
        yield item
def wrap(owner, name, key, before=None):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        if before:
            before()
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            add(key, time.perf_counter() - t)
    setattr(owner, name, wrapper)

t = time.perf_counter()
import toklab.cli, toklab.comparison, toklab.reports, toklab.segmenters, toklab.segmenters.bpe, toklab.segmenters.sentencepiece as sp
from toklab.corpus.corpus import Corpus
compare_module = toklab.comparison
add("import toklab.cli", time.perf_counter() - t)

def import_pandas():
    if "pandas" not in sys.modules:
        t = time.perf_counter(); import pandas; add("import pandas", time.perf_counter() - t)
def import_matplotlib():
    if "matplotlib.pyplot" not in sys.modules:
        t = time.perf_counter(); import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot; add("import matplotlib", time.perf_counter() - t)
def start_run():
    marks["run_compare starts"] = time.perf_counter() - T0
    import_pandas()

original_documents = Corpus.documents
def documents(self, part=None):
    return timed_iter(original_documents(self, part), f"corpus pass {part or 'all'} during {phase[0]}")
Corpus.documents = documents
original_get_segmenters = toklab.segmenters.get_segmenters
def get_segmenters(*args, **kwargs):
    phase[0] = "train_or_load"
    try:
        return original_get_segmenters(*args, **kwargs)
    finally:
        phase[0] = "compare"
toklab.segmenters.get_segmenters = get_segmenters
original_bpe_train = toklab.segmenters.bpe.BPESegmenter.train.__func__
toklab.segmenters.bpe.BPESegmenter.train = classmethod(lambda cls, texts, size, **o: original_bpe_train(cls, timed_iter(texts, "feeding the bpe trainer"), size, **o))
original_sentences = sp.training_sentences
sp.training_sentences = lambda texts, max_bytes: timed_iter(original_sentences(texts, max_bytes), "feeding the sentencepiece trainer")

wrap(compare_module, "run_compare", "run_compare", before=start_run)
wrap(compare_module, "compressor_rows", "compressor_rows")
wrap(toklab.reports, "write_report", "write_report")
wrap(toklab.reports, "_plot_sources", "plots", before=import_matplotlib)
wrap(toklab.reports, "_plot_bits", "plots", before=import_matplotlib)
wrap(toklab.cli, "_print_compare", "terminal tables")
code = 0
try:
    toklab.cli.main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code or 0
marks["in process"] = time.perf_counter() - T0
with open(sys.argv[1], "w") as f:
    marks["finished at"] = time.time()
    json.dump(marks, f)
sys.exit(code)
'''


def child_env(cache: Path) -> dict[str, str]:
    return dict(os.environ, TOKLAB_CACHE_DIR=str(cache), TIKTOKEN_CACHE_DIR=str(SHARED / "tiktoken"))


def timed_run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float, float]:
    """(wall seconds, peak RSS MB, epoch started, epoch ended) of one child process; its output goes to `log`."""
    with tempfile.NamedTemporaryFile(suffix=".rss", delete=False) as f:
        rss_file = Path(f.name)
    if Path("/usr/bin/time").exists():
        wrapped = ["/usr/bin/time", "-v", "-o", str(rss_file)] + cmd
    else:  # the largest ru_maxrss among the children of a process that runs only this one
        wrapped = [sys.executable, "-c", "import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); open(sys.argv[1], 'w').write('Maximum resident set size (kbytes): %d' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)", str(rss_file)] + cmd
    start, started_at = time.perf_counter(), time.time()
    with open(log, "w") as out:
        rc = subprocess.call(wrapped, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall, ended_at = time.perf_counter() - start, time.time()
    text = rss_file.read_text()
    rss_file.unlink()
    if rc:
        sys.exit(f"{' '.join(c if len(c) < 200 else '<code>' for c in cmd)} failed (exit {rc}):\n{log.read_text()[-3000:]}")
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return wall, kb / 1024, started_at, ended_at


def startup_seconds() -> float:
    """Median wall time of a bare `python -c pass`: what any child costs before toklab runs."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def split(wall: float, timings: dict[str, float]) -> dict[str, float]:
    library = sum(timings.get(k, 0.0) for k in LIBRARY)
    own = sum(timings.get(k, 0.0) for k in OWN)
    remainder = wall - library - own
    return {"library": library, "own": own, "remainder": remainder, "overhead": (own + remainder) / wall, "own_share": own / wall}


def compare_runs(name: str, corpus_args: list[str], cache: Path, work: Path, warm_runs: int, breakdown: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Plain CLI runs (cold, then warm) and, with `breakdown`, instrumented runs (cold, then warm)."""
    env = child_env(cache)
    rows, details = [], []
    for i, label in enumerate(["cold"] + ["warm"] * warm_runs):
        out = work / f"report-{name}-{i}"
        wall, rss, _, _ = timed_run([sys.executable, "-m", "toklab", "compare", *corpus_args, "--out", str(out)], env, work / f"{name}-{i}.log")
        meta = json.loads((out / "results.json").read_text())["meta"]
        row = {"run": name, "cache": label, "wall": wall, "rss": rss, "timings": meta["timings_s"], "val_bytes": meta["val_bytes"], "val_documents": meta["val_documents"]}
        row.update(split(wall, meta["timings_s"]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if breakdown:
        shutil.rmtree(cache / "segmenters", ignore_errors=True)  # cold again: train once more
        for label in ("cold", "warm"):
            out = work / f"report-{name}-{label}-instrumented"
            marks_file = work / f"{name}-{label}-marks.json"
            cmd = [sys.executable, "-c", INSTRUMENTED, str(marks_file), "compare", *corpus_args, "--out", str(out)]
            wall, rss, started_at, ended_at = timed_run(cmd, env, work / f"{name}-{label}-instrumented.log")
            meta = json.loads((out / "results.json").read_text())["meta"]
            marks = json.loads(marks_file.read_text())
            marks["start-up"] = marks["started at"] - started_at
            marks["exit"] = ended_at - marks["finished at"]
            detail = {"run": name, "cache": label, "wall": wall, "rss": rss, "timings": meta["timings_s"], "marks": marks}
            detail.update(split(wall, meta["timings_s"]))
            details.append(detail)
            print(json.dumps(detail), flush=True)
    return rows, details


def pieces(d: dict[str, Any]) -> dict[str, float]:
    """An instrumented run's remainder (and the toklab code inside library buckets), in named pieces."""
    m, t = d["marks"], d["timings"]
    return {
        "start-up": m["start-up"],
        "import toklab.cli": m["import toklab.cli"],
        "CLI before run_compare": m["run_compare starts"] - m["import toklab.cli"],
        "import pandas": m.get("import pandas", 0.0),
        "run_compare outside timings": m["run_compare"] - sum(t.values()),  # its timer starts after pandas is imported
        "report files": m["write_report"] - m.get("plots", 0.0) - m.get("import matplotlib", 0.0),
        "import matplotlib": m.get("import matplotlib", 0.0),
        "plots": m.get("plots", 0.0),
        "terminal tables": m.get("terminal tables", 0.0),
        "exit": m["exit"],
        "feeding the trainers": m.get("feeding the bpe trainer", 0.0) + m.get("feeding the sentencepiece trainer", 0.0),
        "dictionary samples": m.get("corpus pass train during compare", 0.0),
    }


HIDDEN = ["feeding the trainers", "dictionary samples"]


def breakdown_lines(details: list[dict[str, Any]], startup: float) -> list[str]:
    names = [k for k in pieces(details[0]) if k not in HIDDEN]
    lines = [
        "| run | cache | wall s | remainder | " + " | ".join(names) + " | toklab feeding the trainers (in train_or_load) | train-split read for zstd dictionary (in compressors) |",
        "|---|---|---:|---:|" + "---:|" * (len(names) + 2),
    ]
    for d in details:
        p = pieces(d)
        lines.append(f"| {d['run']} | {d['cache']} | {d['wall']:.1f} | {d['remainder']:.2f} | " + " | ".join(f"{p[k]:.2f}" for k in names + HIDDEN) + " |")
    lines += [
        "",
        f"start-up: from spawning `/usr/bin/time` to the first line of Python (a bare `python -c pass` takes {startup:.2f} s here, median of 5); "
        "exit: from the last line of Python to the parent seeing the process end (module teardown, freeing the tiktoken and pandas/matplotlib state). "
        f"The pieces add up to the remainder to within {max(abs(d['remainder'] - sum(v for k, v in pieces(d).items() if k not in HIDDEN)) for d in details):.2f} s.",
    ]
    return lines


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")) / 2**20
        mem_text = f", {mem:.0f} GiB RAM"
    except (OSError, StopIteration):
        mem_text = ""
    import toklab

    return f"{platform.machine()} ({cpu}), {os.cpu_count()} cores{mem_text}, Python {platform.python_version()}, toklab {toklab.__version__}"


def conclusion(rows: list[dict[str, Any]], details: list[dict[str, Any]]) -> str:
    def pct(x: float) -> str:
        return f"{100 * x:.0f}%"

    cold = [r for r in rows if r["cache"] == "cold"]
    warm = [r for r in rows if r["cache"] == "warm"]
    text = []
    for group, label in ((cold, "cold"), (warm, "warm")):
        ok = [r for r in group if r["overhead"] < TARGET]
        verdict = "met" if len(ok) == len(group) else ("not met" if not ok else "partly met")
        names = list(dict.fromkeys(r["run"] for r in group))
        shares = ", ".join(f"{n} " + "/".join(pct(r["overhead"]) for r in group if r["run"] == n) for n in names)
        strict = [d for d in details if d["cache"] == label and d["overhead"] < TARGET <= d["overhead"] + sum(pieces(d)[k] for k in HIDDEN) / d["wall"]]
        caveat = "".join(f", but {d['run']} reaches {pct(d['overhead'] + sum(pieces(d)[k] for k in HIDDEN) / d['wall'])} when the toklab code inside the library buckets is counted too" for d in strict)
        text.append(f"{label} runs: target {verdict} ({shares}{caveat})")
    line = "; ".join(text) + f". toklab's own computation (read + measure) is at most {pct(max(r['own_share'] for r in rows))} of any run"
    warm_details = [d for d in details if d["cache"] == "warm"]
    if warm_details:
        p = [pieces(d) for d in warm_details]

        def span(keys: list[str]) -> str:
            values = [sum(x[k] for k in keys) for x in p]
            return f"{min(values):.1f}-{max(values):.1f} s"

        line += (
            f"; what exceeds {TARGET:.0%} on a warm run is a fixed {min(d['remainder'] for d in warm_details):.1f}-{max(d['remainder'] for d in warm_details):.1f} s per process: "
            f"imports of toklab.cli, pandas and matplotlib {span(['import toklab.cli', 'import pandas', 'import matplotlib'])}, "
            f"the two report plots {span(['plots'])}, interpreter start-up and exit {span(['start-up', 'exit'])}"
        )
    return line + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=2, help="Plain warm-cache runs of each corpus after the cold one.")
    parser.add_argument("--no-breakdown", action="store_true", help="Skip the instrumented runs that break the remainder down.")
    parser.add_argument("--out", type=Path, default=HERE / "compare_run.md")
    args = parser.parse_args()
    breakdown = not args.no_breakdown
    for needed in (SHARED / "tiktoken", SHARED / "corpora" / "email"):
        if not needed.is_dir():
            sys.exit(f"needs {needed}")
    startup = startup_seconds()
    rows: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="toklab-compare-bench-") as tmp:
        work = Path(tmp)
        default_cache, email_cache = work / "cache-default", work / "cache-email"
        build_wall, build_rss, _, _ = timed_run([sys.executable, "-m", "toklab", "corpus", "build", "default"], child_env(default_cache), work / "build.log")
        print(json.dumps({"run": "corpus build default", "wall": build_wall, "rss": build_rss}), flush=True)
        for name, corpus_args, cache in (("default", [], default_cache), ("email", ["--corpus", EMAIL], email_cache)):
            r, d = compare_runs(name, corpus_args, cache, work, args.warm_runs, breakdown)
            rows += r
            details += d

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    options = ("" if args.warm_runs == 2 else f" --warm-runs {args.warm_runs}") + ("" if breakdown else " --no-breakdown")
    lines = [
        "# `toklab compare`: wall time, peak memory and toklab's share",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {machine()}",
        f"- command: `python reports/benchmarks/compare_run.py{options}`",
        "- runs: `toklab compare` (default corpus) and `toklab compare --corpus ../shared/corpora/email`, default segmenters "
        f"({', '.join(default_segmenters())}) and compressors (zstd-3, zstd-19, zstd-19-dict, 7z-lzma2, 7z-ppmd)",
        "- method: each run is `python -m toklab compare ... --out <tmp>` in its own process under `/usr/bin/time -v` (wall from the parent's clock, peak RSS = its "
        "Maximum resident set size), TIKTOKEN_CACHE_DIR=../shared/tiktoken, a fresh empty TOKLAB_CACHE_DIR per corpus. 'cold': first run in that cache, so bpe:32k "
        "and unigram:32k are trained; 'warm': the runs after it, segmenters loaded from the cache. The default corpus is built first, by `toklab corpus build default` "
        f"in the same fresh cache, timed on its own: {build_wall:.1f} s, peak RSS {build_rss:,.0f} MB (a cold `toklab compare` on a machine that never built it takes that much longer).",
        "- split of the wall time, from the run's results.json `meta.timings_s`: library = train_or_load + encode + compressors; toklab = read + measure; "
        "remainder = wall - all timings (process start-up, imports, report files, plots, terminal tables, exit). toklab overhead = (read + measure + remainder) / wall; "
        f"target: under {TARGET:.0%}. The columns read ... remainder are seconds.",
        "",
        "| run | cache | val MB | wall s | peak RSS MB | read | train_or_load | encode | measure | compressors | remainder | library share | toklab overhead (read+measure+remainder) | read+measure only | under 15%? |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        t = r["timings"]
        met = "yes" if r["overhead"] < TARGET else ("no (read+measure alone: yes)" if r["own_share"] < TARGET else "no")
        lines.append(
            f"| {r['run']} | {r['cache']} | {r['val_bytes'] / 1e6:.2f} | {r['wall']:.1f} | {r['rss']:,.0f} | "
            + " | ".join(f"{t.get(k, 0.0):.2f}" for k in ["read", "train_or_load", "encode", "measure", "compressors"])
            + f" | {r['remainder']:.2f} | {pct(r['library'] / r['wall'])} | {pct(r['overhead'])} | {pct(r['own_share'])} | {met} |"
        )
    if details:
        lines += [
            "",
            "## Where the remainder goes (instrumented runs)",
            "",
            "The same runs again through the CLI's entry point `toklab.cli.main`, in a child process with timers wrapped around toklab's functions "
            "(cold again after deleting the cached segmenters). The last two columns are toklab code that runs inside library buckets: pulling documents off "
            "the corpus reader (and, for unigram, cutting them into training lines) while the trainers consume them, and reading the train split for the "
            "zstd dictionary samples. Seconds:",
            "",
        ]
        lines += breakdown_lines(details, startup)
        lines += ["", "| run | cache | wall s | toklab overhead (as above) | counting also toklab code inside library buckets |", "|---|---|---:|---:|---:|"]
        for d in details:
            hidden = sum(pieces(d)[k] for k in HIDDEN)
            lines.append(f"| {d['run']} | {d['cache']} | {d['wall']:.1f} | {pct(d['overhead'])} | {pct(d['overhead'] + hidden / d['wall'])} |")
    spreads = []
    for name in dict.fromkeys(r["run"] for r in rows):
        walls = [r["wall"] for r in rows + details if r["run"] == name and r["cache"] == "warm"]
        if len(walls) > 1:
            spreads.append(f"{name} {min(walls):.1f}-{max(walls):.1f} s")
    if spreads:
        lines += ["", f"Warm runs of the same command (plain and instrumented) ranged over {', '.join(spreads)} on this shared 2-core machine; compare shares, not single seconds."]
    lines += ["", conclusion(rows, details)]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
