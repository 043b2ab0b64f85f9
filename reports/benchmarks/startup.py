"""Start-up cost of the CLI and of `import toklab`, two source trees side by side.

Usage (from the repository root):
    mkdir /tmp/before && git archive HEAD | tar -x -C /tmp/before
    python reports/benchmarks/startup.py --before /tmp/before --after . --corpus small.jsonl

Each tree runs as `PYTHONPATH=<tree> python ...` in its own process; the trees alternate, each
command is run once per tree to warm the file cache, .pyc files and toklab's segmenter cache, then
REPEATS times; the medians are reported. Module counts: toklab modules and all modules in
sys.modules when the process exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPEATS = 5
COUNT = ("import sys, atexit, runpy; atexit.register(lambda: print(len([m for m in sys.modules if m.startswith('toklab')]), "
         "len(sys.modules), file=sys.stderr)); {body}")


def run(tree: Path, argv: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True, help="a small .jsonl for the warm compare")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    cases: dict[str, tuple[list[str], str | None]] = {
        "toklab --help": ([sys.executable, "-m", "toklab", "--help"],
                          COUNT.format(body="sys.argv = ['toklab', '--help']; runpy.run_module('toklab', run_name='__main__')")),
        "python -c 'import toklab'": ([sys.executable, "-c", "import toklab"], COUNT.format(body="import toklab")),
        "toklab compare -s bytes --no-compressors --corpus small.jsonl (warm)":
            ([sys.executable, "-m", "toklab", "compare", "-s", "bytes", "--no-compressors", "--corpus", "small.jsonl"], None),
    }
    with tempfile.TemporaryDirectory() as tmp:
        cwds = {}
        for name in trees:  # each tree writes its compare report into its own folder
            cwds[name] = Path(tmp) / name
            cwds[name].mkdir()
            shutil.copy(args.corpus, cwds[name] / "small.jsonl")
        times: dict[tuple[str, str], list[float]] = {(case, name): [] for case in cases for name in trees}
        for case, (argv, _) in cases.items():
            for name, tree in trees.items():
                run(tree, argv, cwds[name])  # warm-up
            for _ in range(REPEATS):
                for name, tree in trees.items():
                    seconds, result = run(tree, argv, cwds[name])
                    if result.returncode != 0:
                        sys.exit(f"{name}: {case} failed:\n{result.stderr.decode()[-2000:]}")
                    times[(case, name)].append(seconds)
        print("| command | before median s | after median s | before runs s | after runs s |")
        print("|---|---:|---:|---|---|")
        for case in cases:
            before, after = times[(case, "before")], times[(case, "after")]
            runs = [" ".join(f"{x:.2f}" for x in t) for t in (before, after)]
            print(f"| `{case}` | {statistics.median(before):.2f} | {statistics.median(after):.2f} | {runs[0]} | {runs[1]} |")
        print()
        print("| command | toklab modules before | toklab modules after | all modules before | all modules after |")
        print("|---|---:|---:|---:|---:|")
        for case, (_, count) in cases.items():
            if count is None:
                continue
            found = []
            for name, tree in trees.items():
                result = subprocess.run([sys.executable, "-c", count], env=dict(os.environ, PYTHONPATH=str(tree)), capture_output=True, text=True, cwd=cwds[name])
                found.append(result.stderr.strip().splitlines()[-1].split())
            print(f"| `{case}` | {found[0][0]} | {found[1][0]} | {found[0][1]} | {found[1][1]} |")


if __name__ == "__main__":
    main()
