"""The reading tools: `toklab segmenters`, `toklab cache` (and `cache clear`), `toklab tokenizer
decode`, and `toklab tokenizer encode` reading standard input."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import toklab
from cli_helpers import cli_error, cli_ok
from toklab import ToklabError
from toklab.segmenters import get_segmenter
from toklab.segmenters.registry import available_kinds, check_spec

KINDS = ["bytes", "bpe", "unigram", "spm-bpe", "tiktoken", "hf", "spm", "entropy", "zstd-dict"]
WORDS = "the quick brown fox jumps over the lazy dog while tokenisers count bytes and merges".split()


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty toklab cache of this test's own, beside a folder of files that are not the cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(folder))
    return folder


@pytest.fixture()
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "train.jsonl"
    path.parent.mkdir()
    lines = [json.dumps({"id": str(i), "text": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(30))}) for i in range(200)]
    path.write_text("\n".join(lines) + "\n")
    return path


def pipe_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    """Standard input as a pipe holding `data` (not a terminal)."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


# --- toklab segmenters ----------------------------------------------------------------------------


def test_segmenters_lists_every_kind(capsys):
    out = cli_ok(capsys, "segmenters")
    starts = [line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")]
    for kind in KINDS:
        assert any(re.fullmatch(rf"{re.escape(kind)}([:\[,].*)?", word) for word in starts), (kind, starts)
    assert "path/to/folder" in starts
    flat = " ".join(out.split())
    assert "min_frequency 2 0 to 4,294,967,295" in flat  # an option with its default and range
    assert "vocabulary size: 258 to 4,194,304" in flat


def test_segmenters_json_is_the_registry_description(capsys):
    data = json.loads(cli_ok(capsys, "segmenters", "--json"))
    kinds = [k["kind"] for k in data["kinds"]]
    assert kinds[: len(available_kinds())] == list(available_kinds())
    assert set(KINDS) <= set(kinds) and "(saved folder)" in kinds
    by_kind = {k["kind"]: k for k in data["kinds"]}
    bpe = {o["name"]: o for o in by_kind["bpe"]["options"]}
    assert bpe["min_frequency"]["default"] == 2 and bpe["regex"]["choices"] == ["cl100k", "o200k", "gpt2"]
    assert by_kind["entropy"]["vocab_size"]["default"] == 32000 and by_kind["entropy"]["syntax"].startswith("entropy[:SIZE]")
    assert {a["name"] for a in by_kind["tiktoken"]["known_args"]} >= {"gpt2", "cl100k_base", "o200k_base"}


def test_tiktoken_encodings_available_offline_are_listed(capsys, shared_tiktoken, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(shared_tiktoken))
    data = json.loads(cli_ok(capsys, "segmenters", "--json"))
    tiktoken = next(k for k in data["kinds"] if k["kind"] == "tiktoken")
    assert {a["name"]: a["available"] for a in tiktoken["known_args"]}["cl100k_base"] is True
    assert "available offline now:" in cli_ok(capsys, "segmenters")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(shared_tiktoken.parent / "no-such-folder"))
    import tiktoken.registry

    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # forget what this process loaded already
    data = json.loads(cli_ok(capsys, "segmenters", "--json"))
    tiktoken_kind = next(k for k in data["kinds"] if k["kind"] == "tiktoken")
    assert {a["name"]: a["available"] for a in tiktoken_kind["known_args"]}["cl100k_base"] is False


def test_described_options_are_the_ones_the_checks_enforce():
    """Every bound `toklab segmenters` shows is enforced by the spec check, and every default is accepted."""
    from toklab.segmenters.registry import describe

    checked = 0
    for kind in describe()["kinds"]:
        if not kind["trainable"]:
            continue
        for option in kind["options"]:
            name = option["name"]
            if option["default"] is not None and not (kind["kind"] == "entropy" and name == "target"):
                check_spec(f"{kind['kind']}:1k,{name}={option['default']}")
            if option["type"] == "choice":
                with pytest.raises(ToklabError):
                    check_spec(f"{kind['kind']}:1k,{name}=nosuch")
            elif option["max"] is not None and name != "k":  # k is bounded by dict_size (checked below)
                above = int(option["max"]) + 1
                with pytest.raises(ToklabError, match=name):
                    check_spec(f"{kind['kind']}:1k,{name}={above}")
                checked += 1
    assert checked >= 15
    with pytest.raises(ToklabError, match="k="):
        check_spec("zstd-dict:1k,dict_size=1kib,k=1025")


