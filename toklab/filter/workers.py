"""The process pool that filters several shards at once: worker setup, and stopping it at once."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

from toklab.files import pid_alive
from toklab.filter.lock import held_locks

if TYPE_CHECKING:
    from toklab.segmenters import Segmenter

worker_segmenter: "Segmenter | None" = None  # set once per worker process, not pickled per shard
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def init_worker(segmenter: "Segmenter | None", main_pid: int | None = None) -> None:
    """A pool worker's setup: the segmenter; no inherited --out lock; Ctrl-C left to the main process,
    which stops its workers itself; and an exit as soon as the main process is gone."""
    global worker_segmenter
    worker_segmenter = segmenter
    for fd in list(held_locks):  # a forked copy of the main process's lock: the lock stays the main's
        try:
            os.close(fd)
        except OSError:
            pass
    held_locks.clear()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if main_pid is not None:
        _exit_with_parent(main_pid)


def _exit_with_parent(main_pid: int) -> None:
    """End this worker when its parent dies (killed, say), instead of finishing its shards as an
    orphan and then waiting for work for ever: PR_SET_PDEATHSIG on Linux, else a watching thread."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0:
                if os.getppid() != parent or not pid_alive(main_pid):  # it died before the call
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch_parent, args=(parent,), name="toklab-watch-parent", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop at once: cancel the queued shards and end the running ones (their temporary files are
    removed afterwards), rather than letting every queued shard finish after an interrupt."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        try:
            process.terminate()
        except Exception:
            pass
    for process in processes:
        try:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        except Exception:
            pass
    try:
        pool.shutdown(wait=True)
    except Exception:
        pass
