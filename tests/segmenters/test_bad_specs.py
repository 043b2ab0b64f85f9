"""Mistakes in segmenter specs, compare options, report folders and saved segmenters: each is one
`ToklabError` line (`error: ...`, exit 2 from the CLI) found before any work, and nothing the
user owns is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import toklab
from toklab import ToklabError
from toklab.cli import main
from toklab.comparison import run_compare
from toklab.reports import REPORT_FILES, read_report, write_report
from toklab.segmenters import get_segmenter, get_segmenters, load_segmenter, registry
from toklab.segmenters.bytes import ByteSegmenter

WORDS = "the cat sat on a mat while tokenisers count bytes merges and entropy of every token café naïve 漢字 quick brown fox jumps over lazy dog".split()


@pytest.fixture(autouse=True)
def isolated_toklab_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("toklab-cache")
    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(cache))
    return cache


def write_corpus(path: Path, n: int = 300) -> Path:
    rows = []
    for i in range(n):
        text = " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(8 + i % 13))
        rows.append(json.dumps({"id": f"d{i}", "text": text, "source": "prose" if i % 3 else "accents"}, ensure_ascii=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "tiny.jsonl")


@pytest.fixture()
def corpus(corpus_file: Path):
    return toklab.open_corpus(str(corpus_file), val_fraction=0.2)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def cli_error(capsys, *args: str, after_work: bool = False) -> str:
    """Run the CLI expecting a user error: exit 2, one `error:` line on stderr, no traceback.
    With `after_work`, progress lines may come before it (the error is found after some work)."""
    code, out, err = run_cli(capsys, *args)
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    if after_work:
        assert [line for line in lines if line.startswith("error:")] == lines[-1:], err
        return lines[-1]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    return lines[0]


def no_training(*args, **kwargs):
    raise AssertionError("a segmenter was trained although a spec was wrong")


@pytest.fixture()
def forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "train_segmenter", no_training)


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(ToklabError) as err:
        call(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message, message
    return message


# --- 1. options are bounded when the spec is parsed ------------------------------------------------


BAD_OPTIONS = [
    ("bpe:2k,min_frequency=-1", ["min_frequency=-1", "between 0 and"]),
    ("bpe:2k,min_frequency=lots", ["min_frequency=lots", "whole number"]),
    ("bpe:99999999999", ["vocabulary size", "at least 258", "at most 4,194,304"]),
    ("bpe:1k,max_token_length=0", ["max_token_length=0", "between 1 and"]),
    ("bpe:1k,max_token_length=-3", ["max_token_length=-3", "between 1 and"]),
    ("bpe:1k,fast=maybe", ["fast=maybe"]),
    ("unigram:99999999999", ["vocabulary size", "at most 4,194,304"]),
    ("unigram:258", ["vocabulary size", "at least 259"]),
    ("spm-bpe:1k,num_threads=5000", ["num_threads=5000", "between 1 and 1,024"]),
    ("unigram:1k,max_sentence_length=99999999999", ["max_sentence_length=99999999999", "between 16 and"]),
    ("unigram:1k,input_sentence_size=99999999999999999999", ["input_sentence_size", "between 0 and"]),
    ("unigram:1k,input_sentence_size=-1", ["input_sentence_size=-1"]),
    ("unigram:1k,character_coverage=nan", ["character_coverage=nan"]),
    ("entropy:99999999999", ["vocabulary size", "at most 4,194,304"]),
    ("entropy:1k,order=0", ["order=0", "between 1 and 7"]),
    ("entropy:1k,max_len=0", ["max_len=0", "between 1 and"]),
    ("entropy:1k,calibration_bytes=-5", ["calibration_bytes=-5"]),
    ("entropy:1k,max_train_bytes=0", ["max_train_bytes=0"]),
    ("entropy:1k,target=0.5", ["target=0.5", "at least 1"]),
    ("entropy:1k,target=8,max_len=4", ["target=8", "max_len=4"]),
    ("entropy:1k,split_utf8=maybe", ["split_utf8=maybe", "true or false"]),
    ("entropy:1k,smoothing=kneser", ["unknown smoothing 'kneser'"]),
    ("entropy:1k,model=transformer,steps=0", ["steps=0", "between 1 and"]),
    ("entropy:1k,model=transformer,n_head=3", ["d_model", "n_head"]),
    ("zstd-dict:99999999999", ["vocabulary size", "at most 4,194,304"]),
    ("zstd-dict:1k,d=5", ["d=5"]),
    ("zstd-dict:1k,f=40", ["f=40", "between 0 and 31"]),
    ("zstd-dict:1k,accel=11", ["accel=11", "between 0 and 10"]),
    ("zstd-dict:1k,steps=-1", ["steps=-1"]),
    ("zstd-dict:1k,dict_size=10", ["dict_size=10"]),
    ("zstd-dict:1k,k=99999999999", ["k=99999999999"]),
    ("zstd-dict:1k,sample_bytes=0", ["sample_bytes=0"]),
]


@pytest.mark.parametrize("spec, words", BAD_OPTIONS)
def test_out_of_range_options_are_refused_before_training(spec, words, corpus, forbid_training):
    message = error_of(get_segmenter, spec, corpus, cache=False)
    for word in words:
        assert word in message, message
    # the CLI asks whether a spec trains before it opens a corpus: the mistake shows there already
    assert error_of(registry.needs_training_corpus, spec) == message


def test_a_huge_bpe_vocabulary_is_an_error_not_an_abort(corpus_file, tmp_path):
    """tokenizers aborts the whole process (SIGABRT) for bpe:99999999999; it must never see it."""
    env = {**os.environ, "TOKLAB_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "toklab", "tokenizer", "encode", "bpe:99999999999", "--text", "hi", "--corpus", str(corpus_file)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "vocabulary size" in lines[0], done.stderr


def test_options_of_the_kinds_that_do_not_train(tmp_path, forbid_training):
    assert "takes no arguments" in error_of(get_segmenter, "bytes:5")
    assert "takes no" in error_of(get_segmenter, "bytes,colour=red")
    assert "colour" in error_of(registry.needs_training_corpus, "tiktoken:cl100k_base,colour=red")
    assert "nonesuch" in error_of(registry.needs_training_corpus, "tiktoken:nonesuch")
    assert "/nonexistent.model" in error_of(registry.needs_training_corpus, "spm:/nonexistent.model")
    assert "/nonexistent/tokenizer.json" in error_of(registry.needs_training_corpus, "hf:/nonexistent/tokenizer.json")
    # names the system refuses as paths (too long) are one-line errors too, as are absurd sizes
    for spec in ["hf:" + "a/" * 3000, "spm:" + "x" * 5000, "tiktoken:" + "x" * 5000 + ".tiktoken", "bpe:" + "9" * 400]:
        assert len(error_of(get_segmenter, spec)) < 400


# --- 2. non-finite numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, option",
    [
        ("entropy:theta=nan", "theta=nan"),
        ("entropy:theta=inf", "theta=inf"),
        ("entropy:theta=-inf", "theta=-inf"),
        ("entropy:target=nan", "target=nan"),
        ("entropy:target=inf", "target=inf"),
        ("entropy:1k,rule=both,relative=nan", "relative=nan"),
    ],
)
def test_non_finite_entropy_thresholds_are_refused(spec, option, corpus, forbid_training):
    message = error_of(get_segmenter, spec, corpus, cache=False)
    assert option in message and "finite" in message


# --- 3. compare: a mistake in a spec is an error before any work ---------------------------------


@pytest.mark.parametrize(
    "specs, words",
    [
        ("bpe:300,colour=blue", ["colour"]),
        ("bpe:300,hf:/nonexistent/tokenizer.json", ["/nonexistent/tokenizer.json"]),
        ("bpe:300,spm:/nonexistent.model", ["/nonexistent.model"]),
        ("bpe:300,tiktoken:nonesuch", ["nonesuch"]),
        ("bpe:300,bytes:5", ["takes no arguments"]),
        ("bpe:300,bpe:100", ["at least 258"]),
        ("bpe:300,entropy:theta=nan", ["theta=nan"]),
        (",", ["no segmenter"]),
    ],
)
def test_compare_refuses_spec_mistakes_before_any_work(capsys, corpus_file, tmp_path, forbid_training, specs, words):
    out = tmp_path / "rep"
    line = cli_error(capsys, "compare", "-c", str(corpus_file), "--val-fraction", "0.2", "--no-compressors", "-s", specs, "--out", str(out))
    for word in words:
        assert word in line, line
    assert not out.exists()


def test_compare_and_encode_agree_on_mistakes(capsys, corpus_file, tmp_path):
    for spec in ["bytes:5", "spm:/nonexistent.model", "tiktoken:nonesuch", "bpe:100"]:
        encode = cli_error(capsys, "tokenizer", "encode", spec, "--text", "hi", "--corpus", str(corpus_file))
        compare = cli_error(capsys, "compare", "-c", str(corpus_file), "--no-compressors", "-s", spec, "--out", str(tmp_path / "rep"))
        assert encode == compare


def test_get_segmenters_checks_every_spec_and_file_before_training(corpus, tmp_path, forbid_training):
    junk = tmp_path / "junk.json"
    junk.write_text("{ this is not a tokenizer")
    assert str(junk) in error_of(get_segmenters, ["bpe:300", f"hf:{junk}"], corpus)
    saved = tmp_path / "saved"
    ByteSegmenter().save(saved)
    (saved / registry.MANIFEST).write_text("[1, 2")
    assert registry.MANIFEST in error_of(get_segmenters, ["bpe:300", str(saved)], corpus)
    assert "no segmenter" in error_of(get_segmenters, [], corpus)


@pytest.fixture()
def offline_tiktoken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No tiktoken vocabulary cached and no network: tiktoken encodings are unavailable."""
    import tiktoken.registry

    import toklab.segmenters.pretrained as pretrained

    empty = tmp_path / "empty-tiktoken-cache"
    empty.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setattr(pretrained, "_reachable", lambda host, timeout=0: False)


