"""toklab.plots and the plots that use it: FLOPs ticks, heatmap text colours, the study plot's
caption, and the per-source terminal table's width. Synthetic results, so nothing trains."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from matplotlib.figure import Figure

from toklab import plots
from toklab.comparison import CompareResult
from toklab.study import StudyResult

SEGMENTERS = ["bytes", "bpe:32k", "unigram:32k", "tiktoken:gpt2", "tiktoken:cl100k_base", "tiktoken:o200k_base"]
SOURCES = ["multilingual/Cyrillic", "markup/markdown", "prose/python-reference", "code/python", "multilingual/Devanagari", "prose/docstrings", "multilingual/Arab"]


def compare_result(segmenters: list[str], sources: list[str], values: np.ndarray | None = None) -> CompareResult:
    """A compare result with only what the per-source table and heatmap read."""
    rng = np.random.default_rng(0)
    values = rng.uniform(1.5, 5.0, (len(segmenters), len(sources))) if values is None else values
    per_source = pd.DataFrame(values, index=pd.Index(segmenters, name="segmenter"), columns=sources)
    per_source["worst_source"] = per_source[sources].idxmin(axis=1)
    per_source["worst_bytes_per_token"] = per_source[sources].min(axis=1)
    return CompareResult(table=pd.DataFrame(), per_source=per_source)


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the plotting functions hand to plots.save, kept instead of written."""
    figures: list[Figure] = []

    def keep(fig: Figure, path: Any, dpi: int = plots.DPI) -> Path:
        figures.append(fig)
        return Path(path)

    monkeypatch.setattr(plots, "save", keep)
    return figures


# --- FLOPs ticks ----------------------------------------------------------------------------------


def test_flops_labels_for_fixed_values():
    assert plots.flops_label(1e11) == "1e11"
    assert plots.flops_label(3e10) == "3e10"
    assert plots.flops_label(2.5e17) == "2.5e17"
    assert plots.flops_label(1.234e12) == "1.23e12"
    assert plots.flops_label(9.999e10) == "1e11"
    assert plots.flops_label(0.0) == "0"
    assert plots.flops_label(500.0) == "500"


def test_flops_ticks_are_round_and_few():
    assert plots.flops_ticks(2.7e10, 1.1e11) == [3e10, 5e10, 1e11]
    assert plots.flops_ticks(5e16, 2e18) == [1e17, 3e17, 1e18]
    assert plots.flops_ticks(1e10, 1e15) == [1e10, 1e11, 1e12, 1e13, 1e14, 1e15]
    assert plots.flops_ticks(1e9, 1e15) == [1e9, 1e11, 1e13, 1e15]  # seven decades: every other one
    assert plots.flops_ticks(4.15e10, 1.1e11) == [5e10, 6e10, 7e10, 8e10, 9e10, 1e11]


@pytest.mark.parametrize("scale", ["log", "symlog"])
def test_flops_axis_labels_read_as_numbers(scale):
    fig, ax = plots.figure(6, 3)
    xs = [0.0, 1e10, 3e10, 9.96e10] if scale == "symlog" else [2.99e10, 9.96e10]
    ax.plot(xs, range(len(xs)))
    ax.set_xscale(scale, **({"linthresh": 1e10} if scale == "symlog" else {}))
    plots.flops_axis(ax, "x")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    expected = ["0", "1e10", "3e10", "1e11"] if scale == "symlog" else ["3e10", "5e10", "1e11"]
    assert labels == expected
    assert ax.xaxis.get_offset_text().get_text() == ""  # no "1e11" in the corner
    assert not [t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text()]


# --- heatmap text colours -------------------------------------------------------------------------


def test_text_colour_contrasts_with_its_cell():
    viridis = colormaps["viridis"]
    assert plots.text_colour(viridis(1.0)) == "black"  # yellow
    assert plots.text_colour(viridis(0.0)) == "white"  # dark purple
    assert plots.text_colour((1.0, 1.0, 1.0, 1.0)) == "black"
    assert plots.text_colour((0.0, 0.0, 0.0)) == "white"


def test_heatmap_cells_dark_text_on_light_light_on_dark(drawn):
    from toklab.reports import _plot_sources

    # Colour follows each cell's own brightness. Against the table's mean (the old rule) a dark 2.0
    # among 1.0s got black text, and a light 5.5 among 7.0s got white.
    sources = ["code/python", "prose/docs", "markup/rst", "multilingual/Thai"]
    _plot_sources(compare_result(["bytes", "bpe:32k"], sources, np.array([[1.0, 1.0, 1.0, 7.0], [1.0, 1.0, 1.0, 2.0]])), Path("dark.png"))
    _plot_sources(compare_result(["bytes", "bpe:32k"], sources, np.array([[7.0, 7.0, 7.0, 1.0], [7.0, 7.0, 7.0, 5.5]])), Path("light.png"))
    dark, light = ({t.get_text(): t.get_color() for t in fig.axes[0].texts} for fig in drawn)
    assert dark["2.0"] == "white" and dark["1.0"] == "white" and dark["7.0"] == "black"
    assert light["5.5"] == "black" and light["7.0"] == "black" and light["1.0"] == "white"
    assert len(drawn[0].axes[0].texts) == 8