def test_entropy_transformer_defaults_shown_are_the_models_own():
    import inspect

    from toklab.segmenters.entropy import TRANSFORMER_DEFAULTS
    from toklab.segmenters.entropy_transformer import TransformerEntropyModel

    parameters = inspect.signature(TransformerEntropyModel.train).parameters
    assert TRANSFORMER_DEFAULTS == {k: parameters[k].default for k in TRANSFORMER_DEFAULTS}


def test_spec_help_lists_every_kind(capsys):
    from toklab.cli import SPEC_HELP

    listed = SPEC_HELP.split(": ", 1)[1].split(" (")[0].split(", ")
    assert {re.split("[:,]", item)[0] for item in listed} >= set(KINDS) | set(available_kinds())
    help_text = " ".join(cli_ok(capsys, "tokenizer", "--help").split())
    assert "entropy:target=4.5" in help_text and "zstd-dict:32k" in help_text and "toklab segmenters" in help_text


# --- toklab cache ---------------------------------------------------------------------------------


def fill_cache(cache: Path, corpus_file: Path) -> dict[str, Path]:
    """A cache as toklab writes it: a trained segmenter and token data (really written), a built
    corpus (its manifest) and a temporary an interrupted build left."""
    from toklab.gpt.data import build_token_data

    corpus = toklab.open_corpus(str(corpus_file))
    get_segmenter("bpe:300", corpus)
    build_token_data(corpus, get_segmenter("bytes"))
    built = cache / "corpora" / "tiny"
    built.mkdir(parents=True)
    (built / "part-00000.parquet").write_bytes(b"x" * 100)
    (built / "manifest.json").write_text(json.dumps({"recipe": "tiny", "documents": 3, "bytes": 100}))
    leftover = cache / "segmenters" / ".bpe-1k-0000.99999999.tmp"  # no process 99999999 runs
    leftover.mkdir()
    (leftover / "half.json").write_text("{")
    (segmenter,) = (cache / "segmenters").glob("bpe-300-*")
    (tokens,) = (cache / "tokens").glob("*")
    return {"segmenter": segmenter, "tokens": tokens, "corpus": built, "leftover": leftover}


def test_cache_shows_every_entry_with_kind_and_size(capsys, cache, corpus_file):
    entries = fill_cache(cache, corpus_file)
    out = cli_ok(capsys, "cache")
    flat = " ".join(out.split())
    assert str(cache) in flat and "TOKLAB_CACHE_DIR" in flat
    assert entries["segmenter"].name in flat and "bpe:300 (300 ids)" in flat
    assert entries["tokens"].name in flat and "token data" in flat
    assert "tiny: 3 documents" in flat and "left by an interrupted build" in flat
    data = json.loads(cli_ok(capsys, "cache", "--json"))
    kinds = {Path(e["path"]).name: e["kind"] for e in data["entries"]}
    assert kinds == {entries["segmenter"].name: "segmenters", entries["tokens"].name: "tokens", "tiny": "corpora", entries["leftover"].name: "temporary"}
    on_disk = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    assert data["total_bytes"] == on_disk and f"{on_disk:,} bytes" in flat


def test_cache_manifest_names_match_the_writers():
    from toklab.cache import KINDS
    from toklab.corpus import recipes
    from toklab.gpt import data
    from toklab.segmenters import base

    assert KINDS["segmenters"][1] == base.MANIFEST
    assert KINDS["tokens"][1] == data.MANIFEST
    assert KINDS["corpora"][1] == recipes.MANIFEST