def test_an_unavailable_pretrained_vocabulary_is_a_skip_with_a_note(corpus, offline_tiktoken, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    segs, notes = get_segmenters(["bytes", "tiktoken:cl100k_base", "hf:someorg/somemodel"], corpus)
    assert [s.spec for s in segs] == ["bytes"]
    assert len(notes) == 2 and notes[0].startswith("skipped tiktoken:cl100k_base: ") and notes[1].startswith("skipped hf:someorg/somemodel: ")
    message = error_of(get_segmenters, ["tiktoken:cl100k_base", "tiktoken:gpt2"], corpus)
    assert "tiktoken:cl100k_base" in message and "tiktoken:gpt2" in message


def test_compare_where_every_segmenter_is_unavailable_is_an_error(capsys, corpus_file, tmp_path, offline_tiktoken):
    out = tmp_path / "rep"
    code, _, err = run_cli(capsys, "compare", "-c", str(corpus_file), "--no-compressors", "-s", "bytes,tiktoken:cl100k_base", "--out", str(out))
    assert code == 0 and "skipped tiktoken:cl100k_base" in " ".join(err.split())
    shutil.rmtree(out)
    line = cli_error(capsys, "compare", "-c", str(corpus_file), "-s", "tiktoken:cl100k_base", "--out", str(out))
    assert "tiktoken:cl100k_base" in line
    assert not out.exists()


# --- 4. repeated segmenters -----------------------------------------------------------------------


def test_a_repeated_segmenter_is_refused_up_front(capsys, corpus_file, corpus, tmp_path, forbid_training):
    out = tmp_path / "rep"
    line = cli_error(capsys, "compare", "-c", str(corpus_file), "--no-compressors", "-s", "bytes,bytes", "--out", str(out))
    assert "bytes" in line and "twice" in line
    assert not out.exists()
    assert "twice" in error_of(get_segmenters, ["bpe:2k", "bpe:2000"], corpus)
    assert "twice" in error_of(get_segmenters, ["bpe:2k,regex=gpt2,min_frequency=3", "bpe:2k,min_frequency=3,regex=gpt2"], corpus)
    ByteSegmenter().save(tmp_path / "saved")
    assert "twice" in error_of(get_segmenters, [str(tmp_path / "saved"), str(tmp_path / "saved") + "/"], corpus)


def test_different_specs_with_the_same_name_get_their_own_rows(corpus, tmp_path):
    ByteSegmenter().save(tmp_path / "saved")  # a saved segmenter is named by the spec it was made from: "bytes"
    result = run_compare(corpus, ["bytes", str(tmp_path / "saved")], compressors=False)
    names = list(result.table["segmenter"])
    assert len(names) == 2 and len(set(names)) == 2 and names[0] == "bytes"
    assert list(result.per_source.index) == names


# --- 5. the Cramming threshold --------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [float("inf"), float("nan"), float("-inf"), 0.0, -1.0])
def test_threshold_must_be_positive_and_finite(corpus, threshold):
    assert "threshold" in error_of(run_compare, corpus, ["bytes"], compressors=False, threshold=threshold)


def test_a_huge_threshold_keeps_everything(corpus):
    result = run_compare(corpus, ["bytes"], compressors=False, threshold=1e300)
    assert result.table.loc[0, "keep_rate_docs"] == 1.0 and result.table.loc[0, "keep_rate_bytes"] == 1.0


@pytest.mark.parametrize("threshold", ["inf", "nan", "-1"])
def test_cli_threshold_must_be_positive_and_finite(capsys, corpus_file, tmp_path, threshold):
    out = tmp_path / "rep"
    line = cli_error(capsys, "compare", "-c", str(corpus_file), "--no-compressors", "-s", "bytes", "--threshold", threshold, "--out", str(out))
    assert "threshold" in line
    assert not out.exists()


# --- 6. report folders toklab cannot read ---------------------------------------------------------


@pytest.fixture(scope="module")
def saved_report(corpus_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = run_compare(str(corpus_file), ["bytes"], compressors=False, val_fraction=0.2)
    return write_report(result, tmp_path_factory.mktemp("report") / "rep")


def _without(payload: dict, key: str) -> dict:
    return {k: v for k, v in payload.items() if k != key}


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: {},
        lambda p: [],
        lambda p: None,
        lambda p: "a string",
        lambda p: _without(p, "table"),
        lambda p: _without(p, "meta"),
        lambda p: _without(p, "per_source_columns"),
        lambda p: {**p, "table": 5},
        lambda p: {**p, "table": [{"kind": "bytes"}]},
        lambda p: {**p, "table": ["row"]},
        lambda p: {**p, "meta": []},
        lambda p: {**p, "meta": _without(p["meta"], "val_bytes")},
        lambda p: {**p, "per_source": [{"prose": 1.0}]},
        lambda p: {**p, "notes": "a note"},
    ],
)
def test_report_on_a_results_file_of_the_wrong_shape(capsys, saved_report, tmp_path, damage):
    payload = json.loads((saved_report / "results.json").read_text())
    folder = tmp_path / "rep"
    shutil.copytree(saved_report, folder)
    (folder / "results.json").write_text(json.dumps(damage(payload)))
    assert "not a compare report toklab can read" in error_of(read_report, folder)
    line = cli_error(capsys, "report", str(folder))
    assert "not a compare report toklab can read" in line and str(folder) in line


