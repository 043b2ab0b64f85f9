"""The filter's report: rich tables for the terminal, and a report folder (json, csv, md, png).

The per-source view lists the sources the filter hit hardest first, so a language or kind of
text that the threshold removes wholesale is the first thing a reader sees.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.table import Table

from toklab.outputs import foreign
from toklab.errors import ToklabError, one_line
from toklab.files import check_outside, is_inside, report_dir
from toklab.filter.result import FilterResult
from toklab.filter.rule import DEFAULT_THRESHOLD, FilterRule
from toklab.filter.shards import HIST_MAX, HIST_WIDTH
from toklab.reports import markdown_table
from toklab.tables import mb, pct, text_column
from toklab.tables import table as make_table

SUMMARY = "summary.json"
REPORT_FILES = (SUMMARY, "report.md", "per_source.csv", "sweep.csv", "ratio_histogram.png")  # all a filter report may hold


def _pct(part: float, whole: float) -> str:
    """part as a share of whole ('' when whole is 0)."""
    return pct(part / whole if whole else None)


def summary_rows(result: FilterResult) -> list[tuple[str, int, int]]:
    """(what, documents, bytes) for read, kept, rejected and empty."""
    return [
        ("read", result.documents, result.bytes),
        ("kept", result.kept, result.kept_bytes),
        ("rejected", result.rejected, result.rejected_bytes),
        ("empty", result.empty, 0),
    ]


def describe_rule(result: FilterResult) -> str:
    rule = result.rule
    if rule.by == "tokens":
        size = f" ({result.vocab_size:,} ids)" if result.vocab_size else ""
        return f"keep iff tokens <= {rule.threshold:g} x chars, tokens by {result.segmenter}{size}"
    return f"keep iff zstd bytes <= {rule.threshold:g} x raw bytes"


def summary_table(result: FilterResult) -> Table:
    title = f"filter {result.corpus}: {describe_rule(result)}" + (" (dry run)" if result.dry_run else "")
    table = make_table(title, [text_column(""), "docs", "share", "MB", "share "])
    for what, docs, n_bytes in summary_rows(result):
        table.add_row(what, f"{docs:,}", _pct(docs, result.documents), mb(n_bytes), _pct(n_bytes, result.bytes))
    return table


def per_source_table(result: FilterResult, top: int = 10) -> Table:
    """Sources hit hardest first (lowest share of bytes kept), then the rest summed in one row."""
    rows = result.per_source.sort_values(["keep_rate_bytes", "bytes"], ascending=[True, False], kind="stable")
    shown, rest = rows.iloc[:top], rows.iloc[top:]
    source = text_column("source", overflow="ellipsis", no_wrap=True, max_width=32)
    table = make_table(f"per source ({len(rows)}), hardest hit first", [source, "docs", "kept", "MB", "kept MB", "keep docs", "keep bytes"])
    for row in shown.itertuples():
        style = "bold red" if row.kept_docs == 0 and row.docs > row.empty_docs else None
        table.add_row(
            str(row.source), f"{row.docs:,}", f"{row.kept_docs:,}", mb(row.bytes), mb(row.kept_bytes),
            _pct(row.kept_docs, row.docs), _pct(row.kept_bytes, row.bytes), style=style,
        )  # fmt: skip
    if len(rest):
        docs, kept, n_bytes, kept_bytes = (int(rest[c].sum()) for c in ("docs", "kept_docs", "bytes", "kept_bytes"))
        table.add_row(f"({len(rest)} more)", f"{docs:,}", f"{kept:,}", mb(n_bytes), mb(kept_bytes), _pct(kept, docs), _pct(kept_bytes, n_bytes), style="dim")
    return table


def sweep_table(result: FilterResult) -> Table:
    assert result.sweep is not None
    worst = text_column("worst source", no_wrap=True, min_width=12)
    table = make_table(f"keep rates by threshold t ({result.rule.column})", ["t", "keep docs", "keep bytes", "kept MB", "sources emptied", worst, "its bytes kept"])
    for row in result.sweep.itertuples():
        table.add_row(
            f"{row.t:g}", pct(row.keep_rate_docs), pct(row.keep_rate_bytes), mb(row.kept_bytes),
            str(row.sources_emptied), str(row.worst_source), pct(row.worst_source_keep_rate_bytes),
        )  # fmt: skip
    return table


def terminal_tables(result: FilterResult, top: int = 10) -> list[Table]:
    tables = [summary_table(result), per_source_table(result, top)]
    if result.sweep is not None:
        tables.append(sweep_table(result))
    return tables


def markdown(result: FilterResult) -> str:
    parts = [f"# Filter report: {result.corpus}\n", f"{describe_rule(result)}; chars are Unicode code points.\n"]
    if result.out is not None:
        parts.append(f"Kept shards: `{result.out}`" + (f"; rejected and empty documents, with the reason: `{result.rejected_out}`" if result.rejected_out else "") + "\n")
    else:
        parts.append("Dry run: no shards were written.\n")
    parts.append(markdown_table(["", "docs", "share", "MB", "share of bytes"], [
        [what, f"{docs:,}", _pct(docs, result.documents), mb(n_bytes), _pct(n_bytes, result.bytes)] for what, docs, n_bytes in summary_rows(result)
    ]))  # fmt: skip
    if result.count_check:
        parts.append(f"\n{result.count_check}.\n")
    parts.append("\n## Per source, hardest hit first\n\n")
    rows = result.per_source.sort_values(["keep_rate_bytes", "bytes"], ascending=[True, False], kind="stable")
    parts.append(markdown_table(["source", "docs", "kept", "rejected", "empty", "MB", "kept MB", "keep docs", "keep bytes"], [
        [str(r.source), f"{r.docs:,}", f"{r.kept_docs:,}", f"{r.rejected_docs:,}", f"{r.empty_docs:,}", mb(r.bytes), mb(r.kept_bytes),
         _pct(r.kept_docs, r.docs), _pct(r.kept_bytes, r.bytes)] for r in rows.itertuples()
    ]))  # fmt: skip
    if result.sweep is not None:
        parts.append("\n## Keep rates by threshold\n\n")
        parts.append(markdown_table(["t", "keep docs", "keep bytes", "sources emptied", "worst source", "its bytes kept"], [
            [f"{r.t:g}", f"{100 * r.keep_rate_docs:.1f}%", f"{100 * r.keep_rate_bytes:.1f}%", str(r.sources_emptied), str(r.worst_source),
             f"{100 * r.worst_source_keep_rate_bytes:.1f}%"] for r in result.sweep.itertuples()
        ]))  # fmt: skip
    parts.append("\n## Ratio histogram\n\n![ratio histogram](ratio_histogram.png)\n")
    parts.append("\n## Rejected examples\n\nThe documents nearest the threshold, then the most extreme ones.\n")
    for example in result.examples:
        snippet = example["snippet"].replace("```", "'''")
        parts.append(f"\n### `{example['id']}` ({example['source']}): {result.rule.column} {example['ratio']:.4f}, {example['chars']:,} chars\n\n```text\n{snippet}\n```\n")
    if result.notes:
        parts.append("\n## Notes\n\n" + "".join(f"- {n}\n" for n in result.notes))
    return "".join(parts)


AXIS_LABEL = {"tokens_per_char": "tokens per character (per document)", "zstd_ratio": "zstd-compressed bytes / raw bytes (per document)"}


def plot_histogram(result: FilterResult, path: Path) -> None:
    """The ratio per document as a histogram, the threshold as a line, the far tail counted in words."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    from toklab import plots

    counts = np.array(result.histogram, dtype=np.int64)
    fig, ax = plots.figure(8, 4)
    if counts.sum():
        cumulative = np.cumsum(counts) / counts.sum()
        last = int(np.searchsorted(cumulative, 0.995)) + 1  # hide the far tail, but never the threshold
        last = max(last, int(result.rule.threshold / HIST_WIDTH * 1.5) + 1)
        last = min(last, len(counts))
        edges = np.arange(last) * HIST_WIDTH
        ax.bar(edges, counts[:last], width=HIST_WIDTH, align="edge", color="#4C72B0")
        ax.set_ylim(0, max(int(counts[:last].max()), 1) * 1.2)  # headroom: the legend and the tail note sit above the bars
        beyond = int(counts[last:].sum())
        if beyond:
            ax.text(0.99, 0.95, f"{beyond:,} docs beyond {last * HIST_WIDTH:.2f}" + (f" (incl. >= {HIST_MAX:g})" if counts[-1] else ""), transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.axvline(result.rule.threshold, color="#C44E52", linestyle="--", label=f"t = {result.rule.threshold:g}: keep a document at or below it (kept: {_pct(result.kept, result.documents - result.empty)})")
    ax.set_xlabel(AXIS_LABEL.get(result.rule.column, result.rule.column))
    ax.set_ylabel(f"documents per bin of {HIST_WIDTH:g}")
    # whole counts with thousands separators: never "1e6" in the corner, never a tick at 0.5 documents
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_title(f"{result.corpus}: {result.rule.column} per document", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    plots.save(fig, path)


def summary(result: FilterResult) -> dict[str, Any]:
    """The report's summary.json: every count, the rule, the shards and the run's details."""
    return {
        "corpus": result.corpus,
        "by": result.rule.by,
        "threshold": result.rule.threshold,
        "ratio_column": result.rule.column,
        "segmenter": result.segmenter,
        "vocab_size": result.vocab_size,
        "out": str(result.out) if result.out else None,
        "rejected_out": str(result.rejected_out) if result.rejected_out else None,
        "documents": result.documents, "kept": result.kept, "rejected": result.rejected, "empty": result.empty,
        "bytes": result.bytes, "kept_bytes": result.kept_bytes, "rejected_bytes": result.rejected_bytes,
        "malformed_lines": result.malformed,
        "keep_rate_docs": result.keep_rate_docs, "keep_rate_bytes": result.keep_rate_bytes,
        "conserved": result.conserved, "count_check": result.count_check,
        "resumed_shards": result.resumed_shards,
        "histogram": {"bin_width": HIST_WIDTH, "last_bin_from": HIST_MAX, "counts": result.histogram},
        "examples": result.examples,
        "shards": result.shards,
        "notes": result.notes,
        "meta": result.meta,
    }  # fmt: skip


def default_report(corpus_label: str, out: str | os.PathLike | None, *, by: str = "tokens", threshold: float | None = None,
                   segmenter: str | None = None, sweep: "list[float] | None" = None) -> Path:
    """The report folder when --report is not given: reports/filter-<out's name> for a run that
    writes shards; for a dry run or a sweep, reports/filter-<corpus>-<segmenter>-t<t> or
    -sweep-<ts>, so that measuring again another way does not replace an earlier report."""
    from toklab.files import default_output

    if out is not None and not sweep:
        return default_output("filter", Path(out).name)
    measure = "zstd" if by == "zstd" else (segmenter or "bpe:32k")
    if sweep:
        return default_output("filter", corpus_label, measure, "sweep", "-".join(f"{t:g}" for t in sweep))
    t = threshold if threshold is not None else DEFAULT_THRESHOLD.get(by, 0.3)
    return default_output("filter", corpus_label, measure, f"t{t:g}", "dry-run")


def holds_report(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a filter report (which writing another one there replaces)."""
    return _earlier_report(Path(folder)) is not None


def read_filter_report(folder: str | os.PathLike) -> FilterResult:
    """A filter report saved by `write_filter_report`, for re-rendering (`toklab report`)."""
    import pandas as pd

    folder = Path(folder)
    summary = _earlier_report(folder)
    if summary is None:
        raise ToklabError(f"{folder} holds no readable filter report ({SUMMARY} is missing or damaged)")
    try:
        per_source = pd.read_csv(folder / "per_source.csv", keep_default_na=False)
        sweep = pd.read_csv(folder / "sweep.csv", keep_default_na=False) if (folder / "sweep.csv").is_file() else None
        histogram = summary.get("histogram") or {}
        return FilterResult(
            corpus=summary["corpus"], rule=FilterRule(summary["by"], summary["threshold"]), segmenter=summary.get("segmenter"),
            out=Path(summary["out"]) if summary.get("out") else None, rejected_out=Path(summary["rejected_out"]) if summary.get("rejected_out") else None,
            documents=summary["documents"], kept=summary["kept"], rejected=summary["rejected"], empty=summary["empty"],
            bytes=summary["bytes"], kept_bytes=summary["kept_bytes"], rejected_bytes=summary["rejected_bytes"], malformed=summary.get("malformed_lines", 0),
            per_source=per_source, histogram=list(histogram.get("counts") or []), examples=list(summary.get("examples") or []), sweep=sweep,
            conserved=bool(summary.get("conserved", True)), count_check=summary.get("count_check", ""), shards=list(summary.get("shards") or []),
            resumed_shards=summary.get("resumed_shards", 0), vocab_size=summary.get("vocab_size"), notes=list(summary.get("notes") or []),
            meta=dict(summary.get("meta") or {}),
        )  # fmt: skip
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ToklabError(f"{folder}: the filter report is damaged ({one_line(exc)})") from None


def _earlier_report(final: Path) -> dict[str, Any] | None:
    """The summary of the filter report in `final`, or None when there is none."""
    try:
        summary = json.loads((final / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and "ratio_column" in summary and "kept" in summary else None


def check_report_folder(report: str | os.PathLike, input_roots: list[Path], out: Path | None = None, rejected: Path | None = None) -> Path:
    """Refuse a report folder inside the input (or holding it), inside the filter's output, or one
    that holds something other than an earlier filter report. Cheap: call it before a long run."""
    final = Path(report).expanduser()
    check_outside(final, input_roots, option="--report")
    for label, folder in (("--out", out), ("the --keep-rejected folder", rejected)):
        if folder is not None and is_inside(final, folder):
            raise ToklabError(f"--report {final} is inside {label} {folder}; choose a folder outside it")
    if final.exists() and not final.is_dir():
        raise ToklabError(f"--report {final} is a file; choose a folder")
    if final.is_dir() and any(final.iterdir()) and _earlier_report(final) is None:
        raise foreign(final, "filter report", "--report")
    for name in REPORT_FILES:
        if (final / name).is_dir() and not (final / name).is_symlink():
            raise ToklabError(f"--report {final} holds a folder named {name}, where the report writes a file; move it away")
    return final


def write_filter_report(result: FilterResult, out_dir: str | os.PathLike) -> Path:
    """Write the report's files, each renamed into place when whole; an earlier filter report's
    files there are replaced, and any other file (a user's notes) is left alone."""
    final = check_report_folder(out_dir, result.input_roots, result.out, result.rejected_out)
    earlier = _earlier_report(final)
    written = [SUMMARY, "per_source.csv"] + (["sweep.csv"] if result.sweep is not None else []) + ["report.md", "ratio_histogram.png"]
    content = summary(result)
    content["files"] = sorted(written)
    try:
        with report_dir(final) as tmp:
            (tmp / SUMMARY).write_text(json.dumps(content, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
            result.per_source.to_csv(tmp / "per_source.csv", index=False)
            if result.sweep is not None:
                result.sweep.to_csv(tmp / "sweep.csv", index=False)
            (tmp / "report.md").write_text(markdown(result), encoding="utf-8")
            plot_histogram(result, tmp / "ratio_histogram.png")
        # the earlier report's own files that this one does not write (a sweep.csv without --sweep)
        stale = set((earlier or {}).get("files") or []) & set(REPORT_FILES) - set(written)
        for name in sorted(stale):
            if (final / name).is_file():
                (final / name).unlink()
    except OSError as exc:
        raise ToklabError(f"cannot write the report {final}: {os.strerror(exc.errno) if exc.errno else exc}") from exc
    return final
