#!/usr/bin/env python3
"""The GPU kit: one prepared script that measures toklab's trainer on one GPU in about 8 minutes.

    bash scripts/gpu_wheels.sh                          # where there is network: fills gpu_kit/
    bash scripts/gpu_check.sh --out DIR                 # on the GPU machine, as it is
    python scripts/gpu_check.py --dry-run --out DIR     # the same stages on a CPU, in about a minute

On the GPU machine it first installs what its python lacks, from gpu_kit/wheels/ (no network),
then toklab itself (`pip install --no-deps -e .`, else the checkout on PYTHONPATH), and points
TIKTOKEN_CACHE_DIR at gpu_kit/tiktoken/. Then, each stage in a process of its own with its own
time limit, all within --time-budget seconds (a stage that no longer fits is skipped and said so):

  env         GPU, torch, CUDA, the peak bf16 FLOP/s toklab's MFU uses, a bf16 matmul for scale -> env.json
  throughput  gpt2-124m, context 1024, bf16, tiktoken:gpt2: tokens/s and MFU over timed steps after
              warm-up, eager and with torch.compile -> throughput.json, throughput.md
  blt         the byte-latent patch model's gpu preset (context 4096 bytes, space patches): bytes/s
              and MFU, FLOPs counted in full per byte -> the blt row of throughput.json/md
  resume      a run killed (SIGKILL) right after a checkpoint and resumed must log the same losses
              and end with the same weights as an uninterrupted run -> resume.json (pass/fail)
  ddp         the same run plainly, under torchrun with one process, and under --nproc N where there
              are N > 1 GPUs (2 CPU processes in a dry run): tokens/s, torchrun's overhead (target
              <= 3%) and whether the losses agree -> ddp.json
  study       bytes, bpe:32k and tiktoken:gpt2 at two GPU FLOP budgets, two seeds -> study/, study.json

Every result lands under --out, with stages.json (each stage's status and seconds), per-stage logs
in logs/, and summary.md, which is also printed at the end. A failed or timed-out stage is recorded
and the next one runs. --bundle FILE also writes the results (no checkpoints or caches) as one
.tar.gz, for machines that hand back only a few files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KIT = REPO / "gpu_kit"
STAGES = ("env", "throughput", "blt", "resume", "ddp", "study")
DDP_OVERHEAD_TARGET = 0.03  # torchrun with one GPU may cost at most this share of a plain run's tokens/s
# tiktoken's cache names its files by the sha1 of their URL: gpt2's vocab.bpe and encoder.json
GPT2_FILES = ("6d1cbeee0f20b3d9449abfede4726ed8212e3aee", "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6")
MFU_TARGET = 0.45
RESERVE_S = 10.0  # kept back from the budget for the summary and the bundle
FAIL_ENV = "TOKLAB_GPU_CHECK_FAIL"  # stage names, comma-separated: those raise (tests that a failure is survived)


class KitError(Exception):
    """A mistake the user can fix: printed as one line, exit code 2."""


# --- the plan: what each stage runs, on a GPU and in a dry run ------------------------------------


def make_plan(dry_run: bool, corpus: str, segmenter: str, study_segmenters: list[str], notes: list[str]) -> dict[str, Any]:
    """Every size the stages use, written to plan.json so each stage process reads the same."""
    if dry_run:
        return {
            "dry_run": True, "device": "cpu", "corpus": corpus, "segmenter": segmenter, "notes": notes,
            # (name, time limit s, least time worth starting it with)
            "stages": [["env", 60, 5], ["throughput-eager", 60, 5], ["throughput-compile", 60, 5], ["blt-throughput", 60, 5], ["resume", 120, 10], ["ddp", 150, 10], ["study", 120, 10]],
            "throughput": {"model": "tiny", "context": 32, "batch_size": 4, "warmup": 2, "timed": 6, "chunks": 2, "compile_backend": "eager"},
            "blt": {"preset": "tiny", "context": 64, "batch_size": 4, "patcher": "space", "warmup": 2, "timed": 6, "chunks": 2},
            "resume": {"model": "tiny", "context": 32, "batch_size": 4, "steps": 12, "eval_every": 3, "checkpoint_every": 4, "kill_after_checkpoints": 2,
                       "val_bytes": 8192, "eval_bytes": 2048},
            "ddp": {"model": "tiny", "context": 32, "batch_size": 4, "steps": 10, "nproc": 2, "val_bytes": 4096, "eval_bytes": 1024},
            "study": {"segmenters": study_segmenters, "flops": [3e9, 6e9], "model": "tiny", "context": 32, "batch_size": 4, "seeds": 2,
                      "val_bytes": 2048, "eval_bytes": 512, "eval_every": 100},
        }  # fmt: skip
    return {
        "dry_run": False, "device": "cuda", "corpus": corpus, "segmenter": segmenter, "notes": notes,
        "stages": [["env", 90, 20], ["throughput-eager", 150, 40], ["throughput-compile", 240, 90], ["blt-throughput", 150, 45], ["resume", 180, 45], ["ddp", 180, 60], ["study", 600, 60]],
        # batch 16 x 1024 tokens per step, as the README's gpt2-124m command
        "throughput": {"model": "gpt2-124m", "context": 1024, "batch_size": 16, "warmup": 10, "timed": 50, "chunks": 5, "compile_backend": "inductor"},
        # the byte-latent patch model's GPU preset at its context of 4096 bytes (space patches: no training)
        "blt": {"preset": "gpu", "context": 4096, "batch_size": 8, "patcher": "space", "warmup": 5, "timed": 30, "chunks": 3},
        "resume": {"model": "small", "context": 256, "batch_size": 16, "steps": 30, "eval_every": 5, "checkpoint_every": 10, "kill_after_checkpoints": 2,
                   "val_bytes": 65536, "eval_bytes": 16384},
        # gpt2-124m as in throughput; nproc 0: every GPU the machine has, when it has more than one
        "ddp": {"model": "gpt2-124m", "context": 1024, "batch_size": 16, "steps": 150, "nproc": 0, "val_bytes": 65536, "eval_bytes": 16384},
        # medium at context 256: a few hundred steps per run, so the twelve runs fit in a few minutes
        "study": {"segmenters": study_segmenters, "flops": [1e14, 3e14], "model": "medium", "context": 256, "batch_size": 32, "seeds": 2,
                  "val_bytes": 262144, "eval_bytes": 65536, "eval_every": 50},
    }  # fmt: skip


def has_gpt2(folder: Path | None) -> bool:
    return folder is not None and all((folder / name).is_file() for name in GPT2_FILES)


def tiktoken_folder(dry_run: bool) -> Path | None:
    """Where gpt2's vocabulary is: gpu_kit/tiktoken first on a GPU, TIKTOKEN_CACHE_DIR first in a dry run."""
    env = Path(os.environ["TIKTOKEN_CACHE_DIR"]) if os.environ.get("TIKTOKEN_CACHE_DIR") else None
    shared = Path(os.environ.get("TOKLAB_SHARED_DIR") or REPO.parent / "shared") / "tiktoken"
    order = [env, KIT / "tiktoken", shared] if dry_run else [KIT / "tiktoken", env]
    return next((p.resolve() for p in order if has_gpt2(p)), None)


