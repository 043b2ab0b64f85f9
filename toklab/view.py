"""`toklab view`: one HTML page that shows the same text cut by several segmenters side by side.

`view_data` is plain data (every token's id, bytes and byte span; for entropy segmenters the
next-byte entropy of every byte, the threshold θ and the patch starts); `render_view` turns views
into one self-contained page (see toklab/html.py); `write_view` writes it atomically.

In the page each token is one `<span class="tok">` in its segmenter's panel, in alternating
colours; spaces show as ·, newlines as ↵ (then a real line break), tabs as →. A token whose bytes
are not whole UTF-8 characters is marked partial and shows its bytes in hex; an entropy patch
spelled with byte ids (its patch is not in the patch vocabulary) is marked byte-fallback. Hovering
a token shows its id, bytes and byte span, and outlines the tokens of the other panels that
overlap the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from toklab.errors import ToklabError
from toklab.html import escape, page
from toklab.text import whole_utf8

MAX_CHARS = 20_000  # longer texts are cut: a page of a whole book is unreadable and slow to open
PALETTE = 4  # alternating token colours
SVG_WIDTH, SVG_HEIGHT, SVG_PAD = 1000, 110, 4


def _entropy_trace(segmenter: Any, data: bytes) -> dict[str, Any] | None:
    """Per-byte entropy, θ and patch starts of an entropy segmenter (None for other kinds), from the
    segmenter itself (`EntropySegmenter.entropy_trace`), as its encode cuts."""
    import numpy as np

    if not hasattr(segmenter, "entropy_trace") or not data:
        return None
    entropy, starts = segmenter.entropy_trace(data)
    theta = segmenter.theta
    return {"entropy": [round(float(e), 4) for e in entropy], "theta": float(theta), "rule": segmenter.rule,
            "patch_starts": np.flatnonzero(starts).tolist()}


def view_data(text: str, segmenters: Sequence[Any], *, label: str = "", max_chars: int | None = MAX_CHARS) -> dict[str, Any]:
    """How each segmenter cuts `text`, as plain data:
    {label, text, chars, bytes, cut, panels: [{spec, kind, vocab_size, lossless, tiles, tokens, entropy}]}.
    Each token is {id, start, end, hex, partial, fallback}: [start, end) are UTF-8 byte offsets
    (Segmenter.byte_spans), hex the token's own bytes (Segmenter.token_bytes). `tiles` says whether
    the tokens' bytes laid end to end are exactly the text's (false for a lossy segmenter).
    `entropy` is, for entropy segmenters, {entropy (per byte), theta, rule, patch_starts}."""
    cut = max_chars is not None and len(text) > max_chars
    if cut:
        text = text[:max_chars]
    data = text.encode("utf-8", errors="surrogatepass")
    panels = []
    for segmenter in segmenters:
        ids = [int(i) for i in segmenter.encode(text)]
        spans = segmenter.byte_spans(ids).tolist() if ids else []
        pieces = [segmenter.token_bytes(i) for i in ids]
        trace = _entropy_trace(segmenter, data)
        patch_length: dict[int, int] = {}
        if trace is not None:  # the patch each byte belongs to, for byte fallback
            bounds = trace["patch_starts"] + [len(data)]
            patch_length = {s: e - s for s, e in zip(bounds[:-1], bounds[1:])}
        tokens = []
        patch_start = 0
        for token_id, (start, end), piece in zip(ids, spans, pieces):
            patch_start = start if start in patch_length else patch_start
            fallback = trace is not None and token_id < 256 and patch_length.get(patch_start, 1) > 1
            tokens.append({"id": token_id, "start": int(start), "end": int(end), "hex": piece.hex(" "),
                           "partial": not whole_utf8(piece), "fallback": bool(fallback)})
        tiles = b"".join(pieces) == data and all(data[s:e] == p for (s, e), p in zip(spans, pieces))
        panels.append({"spec": segmenter.spec, "kind": segmenter.kind, "vocab_size": int(segmenter.vocab_size),
                       "lossless": bool(segmenter.lossless), "tiles": tiles, "tokens": tokens, "entropy": trace})
    return {"label": label, "text": text, "chars": len(text), "bytes": len(data), "cut": cut, "panels": panels}


def view_corpus(corpus: Any, segmenters: Sequence[Any], docs: int = 3, *, max_chars: int | None = MAX_CHARS) -> list[dict[str, Any]]:
    """view_data of the first `docs` documents of the corpus's validation split (labelled by id and source)."""
    views = []
    for doc in corpus.val():
        views.append(view_data(doc.text, segmenters, label=f"{doc.id} · {doc.source}", max_chars=max_chars))
        if len(views) >= docs:
            break
    if not views:
        raise ToklabError(f"the validation split of {corpus.spec} is empty; raise --val-fraction or read more documents")
    return views


