"""`toklab view` pages in headless Chromium: the DOM the browser builds has one token element per
token in each panel, the entropy trace is drawn, and the page's scripts ran without an error (the
page's `window.onerror` would have written it into #toklab-errors; a broken script shows it does).
Skipped where no Chromium is installed (Debian: `apt-get install chromium`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import write_word_corpus
from test_view import TEXT, parse

import toklab
from toklab.html import page
from toklab.segmenters import get_segmenter
from toklab.view import view_data, write_view

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome", "chrome") if shutil.which(name)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: the browser checks need headless Chromium (apt-get install chromium)")


def dump_dom(path: Path) -> str:
    """The DOM after the page's scripts ran, as headless Chromium serialises it."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--dump-dom", path.resolve().as_uri()],
        capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def errors_box(dom: str) -> str:
    return dom.split('<div id="toklab-errors">', 1)[1].split("</div>", 1)[0]


def test_page_in_chromium(tmp_path: Path) -> None:
    corpus = toklab.open_corpus(write_word_corpus(tmp_path / "words.jsonl", 200, 50, 0))
    segmenters = [get_segmenter("bytes"), get_segmenter("bpe:300", corpus), get_segmenter("entropy:300,target=3", corpus)]
    try:
        segmenters.append(get_segmenter("tiktoken:o200k_base"))
    except toklab.ToklabError:  # offline without the vocabulary: the other three still make the point
        pass
    target = write_view(tmp_path / "view.html", view_data(TEXT, segmenters))
    html = dump_dom(target)
    dom = parse(html)
    assert dom.ready == "1" and dom.errors is None and errors_box(html) == ""
    for segmenter in segmenters:
        assert len(dom.panels[segmenter.spec]) == len(segmenter.encode(TEXT)), segmenter.spec
    entropy = segmenters[2].spec
    trace = [s for s in dom.svgs[entropy] if s.get("class") == "trace"]
    assert len(trace) == 1 and len(trace[0]["points"].split()) == len(TEXT.encode("utf-8"))
    assert all(not dom.svgs[s.spec] for s in segmenters if s.spec != entropy)


def test_a_broken_script_is_caught(tmp_path: Path) -> None:
    """What the check above would see if the page's script failed (a clean page: the test above)."""
    broken = tmp_path / "broken.html"
    broken.write_text(page("broken", "<p>fine</p>", js="noSuchFunction();"), encoding="utf-8")
    dom = dump_dom(broken)
    assert parse(dom).errors == "1"
    assert "noSuchFunction" in errors_box(dom)
