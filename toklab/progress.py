"""Progress for long work, on stderr so stdout stays clean: live bars on a terminal, and plain
lines every few seconds where stderr is a log or a pipe (so a long run is never silent).

`set_verbosity("quiet")` turns both off; "verbose" prints plain lines every second, on a terminal too.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

stderr_console = Console(stderr=True)
VERBOSITY = {"quiet": None, "normal": 5.0, "verbose": 1.0}  # seconds between plain progress lines
_level = "normal"


def set_verbosity(level: str) -> None:
    """quiet: no progress at all; normal: bars on a terminal, plain lines elsewhere; verbose: plain lines every second."""
    global _level
    if level not in VERBOSITY:
        raise ValueError(f"unknown verbosity {level!r}")
    _level = level


def mode(enabled: bool = True) -> str | None:
    """How to show progress now: "bar", "lines" or None."""
    if not enabled or _level == "quiet":
        return None
    if _level == "verbose" or not stderr_console.is_terminal:
        return "lines"
    return "bar"


class PlainLines:
    """A plain progress line on stderr at most every few seconds: what, how far, how fast, and
    how long is left when the total is known."""

    def __init__(self, description: str, total: float | None = None, unit: str = "") -> None:
        self.description, self.total, self.unit = description, total, unit
        self.start = self._last = time.monotonic()
        self.every = VERBOSITY[_level] if VERBOSITY[_level] is not None else 5.0

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every

    def show(self, done: float, detail: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        elapsed = now - self.start
        parts = [self.description]
        if self.total:
            parts.append(f"{done:,.0f}/{self.total:,.0f}{self.unit}")
            if done > 0 and elapsed > 0:
                parts.append(f"ETA {_clock((self.total - done) * elapsed / done)}")
        elif done:
            parts.append(f"{done:,.0f}{self.unit}")
        if detail:
            parts.append(detail)
        parts.append(f"elapsed {_clock(elapsed)}")
        print(" | ".join(parts), file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class DocumentCounter:
    """Counts documents and bytes for a progress display; `flush()` shows the latest count at once."""

    def __init__(self, bar: Progress | None = None, task: Any = None, lines: PlainLines | None = None) -> None:
        self.bar, self.task, self.lines = bar, task, lines
        self.docs = self.bytes = 0
        self._shown = 0.0

    def __call__(self, n_bytes: int, docs: int = 1) -> None:
        self.docs += docs
        self.bytes += n_bytes
        now = time.monotonic()
        if self.bar is not None and now - self._shown >= 0.1:  # the display refreshes at 10 Hz anyway
            self._shown = now
            self.flush()
        elif self.lines is not None and self.lines.due():
            self.flush()

    def _detail(self) -> str:
        elapsed = time.monotonic() - self.lines.start if self.lines else 0.0
        rate = f", {self.bytes / 1e6 / elapsed:.1f} MB/s" if elapsed > 0 else ""
        return f"{self.docs:,} docs, {self.bytes / 1e6:.1f} MB{rate}"

    def flush(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, docs=self.docs, mb=self.bytes / 1e6)
        elif self.lines is not None:
            self.lines.show(0, self._detail(), force=True)


@contextlib.contextmanager
def document_progress(description: str, enabled: bool = True) -> Iterator[DocumentCounter]:
    """Yield a counter to call once per document with its size; shows documents, MB and time elapsed."""
    how = mode(enabled)
    if how is None:
        yield DocumentCounter()
        return
    if how == "lines":  # logs and pipes get a plain line every few seconds, and one at the end
        counter = DocumentCounter(lines=PlainLines(description))
        yield counter
        if time.monotonic() - counter.lines.start >= counter.lines.every:  # type: ignore[union-attr]
            counter.lines.show(0, counter._detail() + ", done", force=True)  # type: ignore[union-attr]
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[docs]:,} docs"),
        TextColumn("{task.fields[mb]:.1f} MB"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr_console, transient=True) as bar:
        yield DocumentCounter(bar, bar.add_task(description, total=None, docs=0, mb=0.0))


@contextlib.contextmanager
def step_progress(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """Yield `step(label)`, to call as each of `total` steps starts; shows a bar with the current label."""
    how = mode(enabled)
    if how is None:
        yield lambda label: None
        return
    if how == "lines":  # a line as each step starts: steps are long, so this is rarely chatty
        lines = PlainLines(description, total)
        count = [0]

        def line(label: str) -> None:
            lines.show(count[0], f"now: {label}", force=True)
            count[0] += 1

        yield line
        return
    from rich.progress import BarColumn, MofNCompleteColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[label]}"), TimeElapsedColumn())
    with Progress(*columns, console=stderr_console, transient=True) as bar:
        task = bar.add_task(description, total=total, label="")
        started = [False]

        def step(label: str) -> None:
            if started[0]:
                bar.advance(task)
            started[0] = True
            bar.update(task, label=label)

        yield step