def test_cache_clear_yes_empties_it_and_touches_nothing_outside(capsys, cache, corpus_file, tmp_path):
    entries = fill_cache(cache, corpus_file)
    sibling = tmp_path / "sibling.txt"
    sibling.write_text("keep me")
    sibling_dir = tmp_path / "sibling-dir"
    sibling_dir.mkdir()
    (sibling_dir / "notes.txt").write_text("keep me too")
    os.symlink(sibling, entries["segmenter"] / "link-to-file")  # links inside an entry: removed as links
    os.symlink(sibling_dir, entries["tokens"] / "link-to-dir", target_is_directory=True)
    out = cli_ok(capsys, "cache", "clear", "--yes")
    assert "removed 4 entries" in out
    assert list(cache.iterdir()) == []
    assert sibling.read_text() == "keep me" and (sibling_dir / "notes.txt").read_text() == "keep me too"
    assert corpus_file.is_file()
    assert "nothing to clear" in cli_ok(capsys, "cache", "clear", "--yes")


def test_cache_clear_without_yes_and_without_a_terminal_refuses(capsys, cache, corpus_file, monkeypatch):
    entries = fill_cache(cache, corpus_file)
    pipe_stdin(monkeypatch, b"y\n")
    line = cli_error(capsys, "cache", "clear")
    assert "--yes" in line
    assert all(path.exists() for path in entries.values())


def test_cache_clear_leaves_what_toklab_did_not_write(capsys, cache, corpus_file, tmp_path):
    entries = fill_cache(cache, corpus_file)
    (cache / "my-notes.txt").write_text("mine")
    stranger = cache / "segmenters" / "not-a-segmenter"
    stranger.mkdir()
    (stranger / "data.bin").write_bytes(b"1")
    os.symlink(tmp_path / "sibling", cache / "tokens-link")
    code_out = cli_ok(capsys, "cache", "clear", "--yes")
    assert "removed 4 entries" in code_out
    assert (cache / "my-notes.txt").read_text() == "mine" and (stranger / "data.bin").is_file() and (cache / "tokens-link").is_symlink()
    assert not entries["segmenter"].exists()


def test_cache_clear_parts_by_age_and_kind(capsys, cache, corpus_file):
    entries = fill_cache(cache, corpus_file)
    old = time.time() - 40 * 86400
    os.utime(entries["corpus"] / "manifest.json", (old, old))
    cli_ok(capsys, "cache", "clear", "--older-than", "30d", "--yes")
    assert not entries["corpus"].exists() and entries["segmenter"].exists() and entries["tokens"].exists()
    cli_ok(capsys, "cache", "clear", "--kind", "tokens,temporary", "--yes")
    assert not entries["tokens"].exists() and not entries["leftover"].exists() and entries["segmenter"].exists()
    assert "unknown cache kind" in cli_error(capsys, "cache", "clear", "--kind", "weights", "--yes")
    assert "30d" in cli_error(capsys, "cache", "clear", "--older-than", "soon", "--yes")


def test_cache_refuses_a_home_folder(capsys, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "segmenters" / "x").mkdir(parents=True)
    (home / "segmenters" / "x" / "toklab-segmenter.json").write_text("{}")
    monkeypatch.setenv("HOME", str(home))
    for folder in (home, tmp_path):  # the home folder, and a folder holding it
        monkeypatch.setenv("TOKLAB_CACHE_DIR", str(folder))
        assert "home folder" in cli_error(capsys, "cache", "clear", "--yes")
        assert "home folder" in cli_error(capsys, "cache")
    assert (home / "segmenters" / "x" / "toklab-segmenter.json").is_file()


def test_an_empty_or_missing_cache_is_shown(capsys, cache):
    assert "nothing cached yet" in cli_ok(capsys, "cache")
    assert "nothing to clear" in cli_ok(capsys, "cache", "clear")


# --- toklab tokenizer decode ------------------------------------------------------------------------