def test_report_still_reads_a_good_results_file(capsys, saved_report):
    code, out, _ = run_cli(capsys, "report", str(saved_report))
    assert code == 0 and "bytes" in out


# --- 7. re-writing a report keeps the user's files; --out never touches the corpus ------------------


def test_rewriting_a_report_keeps_other_files(capsys, corpus_file, tmp_path):
    out = tmp_path / "rep"
    args = ["compare", "-c", str(corpus_file), "--val-fraction", "0.2", "--no-compressors", "--out", str(out)]
    code, _, err = run_cli(capsys, *args, "-s", "bytes")
    assert code == 0, err
    (out / "NOTES.txt").write_text("notes\n")
    (out / "mine").mkdir()
    (out / "mine" / "draft.md").write_text("draft\n")
    code, _, err = run_cli(capsys, *args, "-s", "bytes,bpe:300")
    assert code == 0, err
    assert (out / "NOTES.txt").read_text() == "notes\n" and (out / "mine" / "draft.md").read_text() == "draft\n"
    assert "bpe:300" in (out / "table.md").read_text()
    code, _, err = run_cli(capsys, "report", str(out), "--rewrite")
    assert code == 0, err
    assert (out / "NOTES.txt").read_text() == "notes\n" and (out / "mine" / "draft.md").read_text() == "draft\n"
    assert sorted(p.name for p in out.iterdir()) == sorted(["NOTES.txt", "mine", *REPORT_FILES])


