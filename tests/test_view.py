"""`toklab view` without a browser: the data (spans that tile the text, partial UTF-8, byte fallback,
the entropy trace), the HTML (one token element per token, escaping, visible whitespace) and the
CLI's one-line errors."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from cli_helpers import cli_error, cli_ok
from conftest import write_word_corpus

import toklab
from toklab.html import escape, page
from toklab.segmenters import get_segmenter
from toklab.view import render_view, view_data, write_view

TEXT = 'The cat <b>sat</b> & "the" dog\'s mat.\n\tNext line: café 🦜 𠜎'


class Panels(HTMLParser):
    """Per panel (by its data-spec): the token elements' attributes and their shown text."""

    def __init__(self) -> None:
        super().__init__()
        self.panels: dict[str, list[dict]] = {}
        self.current: str | None = None
        self.depth = 0  # open spans inside the current token
        self.token: dict | None = None
        self.svgs: dict[str, list[dict]] = {}
        self.ready = self.errors = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "body":
            self.ready = a.get("data-ready")
        if tag == "html":
            self.errors = a.get("data-errors")
        if tag == "section" and "panel" in (a.get("class") or "").split():
            self.current = a["data-spec"]
            self.panels[self.current] = []
            self.svgs[self.current] = []
        elif self.current and tag in ("polyline", "line", "g") and (a.get("class") in ("trace", "theta", "starts")):
            self.svgs[self.current].append({"tag": tag, **a})
        elif tag == "span":
            if self.token is not None:
                self.depth += 1
            elif "tok" in (a.get("class") or "").split() and self.current:
                self.token = {**a, "shown": ""}
                self.depth = 0

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self.token is not None:
            if self.depth:
                self.depth -= 1
            else:
                self.panels[self.current].append(self.token)
                self.token = None
        elif tag == "section":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.token is not None:
            self.token["shown"] += data


def parse(html: str) -> Panels:
    parser = Panels()
    parser.feed(html)
    return parser


def unshow(shown: str) -> str:
    """The text a token's shown form stands for (the page's visible whitespace, undone by hand)."""
    return shown.replace("↵\n", "\n").replace("→\t", "\t").replace("·", " ")


@pytest.fixture(scope="module")
def word_corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_word_corpus(tmp_path_factory.mktemp("view") / "words.jsonl", 200, 50, 0)


@pytest.fixture(scope="module")
def segmenters(word_corpus: str) -> list:
    corpus = toklab.open_corpus(word_corpus)
    return [get_segmenter("bytes"), get_segmenter("bpe:300", corpus), get_segmenter("entropy:300,target=3", corpus)]


def test_bytes_spans_and_partial_utf8_by_hand() -> None:
    view = view_data("aé", [get_segmenter("bytes")])
    tokens = view["panels"][0]["tokens"]
    assert [(t["start"], t["end"]) for t in tokens] == [(0, 1), (1, 2), (2, 3)]
    assert [t["hex"] for t in tokens] == ["61", "c3", "a9"]
    assert [t["partial"] for t in tokens] == [False, True, True]
    assert view["bytes"] == 3 and view["chars"] == 2 and view["panels"][0]["tiles"]


def test_spans_tile_the_text(segmenters: list) -> None:
    data = TEXT.encode("utf-8")
    for panel, segmenter in zip(view_data(TEXT, segmenters)["panels"], segmenters):
        tokens = panel["tokens"]
        assert len(tokens) == len(segmenter.encode(TEXT))
        assert tokens[0]["start"] == 0 and tokens[-1]["end"] == len(data)
        assert all(a["end"] == b["start"] for a, b in zip(tokens, tokens[1:]))
        assert b"".join(bytes.fromhex(t["hex"]) for t in tokens) == data
        assert all(data[t["start"]:t["end"]] == bytes.fromhex(t["hex"]) for t in tokens)
        assert panel["tiles"]


def test_tiktoken_partial_tokens_match_the_library(shared_tiktoken: Path) -> None:
    import tiktoken

    text = "a parrot 🦜 and 𠜎 and ꙮ"
    encoding = tiktoken.get_encoding("o200k_base")
    expected = []
    for token in encoding.encode(text):
        try:
            encoding.decode_single_token_bytes(token).decode("utf-8")
            expected.append(False)
        except UnicodeDecodeError:
            expected.append(True)
    view = view_data(text, [get_segmenter("tiktoken:o200k_base")])
    assert [t["partial"] for t in view["panels"][0]["tokens"]] == expected
    assert sum(expected) >= 4  # 𠜎 is four single-byte tokens in o200k_base
    html = render_view(view)
    shown = parse(html).panels["tiktoken:o200k_base"]
    assert [("partial" in t["class"].split()) for t in shown] == expected


