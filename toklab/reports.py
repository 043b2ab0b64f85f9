"""Compare reports: rich tables for the terminal, and a report folder (json, csv, md, png).

A report's files are written in a temporary folder first and only then moved into place (a new
report folder is renamed into place whole), so an interrupted run never leaves a half-written
report; re-writing a report replaces toklab's own files only, never other files in the folder.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

from rich.console import Console, Group
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from toklab.comparison import COLUMNS, CompareResult
from toklab.outputs import foreign
from toklab.errors import ToklabError, one_line
from toklab.fairness import Fairness, analyse
from toklab.files import atomic_dir, check_outside, report_dir
from toklab.segmenters.base import ReportGroup
from toklab.tables import Formatter, digits, figure_column, formatter, missing, pct, table, text_column, tflops, thousands

RESULTS = "results.json"
REPORT_FILES = [RESULTS, "table.csv", "table.md", "per_source.csv", "bytes_per_token_by_source.png", "bits_per_byte.png"]
FAIRNESS_FILES = ["parity.csv", "parity_by_script.csv", "parity_by_script.png"]  # parallel text only
MAX_PLOT_SOURCES = 30
MAX_PLOT_SCRIPTS = 60  # more scripts: the costliest and the cheapest half of these

# column -> (header, formatter); what the terminal and markdown tables show
SHOWN: dict[str, tuple[str, Formatter]] = {
    "segmenter": ("segmenter", str),
    "vocab_size": ("vocab", thousands),
    "tokens_per_char": ("tok/\nchar", digits(3)),
    "chars_per_token": ("char/\ntok", digits(2)),
    "bytes_per_token": ("bytes/\ntok", digits(2)),
    "tokens_per_word": ("tok/\nword", digits(2)),
    "bits_per_byte": ("bits/\nbyte", digits(3)),
    "renyi_efficiency": ("Rényi", digits(3)),
    "vocab_utilisation": ("vocab\nused", pct),
    "keep_rate_docs": ("keep\ndocs", pct),
    "keep_rate_bytes": ("keep\nbytes", pct),
    "mb_per_s": ("MB/s", digits(1)),
    "lossless": ("lossless", lambda v: "yes" if v else "NO"),
    "train_flops_per_mb": ("TFLOPs/\nMB", tflops),
}


WORDS_CAPTION = "tokens per whitespace-separated word, over documents written in scripts that separate words with spaces"


def _words_caption(meta: dict[str, Any]) -> str:
    """What tok/word means in this run. Runs saved before the rule have no share in their meta:
    their figure counted every document, and the caption says so."""
    if "tokens_per_word_bytes_share" not in meta:
        return "tok/word: tokens per whitespace-separated word, over every document (a run saved before tok/word left out scripts written without spaces)."
    share = meta["tokens_per_word_bytes_share"]  # None where the split has no bytes
    covered = f" ({100 * share:.1f}% of the bytes)" if isinstance(share, (int, float)) and not isinstance(share, bool) and math.isfinite(share) else ""
    return f"tok/word: {WORDS_CAPTION}{covered}; empty where a source has none."


def caption(result: CompareResult) -> str:
    meta = result.meta
    return (
        f"Measured on the validation split of {meta['corpus']}: {meta['val_documents']:,} documents, "
        f"{meta['val_bytes']:,} bytes (val fraction {meta['val_fraction']}). bits/byte is the order-0 entropy of the "
        f"token stream for segmenters and the real compressed size for compressors. {_words_caption(meta)} "
        f"keep: Cramming keep rate, tokens <= {meta['threshold']} x chars. TFLOPs/MB: training FLOPs per MB of text for the reference GPT "
        f"({meta['reference_model']}), 6N + 12LTd with N counting the V x d output head."
    )


def extra_groups(kinds: Iterable[str]) -> list[ReportGroup]:
    """The column groups that the segmenter kinds among `kinds` declare (Segmenter.report_groups),
    in the registry's order of kinds. Only those kinds' modules are imported; a kind this
    installation does not know (a plugin gone since the run was saved) adds no columns."""
    from toklab.segmenters.registry import available_kinds, segmenter_class

    present = set(kinds)
    groups: list[ReportGroup] = []
    for kind in available_kinds():
        if kind in present:
            try:
                groups += segmenter_class(kind).report_groups
            except ToklabError:  # a plugin that no longer loads: its columns are not shown
                continue
    return groups


def _extra_shown(result: CompareResult) -> list[tuple[ReportGroup, dict[str, tuple[str, Formatter]]]]:
    """Each declared group with its columns that the result holds: column -> (header, formatter)."""
    out = []
    for group in extra_groups(result.table["kind"]) if "kind" in result.table else []:
        shown = {c.key: (c.label, formatter(c.format)) for c in group.columns if c.key in result.table.columns}
        out.append((group, shown))
    return out


# The terminal shows the columns in two tables so that each fits an 80-column terminal.
TERMINAL_GROUPS = {
    "compression": ["segmenter", "vocab_size", "tokens_per_char", "bytes_per_token", "tokens_per_word", "bits_per_byte", "lossless"],
    "distribution and cost": ["segmenter", "renyi_efficiency", "vocab_utilisation", "keep_rate_docs", "keep_rate_bytes", "mb_per_s", "train_flops_per_mb"],
}


def main_tables(result: CompareResult) -> list[Table]:
    """The compare table for the terminal, as two tables; the second carries the caption."""
    tables = []
    for i, (title, columns) in enumerate(TERMINAL_GROUPS.items()):
        last = i == len(TERMINAL_GROUPS) - 1
        headers = [text_column(SHOWN[c][0], no_wrap=True) if c == "segmenter" else SHOWN[c][0] for c in columns]
        made = table(f"compare: {title}", headers, caption=caption(result) if last else None, pad_edge=False)
        for record in result.table.to_dict(orient="records"):
            if record["kind"] == "compressor" and title != "compression" and math.isnan(record.get("mb_per_s", float("nan"))):
                continue
            style = "cyan" if record["kind"] == "compressor" else ("bold red" if not record["lossless"] else None)
            made.add_row(*[Text(SHOWN[c][1](record.get(c))) for c in columns], style=style)
        tables.append(made)
    for group, shown in _extra_shown(result):
        records = [r for r in result.table.to_dict(orient="records") if any(not missing(r.get(c)) for c in shown)]
        if not shown or not records:
            continue
        made = table(f"compare: {group.title}", [text_column("segmenter", no_wrap=True), *(header for header, _ in shown.values())], caption=group.caption, pad_edge=False)
        for record in records:
            made.add_row(Text(record["segmenter"]), *[Text(fmt(record.get(c))) for c, (_, fmt) in shown.items()])
        tables.append(made)
    return tables


# fairness summary column -> (header, formatter): the terminal and markdown fairness tables
FAIRNESS_SHOWN: dict[str, tuple[str, Formatter]] = {
    "segmenter": ("segmenter", str),
    "median_parity": ("median\nparity", digits(2)),
    "max_parity": ("max\nparity", digits(2)),
    "worst_language": ("worst\nlanguage", lambda v: "" if missing(v) else str(v)),
    "worst_script": ("worst\nscript", lambda v: "" if missing(v) else str(v)),
    "worst_script_parity": ("its\nparity", digits(2)),
    "gini_tokens_per_byte": ("Gini\ntok/byte", digits(3)),
    "gini_parity": ("Gini\nparity", digits(3)),
}


def fairness_caption(result: CompareResult) -> str:
    """What the fairness figures measure, and on which bytes."""
    fairness = result.fairness
    assert fairness is not None
    meta = fairness.meta
    where = (
        f"all {meta['languages']:,} languages' documents, train and validation split alike ({meta['documents']:,} documents, "
        f"{meta['bytes']:,} bytes; {meta.get('val_languages', 0):,} languages in the validation split), the same for every segmenter"
        if meta.get("split") == "all" else f"{meta.get('languages', '?')} languages"
    )
    return (
        f"Parity: a language's tokens / {fairness.reference}'s tokens for the same text (Petrov et al. 2023), over {where}. "
        "Worst script: the highest median parity of a script's languages (per_script: median parity; tok/byte = total tokens / total bytes). "
        "Gini across languages: 0 when every language costs the same, of tokens per byte and of parity. "
        "Parity assumes every language's documents translate the same text; toklab cannot check that."
    )


def fairness_tables(result: CompareResult) -> list[Table]:
    """The fairness section for the terminal: the summary per segmenter, then its worst languages.
    Empty for a run without parallel text."""
    fairness = result.fairness
    if fairness is None or fairness.summary.empty:
        return []
    columns = [c for c in FAIRNESS_SHOWN if c != "worst_script_parity"]  # 80 columns; table.md has it
    headers = [text_column(FAIRNESS_SHOWN[c][0], no_wrap=True) if c in ("segmenter", "worst_language", "worst_script") else FAIRNESS_SHOWN[c][0] for c in columns]
    summary = table(f"fairness across languages (reference {fairness.reference})", headers, pad_edge=False)
    worst = table("worst languages (parity)", [text_column("segmenter", no_wrap=True), text_column("languages", overflow="fold")], caption=fairness_caption(result), pad_edge=False)
    for record in fairness.summary.to_dict(orient="records"):
        summary.add_row(*[Text(FAIRNESS_SHOWN[c][1](record.get(c))) for c in columns])
        worst.add_row(Text(str(record["segmenter"])), Text(str(record.get("worst_languages") or "")))
    return [summary, worst]


def _segmenter_header(name: str) -> str:
    """A segmenter spec as a column header: a long one breaks after ':' and ',' (tiktoken:
    cl100k_base) so that its column stays narrow; the name itself stays whole."""
    return name if len(name) <= 12 else re.sub(r"([:,])(?=.)", "\\1\\n", name)


def _natural_width(table: Table) -> int:
    """The columns a table takes when nothing wraps."""
    console = Console(width=10_000, file=io.StringIO())
    return Measurement.get(console, console.options, table).maximum


def per_source_table(result: CompareResult, top: int = 6, width: int = 80) -> Table | Group:
    """Bytes/token per source with every name whole: rows are the `top` largest sources, then any
    other source that is some segmenter's worst; columns are the segmenters, each one's worst source
    marked '*'. Segmenters that do not fit `width` beside the others continue in a further table."""
    per_source = result.per_source
    sources = [c for c in per_source.columns if c not in WORST]
    segmenters = list(per_source.index)
    worst = dict(zip(segmenters, per_source["worst_source"])) if "worst_source" in per_source else {}
    largest = sources[:top]
    # A worst source outside the largest still gets its row: the flag is the point of this table.
    also_worst = [s for s in sources[top:] if s in set(worst.values())]
    shown = ("the only source" if len(sources) == 1 else f"all {len(sources)} sources") if len(largest) == len(sources) else f"the {len(largest)} largest of {len(sources)} sources" + (", then (after the gap) any other that is a segmenter's worst" if also_worst else "")

    def build(columns: list[Any], title: str, last: bool) -> Table:
        caption = f"Rows: {shown}; all in per_source.csv. *: the segmenter's worst source (lowest bytes/token)." if last else None
        headers = [figure_column(_segmenter_header(str(segmenter)), no_wrap=True) for segmenter in columns]
        # the source column folds rather than cuts a name too long for any width
        made = table(title, [text_column("source", overflow="fold"), *headers], caption=caption, pad_edge=False)
        for i, source in enumerate(largest + also_worst):
            cells = []
            for segmenter in columns:
                value = per_source.at[segmenter, source]
                flagged = worst.get(segmenter) == source
                # ' ' after an unflagged value keeps the decimal points in line with '*'
                cells.append(Text(digits(2)(value) + ("*" if flagged else " "), style="yellow" if flagged else ""))
            made.add_row(Text(source), *cells, end_section=i == len(largest) - 1 and bool(also_worst))
        return made

    def fits(columns: list[Any]) -> bool:
        return _natural_width(build(columns, "", False)) <= width

    # Segmenters in run order, as many per table as fit `width` (at least one); then, when that
    # takes several tables, the same number of tables evened out if they fit, not 5 + 1.
    chunks: list[list[Any]] = []
    for segmenter in segmenters:
        if chunks and fits(chunks[-1] + [segmenter]):
            chunks[-1].append(segmenter)
        else:
            chunks.append([segmenter])
    if len(chunks) > 1:
        size = -(-len(segmenters) // len(chunks))
        even = [segmenters[i : i + size] for i in range(0, len(segmenters), size)]
        if len(even) == len(chunks) and all(fits(c) for c in even):
            chunks = even
    chunks = chunks or [[]]
    tables = []
    for i, columns in enumerate(chunks):
        first, last = sum(map(len, chunks[:i])) + 1, sum(map(len, chunks[: i + 1]))
        part = "" if len(chunks) == 1 else f", segmenter {first} of {len(segmenters)}" if first == last else f", segmenters {first}-{last} of {len(segmenters)}"
        tables.append(build(columns, f"bytes/token per source{part}", i == len(chunks) - 1))
    return tables[0] if len(tables) == 1 else Group(*tables)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table of already formatted cells ("|" in a cell is escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown(result: CompareResult) -> str:
    shown = dict(SHOWN)
    for _, extra in _extra_shown(result):
        shown.update(extra)
    header = "| " + " | ".join(h.replace("\n", " ").replace("/ ", "/") for h, _ in shown.values()) + " |"
    rule = "|" + "|".join("---" if c == "segmenter" else "---:" for c in shown) + "|"
    lines = ["# toklab compare", "", header, rule]
    for record in result.table.to_dict(orient="records"):
        lines.append("| " + " | ".join(fmt(record.get(c)) for c, (_, fmt) in shown.items()) + " |")
    lines += ["", caption(result)]
    if result.meta.get("compressors"):
        lines += ["", "Compressors:"] + [f"- {name}: {detail}" for name, detail in result.meta["compressors"].items()]
    lines += _fairness_markdown(result)
    if result.notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def _fairness_markdown(result: CompareResult) -> list[str]:
    """The fairness section of table.md: the summary, the worst languages, median parity per script."""
    fairness = result.fairness
    if fairness is None or fairness.summary.empty:
        return []
    records = fairness.summary.to_dict(orient="records")
    header = [h.replace("\n", " ") for h, _ in FAIRNESS_SHOWN.values()]
    summary = markdown_table(header, [[fmt(r.get(c)) for c, (_, fmt) in FAIRNESS_SHOWN.items()] for r in records])
    worst = markdown_table(["segmenter", "worst languages (parity)"], [[str(r["segmenter"]), str(r.get("worst_languages") or "")] for r in records])
    wide = _scripts_wide(fairness.per_script)
    scripts = markdown_table(["script", "languages", *map(str, wide.columns[1:])], [[str(s), str(int(row.iloc[0])), *(digits(2)(v) for v in row.iloc[1:])] for s, row in wide.iterrows()])
    return [
        "", f"## Fairness across languages (reference {fairness.reference})", "", summary, worst,
        "Median parity per script (all rows in parity_by_script.csv, every language in parity.csv):", "", scripts, fairness_caption(result),
    ]  # fmt: skip


def _scripts_wide(per_script: "Any") -> "Any":
    """Median parity per script (rows, costliest first by the mean over segmenters) and segmenter
    (columns, run order), after a column of how many languages each script has."""
    wide = per_script.pivot(index="script", columns="segmenter", values="median_parity")
    wide = wide.reindex(columns=list(dict.fromkeys(per_script["segmenter"])))
    order = wide.mean(axis=1).sort_values(ascending=False, kind="stable").index
    counts = per_script.groupby("script")["languages"].first()
    wide.insert(0, "languages", counts)
    return wide.reindex(order)


def _plot_sources(result: CompareResult, path: Path) -> None:
    """Bytes/token heatmap, segmenters x sources: each cell a fixed size within limits, so the
    figure grows with the table and the numbers shrink only when the cells must."""
    import numpy as np

    from toklab import plots

    per_source = result.per_source
    sources = [c for c in per_source.columns if c not in WORST][:MAX_PLOT_SOURCES]
    data = per_source[sources].to_numpy(dtype=float)
    rows, cols = max(len(per_source), 1), max(len(sources), 1)
    # cells in inches: as large as reads well, smaller (down to a floor) as the table grows, so the
    # heatmap stays within about 14 x 8 inches; the numbers' size follows the cells'
    cell_w = float(np.clip(14 / cols, 0.4, 0.8))
    cell_h = float(np.clip(8 / rows, 0.22, 0.5))
    label_size = 9 if rows <= 20 and cols <= 20 else 8
    longest_source = max([len(str(s)) for s in sources] + [1])
    longest_segmenter = max([len(str(s)) for s in per_source.index] + [1])
    # room for the labels: the rotated source names below, the segmenter names left, the colour bar right
    fig, ax = plots.figure(cols * cell_w + longest_segmenter * label_size * 0.6 / 72 + 2.2, rows * cell_h + longest_source * label_size * 0.5 / 72 + 1.3)
    image = ax.imshow(data, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(sources)), sources, rotation=60, ha="right", rotation_mode="anchor", fontsize=label_size)
    ax.set_yticks(range(len(per_source)), [str(s) for s in per_source.index], fontsize=label_size)
    size = plots.cell_font_size(cell_w, cell_h, chars=3)
    for (i, j), value in np.ndenumerate(data):
        if not math.isnan(value):  # the text contrasts with its own cell's colour, not with the table's mean
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=size, color=plots.text_colour(image.cmap(image.norm(value))))
    fig.colorbar(image, ax=ax, label="bytes per token", fraction=0.04, pad=0.02)
    ax.set_title(f"bytes/token by segmenter and source ({len(sources)} largest sources; higher: fewer tokens)", fontsize=10)
    fig.tight_layout()
    plots.save(fig, path, dpi=120)


def _plot_bits(result: CompareResult, path: Path) -> None:
    from toklab import plots

    table = result.table.dropna(subset=["bits_per_byte"])
    colors = ["tab:cyan" if k == "compressor" else ("tab:red" if not lossless else "tab:blue") for k, lossless in zip(table["kind"], table["lossless"])]
    fig, ax = plots.figure(7, 0.35 * len(table) + 1.5)
    ax.barh(list(table["segmenter"]), list(table["bits_per_byte"]), color=colors)
    ax.invert_yaxis()
    ax.set_xlabel("bits per byte")
    ax.set_title("bits-per-byte: tokenisers against compressors\nsegmenters: order-0 entropy of the tokens; compressors: compressed size", fontsize=10)
    for y, value in enumerate(table["bits_per_byte"]):
        ax.text(value, y, f" {value:.2f}", va="center", fontsize=8)
    fig.tight_layout()
    plots.save(fig, path, dpi=120)


def _plot_parity(result: CompareResult, path: Path) -> None:
    """Median parity per script, one marker per segmenter, on a log axis: 1 is the reference's cost."""
    from toklab import plots

    fairness = result.fairness
    assert fairness is not None
    wide = _scripts_wide(fairness.per_script)
    total, cut = len(wide), None
    title = f"parity by script: median over each script's languages (reference {fairness.reference}; 1 = same tokens as the reference)"
    if total > MAX_PLOT_SCRIPTS:
        half = MAX_PLOT_SCRIPTS // 2
        wide = wide.iloc[list(range(half)) + list(range(total - half, total))]
        cut = half - 0.5
        title += f"\nthe {half} costliest and the {half} cheapest of {total} scripts; all in parity_by_script.csv"
    segmenters = list(wide.columns[1:])
    fig, ax = plots.figure(9, 0.22 * len(wide) + 1.8)
    markers = "os^DvP*Xhp<>"
    y = range(len(wide))
    for i, segmenter in enumerate(segmenters):
        ax.scatter(wide[segmenter].to_numpy(dtype=float), list(y), s=18, marker=markers[i % len(markers)], label=str(segmenter), alpha=0.8)
    ax.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    if cut is not None:  # the scripts left out lie between the two halves
        ax.axhline(cut, color="grey", linewidth=0.8)
    plots.flops_axis(ax, "x")  # round tick values (1, 2, 5, 10) on the log axis, not 10^0
    ax.set_yticks(list(y), [f"{s} ({int(n)})" for s, n in zip(wide.index, wide["languages"])], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"tokens / {fairness.reference}'s tokens for the same text (log scale)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    plots.save(fig, path, dpi=110)


def _fairness_json(fairness: Fairness) -> dict[str, Any]:
    return {
        "reference": fairness.reference,
        "meta": fairness.meta,
        "summary": json.loads(fairness.summary.to_json(orient="records")),
        "per_script": json.loads(fairness.per_script.to_json(orient="records")),
        "per_language": json.loads(fairness.per_language.to_json(orient="records")),
    }


def to_json(result: CompareResult) -> dict[str, Any]:
    """The whole result as plain JSON data: what results.json holds and `compare --json` prints.
    A run on parallel text adds `fairness`: reference, meta, summary, per_script and per_language."""
    data = {
        "meta": result.meta,
        "notes": result.notes,
        "table": json.loads(result.table.to_json(orient="records")),
        "per_source": json.loads(result.per_source.reset_index().to_json(orient="records")),
        "per_source_columns": list(result.per_source.columns),
    }
    if result.fairness is not None:
        data["fairness"] = _fairness_json(result.fairness)
    return data


def write_report(result: CompareResult, out_dir: str | os.PathLike) -> Path:
    """Write the report folder. A new folder appears whole; in an existing report folder only
    toklab's own files are replaced (a user's notes beside them stay). A folder of other files,
    or one inside (or holding) the compared corpus, is refused."""
    final = Path(out_dir)
    check_outside(final, list(result.inputs))
    if final.exists() and (not final.is_dir() or (any(final.iterdir()) and not (final / RESULTS).is_file())):
        raise foreign(final, "compare report")
    with (report_dir(final) if final.exists() else atomic_dir(final)) as tmp:
        (tmp / RESULTS).write_text(json.dumps(to_json(result), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        result.table.to_csv(tmp / "table.csv", index=False)
        result.per_source.to_csv(tmp / "per_source.csv")
        (tmp / "table.md").write_text(markdown(result), encoding="utf-8")
        _plot_sources(result, tmp / "bytes_per_token_by_source.png")
        _plot_bits(result, tmp / "bits_per_byte.png")
        if result.fairness is not None:
            result.fairness.per_language.to_csv(tmp / "parity.csv", index=False)
            result.fairness.per_script.to_csv(tmp / "parity_by_script.csv", index=False)
            _plot_parity(result, tmp / "parity_by_script.png")
    if result.fairness is None:  # an earlier run's fairness files would contradict this report
        for name in FAIRNESS_FILES:
            if (final / name).is_file():
                (final / name).unlink()
    return final


META_NUMBERS = ("val_documents", "val_bytes")  # formatted as whole numbers in the caption
META_KEYS = ("corpus", "val_fraction", "threshold", "reference_model", *META_NUMBERS)
WORST = ("worst_source", "worst_bytes_per_token")


def _shape_problem(payload: Any) -> str | None:
    """What makes a results.json payload unreadable as a compare report, or None."""
    if not isinstance(payload, dict):
        return f"it holds a JSON {type(payload).__name__}, not an object"
    missing = [k for k in ("meta", "notes", "table", "per_source", "per_source_columns") if k not in payload]
    if missing:
        return f"no {', '.join(missing)}"
    meta, notes, table = payload["meta"], payload["notes"], payload["table"]
    per_source, columns = payload["per_source"], payload["per_source_columns"]
    if not isinstance(meta, dict):
        return "meta is not an object"
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        return f"meta has no {', '.join(missing)}"
    if any(isinstance(meta[k], bool) or not isinstance(meta[k], (int, float)) for k in META_NUMBERS):
        return f"meta's {' and '.join(META_NUMBERS)} are not numbers"
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        return "notes is not a list of strings"
    if not isinstance(table, list) or not all(isinstance(r, dict) and isinstance(r.get("segmenter"), str) and isinstance(r.get("kind"), str) for r in table):
        return "table is not a list of rows, each with a segmenter and a kind"
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) or not set(WORST) <= set(columns):
        return "per_source_columns is not a list of column names with the worst source"
    if not isinstance(per_source, list) or not all(isinstance(r, dict) and isinstance(r.get("segmenter"), str) for r in per_source):
        return "per_source is not a list of rows, each with a segmenter"
    fairness = payload.get("fairness")  # absent in runs without parallel text, and in older reports
    if fairness is not None:
        if not isinstance(fairness, dict) or not isinstance(fairness.get("reference"), str) or not isinstance(fairness.get("meta", {}), dict):
            return "fairness is not an object with a reference"
        rows = fairness.get("per_language")
        wanted = ("segmenter", "language", "tokens", "bytes")
        if not isinstance(rows, list) or not all(isinstance(r, dict) and all(k in r for k in wanted) for r in rows):
            return f"fairness.per_language is not a list of rows, each with {', '.join(wanted)}"
    return None


def holds_report(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds a compare report (which writing another one there replaces)."""
    return (Path(directory) / RESULTS).is_file()


def read_report(directory: str | os.PathLike) -> CompareResult:
    """A compare run saved by `write_report`. A folder without a readable results.json, or one of
    another shape, is a one-line ToklabError."""
    import pandas as pd

    directory = Path(directory)
    path = directory / RESULTS
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToklabError(f"{directory} is not a compare report (no {RESULTS})") from None
    except IsADirectoryError:
        raise ToklabError(f"{directory} is not a compare report toklab can read ({RESULTS} is a folder)") from None
    except (OSError, ValueError) as exc:
        raise ToklabError(f"{directory} is not a compare report toklab can read (cannot read {RESULTS}: {one_line(exc)})") from None
    problem = _shape_problem(payload)
    if problem is not None:
        raise ToklabError(f"{directory} is not a compare report toklab can read ({RESULTS}: {problem})")
    try:
        table = pd.DataFrame(payload["table"])
        extras = [c for c in table.columns if c not in COLUMNS]
        table = table.reindex(columns=COLUMNS + extras)
        empty = [c for c in table.columns if table[c].isna().all()]  # JSON null, e.g. tokens_per_word without a spaced document
        table[empty] = table[empty].astype(float)
        per_source = pd.DataFrame(payload["per_source"], columns=list(dict.fromkeys(["segmenter", *payload["per_source_columns"]])))
        per_source = per_source.set_index("segmenter").reindex(columns=payload["per_source_columns"])
        fairness = None
        if payload.get("fairness") is not None:  # recomputed from the saved counts: the same pure functions
            saved = payload["fairness"]
            fairness = analyse(saved["per_language"], saved["reference"], meta=saved.get("meta", {}))
    except Exception as exc:  # pandas refuses odd values in many ways
        raise ToklabError(f"{directory} is not a compare report toklab can read ({RESULTS}: {one_line(exc)})") from None
    return CompareResult(table=table, per_source=per_source, meta=payload["meta"], notes=payload["notes"], fairness=fairness)
