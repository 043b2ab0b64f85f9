"""The one HTML page shell: escaping, inline styles and scripts, tables, images as data: URIs.

Every page toklab writes (`toklab view`, `toklab report --html`) is one self-contained file: no
stylesheet, script, font or image is fetched when it is opened, so it reads the same offline and
when mailed around. The page's script installs `window.onerror` first, so any script error lands
in a visible `#toklab-errors` element, and marks `<body data-ready="1">` once every script has
run (tests in a headless browser wait for both).
"""

from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

BASE_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.2em 2em; color: #1d232a; background: #fff; }
h1 { font-size: 1.5em; margin: 0 0 .3em; } h2 { font-size: 1.2em; margin: 1.4em 0 .4em; } h3 { font-size: 1em; margin: 1em 0 .3em; }
table.data { border-collapse: collapse; font-size: 12.5px; margin: .4em 0 1em; }
table.data th, table.data td { border: 1px solid #d6dbe0; padding: 2px 7px; text-align: right; white-space: nowrap; }
table.data th { background: #eef1f4; } table.data td.txt, table.data th.txt { text-align: left; }
.scroll { overflow-x: auto; max-width: 100%; }
.caption, .muted { color: #5b6670; font-size: 12.5px; } .notes li { margin: .2em 0; }
img.plot { max-width: 100%; border: 1px solid #e3e6ea; margin: .3em 0 1em; }
pre.md { background: #f6f8fa; padding: .6em .8em; overflow-x: auto; font-size: 12.5px; }
#toklab-errors:empty { display: none; }
#toklab-errors { background: #fde8e8; color: #8a1111; border: 1px solid #e0a0a0; padding: .5em; white-space: pre-wrap; }
"""

# Runs before any other script: script errors are shown in the page and counted, not lost.
ERROR_JS = """
window.onerror = function (message, source, line, column) {
  var box = document.getElementById("toklab-errors");
  if (box) { box.textContent += "script error: " + message + " (line " + line + ":" + column + ")\\n"; }
  document.documentElement.setAttribute("data-errors", String((+document.documentElement.getAttribute("data-errors") || 0) + 1));
  return false;
};
"""


def escape(text: Any) -> str:
    """`text` as HTML text or attribute value: &, <, >, " and ' escaped."""
    return html.escape(str(text), quote=True)


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image(path: str | os.PathLike, alt: str = "") -> str:
    """An <img> whose picture is inside the page (a PNG file read now, as a data: URI)."""
    path = Path(path)
    return f'<img class="plot" alt="{escape(alt or path.name)}" src="{data_uri(path.read_bytes())}">'


def cell(value: Any) -> str:
    """One value as table text: floats to 4 significant figures, missing values empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 and abs(value) < 1e15 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *, caption: str = "") -> str:
    """An HTML table of plain rows (dicts); `columns` picks and orders them (default: every key,
    in the order first met). Text is left-aligned, numbers right."""
    columns = list(columns) if columns is not None else list(dict.fromkeys(k for row in rows for k in row))
    text_columns = {c for c in columns if any(isinstance(row.get(c), str) for row in rows)}
    head = "".join(f'<th class="{"txt" if c in text_columns else ""}">{escape(c)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"txt" if isinstance(row.get(c), str) else ""}">{escape(cell(row.get(c)))}</td>' for c in columns) + "</tr>"
        for row in rows
    )
    note = f'<p class="caption">{escape(caption)}</p>' if caption else ""
    return f'<div class="scroll"><table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{note}'


def bullet_list(items: Iterable[str], css_class: str = "notes") -> str:
    items = list(items)
    return f'<ul class="{css_class}">' + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>" if items else ""


def page(title: str, body: str, *, css: str = "", js: str = "") -> str:
    """A whole self-contained HTML document: `body` is HTML already; `css` and `js` go inline.
    `js` runs after the body is parsed; `data-ready` is set on <body> after it."""
    ready = "document.body.setAttribute('data-ready', '1');"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n<script>{ERROR_JS}</script>\n<style>{BASE_CSS}{css}</style>\n</head>\n<body>\n"
        f'<div id="toklab-errors"></div>\n{body}\n'
        f"<script>\n{js}\n</script>\n<script>{ready}</script>\n</body>\n</html>\n"
    )
