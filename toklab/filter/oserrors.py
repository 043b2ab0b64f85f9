"""An OSError met while writing filter output, as a one-line ToklabError that names the file."""

from __future__ import annotations

import os
from pathlib import Path

from toklab.errors import ToklabError, one_line


def why(exc: OSError) -> str:
    """An OSError's reason in a few words: 'No space left on device', 'Read-only file system'."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or one_line(exc)


def cannot_write(path: Path, exc: OSError) -> ToklabError:
    return ToklabError(f"cannot write {path}: {why(exc)}")