def test_decode_bytes_ids(capsys, monkeypatch):
    # bytes: ids 0-255 are the UTF-8 byte values, so "h" = 0x68 = 104 and "i" = 0x69 = 105.
    assert cli_ok(capsys, "tokenizer", "decode", "bytes", "104", "105") == "hi\n"
    assert cli_ok(capsys, "tokenizer", "decode", "bytes", "104,105", "33") == "hi!\n"
    assert cli_ok(capsys, "tokenizer", "decode", "bytes", "104", "256", "105") == "hi\n"  # <|endoftext|> has no bytes
    pipe_stdin(monkeypatch, b"[104, 105]\n")
    assert cli_ok(capsys, "tokenizer", "decode", "bytes", "-") == "hi\n"


@pytest.mark.parametrize(
    "ids, message",
    [
        (["257"], "token id 257 is out of range for bytes (ids 0 to 256)"),
        (["104,-1"], "token id -1 is out of range"),
        (["104", "x7"], "'x7' is not a token id"),
        ([","], "no token ids given"),
    ],
)
def test_decode_bad_ids_are_one_line_errors(capsys, ids, message):
    assert message in cli_error(capsys, "tokenizer", "decode", "bytes", *ids)


def test_decode_reverses_encode(capsys, corpus_file):
    data = json.loads(cli_ok(capsys, "tokenizer", "encode", "bpe:300", "--corpus", corpus_file, "--text", "the lazy fox", "--json"))
    assert data["counts"] == {"tokens": len(data["ids"]), "chars": 12, "bytes": 12}
    ids = ",".join(map(str, data["ids"]))
    assert cli_ok(capsys, "tokenizer", "decode", "bpe:300", "--corpus", corpus_file, ids) == "the lazy fox\n"


# --- toklab tokenizer encode from standard input ---------------------------------------------------------


def test_encode_reads_standard_input_like_text(capsys, monkeypatch):
    text = "héllo wörld\n"
    by_text = cli_ok(capsys, "tokenizer", "encode", "bytes", "--text", text, "--json")
    pipe_stdin(monkeypatch, text.encode())
    assert cli_ok(capsys, "tokenizer", "encode", "bytes", "--json") == by_text
    pipe_stdin(monkeypatch, text.encode())
    assert cli_ok(capsys, "tokenizer", "encode", "bytes", "--file", "-", "--json") == by_text
    data = json.loads(by_text)
    assert data["ids"] == list(text.encode()) and data["counts"] == {"tokens": 14, "chars": 12, "bytes": 14}
    assert data["tokens"][:2] == ["h", "\\xc3"]
    pipe_stdin(monkeypatch, text.encode())
    shown = cli_ok(capsys, "tokenizer", "encode", "bytes")
    assert shown == cli_ok(capsys, "tokenizer", "encode", "bytes", "--text", text)


def test_encode_short_t_is_not_text(capsys):
    assert "-t" in cli_error(capsys, "tokenizer", "encode", "bytes", "-t", "hi")


def test_encode_without_text_and_with_empty_input_is_an_error(capsys, monkeypatch):
    assert "pipe the text" in cli_error(capsys, "tokenizer", "encode", "bytes")  # no stdin here (pytest)
    pipe_stdin(monkeypatch, b"")
    assert "standard input is empty" in cli_error(capsys, "tokenizer", "encode", "bytes")
    pipe_stdin(monkeypatch, b"x")
    assert "exactly one of --text or --file" in cli_error(capsys, "tokenizer", "encode", "bytes", "--text", "a", "--file", "-")


def test_a_real_pipe_encodes_and_decodes():
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    encoded = subprocess.run([sys.executable, "-m", "toklab", "tokenizer", "encode", "bytes", "--json"], input="hé".encode(), capture_output=True, env=env, timeout=120)
    assert encoded.returncode == 0, encoded.stderr
    ids = json.loads(encoded.stdout)["ids"]
    assert ids == [104, 195, 169]
    decoded = subprocess.run([sys.executable, "-m", "toklab", "tokenizer", "decode", "bytes", "-"], input=json.dumps(ids).encode(), capture_output=True, env=env, timeout=120)
    assert decoded.returncode == 0 and decoded.stdout.decode() == "hé\n", decoded.stderr