def test_compare_out_inside_the_corpus_is_refused(capsys, tmp_path):
    data = write_corpus(tmp_path / "data" / "part" / "docs.jsonl")
    before = data.read_bytes()
    inside = tmp_path / "data" / "part" / "rep"
    # (found once the run is done, as toklab/cli.py does not pass --out to run_compare; run_compare(out=...) checks it first)
    line = cli_error(capsys, "compare", "-c", str(data.parent), "--no-compressors", "-s", "bytes", "--out", str(inside), after_work=True)
    assert "inside the input" in line
    assert not inside.exists()
    line = cli_error(capsys, "compare", "-c", str(data), "--no-compressors", "-s", "bytes", "--out", str(tmp_path / "data"), after_work=True)
    assert "contains the input" in line
    assert data.read_bytes() == before and sorted(p.name for p in (tmp_path / "data").iterdir()) == ["part"]
    with pytest.raises(ToklabError, match="inside the input"):
        write_report(run_compare(str(data.parent), ["bytes"], compressors=False), inside)
    with pytest.raises(ToklabError, match="contains the input"):
        run_compare(str(data), ["bytes"], compressors=False, out=tmp_path / "data", threshold=0.3)
    assert not inside.exists() and data.read_bytes() == before


# --- 8. damaged saved segmenters ------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(corpus_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A saved segmenter of every kind with data files."""
    import base64

    root = tmp_path_factory.mktemp("saved")
    corpus = toklab.open_corpus(str(corpus_file), val_fraction=0.2)
    folders = {}
    for name, spec in [("bpe", "bpe:300"), ("unigram", "unigram:300"), ("zstd-dict", "zstd-dict:300"), ("entropy", "entropy:300,target=3")]:
        folders[name] = get_segmenter(spec, corpus, cache=False).save(root / name)
    ranks = root / "small.tiktoken"
    ranks.write_bytes(b"".join(base64.b64encode(bytes([b])) + b" %d\n" % b for b in range(256)))
    folders["tiktoken"] = get_segmenter(f"tiktoken:{ranks}").save(root / "tiktoken")
    folders["hf"] = get_segmenter(f"hf:{folders['bpe'] / 'tokenizer.json'}").save(root / "hf")
    return folders


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _garbage(data: bytes) -> bytes:
    return b"\x00\xffnot what toklab wrote\xfe\x01" * 7


