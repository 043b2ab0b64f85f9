"""Words for what toklab prints: a count with its noun in the right number ("1 document", "2 documents")."""

from __future__ import annotations

IRREGULAR = {"was": "were", "passes": "passes"}


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n` with thousands separators and `noun`, plural unless n is 1: count(1, "document") ->
    "1 document", count(1200, "run") -> "1,200 runs"."""
    word = noun if n == 1 else (plural or IRREGULAR.get(noun) or noun + "s")
    return f"{n:,} {word}"


def short_number(value: float) -> str:
    """A number as it reads in a folder name: 200, 0.3, 1e11, 1.5e11, 5e6 (no '+' or leading 0)."""
    return f"{value:g}".replace("e+0", "e").replace("e+", "e")


def whole_utf8(data: bytes) -> bool:
    """Whether `data` is whole UTF-8 characters: False for a token that holds part of one."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
