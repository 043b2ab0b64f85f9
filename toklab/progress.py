"""Progress display for long passes over documents, drawn on stderr so stdout stays clean."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

stderr_console = Console(stderr=True)


class DocumentCounter:
    """Counts documents and bytes for a progress display; `flush()` shows the latest count at once."""

    def __init__(self, bar: Progress | None = None, task: Any = None) -> None:
        self.bar, self.task = bar, task
        self.docs = self.bytes = 0
        self._shown = 0.0

    def __call__(self, n_bytes: int, docs: int = 1) -> None:
        self.docs += docs
        self.bytes += n_bytes
        now = time.monotonic()
        if self.bar is not None and now - self._shown >= 0.1:  # the display refreshes at 10 Hz anyway
            self._shown = now
            self.flush()

    def flush(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, docs=self.docs, mb=self.bytes / 1e6)


@contextlib.contextmanager
def document_progress(description: str, enabled: bool = True) -> Iterator[DocumentCounter]:
    """Yield a counter to call once per document with its size; shows documents, MB and time elapsed."""
    if not enabled or not stderr_console.is_terminal:  # logs and pipes get no spinner lines
        yield DocumentCounter()
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
    if not enabled or not stderr_console.is_terminal:
        yield lambda label: None
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