# --- rendering ------------------------------------------------------------------------------------

VIEW_CSS = """
.doc { margin-bottom: 2em; }
.panels { display: grid; grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); gap: 12px; }
.panel { border: 1px solid #d6dbe0; border-radius: 6px; padding: 8px 10px; min-width: 0; }
.panel h3 { margin: 0 0 .3em; font-family: ui-monospace, monospace; }
.text { font: 13px/1.9 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; white-space: pre-wrap; overflow-wrap: anywhere; tab-size: 4; }
.tok { border-radius: 3px; padding: 1px 0; }
.tok.c0 { background: #dbeafe; } .tok.c1 { background: #fde2c8; } .tok.c2 { background: #d6f5dc; } .tok.c3 { background: #f3d9f7; }
.tok .ws { color: #8a94a0; } .tok .raw { color: #9a1b1b; font-size: 11px; }
.tok.partial { box-shadow: inset 0 -2px 0 #d23c3c; } .tok.fallback { box-shadow: inset 0 2px 0 #7a3db8; }
.tok.partial.fallback { box-shadow: inset 0 -2px 0 #d23c3c, inset 0 2px 0 #7a3db8; }
.panel.entropy { grid-column: 1 / -1; }
.tok.hl { outline: 2px solid #1f4fd1; } .tok:hover { outline: 2px solid #000; }
.legend span { margin-right: 1.2em; }
svg.entropy { width: 100%; height: auto; display: block; margin: .2em 0 .5em; background: #fafbfc; }
"""

# Hovering a token outlines the tokens of the other panels of the same document that overlap its bytes.
VIEW_JS = """
document.querySelectorAll(".doc").forEach(function (doc) {
  var tokens = doc.querySelectorAll(".tok");
  function mark(on, start, end) {
    tokens.forEach(function (t) {
      var s = +t.getAttribute("data-s"), e = +t.getAttribute("data-e");
      t.classList.toggle("hl", on && s < end && start < e && e > s);
    });
  }
  tokens.forEach(function (t) {
    t.addEventListener("mouseenter", function () { mark(true, +t.getAttribute("data-s"), +t.getAttribute("data-e")); });
    t.addEventListener("mouseleave", function () { mark(false, 0, 0); });
  });
});
"""

VISIBLE = {" ": "·", "\n": "↵\n", "\t": "→\t", "\r": "␍"}


def _shown(piece: bytes) -> str:
    """A token's bytes as HTML: whitespace made visible, bytes that are no whole character in hex."""
    out = []
    for ch in piece.decode("utf-8", errors="surrogateescape"):
        if "\udc80" <= ch <= "\udcff":  # a byte that is not part of a whole character
            out.append(f'<span class="raw">&lt;{ord(ch) - 0xDC00:02x}&gt;</span>')
        elif ch in VISIBLE:
            out.append(f'<span class="ws">{VISIBLE[ch]}</span>' + ("<wbr>" if ch == " " else ""))  # lines may wrap at a space
        elif ch < " " or ch == "\x7f":
            out.append(f'<span class="raw">&lt;{ord(ch):02x}&gt;</span>')
        else:
            out.append(escape(ch))
    return "".join(out)


def _token_html(i: int, token: dict[str, Any], piece: bytes) -> str:
    marks = (" partial" if token["partial"] else "") + (" fallback" if token["fallback"] else "")
    title = f"#{i} id {token['id']} · bytes [{token['start']}, {token['end']}) · {token['hex'] or '(none)'}"
    title += " · partial UTF-8" if token["partial"] else ""
    title += " · byte fallback" if token["fallback"] else ""
    return (f'<span class="tok c{i % PALETTE}{marks}" data-i="{i}" data-id="{token["id"]}" data-s="{token["start"]}" '
            f'data-e="{token["end"]}" title="{escape(title)}">{_shown(piece)}</span>')