def write_dry_run_corpus(path: Path) -> None:
    """About 200 KB of Zipf-distributed pseudo-words, enough for bpe:1k, as one parquet shard: the
    reader the GPU run uses on gpu_kit/corpus, so the dry run needs no more packages than it."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(0)
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    words = ["".join(rng.choice(letters[: 6 + k % 20]) for _ in range(1 + k % 9)) for k in range(3000)]
    weights = [1.0 / (k + 1) for k in range(len(words))]
    texts = [" ".join(rng.choices(words, weights, k=60)) + "." for _ in range(600)]
    table = pa.table({"id": [f"doc-{i}" for i in range(600)], "text": texts, "source": ["synthetic/" + ("a" if i % 3 else "b") for i in range(600)]})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


# --- small helpers ----------------------------------------------------------------------------------


def write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def say(text: str) -> None:
    print(text, flush=True)


def run_logged(cmd: list[str], log: Path, timeout: float, env: dict[str, str], prefix: str, cwd: Path = REPO) -> tuple[int | None, float]:
    """Run `cmd` in a process group of its own, its output into `log` and onto stdout (prefixed);
    kill the whole group after `timeout` seconds. (return code or None on timeout, seconds)."""
    start = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as sink:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                sink.write(line)
                sink.flush()
                print(f"[{prefix}] {line}", end="", flush=True)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code: int | None = proc.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the stage and anything it started
            proc.wait()
            code = None
        reader.join(timeout=5)
    return code, time.perf_counter() - start


def log_tail(log: Path, lines: int = 6) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


# --- setup on the GPU machine ---------------------------------------------------------------------------


def install(env: dict[str, str], logs: Path, site: Path) -> dict[str, Any]:
    """The wheels the machine lacks into `site` (on PYTHONPATH), then toklab editable; the checkout
    itself on PYTHONPATH when that fails (toklab is pure Python, so either works)."""
    report: dict[str, Any] = {"steps": []}
    wheels = sorted((KIT / "wheels").glob("*.whl"))
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if wheels:
        site.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site)] + [str(w) for w in wheels]
        code, seconds = run_logged(cmd, logs / "setup.log", 120, env, "setup")
        report["steps"].append({"what": f"{len(wheels)} wheels from gpu_kit/wheels into {site}", "wheels": [w.name for w in wheels], "returncode": code, "seconds": round(seconds, 1)})
        if code == 0:
            paths.insert(0, str(site))
    else:
        report["steps"].append({"what": "no wheels in gpu_kit/wheels (run scripts/gpu_wheels.sh where there is network)", "returncode": None})
    env["PYTHONPATH"] = os.pathsep.join(paths)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation", "-e", str(REPO)]
    code, seconds = run_logged(cmd, logs / "setup.log", 120, env, "setup")
    report["steps"].append({"what": "pip install --no-deps -e .", "returncode": code, "seconds": round(seconds, 1)})
    report["toklab_install"] = "editable" if code == 0 else "checkout on PYTHONPATH"
    if code != 0:
        env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + paths)
    probe = subprocess.run([sys.executable, "-c", "import toklab, torch; print(toklab.__file__)"], env=env, cwd="/", capture_output=True, text=True, timeout=120)
    report["import_check"] = probe.stdout.strip() if probe.returncode == 0 else "failed: " + (probe.stderr.strip().splitlines() or ["?"])[-1]
    report["pythonpath"] = env["PYTHONPATH"]
    return report


# --- the orchestrator ---------------------------------------------------------------------------------


def orchestrate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out = Path(args.out).resolve()
    if out.exists() and not out.is_dir():
        raise KitError(f"--out {args.out} is a file; give a new or empty folder")
    if out.exists() and any(out.iterdir()):
        raise KitError(f"--out {args.out} is not empty; give a new or empty folder")
    wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STAGES]
    if unknown or not wanted:
        raise KitError(f"unknown --stages {', '.join(unknown) or '(none)'}; use some of {', '.join(STAGES)}")
    dry = args.dry_run
    budget = args.time_budget if args.time_budget is not None else (240.0 if dry else 480.0)
    if budget < 0:
        raise KitError(f"--time-budget must be at least 0, got {budget:g}")
    bundle = Path(args.bundle).resolve() if args.bundle else None
    if bundle is not None and not bundle.parent.is_dir():
        raise KitError(f"--bundle {args.bundle}: the folder {bundle.parent} does not exist")

    notes: list[str] = []
    vocab = tiktoken_folder(dry)
    if vocab is None and not dry:
        raise KitError("gpt2's tiktoken vocabulary is not in gpu_kit/tiktoken; run scripts/gpu_wheels.sh where there is network, then copy gpu_kit/ along")
    segmenter = "tiktoken:gpt2"
    if dry:  # a step at gpt2's 50k vocabulary takes about a second on 2 CPU cores; the study still reads it
        segmenter = "bytes"
        notes.append("dry run: throughput and resume train on bytes; the study covers tiktoken:gpt2" if vocab else "dry run: no gpt2 tiktoken vocabulary here, so no tiktoken:gpt2 in the study")
    study_segmenters = ["bytes", "bpe:1k" if dry else "bpe:32k"] + (["tiktoken:gpt2"] if vocab is not None else [])

    if args.corpus:
        corpus = args.corpus
    elif dry:
        corpus = str(out / "dry-run-corpus" / "docs.parquet")
    elif (KIT / "corpus").is_dir() and any((KIT / "corpus").rglob("*.parquet")):
        corpus = str(KIT / "corpus")
    else:  # the embedded default corpus would need gflanguages and minutes to build: not on the clock
        raise KitError("gpu_kit/corpus holds no parquet shards; run scripts/gpu_wheels.sh where there is network, or pass --corpus")

    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir()
    if dry and not args.corpus:
        write_dry_run_corpus(Path(corpus))
    plan = make_plan(dry, corpus, segmenter, study_segmenters, notes)
    write_json(out / "plan.json", plan)

    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["TOKLAB_CACHE_DIR"] = str(out / "cache")
    env.setdefault("MPLBACKEND", "Agg")
    if vocab is not None:
        env["TIKTOKEN_CACHE_DIR"] = str(vocab)
    if dry:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a dry run is a CPU run even on a GPU machine
        # one thread: tiny shapes gain nothing from more, and on a busy 2-core machine OpenMP's
        # threads waiting on each other made each step 50 times slower here
        env["OMP_NUM_THREADS"] = "1"

    say(f"gpu_check: {'dry run (CPU)' if dry else 'GPU'}; out {out}; time budget {budget:.0f} s; corpus {corpus}; segmenter {segmenter}")
    setup: dict[str, Any] = {"install": "skipped (dry run)" if dry else ("skipped (--no-install)" if args.no_install else None)}
    if not dry and not args.no_install:
        setup = install(env, logs, Path(args.site or "/tmp/toklab-gpu-kit-site"))
    write_json(out / "setup.json", {**setup, "tiktoken_cache_dir": env.get("TIKTOKEN_CACHE_DIR"), "toklab_cache_dir": env["TOKLAB_CACHE_DIR"]})

    statuses: dict[str, dict[str, Any]] = {}
    for name, limit, least in plan["stages"]:
        family = name.split("-")[0]
        if family not in wanted:
            continue
        left = budget - (time.perf_counter() - started) - RESERVE_S
        if statuses.get("env", {}).get("cuda") is False and not dry:
            statuses[name] = {"status": "skipped", "reason": "no CUDA device (see env.json)"}
        elif left < least:
            statuses[name] = {"status": "skipped", "reason": f"time ran out: {max(left, 0):.0f} s of the budget left, the stage needs at least {least} s"}
        else:
            timeout = min(limit, left)
            say(f"gpu_check: stage {name} (limit {timeout:.0f} s)")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", name, "--out", str(out)]
            code, seconds = run_logged(cmd, logs / f"{name}.log", timeout, env, name)
            result = read_json(out / "parts" / f"{name}.json") or {}
            status = "ok" if code == 0 else ("timeout" if code is None else "failed")
            entry: dict[str, Any] = {"status": status, "seconds": round(seconds, 1), "limit_s": round(timeout, 1)}
            if status == "timeout":
                entry["reason"] = f"killed after its {timeout:.0f} s limit"
            elif status == "failed":
                entry["error"] = result.get("error") or log_tail(logs / f"{name}.log", 3) or f"exit code {code}"
            if name == "env":
                entry["cuda"] = result.get("cuda_available")
            statuses[name] = entry
        say(f"gpu_check: stage {name}: {statuses[name]['status']}" + (f" ({statuses[name].get('reason') or statuses[name].get('error')})" if statuses[name]["status"] != "ok" else f" in {statuses[name]['seconds']} s"))

    collect(out, plan, statuses)
    total = time.perf_counter() - started
    write_json(out / "stages.json", {"wall_s": round(total, 1), "budget_s": budget, "stages": statuses})
    summary = summary_markdown(out, plan, statuses, total)
    (out / "summary.md").write_text(summary, encoding="utf-8")
    if bundle is not None:
        write_bundle(out, bundle)
    say("")
    say(summary)
    return 0


def collect(out: Path, plan: dict[str, Any], statuses: dict[str, dict[str, Any]]) -> None:
    """The canonical result files, whatever happened to the stages that write their parts."""
    parts = out / "parts"
    env = read_json(parts / "env.json")
    write_json(out / "env.json", {**(env or {}), "stage": statuses.get("env", {"status": "not asked for"})})

    rows = []
    for variant in ("eager", "compile", "blt"):
        name = "blt-throughput" if variant == "blt" else f"throughput-{variant}"
        if name in statuses:
            rows.append({"variant": variant, **(read_json(parts / f"{name}.json") or {}), "stage": statuses[name]})
    throughput = {"setup": plan["throughput"], "blt_setup": plan.get("blt"), "segmenter": plan["segmenter"], "mfu_target": MFU_TARGET, "rows": rows}
    write_json(out / "throughput.json", throughput)
    (out / "throughput.md").write_text(throughput_markdown(throughput, plan), encoding="utf-8")

    resume = read_json(parts / "resume.json") or {}
    write_json(out / "resume.json", {**resume, "pass": bool(resume.get("pass")), "stage": statuses.get("resume", {"status": "not asked for"})})

    ddp = read_json(parts / "ddp.json") or {}
    write_json(out / "ddp.json", {**ddp, "stage": statuses.get("ddp", {"status": "not asked for"})})

    study = read_json(parts / "study.json") or {}
    finished = sorted(p.parent.name for p in (out / "study" / "runs").glob("*/summary.json"))
    write_json(out / "study.json", {**study, "finished_runs": finished, "stage": statuses.get("study", {"status": "not asked for"})})


def _fmt(value: Any, spec: str, missing: str = "n/a") -> str:
    return format(value, spec) if isinstance(value, (int, float)) and value == value else missing


def throughput_markdown(throughput: dict[str, Any], plan: dict[str, Any]) -> str:
    s = throughput["setup"]
    lines = [
        f"# Trainer throughput: {s['model']}, context {s['context']}, {plan['segmenter']}, {'float32 on a CPU (dry run)' if plan['dry_run'] else 'bf16 autocast'}",
        "",
        f"{s['warmup']} warm-up steps, then {s['timed']} timed steps in {s['chunks']} intervals (each ends with one read of the losses, as a run "
        f"does); tokens/s = timed tokens / timed seconds; MFU = FLOPs/token x tokens/s / the GPU's dense bf16 peak. Target: {MFU_TARGET:.0%} MFU.",
        "",
        "| variant | status | batch | tokens/step | first step s | tokens/s | interval tokens/s (min-max) | achieved TFLOP/s | MFU | peak memory GiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    blt = throughput.get("blt_setup")
    if blt and any(r["variant"] == "blt" for r in throughput["rows"]):
        lines[2] += (
            f" The blt row is the byte-latent patch model (preset {blt['preset']}, {blt['context']} bytes of context, {blt['patcher']} patches, "
            "FLOPs counted in full per byte): its tokens are bytes."
        )
    for r in throughput["rows"]:
        lines.append(
            f"| {r['variant']} | {r['stage']['status']} | {r.get('batch_size', '')} | {_fmt(r.get('tokens_per_step'), ',')} | {_fmt(r.get('first_step_s'), '.1f')} | "
            f"{_fmt(r.get('tokens_per_s'), ',.0f')} | {_fmt(r.get('interval_tokens_per_s_min'), ',.0f')}-{_fmt(r.get('interval_tokens_per_s_max'), ',.0f')} | "
            f"{_fmt(r.get('achieved_tflops'), '.1f')} | {_fmt(100 * r['mfu'] if isinstance(r.get('mfu'), float) else None, '.1f')}{'%' if isinstance(r.get('mfu'), float) else ''} | "
            f"{_fmt(r.get('peak_memory_gib'), '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def summary_markdown(out: Path, plan: dict[str, Any], statuses: dict[str, dict[str, Any]], total: float) -> str:
    env = read_json(out / "env.json") or {}
    lines = [f"# GPU kit {'dry run (CPU)' if plan['dry_run'] else 'run'}: {env.get('device_name', 'device unknown')}", ""]
    lines += [
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}; wall {total:.0f} s",
        f"- torch {env.get('torch', '?')}, CUDA {env.get('cuda_version', '?')}, Python {env.get('python', platform.python_version())}, toklab {env.get('toklab', '?')}",
        f"- peak bf16 FLOP/s (toklab's table, for MFU): {_fmt((env.get('peak_bf16_flops') or float('nan')) / 1e12, '.0f', 'n/a')} T; "
        f"a plain matmul ({env.get('matmul', 'not run')}): {_fmt(env.get('matmul_tflops'), '.3g')} TFLOP/s",
        f"- corpus: {plan['corpus']}",
    ]
    lines += [f"- note: {n}" for n in plan["notes"]]
    lines += ["", "## Stages", "", "| stage | status | seconds | detail |", "|---|---|---:|---|"]
    for name, st in statuses.items():
        detail = (st.get("reason") or st.get("error") or "").replace("|", "/").replace("\n", " ")
        lines.append(f"| {name} | {st['status']} | {st.get('seconds', '')} | {detail[:300]} |")
    lines += ["", (out / "throughput.md").read_text(encoding="utf-8").replace("# ", "## ", 1)]
    resume = read_json(out / "resume.json") or {}
    stage = resume.get("stage", {})
    fallback = f"{stage.get('status', 'not run')}: {stage.get('reason') or stage.get('error') or ''}".rstrip(": ")
    lines += ["## Resume on " + ("the CPU" if plan["dry_run"] else "CUDA"), "", f"- {resume.get('verdict') or fallback}", ""]
    ddp = read_json(out / "ddp.json") or {}
    lines += ["## DDP (torchrun)", ""]
    if ddp.get("rows"):
        lines += ["| run | processes | tokens/s | MFU | last train loss |", "|---|---:|---:|---:|---:|"]
        for r in ddp["rows"]:
            mfu = f"{100 * r['mfu']:.1f}%" if isinstance(r.get("mfu"), float) else "n/a"
            lines.append(f"| {r['variant']} | {r['processes']} | {_fmt(r.get('tokens_per_s'), ',.0f')} | {mfu} | {_fmt(r.get('last_step_train_loss'), '.4f')} |")
        lines += ["", f"- {ddp.get('verdict', '')}", ""]
    else:
        lines += [f"- not run ({ddp.get('stage', {}).get('status', 'not run')})", ""]
    study = read_json(out / "study.json") or {}
    lines += ["## Study", ""]
    if study.get("summary"):
        lines += [f"- {line}" for line in study["summary"]] + ["", f"Table: {out / 'study' / 'table.md'}"]
    else:
        lines += [f"- not finished ({study.get('stage', {}).get('status', 'not run')}); finished runs: {len(study.get('finished_runs', []))}"]
    return "\n".join(lines) + "\n"


def write_bundle(out: Path, bundle: Path) -> None:
    """The results as one .tar.gz: no checkpoints, caches or the dry run's corpus."""
    skip_dirs = {"cache", "dry-run-corpus", "segmenter"}

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if any(p in skip_dirs for p in parts) or info.name.endswith((".pt", ".tmp")):
            return None
        return info

    tmp = bundle.with_name(bundle.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(out.iterdir()):
            if path.resolve() != bundle:
                tar.add(path, arcname=f"{out.name}/{path.name}", filter=keep)
    os.replace(tmp, bundle)


# --- the stages (each runs in a process of its own) -------------------------------------------------


def stage_env(plan: dict[str, Any], out: Path) -> dict[str, Any]:
    import torch

    import toklab
    from toklab.gpt.train import gpu_peak_flops

    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
        "cuda_version": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(), "toklab": toklab.__version__, "toklab_path": str(Path(toklab.__file__).parent),
    }  # fmt: skip
    versions = {}
    for name in ("numpy", "tokenizers", "tiktoken", "sentencepiece", "pandas", "pyarrow", "triton", "zstandard", "matplotlib"):
        try:
            versions[name] = __import__(name).__version__
        except Exception as exc:  # absent, or broken: either is a fact worth recording
            versions[name] = f"not importable ({type(exc).__name__})"
    info["packages"] = versions
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        name = torch.cuda.get_device_name(0)
        info.update({
            "device_name": name, "device_count": torch.cuda.device_count(), "capability": list(torch.cuda.get_device_capability(0)),
            "memory_gib": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count, "peak_bf16_flops": gpu_peak_flops(name),
        })  # fmt: skip
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            info["nvidia_smi"] = f"unavailable ({type(exc).__name__})"
        n, dtype, device = 8192, torch.bfloat16, "cuda"
    else:
        info.update({"device_name": "cpu", "peak_bf16_flops": None})
        n, dtype, device = 256, torch.float32, "cpu"
    # a plain matrix product: the ceiling the trainer's MFU can be read against
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    info["matmul"] = f"{n}x{n}x{n} {str(dtype).replace('torch.', '')}, mean of 10 after 3 warm-ups"
    info["matmul_tflops"] = 10 * 2 * n**3 / (time.perf_counter() - start) / 1e12
    return info