def test_entropy_trace_and_byte_fallback(segmenters: list) -> None:
    import numpy as np

    entropy = segmenters[2]
    data = TEXT.encode("utf-8")
    panel = view_data(TEXT, [entropy])["panels"][0]
    trace = panel["entropy"]
    assert len(trace["entropy"]) == len(data) and trace["theta"] == entropy.theta
    # patch starts by the patching rule itself, from the model's own entropies
    expected = np.asarray(entropy.model.score_batch([data])[0][0])
    assert np.allclose(trace["entropy"], expected, atol=1e-4)
    assert trace["patch_starts"][0] == 0 and all(trace["entropy"][s] > entropy.theta for s in trace["patch_starts"][1:] if (data[s] & 0xC0) != 0x80)
    # the raw patches, laid out from the starts, are the segmenter's own patches
    bounds = trace["patch_starts"] + [len(data)]
    assert [data[a:b] for a, b in zip(bounds, bounds[1:])] == entropy.patches(TEXT)
    # byte fallback: a byte id (< 256) inside a patch longer than one byte
    lengths = dict(zip(bounds, np.diff(bounds)))
    for token in panel["tokens"]:
        start = max(s for s in bounds[:-1] if s <= token["start"])
        assert token["fallback"] == (token["id"] < 256 and lengths[start] > 1)
    assert any(t["fallback"] for t in panel["tokens"])  # 'café' and the emoji are no patches of a word corpus
    assert all(not t["fallback"] for t in view_data(TEXT, segmenters[:2])["panels"][0]["tokens"])
    html = render_view(view_data(TEXT, [entropy]))
    svg = parse(html).svgs[entropy.spec]
    trace_line = next(s for s in svg if s.get("class") == "trace")
    assert len(trace_line["points"].split()) == len(data)
    assert any(s.get("class") == "theta" for s in svg)


def test_html_has_one_element_per_token_and_escapes(segmenters: list) -> None:
    html = render_view(view_data(TEXT, segmenters), title='a <title> & "quotes"')
    parsed = parse(html)
    assert list(parsed.panels) == [s.spec for s in segmenters]
    for segmenter in segmenters:
        tokens = parsed.panels[segmenter.spec]
        assert len(tokens) == len(segmenter.encode(TEXT))
        # the tokens' shown text, whitespace undone and hex bytes put back, is the text itself
        data = b""
        for token in tokens:  # a partial token shows hex: its bytes are read from its title
            partial = "partial" in token["class"].split()
            data += bytes.fromhex(token["title"].split(" · ")[2]) if partial else unshow(token["shown"]).encode("utf-8")
        assert data == TEXT.encode("utf-8")
    assert "<b>" not in html and "</b>" not in html
    assert '">&lt;</span>' in html and '">&amp;</span>' in html and '">&quot;</span>' in html and '">&#x27;</span>' in html  # bytes: one character a token
    assert "<title>a &lt;title&gt; &amp; &quot;quotes&quot;</title>" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched: no CDN


def test_escape() -> None:
    assert escape('<a href="x">&\'') == "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
    assert "<script>" in page("t", "", js="1;")


def test_visible_whitespace() -> None:
    html = render_view(view_data("a b\nc\td", [get_segmenter("bytes")]))
    shown = [t["shown"] for t in parse(html).panels["bytes"]]
    assert shown == ["a", "·", "b", "↵\n", "c", "→\t", "d"]


def test_long_text_is_cut() -> None:
    view = view_data("x" * 50, [get_segmenter("bytes")], max_chars=10)
    assert view["cut"] and view["chars"] == 10 and len(view["panels"][0]["tokens"]) == 10
    assert "cut to the first 10 characters" in render_view(view)


def test_write_view(tmp_path: Path) -> None:
    target = write_view(tmp_path / "sub" / "v.html", view_data("hi", [get_segmenter("bytes")]))
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in target.parent.iterdir()] == ["v.html"]  # no temporary left


# --- the command --------------------------------------------------------------------------------


def test_cli_view_text_file_and_docs(capsys: pytest.CaptureFixture, tmp_path: Path, word_corpus: str) -> None:
    out = tmp_path / "v.html"
    cli_ok(capsys, "view", "--text", "a <b> c", "-s", "bytes", "--out", out, "-q")
    assert len(parse(out.read_text(encoding="utf-8")).panels["bytes"]) == 7
    text_file = tmp_path / "t.txt"
    text_file.write_text("one\ntwo\n", encoding="utf-8")
    cli_ok(capsys, "view", "--file", text_file, "-s", "bytes,bpe:300", "--corpus", word_corpus, "--out", out, "-q")
    parsed = parse(out.read_text(encoding="utf-8"))
    assert len(parsed.panels["bytes"]) == 8 and "bpe:300" in parsed.panels
    from conftest import val_records

    first = val_records(word_corpus)[:2]
    cli_ok(capsys, "view", "--docs", 2, "-s", "bytes", "--corpus", word_corpus, "--out", out, "-q")
    html = out.read_text(encoding="utf-8")
    assert html.count('class="doc"') == 2
    for record in first:
        assert f"<h2>{record['id']} · " in html
        assert len(record["text"].encode("utf-8")) == int(html.split(f"<h2>{record['id']} · ")[1].split('data-tokens="')[1].split('"')[0])


def test_cli_view_errors(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert "exactly one of --text, --file or --docs" in cli_error(capsys, "view", "-s", "bytes", "--out", tmp_path / "v.html")
    assert "--text and --file" in cli_error(capsys, "view", "--text", "a", "--file", tmp_path / "x.txt", "-s", "bytes")
    assert "--text and --docs" in cli_error(capsys, "view", "--text", "a", "--docs", 2, "-s", "bytes")
    assert "cannot read" in cli_error(capsys, "view", "--file", tmp_path / "missing.txt", "-s", "bytes", "--out", tmp_path / "v.html")
    assert "unknown" in cli_error(capsys, "view", "--text", "a", "-s", "nosuchkind", "--out", tmp_path / "v.html").lower()
    (tmp_path / "dir.html").mkdir()
    assert "is a folder" in cli_error(capsys, "view", "--text", "a", "-s", "bytes", "--out", tmp_path / "dir.html")
    assert not (tmp_path / "v.html").exists()
