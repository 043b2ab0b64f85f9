"""`toklab compare` and `toklab report`: every column on a tiny corpus, compressors, reports, bad input."""

from __future__ import annotations

import collections
import io
import json
import lzma
import math
from pathlib import Path

import numpy as np
import pandas as pd
import py7zr
import pytest
import zstandard

import toklab
from toklab import ToklabError
from toklab.cli import main
from toklab.comparison import COLUMNS, run_compare
from toklab.gpt.flops import REFERENCE_SHAPE
from toklab.measures import train_zstd_dictionary
from toklab.reports import REPORT_FILES, read_report, write_report
from toklab.segmenters.bytes import ByteSegmenter

WORDS = "the cat sat on a mat while tokenisers count bytes merges and entropy of every token".split()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """200 small documents in two sources, with a few multi-byte characters."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.jsonl"
    rows = []
    for i in range(200):
        text = " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(5 + i % 11))
        source = "prose" if i % 3 else "accents"
        if source == "accents":
            text += " café naïve 漢字"
        rows.append(json.dumps({"id": f"doc{i}", "text": text, "source": source}, ensure_ascii=False))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def val_texts(path: Path, fraction: float = 0.3) -> list[tuple[str, str]]:
    corpus = toklab.open_corpus(str(path), val_fraction=fraction)
    return [(d.text, d.source) for d in corpus.val()]


def test_every_column_for_bytes_matches_a_hand_computation(tiny):
    result = run_compare(str(tiny), ["bytes"], compressors=False, val_fraction=0.3)
    row = result.table.iloc[0].to_dict()
    texts = [t for t, _ in val_texts(tiny)]
    data = [t.encode("utf-8") for t in texts]
    n_bytes, n_chars, n_words = sum(map(len, data)), sum(map(len, texts)), sum(len(t.split()) for t in texts)
    counts = np.bincount(np.frombuffer(b"".join(data), dtype=np.uint8), minlength=257)
    assert row["segmenter"] == "bytes" and row["kind"] == "bytes" and row["vocab_size"] == 257 and row["lossless"]
    assert row["tokens"] == n_bytes
    assert row["tokens_per_char"] == pytest.approx(n_bytes / n_chars)
    assert row["chars_per_token"] == pytest.approx(n_chars / n_bytes)
    assert row["bytes_per_token"] == pytest.approx(1.0)
    assert row["tokens_per_word"] == pytest.approx(n_bytes / n_words)
    probs = counts[counts > 0] / n_bytes
    assert row["bits_per_byte"] == pytest.approx(-(probs * np.log2(probs)).sum())  # per token = per byte here
    assert row["renyi_efficiency"] == pytest.approx(np.log2((probs**2.5).sum()) / -1.5 / np.log2(257))
    assert row["vocab_utilisation"] == pytest.approx((counts > 0).sum() / 257)
    assert row["keep_rate_docs"] == 0.0 and row["keep_rate_bytes"] == 0.0  # bytes never reach 0.3 tokens/char
    assert row["train_flops_per_mb"] == pytest.approx((6 * REFERENCE_SHAPE.matmul_params(257) + 12 * 12 * 1024 * 768) * 1e6)
    assert row["mb_per_s"] > 0
    assert list(result.table.columns) == COLUMNS
    assert result.meta["val_documents"] == len(texts) and result.meta["val_bytes"] == n_bytes
    assert_row_equals(row, hand_row([list(d) for d in data], texts, 257))  # one id per byte


def hand_row(ids: list[list[int]], texts: list[str], vocab_size: int) -> dict[str, float]:
    """Every segmentation column, from the token ids of each text, in plain Python (nothing from
    toklab.measures): the definitions as DESIGN.md states them, at threshold 0.3 and for the
    reference GPT (12 layers, d_model 768, context 1024, MLP ratio 4)."""
    n_tokens = sum(map(len, ids))
    n_chars = sum(len(t) for t in texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    counts = collections.Counter(i for doc in ids for i in doc)
    entropy = -sum(c / n_tokens * math.log2(c / n_tokens) for c in counts.values())  # bits per token
    renyi = math.log2(sum((c / n_tokens) ** 2.5 for c in counts.values())) / (1 - 2.5)

    def spaced(text: str) -> bool:  # fewer than half the letters are CJK ideographs (the only unspaced script here)
        return 2 * sum(0x4E00 <= ord(c) <= 0x9FFF for c in text) < sum(c.isalpha() for c in text)

    word_docs = [(len(i), len(t.split())) for i, t in zip(ids, texts) if spaced(t)]
    kept = [len(i) * 10 <= 3 * len(t) for i, t in zip(ids, texts)]  # tokens <= 0.3 x chars, exactly
    flops_per_token = 6 * (12 * (4 + 2 * 4) * 768**2 + vocab_size * 768) + 12 * 12 * 1024 * 768
    return {
        "vocab_size": vocab_size,
        "tokens": n_tokens,
        "tokens_per_char": n_tokens / n_chars,
        "chars_per_token": n_chars / n_tokens,
        "bytes_per_token": n_bytes / n_tokens,
        "tokens_per_word": sum(n for n, _ in word_docs) / sum(w for _, w in word_docs),
        "bits_per_byte": entropy * n_tokens / n_bytes,
        "renyi_efficiency": renyi / math.log2(vocab_size),
        "vocab_utilisation": len(counts) / vocab_size,
        "keep_rate_docs": sum(kept) / len(texts),
        "keep_rate_bytes": sum(len(t.encode("utf-8")) for t, k in zip(texts, kept) if k) / n_bytes,
        "train_flops_per_mb": flops_per_token * n_tokens / n_bytes * 1e6,
    }


def assert_row_equals(row: pd.Series, expected: dict[str, float]) -> None:
    for column, value in expected.items():
        assert row[column] == pytest.approx(value, rel=1e-9), column


def test_trained_bpe_row_matches_a_hand_computation(tiny):
    result = run_compare(str(tiny), ["bpe:300"], compressors=False, val_fraction=0.3)
    seg = toklab.get_segmenter("bpe:300", toklab.open_corpus(str(tiny), val_fraction=0.3))
    texts = [t for t, _ in val_texts(tiny)]
    ids = [seg.encode(t) for t in texts]  # the ids are the segmenter's; every figure from them is computed here
    assert all(seg.decode(i) == t for i, t in zip(ids, texts))
    row = result.table.iloc[0]
    assert (row["segmenter"], row["kind"], row["vocab_size"], row["lossless"]) == ("bpe:300", "bpe", 300, True)
    assert_row_equals(row, hand_row(ids, texts, 300))
    assert 0 < row["keep_rate_docs"] < 1  # a trained BPE compresses some of this text below 0.3 tokens/char


def test_tiktoken_row_on_the_tiny_corpus_matches_a_hand_computation(tiny, shared_tiktoken):
    import tiktoken

    result = run_compare(str(tiny), ["tiktoken:gpt2"], compressors=False, val_fraction=0.3)
    texts = [t for t, _ in val_texts(tiny)]
    encoding = tiktoken.get_encoding("gpt2")
    ids = [encoding.encode(t) for t in texts]  # no special tokens in this text: encode == encode_ordinary
    row = result.table.iloc[0]
    assert (row["segmenter"], row["kind"], row["vocab_size"], row["lossless"]) == ("tiktoken:gpt2", "tiktoken", 50257, True)
    assert_row_equals(row, hand_row(ids, texts, 50257))
    assert 0 < row["keep_rate_docs"] < 1 and 0 < row["keep_rate_bytes"] < 1


def test_compressor_rows_equal_the_libraries_own_sizes(tiny):
    result = run_compare(str(tiny), ["bytes"], val_fraction=0.3)
    table = result.table.set_index("segmenter")
    data = b"".join(t.encode("utf-8") for t, _ in val_texts(tiny))
    bpb = lambda size: 8 * size / len(data)  # noqa: E731
    assert table.loc["zstd-3", "bits_per_byte"] == pytest.approx(bpb(len(zstandard.ZstdCompressor(level=3).compress(data))))
    assert table.loc["zstd-19", "bits_per_byte"] == pytest.approx(bpb(len(zstandard.ZstdCompressor(level=19).compress(data))))
    raw_lzma2 = lzma.compress(data, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}])
    assert table.loc["7z-lzma2", "bits_per_byte"] == pytest.approx(bpb(len(raw_lzma2)))
    for name, filters in [("7z-lzma2", [{"id": py7zr.FILTER_LZMA2, "preset": 9}]), ("7z-ppmd", [{"id": py7zr.FILTER_PPMD}])]:
        buffer = io.BytesIO()
        with py7zr.SevenZipFile(buffer, "w", filters=filters) as archive:
            archive.writestr(data, "val.txt")
        buffer.seek(0)
        with py7zr.SevenZipFile(buffer, "r") as archive:  # the packed size py7zr records in a real archive
            packed = sum(archive.header.main_streams.packinfo.packsizes)
        assert table.loc[name, "bits_per_byte"] == pytest.approx(bpb(packed))
    if "zstd-19-dict" in table.index:
        train = [d.text.encode() for d in toklab.open_corpus(str(tiny), val_fraction=0.3).train()]
        compressor = zstandard.ZstdCompressor(level=19, dict_data=train_zstd_dictionary(train))
        size = sum(len(compressor.compress(t.encode("utf-8"))) for t, _ in val_texts(tiny))
        assert table.loc["zstd-19-dict", "bits_per_byte"] == pytest.approx(bpb(size))
    else:
        assert any("zstd-19-dict" in n for n in result.notes)
    assert (table.loc[["zstd-3", "zstd-19", "7z-lzma2", "7z-ppmd"], "kind"] == "compressor").all()
    assert table.loc["zstd-3", "vocab_size"] != table.loc["zstd-3", "vocab_size"]  # NaN: not a tokeniser


def test_zstd_dictionary_row_on_real_text(shared_corpora):
    result = run_compare(str(shared_corpora / "email"), ["bytes"], max_docs=600, val_fraction=0.2)
    table = result.table.set_index("segmenter")
    assert "zstd-19-dict" in table.index
    # per-document compression with a dictionary beats per-document without one
    val = [d.text.encode() for d in toklab.open_corpus(str(shared_corpora / "email"), max_docs=600, val_fraction=0.2).val()]
    alone = sum(len(zstandard.ZstdCompressor(level=19).compress(v)) for v in val) * 8 / sum(map(len, val))
    assert table.loc["zstd-19-dict", "bits_per_byte"] < alone


def test_per_source_table_and_worst_source(tiny):
    result = run_compare(str(tiny), ["bytes", "bpe:300"], compressors=False, val_fraction=0.3)
    per_source = result.per_source
    pairs = val_texts(tiny)
    seg = toklab.get_segmenter("bpe:300", toklab.open_corpus(str(tiny), val_fraction=0.3))
    for source in ("prose", "accents"):
        texts = [t for t, s in pairs if s == source]
        n_bytes = sum(len(t.encode()) for t in texts)
        assert per_source.loc["bytes", source] == pytest.approx(1.0)
        assert per_source.loc["bpe:300", source] == pytest.approx(n_bytes / sum(len(seg.encode(t)) for t in texts))
    worst = min(("prose", "accents"), key=lambda s: per_source.loc["bpe:300", s])
    assert per_source.loc["bpe:300", "worst_source"] == worst
    assert per_source.loc["bpe:300", "worst_bytes_per_token"] == pytest.approx(per_source.loc["bpe:300", worst])
    assert list(per_source.index) == ["bytes", "bpe:300"]


def test_tiktoken_gpt2_counts_equal_tiktoken(shared_corpora, shared_tiktoken):
    import tiktoken

    result = run_compare(str(shared_corpora / "sotu"), ["tiktoken:gpt2"], compressors=False, val_fraction=0.2)
    texts = [d.text for d in toklab.open_corpus(str(shared_corpora / "sotu"), val_fraction=0.2).val()]
    encoding = tiktoken.get_encoding("gpt2")
    tokens = sum(len(encoding.encode_ordinary(t)) for t in texts)
    row = result.table.iloc[0]
    assert row["tokens"] == tokens
    assert row["bytes_per_token"] == pytest.approx(sum(len(t.encode()) for t in texts) / tokens)
    assert row["tokens_per_char"] == pytest.approx(tokens / sum(len(t) for t in texts))


def test_unavailable_segmenters_are_skipped_with_a_note(tiny, tmp_path, monkeypatch):
    import tiktoken.registry

    import toklab.segmenters.pretrained as pretrained

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setattr(pretrained, "_reachable", lambda host, timeout=0: False)
    result = run_compare(str(tiny), ["bytes", "tiktoken:p50k_base"], compressors=False, val_fraction=0.3)
    assert list(result.table["segmenter"]) == ["bytes"]
    assert any(n.startswith("skipped tiktoken:p50k_base") for n in result.notes)


def test_a_missing_model_file_is_a_mistake_not_a_skip(tiny):
    with pytest.raises(ToklabError, match="/nonexistent/model.model"):
        run_compare(str(tiny), ["bytes", "spm:/nonexistent/model.model"], compressors=False, val_fraction=0.3)


class _LyingSegmenter(ByteSegmenter):
    """Claims to be lossless but drops case on decode."""

    def decode(self, ids):
        return super().decode(ids).lower()


def test_a_segmenter_that_fails_its_round_trip_is_flagged(tiny, monkeypatch):
    import toklab.segmenters as segmenters

    monkeypatch.setattr(segmenters, "get_segmenters", lambda specs, corpus, progress=False: ([_LyingSegmenter()], []))
    upper = tiny.parent / "upper.jsonl"
    upper.write_text("\n".join(json.dumps({"id": f"u{i}", "text": f"Upper Case {i}"}) for i in range(50)) + "\n")
    result = run_compare(str(upper), ["bytes"], compressors=False, val_fraction=0.5)
    assert not result.table.iloc[0]["lossless"]
    assert any("do not round-trip" in n for n in result.notes)


def test_empty_validation_split_is_a_clear_error(tiny):
    with pytest.raises(ToklabError, match="validation split .* is empty"):
        run_compare(str(tiny), ["bytes"], val_fraction=0.0)


def test_report_files_and_round_trip(tiny, tmp_path):
    result = run_compare(str(tiny), ["bytes", "bpe:300"], val_fraction=0.3)
    out = write_report(result, tmp_path / "report")
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    assert (out / "bits_per_byte.png").read_bytes()[:4] == b"\x89PNG"
    again = read_report(out)
    pd.testing.assert_frame_equal(again.table, result.table, check_dtype=False)
    pd.testing.assert_frame_equal(again.per_source, result.per_source, check_dtype=False)
    assert again.meta == json.loads(json.dumps(result.meta)) and again.notes == result.notes
    table_csv = pd.read_csv(out / "table.csv")
    assert list(table_csv["segmenter"]) == list(result.table["segmenter"])
    # the figures in table.csv and table.md are the hand-computed ones (MB/s aside: it is a timing)
    texts = [t for t, _ in val_texts(tiny)]
    data = [t.encode("utf-8") for t in texts]
    seg = toklab.get_segmenter("bpe:300", toklab.open_corpus(str(tiny), val_fraction=0.3))
    expected = {"bytes": hand_row([list(d) for d in data], texts, 257), "bpe:300": hand_row([seg.encode(t) for t in texts], texts, 300)}
    for name, row in expected.items():
        assert_row_equals(table_csv.set_index("segmenter").loc[name], row)
    markdown = (out / "table.md").read_text()
    lines = markdown.splitlines()
    assert lines[2] == "| segmenter | vocab | tok/char | char/tok | bytes/tok | tok/word | bits/byte | Rényi | vocab used | keep docs | keep bytes | MB/s | lossless | TFLOPs/MB |"
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[4:] if line.startswith("| ")]
    cells = {row[0]: row for row in rows}
    assert list(cells) == list(result.table["segmenter"])
    for name, row in expected.items():
        shown = cells[name][:11] + cells[name][12:]  # all but MB/s
        assert shown == [
            name, f"{row['vocab_size']:,}", f"{row['tokens_per_char']:.3f}", f"{row['chars_per_token']:.2f}", f"{row['bytes_per_token']:.2f}",
            f"{row['tokens_per_word']:.2f}", f"{row['bits_per_byte']:.3f}", f"{row['renyi_efficiency']:.3f}", f"{100 * row['vocab_utilisation']:.1f}%",
            f"{100 * row['keep_rate_docs']:.1f}%", f"{100 * row['keep_rate_bytes']:.1f}%", "yes", f"{row['train_flops_per_mb'] / 1e12:,.0f}",
        ], name
    zstd3 = 8 * len(zstandard.ZstdCompressor(level=3).compress(b"".join(data))) / sum(map(len, data))
    assert cells["zstd-3"][:11] == ["zstd-3", "", "", "", "", "", f"{zstd3:.3f}", "", "", "", ""] and cells["zstd-3"][12:] == ["yes", ""]
    n_bytes = sum(map(len, data))
    assert f"Measured on the validation split of {tiny}: {len(texts)} documents, {n_bytes:,} bytes (val fraction 0.3)." in markdown
    assert "tokens <= 0.3 x chars" in markdown and "(gpt2-124m: 12 layers, d_model 768, context 1024)" in markdown


def test_an_interrupted_report_leaves_nothing_half_written(tiny, tmp_path, monkeypatch):
    import toklab.reports as reports

    result = run_compare(str(tiny), ["bytes"], compressors=False, val_fraction=0.3)
    out = write_report(result, tmp_path / "report")
    before = (out / "results.json").read_text()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reports, "_plot_bits", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_report(result, tmp_path / "report")
    with pytest.raises(KeyboardInterrupt):
        write_report(result, tmp_path / "fresh")
    assert (out / "results.json").read_text() == before  # the old report is whole
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary folders left


def test_report_refuses_a_folder_of_other_files(tiny, tmp_path):
    result = run_compare(str(tiny), ["bytes"], compressors=False, val_fraction=0.3)
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(ToklabError, match="holds no toklab compare report"):
        write_report(result, tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep"


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def test_cli_compare_and_report(capsys, tiny, tmp_path):
    out_dir = tmp_path / "rep"
    code, _, err = run(capsys, "compare", "-c", str(tiny), "--val-fraction", "0.3", "-s", "bytes,bpe:300,regex=gpt2", "-s", "spm:/nope.model", "--out", str(out_dir))
    assert code == 2 and "/nope.model" in err and not out_dir.exists()
    code, out, err = run(capsys, "compare", "-c", str(tiny), "--val-fraction", "0.3", "-s", "bytes,bpe:300,regex=gpt2", "--out", str(out_dir))
    assert code == 0, err
    assert "bpe:300,regex=gpt2" in out and "zstd-19" in out and "7z-ppmd" in out and "worst source" in out
    assert (out_dir / "results.json").is_file()
    # the bytes and zstd-3 rows, as printed, hold the hand-computed figures (MB/s aside: a timing)
    texts = [t for t, _ in val_texts(tiny)]
    data = [t.encode("utf-8") for t in texts]
    row = hand_row([list(d) for d in data], texts, 257)
    zstd3 = 8 * len(zstandard.ZstdCompressor(level=3).compress(b"".join(data))) / sum(map(len, data))
    compression = f"bytes 257 {row['tokens_per_char']:.3f} 1.00 {row['tokens_per_word']:.2f} {row['bits_per_byte']:.3f} yes"
    cost = f"bytes {row['renyi_efficiency']:.3f} {100 * row['vocab_utilisation']:.1f}% 0.0% 0.0% "
    flops = f" {row['train_flops_per_mb'] / 1e12:,.0f}"
    caption = f"Measured on the validation split of {tiny}: {len(texts)} documents, {sum(map(len, data)):,} bytes (val fraction 0.3)."
    code, again, _ = run(capsys, "report", str(out_dir))
    assert code == 0 and "bpe:300,regex=gpt2" in again
    for printed in (out, again):  # compare prints the tables, report prints them again from the saved run
        lines = [" ".join(line.split()) for line in printed.splitlines()]
        assert compression in lines
        assert [line for line in lines if line.startswith(cost) and line.endswith(flops)] != [], cost
        assert f"zstd-3 {zstd3:.3f} yes" in lines
        assert "".join(caption.split()) in "".join(printed.split())  # however the caption wraps
    code, _, err = run(capsys, "report", str(tmp_path))
    assert code == 2 and "holds no toklab report" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--val-fraction", "0"], "validation split"),
        (["-s", "bpee:3k"], "unknown segmenter kind 'bpee'"),
        (["--threshold", "0"], "--threshold must be positive"),
    ],
)
def test_cli_compare_errors(capsys, tiny, tmp_path, args, message):
    code, _, err = run(capsys, "compare", "-c", str(tiny), "--out", str(tmp_path / "r"), *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_default_segmenters_include_available_tiktoken(shared_tiktoken):
    from toklab.comparison import _collapse_tiktoken_notes, default_segmenters

    assert default_segmenters()[:3] == ["bytes", "bpe:32k", "unigram:32k"]
    assert "tiktoken:cl100k_base" in default_segmenters()
    notes = _collapse_tiktoken_notes(["skipped tiktoken:gpt2: offline", "skipped tiktoken:o200k_base: offline", "other"])
    assert notes[0] == "other" and "gpt2, o200k_base" in notes[1]


def test_split_specs_keeps_options_with_their_spec():
    from toklab.segmenters.registry import split_specs

    assert split_specs("bytes,bpe:32k,regex=o200k,min_frequency=3,unigram:8k") == ["bytes", "bpe:32k,regex=o200k,min_frequency=3", "unigram:8k"]
    assert split_specs(["bytes", "entropy:target=4.5,order=3"]) == ["bytes", "entropy:target=4.5,order=3"]


def test_terminal_tables_fit_80_columns_untruncated(tiny):
    from rich.console import Console

    from toklab.reports import main_tables, per_source_table

    result = run_compare(str(tiny), ["bytes", "bpe:300,regex=gpt2"], val_fraction=0.3)
    console = Console(width=80, record=True, file=io.StringIO())
    for table in main_tables(result):
        console.print(table)
    console.print(per_source_table(result, top=6, width=80))
    text = console.export_text()
    assert "…" not in text
    assert "bpe:300,regex=gpt2" in text and "7z-ppmd" in text and "worst source" in text