def stage_throughput(plan: dict[str, Any], out: Path, variant: str) -> dict[str, Any]:
    """Training throughput of the GPT (variant eager or compile) or of the byte-latent patch model
    (variant blt: plan["blt"]'s preset, context in bytes and patcher; its tokens are bytes)."""
    import functools

    import torch

    from toklab.corpus import open_corpus
    from toklab.gpt.data import build_token_data
    from toklab.gpt.model import model_config
    from toklab.gpt.train import LOSS_READ_EVERY, Budget, TrainConfig, Trainer, gpu_peak_flops
    from toklab.segmenters import get_segmenter

    blt = variant == "blt"
    tp = {**plan["throughput"], **plan["blt"]} if blt else plan["throughput"]
    compiled = variant == "compile"
    if compiled and tp["compile_backend"] != "inductor":  # the dry run traces with dynamo but skips code generation (a minute on a CPU)
        torch.compile = functools.partial(torch.compile, backend=tp["compile_backend"])  # type: ignore[assignment]
    part = out / "parts" / ("blt-throughput.json" if blt else f"throughput-{variant}.json")
    result: dict[str, Any] = {"batch_size": tp["batch_size"], "compile": compiled, "compile_backend": tp["compile_backend"] if compiled else None}
    start = time.perf_counter()
    corpus = open_corpus(plan["corpus"])
    if blt:
        from toklab.gpt.blt import blt_config
        from toklab.segmenters.patchers import load_patcher

        seg = load_patcher(tp["patcher"], corpus)
        result.update({"model": f"blt {tp['preset']}", "patcher": tp["patcher"], "context_bytes": tp["context"]})
    else:
        seg = get_segmenter(plan["segmenter"], corpus)
    data = build_token_data(corpus, seg)
    result["data_s"] = round(time.perf_counter() - start, 1)
    shape = blt_config(tp["preset"], tp["context"]) if blt else model_config(seg.vocab_size, tp["model"], tp["context"])
    steps = tp["warmup"] + tp["timed"]
    config = TrainConfig(
        budget=Budget("steps", steps), batch_size=tp["batch_size"], lr=6e-4, compile=compiled, device=plan["device"], val_bytes=tp["context"] * 64, eval_bytes=tp["context"] * 16,
    )  # fmt: skip  (GPT-2 small's learning rate: the timed steps must not diverge)
    run_dir = out / "throughput" / variant
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(data, shape, config, run_dir, segmenter_spec=seg.spec)
    cuda = trainer.device_type == "cuda"
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = gpu_peak_flops(name) if cuda else None
    result.update({
        "device": name, "dtype": str(trainer.autocast_dtype or torch.float32).replace("torch.", ""), "params": trainer.model.num_params(),
        "flops_per_token": trainer.flops_per_token, "tokens_per_step": trainer.tokens_per_step, "peak_flops": peak, "status": "warming up",
    })  # fmt: skip
    write_json(part, result)

    def wait() -> None:
        trainer.read_losses()
        if cuda:
            torch.cuda.synchronize()

    def steps_(n: int) -> None:
        for _ in range(n):
            trainer.train_step()
            if trainer.step % LOSS_READ_EVERY == 0:  # as Trainer.run reads them on CUDA
                trainer.read_losses()

    try:
        t0 = time.perf_counter()
        steps_(1)
        wait()
        result["first_step_s"] = time.perf_counter() - t0  # compilation included
        say(f"first step (compilation included): {result['first_step_s']:.1f} s")
        steps_(tp["warmup"] - 1)
        wait()
        result["status"] = "timing"
        write_json(part, result)
        per_chunk = max(1, tp["timed"] // tp["chunks"])
        seconds = []
        for _ in range(tp["chunks"]):
            t0 = time.perf_counter()
            steps_(per_chunk)
            wait()
            seconds.append(time.perf_counter() - t0)
    except torch.cuda.OutOfMemoryError:
        result.update({"status": "out of memory", "error": trainer._oom_message()})
        write_json(part, result)
        raise SystemExit(1)
    tokens = per_chunk * trainer.tokens_per_step
    rate = tokens * len(seconds) / sum(seconds)
    result.update({
        "status": "ok", "timed_steps": per_chunk * len(seconds), "timed_s": sum(seconds), "tokens_per_s": rate, "ms_per_step": 1000 * sum(seconds) / (per_chunk * len(seconds)),
        "interval_tokens_per_s_min": tokens / max(seconds), "interval_tokens_per_s_max": tokens / min(seconds),
        "achieved_tflops": trainer.flops_per_token * rate / 1e12, "mfu": trainer.flops_per_token * rate / peak if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None, "last_loss": trainer.last_train_loss,
    })  # fmt: skip
    if result["mfu"] is not None:
        result["mfu_target_met"] = result["mfu"] >= MFU_TARGET
    say(f"{variant}: {rate:,.0f} tokens/s, {result['ms_per_step']:.1f} ms/step" + (f", MFU {100 * result['mfu']:.1f}%" if result["mfu"] is not None else ""))
    return result


def resume_run(plan: dict[str, Any], run_dir: Path, mode: str, deterministic: bool) -> None:
    """One run of the resume check, in a process of its own: 'whole', 'cut' (killed by SIGKILL right
    after a checkpoint) or 'resume' (continues the cut run)."""
    import torch

    import toklab.gpt.train as train_module
    from toklab.pretrain import pretrain

    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    r = plan["resume"]
    if mode == "cut":
        real_save = train_module.Trainer.save_checkpoint
        saves = {"n": 0}

        def save_then_die(self: Any) -> None:
            real_save(self)
            saves["n"] += 1
            if saves["n"] == r["kill_after_checkpoints"]:
                say(f"killing the run right after its checkpoint at step {self.step}")
                os.kill(os.getpid(), signal.SIGKILL)

        train_module.Trainer.save_checkpoint = save_then_die  # type: ignore[method-assign]
    options = {k: r[k] for k in ("model", "context", "batch_size", "steps", "eval_every", "checkpoint_every", "val_bytes", "eval_bytes")}
    pretrain(plan["corpus"], plan["segmenter"], out=run_dir, device=plan["device"], resume=mode == "resume", overwrite=mode != "resume", **options)


def stage_resume(plan: dict[str, Any], out: Path) -> dict[str, Any]:
    base = out / "resume"
    result: dict[str, Any] = {"setup": plan["resume"], "segmenter": plan["segmenter"]}

    def start(name: str, mode: str, deterministic: bool) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        if deterministic:
            env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # cuBLAS needs it for deterministic results
        cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", "resume-run", "--out", str(out), "--run-dir", str(base / name), "--mode", mode]
        cmd += ["--deterministic"] if deterministic else []
        say(f"resume check: {name} ({mode})")
        return subprocess.Popen(cmd, env=env)

    def losses(name: str) -> list[tuple[Any, ...]]:
        from toklab.pretrain import read_history

        return [(h["step"], h["train_loss"], h["val_loss"], h["val_bits_per_byte"]) for h in read_history(base / name)]

    def weights(name: str) -> dict[str, Any]:
        import torch

        return torch.load(base / name / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]

    def compare(a: str, b: str) -> dict[str, Any]:
        import torch

        la, lb = losses(a), losses(b)
        diffs = [abs(x - y) for ra, rb in zip(la, lb) for x, y in zip(ra[1:], rb[1:]) if x is not None and y is not None]
        wa, wb = weights(a), weights(b)
        return {
            "same_steps": [r[0] for r in la] == [r[0] for r in lb], "losses_equal": la == lb, "max_abs_loss_difference": max(diffs, default=0.0),
            "weights_equal": wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa),
        }  # fmt: skip

    def attempt(prefix: str, deterministic: bool) -> dict[str, Any]:
        r = plan["resume"]
        # the uninterrupted run and the one to be cut are independent: side by side, in less time
        whole, cut = start(f"{prefix}whole", "whole", deterministic), start(f"{prefix}cut", "cut", deterministic)
        code = cut.wait()
        kill_step = r["checkpoint_every"] * r["kill_after_checkpoints"]
        if code != -signal.SIGKILL:
            whole.wait()
            raise RuntimeError(f"the run to be cut was not killed (exit code {code})")
        cut_steps = [h[0] for h in losses(f"{prefix}cut")]
        resumed = start(f"{prefix}cut", "resume", deterministic)  # a fresh process, as after a crash
        if whole.wait() != 0:
            resumed.wait()
            raise RuntimeError(f"the uninterrupted {prefix or 'default '}run failed (see logs/resume.log)")
        if resumed.wait() != 0:
            raise RuntimeError("the resumed run failed (see logs/resume.log)")
        got = compare(f"{prefix}whole", f"{prefix}cut")
        got.update({"killed_at_step": kill_step, "logged_before_the_kill": cut_steps, "exact": got["losses_equal"] and got["weights_equal"]})
        return got

    result["default"] = attempt("", False)
    result["pass"] = result["default"]["exact"]
    steps = plan["resume"]["steps"]
    if result["pass"]:
        result["verdict"] = f"pass: killed at step {result['default']['killed_at_step']} and resumed, the {steps}-step run logged the same losses and ended with the same weights, bit for bit"
    else:
        # is it the resume, or does the GPU not repeat itself? An uninterrupted control run tells.
        if start("whole-again", "whole", False).wait() != 0:
            raise RuntimeError("the control run failed (see logs/resume.log)")
        result["control"] = compare("whole", "whole-again")
        if result["control"]["losses_equal"] and result["control"]["weights_equal"]:
            result["verdict"] = f"FAIL: two uninterrupted runs agree exactly but the resumed one differs (max loss difference {result['default']['max_abs_loss_difference']:.3g})"
        else:
            result["deterministic"] = attempt("deterministic-", True)
            result["pass"] = result["deterministic"]["exact"]
            result["verdict"] = (
                f"{'pass' if result['pass'] else 'FAIL'} under torch.use_deterministic_algorithms: resumed == uninterrupted "
                f"{'exactly' if result['pass'] else 'NOT exactly'}; without it two uninterrupted runs already differ by up to "
                f"{result['control']['max_abs_loss_difference']:.3g} nats (nondeterministic kernels), the resumed one by {result['default']['max_abs_loss_difference']:.3g}"
            )
    say(f"resume check: {result['verdict']}")
    return result


