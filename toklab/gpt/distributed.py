"""Training on several processes: torchrun and DistributedDataParallel (DDP).

torchrun starts one process per GPU (or per CPU share) and sets RANK, LOCAL_RANK and WORLD_SIZE.
toklab uses torch.distributed only when WORLD_SIZE > 1: a plain run never touches it. Under
torchrun every rank builds the same model from the same seed, reads its own share of the training
windows (toklab.gpt.data.TokenStream), and DDP averages the gradients; rank 0 alone writes files.

`launch` is `toklab pretrain --nproc N`: torchrun's own launcher (torch.distributed.run) in this
process, one worker per rank running `python -m toklab ...`; a failed rank ends the job and comes
back as one line, `rank N failed: <its error>`. `run_function` does the same for a Python call
(`toklab study --nproc N` runs each of its runs so).

torch is imported inside the functions, so the CLI starts without it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pickle
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from toklab.errors import ToklabError, one_line

ERRORS_ENV = "TOKLAB_DDP_ERRORS"  # a folder where each failing rank leaves its one-line error for the launcher
TIMEOUT_ENV = "TOKLAB_DDP_TIMEOUT"  # seconds a collective may wait for the other ranks
DEFAULT_TIMEOUT_S = 600.0  # a stuck rank ends the job after this long, not never
RESULT = "result.pkl"


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank (global), local rank (on this node), size (processes in all)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and reports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text.strip():
        return default
    try:
        return int(text)
    except ValueError:
        raise ToklabError(f"the environment variable {name}={text!r} is not a whole number (torchrun sets it)") from None


def world() -> World:
    """From torchrun's environment variables; one process when WORLD_SIZE is unset or 1."""
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return World()
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < size:
        raise ToklabError(f"RANK={rank} is outside 0..{size - 1} (WORLD_SIZE={size})")
    return World(rank, local, size)


def timeout_s() -> float:
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text.strip() else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ToklabError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    if not value > 0:
        raise ToklabError(f"{TIMEOUT_ENV} must be positive, got {text}")
    return value


def initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def init(device: str = "auto") -> World:
    """Join the job's process group when WORLD_SIZE > 1 (once per process): NCCL when the run is on
    CUDA, gloo on a CPU. Returns this process's World (one process: nothing is started)."""
    w = world()
    if not w.distributed:
        return w
    import datetime

    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return w
    cuda = device != "cpu" and device != "mps" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(w.local_rank)
    _record_uncaught()
    try:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s()))
    except (ValueError, RuntimeError) as exc:
        raise ToklabError(f"cannot join the torch.distributed job (WORLD_SIZE={w.size}; start it with torchrun or --nproc): {one_line(exc)}") from None
    atexit.register(_shutdown)
    return w


def _shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def backend() -> str | None:
    import torch.distributed as dist

    return dist.get_backend() if initialized() else None


