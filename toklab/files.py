"""Filesystem helpers: atomic writes and the user cache directory."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it to `final` only if the block succeeds.

    An interrupted write therefore never leaves a half-written file under its final name.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def temp_name(final: Path) -> Path:
    """The hidden sibling a file is written under before it is renamed to `final`."""
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def cache_dir() -> Path:
    """Where toklab keeps built corpora and trained artefacts.

    `TOKLAB_CACHE_DIR` wins, then `$XDG_CACHE_HOME/toklab`, then `~/.cache/toklab`.
    """
    explicit = os.environ.get("TOKLAB_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "toklab"