def stage_ddp(plan: dict[str, Any], out: Path) -> dict[str, Any]:
    """The same run (one global batch) plainly, under torchrun with one process, and under --nproc N:
    tokens/s from each run's own summary, and torchrun's overhead on one device."""
    d = plan["ddp"]
    if plan["dry_run"]:
        n = d["nproc"]
    else:
        import torch

        n = d["nproc"] or torch.cuda.device_count()
    n = n if n > 1 else 1
    global_batch = d["batch_size"] * d["context"] * n  # fewer processes reach it by accumulation
    args = [
        "pretrain", "-c", plan["corpus"], "-s", plan["segmenter"], "--model", d["model"], "--context", str(d["context"]), "--batch-size", str(d["batch_size"]),
        "--batch-tokens", str(global_batch), "--steps", str(d["steps"]), "--eval-every", str(10**6), "--checkpoint-every", str(10**6),
        "--val-bytes", str(d["val_bytes"]), "--eval-bytes", str(d["eval_bytes"]), "--device", plan["device"], "--json", "--overwrite",
    ]  # fmt: skip
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m", "toklab"]
    variants = [("plain", 1, [sys.executable, "-m", "toklab"], []), ("torchrun, 1 process", 1, torchrun, [])]
    if n > 1:
        variants.append((f"--nproc {n}", n, [sys.executable, "-m", "toklab"], ["--nproc", str(n)]))
    rows = []
    for variant, processes, head, extra in variants:
        say(f"ddp: {variant}")
        run_dir = out / "ddp" / variant.replace(" ", "-").replace(",", "").lstrip("-")
        done = subprocess.run([*head, *args, "--out", str(run_dir), *extra], capture_output=True, text=True)
        sys.stderr.write(done.stderr[-4000:])
        if done.returncode != 0:
            raise RuntimeError(f"{variant} failed: " + ((done.stderr.strip().splitlines() or ["exit code %d" % done.returncode])[-1]))
        summary = json.loads(done.stdout[done.stdout.index("{") :])
        rows.append({
            "variant": variant, "processes": processes, "tokens_per_s": summary["tokens_per_s"], "mfu": summary["mfu"], "steps": summary["steps"],
            "accumulation": summary["train"]["accumulation"], "last_step_train_loss": summary["last_step_train_loss"], "val_bits_per_byte": summary["val_bits_per_byte"],
            "parallel": summary.get("parallel"), "wall_s": summary["wall_s"],
        })  # fmt: skip
        say(f"ddp: {variant}: {summary['tokens_per_s']:,.0f} tokens/s")
    plain, one = rows[0], rows[1]
    overhead = 1.0 - one["tokens_per_s"] / plain["tokens_per_s"]
    same = all(abs(r["last_step_train_loss"] - plain["last_step_train_loss"]) <= 1e-3 * max(1.0, abs(plain["last_step_train_loss"])) for r in rows)
    result: dict[str, Any] = {"setup": {**d, "nproc": n, "global_batch_tokens": global_batch}, "rows": rows, "torchrun_overhead": overhead, "overhead_target": DDP_OVERHEAD_TARGET, "losses_agree": same}
    verdict = f"torchrun with one process: overhead {100 * overhead:+.1f}% of the plain run's tokens/s (target <= {100 * DDP_OVERHEAD_TARGET:.0f}%)"
    if not plan["dry_run"]:
        result["overhead_target_met"] = overhead <= DDP_OVERHEAD_TARGET
    else:
        verdict += "; a CPU dry run, not the GPU figure"
    if n > 1:
        verdict += f"; {n} processes: {rows[2]['tokens_per_s'] / plain['tokens_per_s']:.2f}x the plain run"
    result["verdict"] = verdict + ("; the runs' last losses agree" if same else "; the runs' last losses DIFFER")
    say(f"ddp: {result['verdict']}")
    return result


