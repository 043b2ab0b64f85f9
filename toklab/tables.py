"""Terminal tables: the one place toklab's rich tables get their look, and the number formats they share.

Every table toklab prints has a left-aligned title and caption under a SIMPLE_HEAD box; the text
columns are left-aligned and the figures right-aligned. The formatters turn a missing figure
(None or NaN) into an empty cell, so that a table of several kinds of rows stays readable.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from rich import box
from rich.table import Column, Table

Formatter = Callable[[Any], str]


def table(title: str | None, columns: Sequence[str | Column], caption: str | None = None, *, pad_edge: bool = True) -> Table:
    """A table with toklab's look. A column given as a string is a figure (right-aligned); give a
    `text_column` or `figure_column` for anything else. `pad_edge=False` drops the outer padding,
    for the wide compare tables that must fit an 80-column terminal."""
    shaped = [figure_column(c) if isinstance(c, str) else c for c in columns]
    # padding (0, 1) is rich's default too: named here so that the look has one home
    return Table(*shaped, title=title, title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=pad_edge)


def text_column(header: str, **options: Any) -> Column:
    """A left-aligned column of names (segmenters, sources)."""
    return Column(header, justify="left", **options)


def figure_column(header: str, **options: Any) -> Column:
    """A right-aligned column of figures."""
    return Column(header, justify="right", **options)


# --- number formats -----------------------------------------------------------------------------


def missing(value: Any) -> bool:
    """None or NaN: a figure a row does not have."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def digits(places: int, nan: str = "") -> Formatter:
    """A formatter with thousands separators and `places` decimals: digits(2)(1234.5) -> '1,234.50';
    a missing value is `nan` (give "nan" where a missing figure is news, such as a diverged loss)."""
    return lambda value: nan if missing(value) else f"{value:,.{places}f}"


def pct(share: Any) -> str:
    """A share as a percentage with one decimal: 0.1234 -> '12.3%'."""
    return "" if missing(share) else f"{100 * share:.1f}%"


def thousands(value: Any) -> str:
    """A whole number with thousands separators: 1234567 -> '1,234,567'."""
    return "" if missing(value) else f"{int(value):,}"


def mb(n_bytes: Any, unit: bool = False) -> str:
    """Bytes in (decimal) megabytes with two decimals: 1234567 -> '1.23', or '1.23 MB' with `unit`."""
    return "" if missing(n_bytes) else f"{n_bytes / 1e6:,.2f}" + (" MB" if unit else "")


def tflops(flops: Any) -> str:
    """FLOPs in whole teraFLOPs: 6.2e14 -> '620'."""
    return "" if missing(flops) else f"{flops / 1e12:,.0f}"


def flops(value: Any, significant: int = 3) -> str:
    """A FLOP count in scientific notation with `significant` digits: 1.17e9 -> '1.17e+09'; with 1,
    a budget: 1e11 -> '1e+11'."""
    if missing(value):
        return ""
    return f"{value:.0e}" if significant == 1 else f"{value:.{significant}g}"


def human_bytes(n: float) -> str:
    """A size in the largest decimal unit it reaches: 1234 -> '1.2 kB', 999 -> '999 B'."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{int(n):,} B"


FORMATS: dict[str, Formatter] = {"int": thousands, "percent": pct, "tflops": tflops, **{f"{n}f": digits(n) for n in range(7)}}


def formatter(name: str) -> Formatter:
    """The formatter a declarative format name stands for: 'int', 'percent', 'tflops', or '0f' to
    '6f' (that many decimals)."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown number format '{name}' (known: {', '.join(FORMATS)})") from None
