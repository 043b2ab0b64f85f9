"""toklab.tables: the shared number formats and table look; compare reports show the extra columns
that each segmenter kind declares, without naming any kind themselves."""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
from rich import box
from rich.console import Console

import toklab.reports
from toklab.comparison import COLUMNS, CompareResult
from toklab.reports import main_tables, markdown, read_report
from toklab.segmenters import registry
from toklab.segmenters.base import ReportColumn, ReportGroup, Segmenter
from toklab.tables import digits, figure_column, flops, formatter, mb, missing, pct, table, text_column, tflops, thousands

EXAMPLE = Path(__file__).resolve().parents[1] / "reports" / "examples" / "compare-default"
NAN = float("nan")


def test_number_formats_on_literal_values():
    assert digits(2)(1234.5) == "1,234.50"
    assert digits(3)(0.34681) == "0.347"
    assert digits(0)(1_234_567.4) == "1,234,567"
    assert digits(2)(None) == "" and digits(2)(NAN) == ""
    assert digits(4, nan="nan")(NAN) == "nan"  # a diverged loss must show
    assert pct(0.1234) == "12.3%" and pct(1) == "100.0%" and pct(0) == "0.0%" and pct(NAN) == ""
    assert thousands(1234567) == "1,234,567" and thousands(257.0) == "257" and thousands(None) == ""
    assert mb(1_234_567) == "1.23" and mb(1_234_567, unit=True) == "1.23 MB" and mb(12_345_678_901) == "12,345.68"
    assert tflops(6.24e14) == "624" and tflops(1.5e16) == "15,000" and tflops(NAN) == ""
    assert flops(1.17e9) == "1.17e+09" and flops(0) == "0" and flops(1e11, 1) == "1e+11" and flops(3e10, 1) == "3e+10"
    assert missing(None) and missing(NAN) and not missing(0) and not missing("")


def test_formats_by_name():
    assert formatter("int") is thousands and formatter("percent") is pct and formatter("tflops") is tflops
    assert formatter("1f")(2.25) == "2.2" and formatter("3f")(1.23456) == "1.235" and formatter("0f")(7.6) == "8"
    with pytest.raises(ValueError, match="unknown number format 'pct'"):
        formatter("pct")


def test_table_has_toklab_look():
    made = table("title", [text_column("name", no_wrap=True), "figure", figure_column("wide", max_width=9)], caption="what it means")
    assert made.title == "title" and made.caption == "what it means"
    assert made.title_justify == "left" and made.caption_justify == "left" and made.box is box.SIMPLE_HEAD and made.pad_edge
    assert [(c.header, c.justify) for c in made.columns] == [("name", "left"), ("figure", "right"), ("wide", "right")]
    assert made.columns[0].no_wrap and made.columns[2].max_width == 9
    assert not table(None, ["x"], pad_edge=False).pad_edge


class FakeSegmenter(Segmenter):
    """A kind that declares one extra column, as a plugin would."""

    kind = "fake-kind"
    report_groups = (ReportGroup("fake things", (ReportColumn("fake_share", "fake\nshare", "percent"),), "fake share: a share of something"),)


@pytest.fixture
def fake_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """FakeSegmenter registered as a kind, from a module of its own (as an entry point would be)."""
    module = types.ModuleType("toklab_fake_kind")
    module.FakeSegmenter = FakeSegmenter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "toklab_fake_kind", module)
    monkeypatch.setitem(registry.BUILTIN, "fake-kind", "toklab_fake_kind:FakeSegmenter")


def hand_result(rows: list[dict]) -> CompareResult:
    table = pd.DataFrame(rows)
    table = table.reindex(columns=COLUMNS + [c for c in table.columns if c not in COLUMNS])
    per_source = pd.DataFrame({"prose": [2.0] * len(rows)}, index=pd.Index([r["segmenter"] for r in rows], name="segmenter"))
    per_source["worst_source"], per_source["worst_bytes_per_token"] = "prose", 2.0
    meta = {"corpus": "hand", "val_documents": 3, "val_bytes": 30, "val_fraction": 0.1, "threshold": 0.3, "reference_model": "ref", "tokens_per_word_bytes_share": 1.0}
    return CompareResult(table=table, per_source=per_source, meta=meta)


def rendered(result: CompareResult) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    for made in main_tables(result):
        console.print(made)
    return console.export_text()


def test_a_kind_declares_the_extra_columns_the_report_shows(fake_kind):
    common = {"vocab_size": 300, "bits_per_byte": 2.0, "lossless": True, "mb_per_s": 1.0}
    result = hand_result([
        {"segmenter": "bytes", "kind": "bytes", **common},
        {"segmenter": "fake-kind:1", "kind": "fake-kind", "fake_share": 0.25, **common},
    ])  # fmt: skip
    extra = main_tables(result)[-1]
    assert extra.title == "compare: fake things" and extra.caption == "fake share: a share of something"
    assert [c.header for c in extra.columns] == ["segmenter", "fake\nshare"]
    assert [[str(cell) for cell in c.cells] for c in extra.columns] == [["fake-kind:1"], ["25.0%"]]  # the bytes row has none
    text = markdown(result)
    assert "| fake share |" in text.splitlines()[2] and "| 25.0% |" in text.splitlines()[5] and text.splitlines()[4].endswith("|  |")


def test_columns_show_only_for_the_kinds_of_the_rows(fake_kind):
    # the column is in the table, but no row is of the kind that declares it
    result = hand_result([{"segmenter": "bytes", "kind": "bytes", "fake_share": 0.25, "lossless": True}])
    assert "fake things" not in rendered(result) and "fake share" not in markdown(result)


def test_a_kind_no_longer_installed_adds_no_columns():
    result = hand_result([{"segmenter": "gone:1", "kind": "gone-plugin", "gone_measure": 1.0, "lossless": True}])
    assert [t.title for t in main_tables(result)] == ["compare: compression", "compare: distribution and cost"]


def test_the_saved_example_shows_each_kinds_declared_groups():
    from toklab.segmenters.entropy import EntropySegmenter
    from toklab.segmenters.zstd_dict import ZstdDictSegmenter

    result = read_report(EXAMPLE)
    extra = main_tables(result)[2:]
    declared = [*EntropySegmenter.report_groups, *ZstdDictSegmenter.report_groups]
    assert [(t.title, t.caption) for t in extra] == [(f"compare: {g.title}", g.caption) for g in declared]
    assert [[c.header for c in t.columns[1:]] for t in extra] == [[c.label for c in g.columns] for g in declared]
    header = markdown(result).splitlines()[2]
    assert all(c.label.replace("\n", " ").replace("/ ", "/") in header for g in declared for c in g.columns)


def test_every_declared_format_is_known():
    for kind in registry.BUILTIN:
        for group in registry.segmenter_class(kind).report_groups:
            assert group.columns and group.title and group.caption
            for column in group.columns:
                formatter(column.format)


def test_the_base_kind_declares_and_measures_nothing():
    assert Segmenter.report_groups == () and Segmenter().extra_measures(["text"]) == {}


def test_reports_names_no_kind():
    source = Path(toklab.reports.__file__).read_text(encoding="utf-8")
    assert "zstd" not in source and "patch" not in source
    # 'entropy' only as in "order-0 entropy", the captions' account of bits/byte
    assert all("order-0 entropy" in line for line in source.splitlines() if "entropy" in line)