def _empty(data: bytes) -> bytes:
    return b""


@pytest.mark.parametrize(
    "kind, name, damage",
    [
        ("bpe", "tokenizer.json", _truncate),
        ("bpe", "tokenizer.json", _garbage),
        ("bpe", "tokenizer.json", lambda d: b"{}"),
        ("bpe", "bpe.json", _garbage),
        ("bpe", "bpe.json", lambda d: b"{}"),
        ("unigram", "tokenizer.model", _truncate),
        ("unigram", "tokenizer.model", _garbage),
        ("unigram", "tokenizer.model", _empty),
        ("zstd-dict", "strings.txt", _garbage),
        ("zstd-dict", "strings.txt", _truncate),
        ("zstd-dict", "zstd_dict.json", _garbage),
        ("entropy", "patches.txt", _garbage),
        ("entropy", "patches.txt", _truncate),
        ("entropy", "entropy.json", _truncate),
        ("entropy", "ngram.npz", _truncate),
        ("entropy", "ngram.json", _garbage),
        ("tiktoken", "ranks.tiktoken", _garbage),
        ("tiktoken", "tiktoken.json", lambda d: b"{}"),
        ("hf", "tokenizer.json", _truncate),
        ("bpe", "toklab-segmenter.json", lambda d: b"[]"),
        ("bpe", "toklab-segmenter.json", lambda d: b'{"kind": "bpe", "vocab_size": "many"}'),
    ],
)
def test_a_damaged_saved_segmenter_is_a_one_line_error(capsys, saved, tmp_path, kind, name, damage):
    folder = tmp_path / kind
    shutil.copytree(saved[kind], folder)
    (folder / name).write_bytes(damage((folder / name).read_bytes()))
    message = error_of(load_segmenter, folder)
    assert name in message, message
    line = cli_error(capsys, "tokenizer", "encode", str(folder), "--text", "the cat sat")
    assert name in line
    assert error_of(get_segmenter, str(folder)) == message


def test_an_undamaged_saved_segmenter_still_loads(saved):
    for folder in saved.values():
        seg = load_segmenter(folder)
        assert seg.decode(seg.encode("the cat sat, café")) == "the cat sat, café"