def barrier() -> None:
    if initialized():
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (it may build caches: a trained segmenter, token shards), then the
    other ranks run it and find them built. One process: just the block."""
    if not initialized():
        yield
        return
    main = world().main
    if not main:
        barrier()
    yield
    if main:
        barrier()


def all_reduce_sum(t: Any) -> Any:
    """`t` summed over the ranks, in place (it must be on the backend's device: CUDA for NCCL)."""
    if initialized():
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather(t: Any) -> list[Any]:
    """Every rank's `t` (the same shape on every rank), in rank order."""
    if not initialized():
        return [t]
    import torch
    import torch.distributed as dist

    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return out


def broadcast_float(value: float, device: str = "cpu") -> float:
    """Rank 0's `value` on every rank (so that every rank takes the same decision)."""
    if not initialized():
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


# --- failures: one line per rank, for the launcher ---------------------------------------------------------


def record_failure(message: str) -> None:
    """Leave this rank's error where the launcher (`launch`) looks for it; nothing outside a launch."""
    folder, rank = os.environ.get(ERRORS_ENV), os.environ.get("RANK")
    if not folder or rank is None:
        return
    try:
        path = Path(folder) / f"rank-{int(rank)}.json"
        path.write_text(json.dumps({"rank": int(rank), "time": time.time(), "message": message}), encoding="utf-8")
    except (OSError, ValueError):
        pass  # the launcher then reports the exit code alone


def _record_uncaught() -> None:
    """An exception no one catches (a crash, a peer's dropped connection) is recorded too."""
    previous = sys.excepthook
    if getattr(previous, "_toklab_records", False):
        return

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        text = one_line(exc)
        record_failure(text if isinstance(exc, ToklabError) else f"{kind.__name__}: {text}" if text else kind.__name__)
        previous(kind, exc, tb)

    hook._toklab_records = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def failure_message(folder: Path, exit_codes: dict[int, int]) -> str:
    """The first rank to fail, in one line: its recorded error, else its exit code (`exit_codes` in
    the order the ranks failed)."""
    recorded = []
    for path in folder.glob("rank-*.json"):
        try:
            recorded.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    if recorded:
        first = min(recorded, key=lambda r: r["time"])
        return f"rank {first['rank']} failed: {first['message']}"
    if exit_codes:
        rank = next(iter(exit_codes))
        code = exit_codes[rank]
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return f"rank {rank} failed: {how} (its output above says why)"
    return "the torchrun job failed (its output above says why)"


# --- launching ------------------------------------------------------------------------------------------------


def launch(nproc: int, args: list[str], *, module: str = "toklab", script: str | os.PathLike | None = None, extra_env: dict[str, str] | None = None) -> None:
    """Run `python -m <module> <args>` (or `python <script> <args>`) in `nproc` processes on this
    machine, as `torchrun --standalone --nproc_per_node <nproc>` does. Returns when every rank has
    finished; a failed rank ends the job (torchrun stops the others) and raises ToklabError
    `rank N failed: ...`."""
    if nproc < 1:
        raise ToklabError(f"--nproc must be at least 1, got {nproc}")
    if os.environ.get("WORLD_SIZE") not in (None, "", "1"):
        raise ToklabError("--nproc inside a torchrun job: start either torchrun or --nproc, not both")
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, get_args_parser

    import signal

    folder = Path(tempfile.mkdtemp(prefix="toklab-ddp-"))
    entry = ["-m", module] if script is None else [str(script)]
    saved = dict(os.environ)
    # torchrun's agent installs handlers that turn SIGTERM and friends into exceptions and leaves them
    # set: a process forked later (a pool worker told to stop) would then raise instead of ending,
    # holding its pool's locks, and hang the pool. Put this process's own handlers back.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)}
    quiet = logging.getLogger("torch.distributed.elastic")
    level = quiet.level
    try:
        os.environ[ERRORS_ENV] = str(folder)
        os.environ.update(extra_env or {})
        if nproc > 1:
            os.environ.setdefault("OMP_NUM_THREADS", "1")  # as torchrun: N processes, not N x all cores
        options = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(nproc), "--max-restarts", "0", "--no-python", sys.executable, "-u", *entry, *args])
        options.rdzv_backend, options.rdzv_endpoint, options.rdzv_id = "c10d", "localhost:0", f"toklab-{os.getpid()}-{time.time_ns()}"
        config, command, command_args = config_from_args(options)
        quiet.setLevel(logging.CRITICAL)  # the failure is said once, below, not in torchrun's box
        try:
            elastic_launch(config=config, entrypoint=command)(*command_args)
        except ChildFailedError as exc:
            codes = {rank: f.exitcode for rank, f in sorted(exc.failures.items(), key=lambda item: item[1].timestamp)}
            raise ToklabError(failure_message(folder, codes)) from None
        except SignalException:  # Ctrl-C or a kill: torchrun has stopped the ranks; said as an interrupt
            raise KeyboardInterrupt from None
    finally:
        quiet.setLevel(level)
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(folder, ignore_errors=True)
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)


def run_function(nproc: int, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`function(*args, **kwargs)` on every rank of an `nproc`-process job (see `launch`); returns
    rank 0's result. Everything passed must pickle (the function by its importable name)."""
    folder = Path(tempfile.mkdtemp(prefix="toklab-job-"))
    try:
        job = folder / "job.pkl"
        try:
            job.write_bytes(pickle.dumps((function, args, kwargs)))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise ToklabError(f"cannot hand this run to {nproc} processes: {one_line(exc)}") from None
        launch(nproc, [str(job)], module=__name__)
        try:
            return pickle.loads((folder / RESULT).read_bytes())
        except FileNotFoundError:
            raise ToklabError(f"the {nproc}-process job ended without a result") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_job(job: Path) -> None:
    """A worker of `run_function`: the call, and on rank 0 its result beside the job file."""
    function, args, kwargs = pickle.loads(job.read_bytes())
    _record_uncaught()
    try:
        result = function(*args, **kwargs)
    except ToklabError as exc:
        record_failure(one_line(exc))
        print(f"error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    if world().main:
        tmp = job.with_name(RESULT + ".tmp")
        tmp.write_bytes(pickle.dumps(result))
        os.replace(tmp, job.with_name(RESULT))


if __name__ == "__main__":
    _run_job(Path(sys.argv[1]))
