"""Progress display for long passes over documents, drawn on stderr so stdout stays clean."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

stderr_console = Console(stderr=True)


@contextlib.contextmanager
def document_progress(description: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n_bytes)`, to call once per document; shows documents, MB and time elapsed."""
    if not enabled:
        yield lambda n_bytes: None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[docs]:,} docs"),
        TextColumn("{task.fields[mb]:.1f} MB"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr_console, transient=True) as bar:
        task = bar.add_task(description, total=None, docs=0, mb=0.0)
        state = {"docs": 0, "bytes": 0}

        def advance(n_bytes: int) -> None:
            state["docs"] += 1
            state["bytes"] += n_bytes
            if state["docs"] % 256 == 0:
                bar.update(task, docs=state["docs"], mb=state["bytes"] / 1e6)

        yield advance