def test_heatmap_figure_and_font_scale_with_the_table(drawn):
    from toklab.reports import _plot_sources

    _plot_sources(compare_result(SEGMENTERS[:2], SOURCES[:3]), Path("small.png"))
    _plot_sources(compare_result([f"bpe:{k}k" for k in range(1, 41)], [f"multilingual/S{i}" for i in range(8)]), Path("large.png"))
    small, large = drawn
    assert large.get_figwidth() > small.get_figwidth() and large.get_figheight() > small.get_figheight()
    assert large.axes[0].texts[0].get_fontsize() < small.axes[0].texts[0].get_fontsize()


# --- study plot -----------------------------------------------------------------------------------


def study_result(tmp_path: Path) -> StudyResult:
    """Two segmenters at two budgets, three seeds each, with the runs' evaluation histories."""
    rows, histories = [], {}
    for spec, base in (("bytes", 5.6), ("bpe:4k", 4.7)):
        for budget in (3e10, 1e11):
            names = [f"{spec}-{budget:g}-seed{s}" for s in range(3)]
            final = base - (0.5 if budget > 5e10 else 0.0)
            for s, name in enumerate(names):
                steps = np.linspace(budget / 4, budget * 0.996, 4)
                histories[name] = [{"flops": 0.0, "val_bits_per_byte": 8.0, "final": False}]
                histories[name] += [{"flops": f, "val_bits_per_byte": final + 0.3 - 0.1 * k + 0.01 * s, "final": False} for k, f in enumerate(steps[:-1])]
                histories[name] += [{"flops": steps[-1], "val_bits_per_byte": final + 0.2, "final": True}]  # all documents: another scoring set
            rows.append({"segmenter": spec, "filtered": False, "budget_flops": budget, "flops": budget * 0.996, "bytes_per_token": 1.0 if spec == "bytes" else 3.0,
                         "val_bits_per_byte": final, "val_bpb_low": final - 0.05, "val_bpb_high": final + 0.05, "runs": ",".join(names)})  # fmt: skip
    table = pd.DataFrame(rows)
    meta = {"corpus": "default", "model": "tiny", "seeds": [0, 1, 2], "val_docs_scored": 20, "train": {"eval_bytes": 16384}}
    return StudyResult(out=tmp_path, table=table, runs=pd.DataFrame(), summary=[], differences=pd.DataFrame(), per_source=pd.DataFrame(), histories=histories, meta=meta)


def test_study_plot_explains_its_faint_lines(tmp_path, drawn):
    from toklab.study import plot

    result = study_result(tmp_path)
    plot(result, tmp_path / "bits_per_byte_vs_flops.png")
    (fig,) = drawn
    fig.canvas.draw()  # tick labels are set at draw time
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    caption = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    assert "bytes" in legend and "bpe:4k" in legend
    assert any("faint" in label for label in legend)
    assert "Faint lines: each seed's validation curve during training" in caption
    assert "first 16,384 bytes" in caption and "95% interval" in caption
    # the faint lines hold each run's evaluations before the last (the last scores other documents)
    faint = [line for line in ax.get_lines() if line.get_alpha() == 0.25]
    assert len(faint) == 12
    finals = {h["flops"] for runs in result.histories.values() for h in runs if h["final"]}
    assert all(not set(line.get_xdata()) & finals for line in faint)
    assert [t.get_text() for t in ax.get_xticklabels() if t.get_text()] == ["1e10", "3e10", "1e11"]


# --- per-source terminal table --------------------------------------------------------------------


def printed(renderable: Any, width: int) -> str:
    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_per_source_table_fits_120_columns_with_whole_names():
    from toklab.reports import per_source_table

    result = compare_result(SEGMENTERS, SOURCES)
    text = printed(per_source_table(result, top=6, width=120), 120)
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 120
    assert "…" not in text
    worst = set(result.per_source["worst_source"])
    for source in SOURCES[:6] + [s for s in SOURCES[6:] if s in worst]:
        assert any(source in line for line in lines), source
    for segmenter in SEGMENTERS:  # a long spec's header breaks after ':' but keeps every character
        assert segmenter.split(":")[-1] in text
    assert text.count("*") >= len(set(result.per_source["worst_source"]))  # each segmenter's worst, marked


def test_per_source_table_continues_segmenters_that_do_not_fit():
    from toklab.reports import per_source_table

    segmenters = SEGMENTERS + ["bpe:32k,regex=o200k", "unigram:8k", "entropy:target=4.5", "zstd-dict:32k"]
    result = compare_result(segmenters, SOURCES)
    text = printed(per_source_table(result, top=6, width=80), 80)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "…" not in text and "segmenters 1-" in text and f"of {len(segmenters)}" in text
    for source in SOURCES[:6]:
        assert text.count(source) >= 2  # every continuation table repeats the sources whole
    for segmenter in segmenters:
        assert segmenter.split(",")[-1].split(":")[-1] in text
