"""Filesystem helpers: atomic writes (temporary names, whole folders) and the user cache directory."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator


def temp_name(final: Path) -> Path:
    """The hidden sibling a file is written under before it is renamed to `final`."""
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final` to fill. When the block succeeds it takes
    `final`'s place whole (an old `final` is moved aside first, then removed); when it fails or is
    interrupted it is removed, and an old `final` stays as it was."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        old = temp_name(final.with_name(final.name + ".old"))
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a small text file under a temporary name, then rename it into place."""
    final = Path(path)
    tmp = temp_name(final)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, final)
    return final


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