def stage_study(plan: dict[str, Any], out: Path) -> dict[str, Any]:
    from toklab.study import run_study

    s = plan["study"]
    say(f"study: {', '.join(s['segmenters'])} at {', '.join(f'{f:.0e}' for f in s['flops'])} FLOPs, {s['seeds']} seeds, model {s['model']}, context {s['context']}")
    result = run_study(
        plan["corpus"], s["segmenters"], s["flops"], model=s["model"], context=s["context"], seeds=s["seeds"], out=out / "study", yes=True,
        batch_size=s["batch_size"], val_bytes=s["val_bytes"], eval_bytes=s["eval_bytes"], eval_every=s["eval_every"], device=plan["device"],
    )  # fmt: skip
    for line in result.summary:
        say(f"study: {line}")
    return {"setup": s, "summary": result.summary, "notes": result.notes, "wall_s": result.meta.get("wall_s"), "rows": json.loads(result.table.to_json(orient="records"))}


def run_stage(args: argparse.Namespace) -> int:
    out = Path(args.out)
    plan = read_json(out / "plan.json")
    if plan is None:
        raise KitError(f"{out / 'plan.json'} is missing: stages run from the orchestrator (drop --stage)")
    name = args.stage
    if name == "resume-run":
        resume_run(plan, Path(args.run_dir), args.mode, args.deterministic)
        return 0
    (out / "parts").mkdir(exist_ok=True)
    part = out / "parts" / f"{name}.json"
    try:
        if name in os.environ.get(FAIL_ENV, "").split(","):
            raise RuntimeError(f"failure injected by {FAIL_ENV}={name}")
        if name == "env":
            result = stage_env(plan, out)
        elif name.startswith("throughput-"):
            result = stage_throughput(plan, out, name.split("-", 1)[1])
        elif name == "blt-throughput":
            result = stage_throughput(plan, out, "blt")
        elif name == "resume":
            result = stage_resume(plan, out)
        elif name == "ddp":
            result = stage_ddp(plan, out)
        elif name == "study":
            result = stage_study(plan, out)
        else:
            raise KitError(f"unknown stage {name}")
    except SystemExit:
        raise
    except BaseException as exc:  # recorded for the summary; the traceback goes to the stage's log
        traceback.print_exc()
        previous = read_json(part) or {}
        write_json(part, {**previous, "status": "failed", "error": f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"})
        return 1
    write_json(part, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="a new or empty folder for every result")
    parser.add_argument("--dry-run", action="store_true", help="the same stages on a CPU with tiny shapes and budgets, in seconds; no install")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds for everything (default 480; dry run 240)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"which stages, in this order: {','.join(STAGES)}")
    parser.add_argument("--corpus", default=None, help="a toklab --corpus (default: gpu_kit/corpus, else the embedded default corpus)")
    parser.add_argument("--bundle", default=None, help="also write the results (no checkpoints, caches) as this .tar.gz")
    parser.add_argument("--no-install", action="store_true", help="use the python as it is: no wheels, no pip install -e")
    parser.add_argument("--site", default=None, help="where the wheels are installed (default /tmp/toklab-gpu-kit-site)")
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--deterministic", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        return run_stage(args) if args.stage else orchestrate(args)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
