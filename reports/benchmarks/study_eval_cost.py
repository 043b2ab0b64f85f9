"""What whole-document validation scoring costs a smoke study.

Runs `toklab study --smoke` (warm caches: segmenters and token shards built by a first, untimed
study) once per scoring configuration, one after the other in this process, and times every
evaluation by wrapping `Trainer.evaluate`. Prints one JSON line per configuration: study wall
time, evaluation time (all evaluations, and the final ones on the whole scoring set), their
share, documents and bytes scored, and the evaluation throughput in bytes/s.

    TOKLAB_CACHE_DIR=/tmp/benchcache python reports/benchmarks/study_eval_cost.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import toklab.gpt.train as train_module
from toklab.study import run_study

CONFIGS = {
    "smoke default (val_bytes 65,536; eval_bytes 16,384)": {},
    "whole validation split (--val-all)": {"val_bytes": None},
}


def main() -> None:
    spent = {"eval_s": 0.0, "final_s": 0.0, "evaluations": 0, "bytes": 0}
    evaluate = train_module.Trainer.evaluate

    def timed(self, final=True):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        scores = evaluate(self, final)
        seconds = time.perf_counter() - start
        spent["eval_s"] += seconds
        spent["final_s"] += seconds if final else 0.0
        spent["evaluations"] += 1
        spent["bytes"] += scores.n_bytes
        return scores

    train_module.Trainer.evaluate = timed
    with tempfile.TemporaryDirectory() as tmp:
        run_study("default", smoke=True, out=Path(tmp) / "warm")  # builds every cache; not timed
        for name, options in CONFIGS.items():
            spent.update(eval_s=0.0, final_s=0.0, evaluations=0, bytes=0)
            start = time.perf_counter()
            result = run_study("default", smoke=True, out=Path(tmp) / name.split()[0], **options)
            wall = time.perf_counter() - start
            print(json.dumps({
                "config": name, "runs": len(result.runs), "wall_s": round(wall, 1), "eval_s": round(spent["eval_s"], 1),
                "final_eval_s": round(spent["final_s"], 1), "evaluations": spent["evaluations"], "eval_share": round(spent["eval_s"] / wall, 3),
                "val_docs_scored": result.meta["val_docs_scored"], "val_bytes_scored": result.meta["val_bytes_scored"],
                "eval_bytes_per_s": round(spent["bytes"] / spent["eval_s"]),
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
