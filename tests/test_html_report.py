"""`toklab report DIR --html`: a compare, filter, pretrain or study folder as one self-contained page."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from cli_helpers import cli_error, cli_ok
from conftest import REPO, val_records, write_word_corpus
from test_view import parse

from toklab.html_report import folder_kind

STUDY_EXAMPLE = REPO / "reports" / "examples" / "study-smoke"


def page_of(folder: Path) -> str:
    return (folder / "report.html").read_text(encoding="utf-8")


def images(html: str) -> list[str]:
    return re.findall(r'<img class="plot" alt="[^"]*" src="([^"]*)"', html)


def table_rows(html: str, heading: str) -> int:
    """Body rows of the table after <h3>heading</h3>."""
    part = html.split(f"<h3>{heading}</h3>", 1)[1].split("</table>", 1)[0]
    return part.split("<tbody>", 1)[1].count("<tr>")


def test_study_folder(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    folder = tmp_path / "study"
    shutil.copytree(STUDY_EXAMPLE, folder)
    cli_ok(capsys, "report", folder, "--html")
    html = page_of(folder)
    table = json.loads((STUDY_EXAMPLE / "table.json").read_text())
    assert table_rows(html, "rows") == len(table["rows"]) and table_rows(html, "runs") == len(table["runs"])
    pngs = sorted(STUDY_EXAMPLE.glob("*.png"))
    assert len(pngs) == 2
    assert [s.startswith("data:image/png;base64,") for s in images(html)] == [True] * len(pngs)
    import base64

    assert base64.b64decode(images(html)[0].split(",", 1)[1]) == pngs[0].read_bytes()
    for note in table["notes"]:
        assert note.replace("<", "&lt;").replace(">", "&gt;") in html
    assert "http://" not in html and "https://" not in html
    assert parse(html).ready is None  # not yet run: the attribute is set by the page's script in a browser
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # written atomically, nothing left


def test_compare_folder_shows_documents_cut_by_its_segmenters(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    corpus = write_word_corpus(tmp_path / "words.jsonl", 60, 30, 1)
    report = tmp_path / "compare"
    cli_ok(capsys, "compare", "-c", corpus, "-s", "bytes,bpe:300", "--out", report, "--no-compressors", "-q")
    cli_ok(capsys, "report", report, "--html", "--docs", 2)
    html = page_of(report)
    assert len(images(html)) == 2
    assert table_rows(html, "table") == 2
    parsed = parse(html)
    docs = val_records(corpus)[:2]
    assert html.count('class="doc"') == 2
    for record in docs:
        assert f"<h2>{record['id']} · " in html
    # bytes: one token per byte of the last document shown (the parser keeps the last panel of each spec)
    assert len(parsed.panels["bytes"]) == len(docs[-1]["text"].encode("utf-8"))
    from toklab.corpus import open_corpus
    from toklab.segmenters import get_segmenter

    assert len(parsed.panels["bpe:300"]) == len(get_segmenter("bpe:300", open_corpus(corpus)).encode(docs[-1]["text"]))

    # the corpus changed since the run: said, not guessed
    Path(corpus).write_text(Path(corpus).read_text() + json.dumps({"id": "new", "text": "more words"}) + "\n")
    cli_ok(capsys, "report", report, "--html")
    html = page_of(report)
    assert "no documents shown: the corpus" in html and 'class="doc"' not in html


def test_compare_folder_without_the_trained_segmenter(capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = write_word_corpus(tmp_path / "words.jsonl", 40, 20, 2)
    report = tmp_path / "compare"
    cli_ok(capsys, "compare", "-c", corpus, "-s", "bytes,bpe:300", "--out", report, "--no-compressors", "-q")
    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(tmp_path / "empty-cache"))  # the trained bpe is not at hand
    cli_ok(capsys, "report", report, "--html")
    html = page_of(report)
    assert "bpe:300 is not shown: it is not in the cache" in html
    assert 'data-spec="bytes"' in html and 'data-spec="bpe:300"' not in html


def test_filter_and_pretrain_folders(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    corpus = write_word_corpus(tmp_path / "words.jsonl", 40, 20, 3)
    report = tmp_path / "filter"
    cli_ok(capsys, "filter", "-c", corpus, "--dry-run", "--by", "zstd", "--report", report, "-q")
    assert folder_kind(report) == "filter"
    cli_ok(capsys, "report", report, "--html")
    html = page_of(report)
    summary = json.loads((report / "summary.json").read_text())
    assert f"<td class=\"\">{summary['documents']:,}</td>" in html
    assert len(images(html)) == len(list(report.glob("*.png"))) >= 1

    run = tmp_path / "run"  # what toklab report reads of a pretrain run: run.json and summary.json
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"segmenter": "bytes", "model": "tiny"}))
    (run / "summary.json").write_text(json.dumps({"segmenter": "bytes", "val_bits_per_byte": 2.5, "notes": ["a <note>"]}))
    assert folder_kind(run) == "pretrain"
    from toklab.html_report import write_html_report

    html = write_html_report(run).read_text(encoding="utf-8")
    assert "<li>a &lt;note&gt;</li>" in html and "<td class=\"\">2.5</td>" in html


def test_errors(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "holds no toklab report" in cli_error(capsys, "report", tmp_path / "empty", "--html")
    assert not (tmp_path / "empty" / "report.html").exists()
    assert "does not exist" in cli_error(capsys, "report", tmp_path / "missing", "--html")
