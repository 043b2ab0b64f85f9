"""Run a training function in a child Python process, so that Ctrl-C stops training at once.

Native trainers (tokenizers' BPE in Rust, SentencePiece in C++, zstd's dictionary trainer in C) do
not return to Python until they finish, so a KeyboardInterrupt waits for the whole training: a
minute or more. None of the three offers a way to interrupt it, hence a process: `run_in_child`
streams the training texts to a fresh interpreter over a pipe while the parent stays in Python;
on any exception, Ctrl-C included, the parent kills the child before re-raising. The child runs
in its own session, so a Ctrl-C at the terminal reaches the parent alone. The result comes back
pickled through a temporary folder that is always removed; caches are written by the parent,
after the result is back, so an interrupted training leaves nothing in them.

A fresh interpreter, not fork: tokenizers' thread pool does not survive a fork (the child then
trains single-threaded, or deadlocks when TOKENIZERS_PARALLELISM is set), and the parent may run
other threads (the progress display, torch, arrow). A plain subprocess, not multiprocessing's
spawn: spawn re-imports the caller's main script, which breaks scripts without a __main__ guard.

This module imports only the standard library and toklab.errors: any layer may use it.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, TypeVar

from toklab.errors import ToklabError, one_line
from toklab.segmenters.base import size_groups

T = TypeVar("T")

# Texts shorter than this in all (characters) train in-process: that takes well under a second,
# less than the child's start-up (about 1 s here), and keeps the many small trainings of the tests
# quick. Read at call time, so tests can lower it.
IN_PROCESS_BELOW = 64 << 10
BATCH_CHARS = 1 << 20  # texts are sent in pickled batches of about this many characters
POLL_SECONDS = 0.2  # how often the parent looks at the child (and calls `waiting`) while it trains
FRAME = struct.Struct("<Q")  # each message on the pipe: its length, then its bytes; 0 ends the texts
RESULT, ERROR = "result.pickle", "error.pickle"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# What the child runs: the parent's sys.path first (so it imports exactly what the parent imports,
# tests and plug-in kinds included), then serve().
BOOT = "import sys, json; sys.path[:] = json.loads(sys.argv[1]); from toklab.segmenters.child import serve; serve()"


def run_in_child(
    func: Callable[[Iterator[str]], T],
    texts: Iterable[str],
    *,
    waiting: Callable[[], None] | None = None,
    in_process_below: int | None = None,
) -> T:
    """`func(texts)`, computed in a child process: `func` (picklable, e.g. a module-level function
    or a class's method) gets an iterator over the same texts in the same order, and its result
    (picklable) is returned. The parent reads `texts` itself, so a progress display that counts
    them keeps working; `waiting()` is called every POLL_SECONDS while the child works on after
    the last text. An exception in the child is raised here as itself (a ToklabError stays one),
    with its one-line message. On any exception here, KeyboardInterrupt included, the child is
    killed first. Texts shorter in all than `in_process_below` characters (default
    IN_PROCESS_BELOW) are handed to `func` in this process instead."""
    limit = IN_PROCESS_BELOW if in_process_below is None else in_process_below
    job = _job(func)
    stream = iter(texts)
    head: list[str] = []
    size = 0
    while size < limit or not head:
        text = next(stream, None)
        if text is None:
            return func(iter(head))  # all the input is small: not worth a process
        head.append(text)
        size += len(text)
    # No child for a function another process cannot load, nor where the program running this is
    # no Python interpreter (embedded): then Ctrl-C waits for the function, as it would anyway.
    if job is None or not sys.executable:
        return func(itertools.chain(head, stream))
    return _Child().run(job, itertools.chain(head, stream), waiting)


class _JobPickler(pickle.Pickler):
    """Refuses classes and functions of the main script: the child's __main__ is another one."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == "__main__":
            raise pickle.PicklingError(f"{obj.__qualname__} is defined in the main script")
        return NotImplemented


def _job(func: Callable[..., Any]) -> bytes | None:
    """`func` pickled for the child, or None when it cannot be (a lambda, a class defined in a
    function or in the main script)."""
    buffer = io.BytesIO()
    try:
        _JobPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(func)
    except (pickle.PicklingError, AttributeError, TypeError):
        return None
    return buffer.getvalue()


class _Child:
    """One child process and its temporary folder, both gone when `run` returns or raises."""

    def run(self, job: bytes, texts: Iterator[str], waiting: Callable[[], None] | None) -> Any:
        work = Path(tempfile.mkdtemp(prefix="toklab-child-"))
        process: subprocess.Popen[bytes] | None = None
        try:
            # Its own session: a Ctrl-C at the terminal reaches the parent only, which ends the child.
            process = subprocess.Popen(
                [sys.executable, "-c", BOOT, json.dumps(sys.path), str(os.getpid())],
                stdin=subprocess.PIPE,
                start_new_session=os.name != "nt",
                creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
            )
            assert process.stdin is not None
            try:
                _send(process.stdin, pickle.dumps((str(work), job), protocol=pickle.HIGHEST_PROTOCOL))
                for batch in size_groups(texts, BATCH_CHARS):
                    _send(process.stdin, pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
                _send(process.stdin, b"")
                process.stdin.close()
            except BrokenPipeError:  # the child stopped reading: it failed, or needed no more text
                pass
            while True:
                try:
                    code = process.wait(POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if waiting is not None:
                        waiting()
            return _outcome(work, code)
        finally:
            if process is not None:
                if process.poll() is None:
                    process.kill()  # Ctrl-C or an error here: the child's work is no longer wanted
                process.wait()
                if process.stdin is not None:
                    try:
                        process.stdin.close()
                    except OSError:  # a broken pipe's unsent bytes
                        pass
            shutil.rmtree(work, ignore_errors=True)


def _send(pipe: IO[bytes], data: bytes) -> None:
    pipe.write(FRAME.pack(len(data)))
    pipe.write(data)
    pipe.flush()


def _outcome(work: Path, code: int) -> Any:
    """The child's result, or its exception raised here."""
    if code == 0 and (work / RESULT).is_file():
        return pickle.loads((work / RESULT).read_bytes())
    if (work / ERROR).is_file():
        raise _rebuilt(pickle.loads((work / ERROR).read_bytes())) from None
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = f"was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    else:
        why = f"ended with exit code {code}"
    raise ToklabError(f"training stopped: its child process {why}")


def _rebuilt(error: dict[str, Any]) -> BaseException:
    """The child's exception, or, when it cannot be unpickled here (an exception class whose
    constructor takes other arguments), one of the closest kind with the same message."""
    if error.get("pickled") is not None:
        try:
            exc = pickle.loads(error["pickled"])
            if isinstance(exc, BaseException):
                return exc
        except Exception:  # noqa: BLE001 - any failure to rebuild it: fall back below
            pass
    if error.get("toklab"):
        return ToklabError(error["message"])
    return RuntimeError(f"{error['type']}: {error['message']}")


# --- the child ---------------------------------------------------------------------------------------


def serve() -> None:
    """The child's side (started by `_Child.run` through BOOT): read the job and the texts from
    stdin, call the function, leave its result or its exception in the work folder, and exit."""
    _exit_with_parent(int(sys.argv[2]))
    stdin = sys.stdin.buffer
    header = _receive(stdin)
    if header is None:
        os._exit(1)
    work, job = pickle.loads(header)  # plain strings and bytes: this cannot fail
    try:
        func = pickle.loads(job)  # imports the function's module: may fail, like the training
        result = func(_texts(stdin))
        _write(Path(work) / RESULT, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
        _write(Path(work) / ERROR, pickle.dumps(_described(exc), protocol=pickle.HIGHEST_PROTOCOL))
        _exit(1)
    _exit(0)


def _exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a broken pipe: nothing more to say
            pass
    os._exit(code)  # no interpreter teardown: the trainers' thread pools need none


def _described(exc: BaseException) -> dict[str, Any]:
    try:
        pickled: bytes | None = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - an exception holding something unpicklable
        pickled = None
    return {"pickled": pickled, "type": type(exc).__qualname__, "message": one_line(exc), "toklab": isinstance(exc, ToklabError)}


def _write(path: Path, data: bytes) -> None:
    """Under a temporary name, then renamed: the parent never reads a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _receive(pipe: IO[bytes]) -> bytes | None:
    """One message, or None at the end of the pipe (the parent is gone)."""
    head = pipe.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (length,) = FRAME.unpack(head)
    data = pipe.read(length)
    return data if len(data) == length else None


def _texts(pipe: IO[bytes]) -> Iterator[str]:
    while True:
        data = _receive(pipe)
        if data is None:  # the parent died mid-stream: nobody wants the result
            os._exit(1)
        if not data:
            return
        yield from pickle.loads(data)


def _exit_with_parent(parent: int) -> None:
    """End this process when the parent dies (killed, say) instead of training on as an orphan:
    PR_SET_PDEATHSIG on Linux, else a thread that watches the parent's id."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
                if os.getppid() != parent:  # it died before the call
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="toklab-watch-parent", daemon=True).start()
