"""Filesystem helpers: temporary names for atomic writes, and the user cache directory."""

from __future__ import annotations

import os
from pathlib import Path


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