def _entropy_svg(trace: dict[str, Any]) -> str:
    """The per-byte entropy as a line, θ as a dashed line, patch starts as ticks, in inline SVG."""
    values = trace["entropy"]
    n, theta = len(values), trace["theta"]
    top = max(max(values, default=0.0), theta, 1e-9) * 1.08
    w, h, pad = SVG_WIDTH, SVG_HEIGHT, SVG_PAD

    def x(i: float) -> float:
        return pad + (w - 2 * pad) * (i + 0.5) / max(n, 1)

    def y(v: float) -> float:
        return h - pad - (h - 2 * pad) * v / top

    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    ticks = "".join(f'<line x1="{x(s):.1f}" x2="{x(s):.1f}" y1="{h - pad}" y2="{h - pad - 10}"/>' for s in trace["patch_starts"])
    label = f"next-byte entropy (bits) of {n:,} bytes; θ = {theta:.3f} ({trace['rule']}); ticks: {len(trace['patch_starts']):,} patch starts"
    return (
        f'<svg class="entropy" viewBox="0 0 {w} {h}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
        f'<polyline class="trace" fill="none" stroke="#1f4fd1" stroke-width="1.2" points="{points}"/>'
        f'<line class="theta" x1="{pad}" x2="{w - pad}" y1="{y(theta):.1f}" y2="{y(theta):.1f}" stroke="#d23c3c" stroke-dasharray="5,4"/>'
        f'<text x="{w - pad - 2}" y="{y(theta) - 3:.1f}" text-anchor="end" font-size="11" fill="#d23c3c">θ = {theta:.3f}</text>'
        f'<g class="starts" stroke="#2a7d3b" stroke-width="1">{ticks}</g></svg>'
        f'<div class="muted">{escape(label)}</div>'
    )


def _panel_html(view: dict[str, Any], panel: dict[str, Any]) -> str:
    tokens = panel["tokens"]
    pieces = [bytes.fromhex(t["hex"]) for t in tokens]
    n_partial = sum(t["partial"] for t in tokens)
    n_fallback = sum(t["fallback"] for t in tokens)
    stats = f"{len(tokens):,} tokens · {view['bytes'] / len(tokens):.2f} bytes/token" if tokens else "no tokens"
    stats += f" · vocabulary {panel['vocab_size']:,}"
    stats += f" · {n_partial:,} partial UTF-8" if n_partial else ""
    stats += f" · {n_fallback:,} byte fallback" if n_fallback else ""
    warn = "" if panel["tiles"] else f'<div class="muted">the tokens\' bytes are not the text\'s ({escape(panel["spec"])} is {"lossless" if panel["lossless"] else "lossy"}): shown as the segmenter gives them</div>'
    trace = _entropy_svg(panel["entropy"]) if panel.get("entropy") else ""
    body = "".join(_token_html(i, t, p) for i, (t, p) in enumerate(zip(tokens, pieces)))
    kind = " entropy" if panel.get("entropy") else ""  # a full row: the trace needs the width
    return (f'<section class="panel{kind}" data-spec="{escape(panel["spec"])}" data-tokens="{len(tokens)}">'
            f'<h3>{escape(panel["spec"])}</h3><div class="muted">{escape(stats)}</div>{warn}{trace}'
            f'<div class="text">{body}</div></section>')


def view_sections(views: Sequence[dict[str, Any]]) -> str:
    """The views as HTML (one block per text, one panel per segmenter), for any page."""
    out = []
    for view in views:
        head = f"<h2>{escape(view['label'])}</h2>" if view.get("label") else ""
        sizes = f"{view['chars']:,} characters, {view['bytes']:,} bytes" + (f" (cut to the first {view['chars']:,} characters)" if view.get("cut") else "")
        panels = "".join(_panel_html(view, panel) for panel in view["panels"])
        out.append(f'<div class="doc">{head}<div class="muted">{escape(sizes)}</div><div class="panels">{panels}</div></div>')
    legend = ('<p class="legend muted"><span>· space</span><span>↵ newline</span><span>→ tab</span>'
              '<span><span class="tok partial">&lt;c3&gt;</span> partial UTF-8 (bytes in hex)</span>'
              '<span><span class="tok fallback">x</span> byte fallback</span><span>hover: id, bytes, byte span</span></p>')
    return legend + "".join(out)


def render_view(views: dict[str, Any] | Sequence[dict[str, Any]], *, title: str = "toklab view", notes: Sequence[str] = ()) -> str:
    """A whole self-contained HTML page of one view or several."""
    from toklab.html import bullet_list

    views = [views] if isinstance(views, dict) else list(views)
    body = f"<h1>{escape(title)}</h1>" + bullet_list(notes) + view_sections(views)
    return page(title, body, css=VIEW_CSS, js=VIEW_JS)


def write_view(path: str | os.PathLike, views: dict[str, Any] | Sequence[dict[str, Any]], *, title: str = "toklab view", notes: Sequence[str] = ()) -> Path:
    """Write the page to `path` (a temporary name first, then renamed into place)."""
    from toklab.files import write_text_atomic

    path = Path(path)
    if path.is_dir():
        raise ToklabError(f"{path} is a folder; give --out a file name such as view.html")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, render_view(views, title=title, notes=notes))
    except OSError as exc:
        raise ToklabError(f"cannot write {path}: {exc.strerror or exc}") from None
