"""One home for how toklab draws: figures on the Agg canvas, saving under a temporary name, FLOPs
ticks that read as numbers ("3e10", "1e11"), and legible text on coloured cells.

Figures are made with `matplotlib.figure.Figure` and an Agg canvas rather than pyplot, so drawing
never opens a window, needs no display, and never switches the backend of a notebook that calls
toklab; and nothing has to be closed afterwards (no pyplot registry holds the figure).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from toklab.files import temp_name  # a leaf module (stdlib only): the one temporary-name convention

DPI = 110


def figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **subplots: Any) -> tuple[Figure, Any]:
    """A figure of `width` x `height` inches on an Agg canvas, and its axes (as `Figure.subplots`)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save(fig: Figure, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Write `fig` as a PNG under a temporary name beside `path`, then rename it into place, so a
    run folder never holds a half-written plot (some callers write straight into one)."""
    final = Path(path)
    tmp = temp_name(final)
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def flops_label(value: float) -> str:
    """A FLOPs count as a short tick label: 1e11 -> "1e11", 3e10 -> "3e10", 2.5e17 -> "2.5e17", 0 -> "0"."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    sign = "-" if value < 0 else ""
    value = abs(value)
    if 1 <= value < 1000:
        return f"{sign}{value:g}"
    exponent = math.floor(math.log10(value))
    mantissa = round(value / 10**exponent, 2)
    if mantissa >= 10:  # 9.999e10 rounds up to the next power
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{sign}{mantissa:g}e{exponent}"


# Tick values per decade, sparsest first: the first set that gives enough ticks over the range wins.
_SUBS: tuple[tuple[int, ...], ...] = ((1,), (1, 3), (1, 2, 5), (1, 2, 3, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9))


def flops_ticks(low: float, high: float, most: int = 6, fits: Callable[[list[float]], bool] | None = None) -> list[float]:
    """Round tick values (1, 2, 3 or 5 times a power of ten) between `low` and `high` (both > 0):
    at least three where the range allows, no more than `most`, or no more than `fits` accepts
    (on an axis: labels that do not overlap)."""
    if not (0 < low <= high) or not math.isfinite(high):
        return []
    accept = fits or (lambda ticks: len(ticks) <= most)
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    slack = 1e-9 * high  # a budget of exactly 1e11 gets its tick despite rounding

    def within(subs: Sequence[int], every: int = 1) -> list[float]:
        values = (float(f"{m}e{e}") for e in range(first, last + 1, every) for m in subs)  # "1e23", not 10.0**23 (1.0000000000000001e23)
        return [v for v in values if low - slack <= v <= high + slack]

    ticks: list[float] = []
    for subs in _SUBS:
        candidate = within(subs)
        if not accept(candidate):
            break
        ticks = candidate
        if len(ticks) >= 3:
            break
    if not ticks:  # many decades: every other (third, ...) power of ten
        every = 1
        while len(ticks := within((1,), every)) > 1 and not accept(ticks):
            every += 1
    return ticks


def _labels_fit(ax: Axes, axis: str) -> Callable[[list[float]], bool]:
    """Whether tick labels at these values would stand apart on `ax` as it is now laid out."""
    size = FontProperties(size=rcParams[f"{axis}tick.labelsize"]).get_size_in_points()
    pixels = ax.figure.dpi / 72

    def fits(ticks: list[float]) -> bool:
        if len(ticks) < 2:
            return True
        points = [(t, 0.0) if axis == "x" else (0.0, t) for t in ticks]
        where = ax.transData.transform(points)[:, 0 if axis == "x" else 1]
        # x labels sit side by side (about 0.6 em a character, an em between); y labels one line high
        room = [(len(flops_label(a)) + len(flops_label(b))) / 2 * 0.6 + 1.0 if axis == "x" else 1.6 for a, b in zip(ticks, ticks[1:])]
        return all(abs(far - near) >= 1.15 * need * size * pixels for near, far, need in zip(where, where[1:], room))  # 1.15: layout may shrink the axes

    return fits


def flops_axis(ax: Axes, axis: str = "x") -> None:
    """Label a FLOPs axis with round values ("3e10", "1e11"), not a corner offset over 0.2, 0.4, ...
    Call it after plotting and setting the scale: on a log or symlog axis the ticks come from the
    view and the axes' size (as many round values as have room)."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda value, _pos: flops_label(value)))
    target.set_minor_formatter(NullFormatter())  # matplotlib labels log minor ticks on short ranges
    scale = ax.get_xscale() if axis == "x" else ax.get_yscale()
    if scale == "linear":
        target.set_major_locator(MaxNLocator(6))
        return
    # The view, margins included, so a budget just past the last point (runs stop a few steps short of
    # 1e11) still gets its tick; below zero on a symlog axis, from the smallest positive value instead.
    view_low, view_high = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    smallest_positive = ax.dataLim.minposx if axis == "x" else ax.dataLim.minposy
    zero = [0.0] if scale == "symlog" and view_low <= 0 <= view_high else []  # a run's evaluation before any training
    fits = _labels_fit(ax, axis)
    ticks = zero + flops_ticks(view_low if view_low > 0 else smallest_positive, view_high, fits=lambda ticks: fits(zero + ticks))
    if ticks:
        target.set_major_locator(FixedLocator(ticks))


def luminance(rgba: Sequence[float]) -> float:
    """Relative luminance (WCAG 2) of an RGB(A) colour with components in 0..1."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def text_colour(background: Sequence[float]) -> str:
    """Black text on a light background, white on a dark one: whichever contrasts more (WCAG ratio)."""
    lum = luminance(background)
    return "black" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "white"


def cell_font_size(width_in: float, height_in: float, chars: int = 4, largest: float = 10.0, smallest: float = 5.0) -> float:
    """A font size (points) at which `chars` characters fill at most 70% of a cell's width and 55%
    of its height (`width_in` x `height_in` inches); a digit is about 0.6 em wide."""
    fits = min(width_in * 72 * 0.7 / (0.6 * chars), height_in * 72 * 0.55)
    return float(np.clip(fits, smallest, largest))
