"""A torchrun worker for tests/gpt/test_ddp.py: `toklab <args>` with test hooks chosen by environment
variables (each rank reads the same ones):

  DDP_TEST_WRITES=DIR    every file this rank creates, writes, renames or removes under the folders in
                         DDP_TEST_WATCH (os.pathsep-separated) is listed in DIR/rank-<RANK>.json at exit
  DDP_TEST_CRASH_AFTER=N every rank dies (KeyboardInterrupt) right after its N-th checkpoint
  DDP_TEST_FAIL=R:S      rank R raises RuntimeError at the start of training step S
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
RANK = int(os.environ.get("RANK", "0"))


def watch_writes(report: Path, roots: list[Path]) -> None:
    """A Python audit hook: the write-like events under `roots` (torch.save and parquet write in C++,
    unseen, but toklab renames their temporary files into place, which is seen)."""
    seen: list[list[str]] = []
    done = []  # set at exit: the report itself is not recorded
    writing = (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC)

    def inside(path: object) -> str | None:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return None
        try:
            full = Path(os.fsdecode(path)).resolve()
        except (OSError, ValueError):
            return None
        return str(full) if any(full == r or r in full.parents for r in roots) else None

    def hook(event: str, args: tuple) -> None:
        if done:
            return
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None))[:3]
            wants = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(isinstance(flags, int) and flags & writing)
            where = inside(path) if wants else None
        elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree", "os.truncate"):
            where = (inside(args[1]) if event == "os.rename" else None) or inside(args[0])  # a rename: where it lands
        else:
            return
        if where is not None:
            seen.append([event, where])

    def dump() -> None:
        done.append(True)
        report.mkdir(parents=True, exist_ok=True)
        (report / f"rank-{RANK}.json").write_text(json.dumps(list(seen)))

    atexit.register(dump)
    sys.addaudithook(hook)


def main() -> None:
    if os.environ.get("DDP_TEST_WRITES"):
        roots = [Path(p).resolve() for p in os.environ.get("DDP_TEST_WATCH", "").split(os.pathsep) if p]
        watch_writes(Path(os.environ["DDP_TEST_WRITES"]), roots)
    if os.environ.get("DDP_TEST_CRASH_AFTER"):
        import pytest

        from conftest import crash_after_checkpoints

        crash_after_checkpoints(pytest.MonkeyPatch(), int(os.environ["DDP_TEST_CRASH_AFTER"]))
    if os.environ.get("DDP_TEST_FAIL"):
        import toklab.gpt.train as train_module

        rank, step = (int(v) for v in os.environ["DDP_TEST_FAIL"].split(":"))
        real_step = train_module.Trainer.train_step

        def failing(self):  # noqa: ANN001, ANN202
            if RANK == rank and self.step + 1 == step:
                raise RuntimeError(f"injected failure on rank {rank} at step {step}")
            return real_step(self)

        train_module.Trainer.train_step = failing  # type: ignore[method-assign]
    from toklab.cli import main as toklab_main

    toklab_main(sys.argv[1:])


if __name__ == "__main__":
    main()
