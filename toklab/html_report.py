"""`toklab report DIR --html`: a compare, filter, pretrain or study folder as one HTML page.

The page (DIR/report.html, written under a temporary name and renamed) holds the folder's tables
from its JSON, its plots as data: URIs, its notes, and for a compare folder a view of a few
validation documents cut by its segmenters (toklab/view.py), recomputed only when that is cheap:
the same corpus is there unchanged (its fingerprint matches the run's) and every trainable
segmenter is in the cache. Otherwise the page says why no documents are shown; nothing is guessed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from toklab.errors import ToklabError, one_line
from toklab.html import bullet_list, escape, image, page, table
from toklab.outputs import folder_kind

PAGE = "report.html"
# The json files whose tables a page shows, per kind of folder (toklab.outputs.folder_kind).
MAIN_JSON = {"study": ("table.json", "study.json"), "compare": ("results.json",), "pretrain": ("summary.json", "run.json"), "filter": ("summary.json",)}
PROSE = ("summary", "notes")  # lists of sentences, shown as bullet lists
MAX_ROWS = 200
MAX_VALUE_CHARS = 300
VIEW_CHARS = 2000  # of each document shown: a page of several whole documents, one span a byte, gets heavy


def _flat(payload: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """The scalar fields of a JSON object (nested objects flattened as a.b), as (field, value) rows."""
    rows = []
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flat(value, name + ".")
        elif isinstance(value, list) and (not value or not all(isinstance(v, dict) for v in value)) and not (prefix == "" and key in PROSE):
            shown = ", ".join(str(v) for v in value)
            rows.append({"field": name, "value": shown if len(shown) <= MAX_VALUE_CHARS else shown[:MAX_VALUE_CHARS] + " …"})
        elif not isinstance(value, list):
            rows.append({"field": name, "value": value})
    return rows


def json_sections(payload: dict[str, Any], title: str) -> str:
    """Tables of one JSON object: each list of rows a table, its scalar fields one table, its
    summary and notes bullet lists."""
    parts = []
    for key, value in payload.items():
        if key in PROSE and isinstance(value, list) and value:
            parts.append(f"<h3>{escape(key)}</h3>" + bullet_list(str(v) for v in value))
    for key, value in payload.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            shown = value[:MAX_ROWS]
            more = f"the first {MAX_ROWS} of {len(value):,} rows" if len(value) > MAX_ROWS else ""
            parts.append(f"<h3>{escape(key)}</h3>" + table(shown, caption=more))
        elif key == "caption" and isinstance(value, str):
            parts.append(f'<p class="caption">{escape(value)}</p>')
    scalars = _flat({k: v for k, v in payload.items() if k != "caption"})
    if scalars:
        parts.append("<h3>settings and figures</h3>" + table(scalars, ["field", "value"]))
    return f"<h2>{escape(title)}</h2>" + "".join(parts)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToklabError(f"cannot read {path} ({one_line(exc)})") from None
    if not isinstance(payload, dict):
        raise ToklabError(f"{path} holds a JSON {type(payload).__name__}, not an object")
    return payload


def compare_views(result: Any, docs: int = 3) -> tuple[list[dict[str, Any]], list[str]]:
    """Views of the first `docs` validation documents of a compare run with its segmenters, and
    notes on what could not be shown. Only cheap work: the run's corpus must be there unchanged
    (the same fingerprint, so also read with default options) and trained segmenters in the cache."""
    from toklab.corpus import open_corpus
    from toklab.corpus.recipes import find_recipe, load_recipe, read_manifest
    from toklab.files import cache_dir
    from toklab.segmenters.base import MANIFEST, SegmenterUnavailable
    from toklab.segmenters.registry import check_spec, get_segmenter, training_key
    from toklab.view import view_corpus

    meta = result.meta
    spec = str(meta["corpus"])
    recipe = find_recipe(spec)
    if recipe is not None:
        loaded_recipe = load_recipe(recipe)
        if loaded_recipe.built_parts and read_manifest(loaded_recipe.cache_path()) is None:
            return [], [f"no documents shown: the corpus recipe '{spec}' is not built here (building it is not cheap); see toklab view --corpus {spec} --docs {docs}"]
    try:
        corpus = open_corpus(spec, val_fraction=meta["val_fraction"])
        same = corpus.fingerprint() == meta.get("corpus_fingerprint")
    except ToklabError as exc:
        return [], [f"no documents shown: the run's corpus {spec} cannot be opened here ({exc})"]
    if not same:
        return [], [f"no documents shown: the corpus {spec} is not the one this run read (it has changed since, or was read with options the report does not record, such as --max-docs or --sample)"]
    segmenters, notes = [], []
    for row in result.table.to_dict(orient="records"):
        name = row["segmenter"]
        if row["kind"] == "compressor":
            continue
        try:
            checked = check_spec(name)
            if checked.trainable and not (cache_dir() / "segmenters" / training_key(checked.parsed, corpus) / MANIFEST).is_file():
                notes.append(f"{name} is not shown: it is not in the cache (training it again is not cheap)")
                continue
            segmenters.append(get_segmenter(name, corpus))
        except (SegmenterUnavailable, ToklabError) as exc:
            notes.append(f"{name} is not shown: {exc}")
    if not segmenters:
        return [], notes + ["no documents shown: none of the run's segmenters can be had cheaply here"]
    return view_corpus(corpus, segmenters, docs, max_chars=VIEW_CHARS), notes


def report_page(folder: str | os.PathLike, *, docs: int = 3) -> str:
    """The whole HTML page of a report folder (see the module's docstring)."""
    from toklab.view import VIEW_CSS, VIEW_JS, view_sections

    folder = Path(folder)
    kind = folder_kind(folder)
    if kind is None:
        raise ToklabError(f"{folder} holds no toklab report (no results.json, summary.json, run.json or study.json)")
    title = f"toklab {kind}: {folder.resolve().name}"
    body = [f"<h1>{escape(title)}</h1>", f'<p class="muted">{escape(str(folder))}</p>']
    views: list[dict[str, Any]] = []
    view_notes: list[str] = []
    if kind == "compare":
        from toklab.reports import caption, read_report, to_json

        result = read_report(folder)  # checks the shape
        payload = to_json(result)
        body.append(f'<p class="caption">{escape(caption(result))}</p>')
        if docs:
            views, view_notes = compare_views(result, docs)
        body.append(json_sections(payload, "results.json"))
    else:
        for name in MAIN_JSON[kind]:
            if (folder / name).is_file():
                body.append(json_sections(_read_json(folder / name), name))
    plots = sorted(folder.glob("*.png"))
    if plots:
        body.append("<h2>plots</h2>" + "".join(image(p, p.stem.replace("_", " ")) for p in plots))
    if kind == "compare" and docs:
        body.append("<h2>validation documents, cut by the run's segmenters</h2>" + bullet_list(view_notes))
        if views:
            body.append(view_sections(views))
    return page(title, "\n".join(body), css=VIEW_CSS, js=VIEW_JS)


def write_html_report(folder: str | os.PathLike, *, docs: int = 3) -> Path:
    """Write DIR/report.html (a temporary name first, then renamed into place)."""
    from toklab.files import write_text_atomic

    folder = Path(folder)
    text = report_page(folder, docs=docs)
    try:
        return write_text_atomic(folder / PAGE, text)
    except OSError as exc:
        raise ToklabError(f"cannot write {folder / PAGE}: {exc.strerror or exc}") from None
